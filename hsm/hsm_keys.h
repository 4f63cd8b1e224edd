// engine's key interfaces (engine/key_ops.h) implemented over PKCS#11, and the
// session-object helpers the import needs: keys stay in the HSM, only handles and
// results cross into host memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "engine/key_ops.h"
#include "engine/secure_bytes.h"
#include "hsm/key_store.h"

namespace persoflow::hsm {

// AES-GCM (CKM_AES_GCM, 12-byte nonce, 16-byte tag) with a stored key.
class HsmAeadKey final : public AeadKey {
 public:
  HsmAeadKey(KeyStore& keys, KeyInfo key) : keys_(keys), key_(std::move(key)) {}
  Result<Bytes> seal(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                     std::span<const std::uint8_t> plaintext) override;
  Result<SecureBytes> open(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                           std::span<const std::uint8_t> ciphertext_and_tag) override;
  Result<Bytes> kcv() override { return keys_.kcv(key_); }
  const KeyInfo& key() const { return key_; }

 private:
  KeyStore& keys_;
  KeyInfo key_;
};

// AES-CMAC (CKM_AES_CMAC, 16 bytes) with a stored key.
class HsmMacKey final : public MacKey {
 public:
  HsmMacKey(KeyStore& keys, KeyInfo key) : keys_(keys), key_(std::move(key)) {}
  Result<Bytes> mac(std::span<const std::uint8_t> data) override;
  Status verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag) override;
  Result<Bytes> kcv() override { return keys_.kcv(key_); }

 private:
  KeyStore& keys_;
  KeyInfo key_;
};

// A session object (an unwrapped content-encryption key), created on the token's
// long-lived object session so that no pooled session's closing can destroy it, and
// destroyed when this owner dies. It lives in the HSM; the host holds the handle.
class SessionKey {
 public:
  SessionKey(Token& token, CK_OBJECT_HANDLE handle)
      : token_(&token), handle_(handle), generation_(token.login_generation()) {}
  SessionKey(SessionKey&& other) noexcept
      : token_(other.token_), handle_(other.handle_), generation_(other.generation_) {
    other.handle_ = CK_INVALID_HANDLE;
  }
  SessionKey& operator=(SessionKey&&) = delete;
  SessionKey(const SessionKey&) = delete;
  ~SessionKey();
  CK_OBJECT_HANDLE handle() const { return handle_; }

 private:
  Token* token_;
  CK_OBJECT_HANDLE handle_;
  // The token's login generation when the object was made: after a lost login the object
  // died with the old sessions and its handle may name another object now, so it is not
  // destroyed.
  std::uint64_t generation_;
};

// Unwraps an AES key wrapped with RFC 3394 AES key wrap (CMS KEKRecipientInfo) under
// `kek`, as a sensitive, non-extractable session object that may encrypt and decrypt.
// A wrong KEK fails the wrap's integrity check: kIntegrity.
Result<SessionKey> unwrap_content_key(KeyStore& keys, const KeyInfo& kek,
                                      std::span<const std::uint8_t> wrapped);

// One AES-ECB block with a session key (GHASH subkey and tag mask for GCM).
Result<SecureBytes> encrypt_block(Token& token, const SessionKey& key, std::span<const std::uint8_t> block);

// Stream decryption through the HSM (AES-CBC with PKCS#7 padding, or AES-CTR) in
// independent single-part calls of at most 64 KiB: each chunk is one C_DecryptInit +
// C_Decrypt with the IV (CBC: the previous ciphertext block) or counter block (CTR: the
// initial block advanced by the blocks already done) computed here. No operation stays
// open across calls, because SoftHSM 2.6 keeps every byte of a multi-part operation
// until it ends (measured: memory grew with the file), which would defeat bounded memory.
//
// Recovery. Since every chunk starts from a state kept here (the IV or counter block at
// the chunk's first byte, advanced only once the chunk has decrypted), a chunk can be
// decrypted again. With a `Recovery` whose renew_key is set, a chunk that fails with a
// transient CK_RV (rv_is_transient: a device error, a lost session or login) is decrypted
// again with the key renew_key returns (the content key unwrapped again: a session object
// dies with the module's sessions), at most attempts_per_chunk times in all, and at most
// max_retries retries over the whole stream. A chunk's plaintext is appended to the output
// only once it has decrypted, so nothing is output twice. A persistent error, or the last
// attempt's, ends the stream; its message names the content offset, the chunk's length,
// the call and (key_description) the key.
struct StreamRecovery {
  static constexpr int kAttemptsPerChunk = 3;
  static constexpr int kMaxRetries = 8;

  // Makes the content key again after a transient failure; the key returned is used from
  // then on and must live until the next renewal or the decryptor's end. Empty: a failed
  // chunk ends the stream, as any error.
  std::function<Result<const SessionKey*>()> renew_key;
  int attempts_per_chunk = kAttemptsPerChunk;  // per chunk, the first included
  int max_retries = kMaxRetries;               // per stream
  std::string key_description;                 // "the content key unwrapped under '...'", for messages
};

