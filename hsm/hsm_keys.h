// engine's key interfaces (engine/key_ops.h) implemented over PKCS#11, and the
// session-object helpers the import needs: keys stay in the HSM, only handles and
// results cross into host memory.
#pragma once

#include <memory>
#include <span>

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
  SessionKey(Token& token, CK_OBJECT_HANDLE handle) : token_(&token), handle_(handle) {}
  SessionKey(SessionKey&& other) noexcept : token_(other.token_), handle_(other.handle_) {
    other.handle_ = CK_INVALID_HANDLE;
  }
  SessionKey& operator=(SessionKey&&) = delete;
  SessionKey(const SessionKey&) = delete;
  ~SessionKey();
  CK_OBJECT_HANDLE handle() const { return handle_; }

 private:
  Token* token_;
  CK_OBJECT_HANDLE handle_;
};

// Unwraps an AES key wrapped with RFC 3394 AES key wrap (CMS KEKRecipientInfo) under
// `kek`, as a sensitive, non-extractable session object that may encrypt and decrypt.
// A wrong KEK fails the wrap's integrity check: kIntegrity.
Result<SessionKey> unwrap_content_key(KeyStore& keys, const KeyInfo& kek,
                                      std::span<const std::uint8_t> wrapped);

// One AES-ECB block with a session key (GHASH subkey and tag mask for GCM).
Result<SecureBytes> encrypt_block(Token& token, const SessionKey& key, std::span<const std::uint8_t> block);

// Multi-part decryption through the HSM (CKM_AES_CBC_PAD or CKM_AES_CTR), the
// session held for the whole stream; output goes to the caller chunk by chunk.
class StreamDecryptor {
 public:
  enum class Mode { kCbcPad, kCtr };
  // For kCtr, `iv` is the initial counter block (32-bit counter, big-endian).
  static Result<std::unique_ptr<StreamDecryptor>> start(Token& token, const SessionKey& key, Mode mode,
                                                        std::span<const std::uint8_t> iv);
  // Appends the plaintext produced so far to `out` (the HSM may hold back a block).
  Status update(std::span<const std::uint8_t> in, SecureBytes& out);
  // Ends the stream; CBC padding errors (a wrong key, a damaged last block) are
  // kIntegrity.
  Status finish(SecureBytes& out);

  // Ends an unfinished stream (the session goes back to the pool clean).
  void cancel();
  ~StreamDecryptor() { cancel(); }
  StreamDecryptor(const StreamDecryptor&) = delete;
  StreamDecryptor& operator=(const StreamDecryptor&) = delete;

 private:
  StreamDecryptor(SessionLease lease, Mode mode) : lease_(std::move(lease)), mode_(mode) {}
  SessionLease lease_;
  Mode mode_;
  bool finished_ = false;
};

// Wraps clear key bytes under `kek` inside the HSM (for generating test issuer files):
// the bytes become an extractable session object, are wrapped, and the object is
// destroyed. `mechanism` is CKM_AES_KEY_WRAP (an AES content key, RFC 3394) or
// CKM_AES_KEY_WRAP_PAD (any secret as a generic secret, RFC 5649).
Result<Bytes> wrap_clear_value(KeyStore& keys, const KeyInfo& kek, const SecureBytes& value,
                               CK_MECHANISM_TYPE mechanism);

// Moves a secret from under `field_key` (RFC 5649 AES key wrap with padding) to under
// `dkep` (same mechanism) inside the HSM: unwrap as a generic secret session object,
// wrap it, destroy it. The clear value never exists in host memory.
Result<Bytes> translate_wrapped_secret(KeyStore& keys, const KeyInfo& field_key, const KeyInfo& dkep,
                                       std::span<const std::uint8_t> wrapped);

}  // namespace persoflow::hsm