class StreamDecryptor {
 public:
  enum class Mode { kCbcPad, kCtr };
  using Recovery = StreamRecovery;
  static constexpr std::size_t kChunk = 64 * 1024;

  // For kCtr, `iv` is the initial counter block (32-bit big-endian counter, GCM's inc32).
  // `chunk` (a positive multiple of 16, at most kChunk) is the size of each call.
  static Result<std::unique_ptr<StreamDecryptor>> start(Token& token, const SessionKey& key, Mode mode,
                                                        std::span<const std::uint8_t> iv, Recovery recovery = {},
                                                        std::size_t chunk = kChunk);
  // Appends the plaintext of every complete chunk to `out`; holds back a partial block
  // (and, for CBC, the last block, which carries the padding). After an error, update and
  // finish refuse (kInternal): the chunks already output and the state kept no longer agree.
  Status update(std::span<const std::uint8_t> in, SecureBytes& out);
  // Decrypts what was held back; CBC padding errors (a damaged or truncated last block)
  // are kIntegrity.
  Status finish(SecureBytes& out);

  // Chunks decrypted again after a transient error, over the stream.
  std::uint64_t retries() const { return retries_; }

  StreamDecryptor(const StreamDecryptor&) = delete;
  StreamDecryptor& operator=(const StreamDecryptor&) = delete;

 private:
  StreamDecryptor(Token& token, const SessionKey& key, Mode mode, std::span<const std::uint8_t> iv,
                  Recovery recovery, std::size_t chunk)
      : token_(token), key_(&key), mode_(mode), iv_(iv.begin(), iv.end()), recovery_(std::move(recovery)),
        chunk_(chunk) {}
  // Decrypts `ct` (a multiple of 16 bytes unless `last`), retried as Recovery says, then
  // advances iv_ past it.
  Status decrypt_chunk(std::span<const std::uint8_t> ct, bool last, SecureBytes& out);
  // One attempt: one lease, C_DecryptInit from iv_ (not changed), C_Decrypt.
  Status decrypt_once(std::span<const std::uint8_t> ct, bool last, const std::string& what, SecureBytes& out);

  Token& token_;
  const SessionKey* key_;
  Mode mode_;
  Bytes iv_;       // CBC: the IV of the next chunk; CTR: its counter block
  Bytes pending_;  // ciphertext not yet decrypted
  Recovery recovery_;
  std::size_t chunk_;
  std::uint64_t offset_ = 0;   // content bytes decrypted so far: the next chunk's offset
  std::uint64_t retries_ = 0;  // read by the stream's owner, on its thread
  bool finished_ = false;
  bool failed_ = false;
};

// Wraps clear key bytes under `kek` inside the HSM (for generating test issuer files):
// the bytes become an extractable session object, are wrapped, and the object is
// destroyed. `mechanism` is CKM_AES_KEY_WRAP (an AES content key, RFC 3394) or
// CKM_AES_KEY_WRAP_PAD (any secret as a generic secret, RFC 5649).
Result<Bytes> wrap_clear_value(KeyStore& keys, const KeyInfo& kek, const SecureBytes& value,
                               CK_MECHANISM_TYPE mechanism);

// Moves a secret wrapped under `dkep` (RFC 5649, as the XOF holds field-encrypted values)
// to AES-CBC under `dek` (an AES key with the wrap usage; the card's K-DEK) inside the
// HSM, IV `iv` (16 bytes; zero for a DGI of its own): unwrap as a generic secret session
// object, C_WrapKey(CKM_AES_CBC), destroy. The clear value never exists in host memory.
// AES-CBC wraps whole blocks only: a secret whose length is not a multiple of 16 is
// kInvalidArgument (the issuer must send it padded; docs/profile.md).
Result<Bytes> rewrap_secret_under_dek(KeyStore& keys, const KeyInfo& dkep, std::span<const std::uint8_t> wrapped,
                                      const KeyInfo& dek, std::span<const std::uint8_t> iv);

// The host path for an XOF secret (a profile's via="host"): unwrapped under `dkep` into a
// non-sensitive generic secret session object, its value read, the object destroyed. The
// value is in host memory afterwards: the run report lists it.
Result<SecureBytes> unwrap_secret_for_host(KeyStore& keys, const KeyInfo& dkep, std::span<const std::uint8_t> wrapped);

// Moves a secret from under `field_key` (RFC 5649 AES key wrap with padding) to under
// `dkep` (same mechanism) inside the HSM: unwrap as a generic secret session object,
// wrap it, destroy it. The clear value never exists in host memory.
Result<Bytes> translate_wrapped_secret(KeyStore& keys, const KeyInfo& field_key, const KeyInfo& dkep,
                                       std::span<const std::uint8_t> wrapped);

}  // namespace persoflow::hsm
