// AES-CMAC (NIST SP 800-38B, RFC 4493 for AES-128) over a clear key in SecureBytes, computed
// over OpenSSL's AES-ECB (EVP, the cipher fetched once per process; a fresh context per tag,
// freed and cleansed after it). Full 16-byte tag (GP Amd D §4.1.3).
//
// This and engine/aes_cbc.h are the only places where SCP03 code touches key bytes: the
// KDF, the C-MAC chain, the C-DECRYPTION ICV and the K-DEK encryption all go through
// these three functions (aes_cmac, aes_ecb_encrypt, aes_cbc_encrypt). An HSM-backed key
// path replaces them by the engine's key interfaces (engine/key_ops.h) without changing
// the byte layouts built on top (docs/scp03.md "HSM routing").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

struct evp_cipher_st;  // OpenSSL's EVP_CIPHER

namespace persoflow {

inline constexpr std::size_t kAesBlockSize = 16;

// kInvalidArgument unless the key is 16, 24 or 32 bytes. Never quotes the key.
Status check_aes_key(const SecureBytes& key);

// The 16-byte CMAC tag of `data` (any length, also empty). Use when the tag is public
// (C-MAC, cryptograms).
Result<Bytes> aes_cmac(const SecureBytes& key, std::span<const std::uint8_t> data);

// Same, for a tag that is itself secret (a KDF output block that becomes a session key).
Result<SecureBytes> aes_cmac_secret(const SecureBytes& key, std::span<const std::uint8_t> data);

// One AES key expanded once for many operations: an SCP03 session's S-MAC (every C-MAC of
// the session) or S-ENC (every C-DECRYPTION ICV and data). The OpenSSL context is keyed
// once and the CMAC subkeys computed once, instead of per call; the context is freed (its
// key schedule cleansed) and the subkeys wiped with the object, i.e. when the session ends.
// Not for concurrent use: one thread at a time (a card's session is on one thread). The
// results are those of aes_cmac, aes_ecb_encrypt and aes_cbc_encrypt.
class AesKeySchedule {
 public:
  static Result<AesKeySchedule> create(const SecureBytes& key);
  AesKeySchedule(AesKeySchedule&&) noexcept;
  AesKeySchedule& operator=(AesKeySchedule&&) noexcept;
  AesKeySchedule(const AesKeySchedule&) = delete;
  AesKeySchedule& operator=(const AesKeySchedule&) = delete;
  ~AesKeySchedule();

  // The 16-byte CMAC tag (public: C-MACs, cryptograms).
  Result<Bytes> cmac(std::span<const std::uint8_t> data);
  // The same tag written to `out` (every C-MAC of a session: no allocation).
  Status cmac_into(std::span<const std::uint8_t> data, std::span<std::uint8_t, kAesBlockSize> out);
  // ECB of whole blocks; CBC with a 16-byte IV over whole blocks (no padding added).
  Result<Bytes> ecb_encrypt(std::span<const std::uint8_t> data);
  Result<Bytes> cbc_encrypt(std::span<const std::uint8_t> iv, std::span<const std::uint8_t> data);

 private:
  struct State;
  explicit AesKeySchedule(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// SP 800-38B's dbl(): `in` shifted left by one bit, 0x87 xor'ed into the last byte when
// the top bit was set (CMAC subkeys: K1 = dbl(L), K2 = dbl(K1)). Branch-free.
void cmac_double_block(std::span<const std::uint8_t, kAesBlockSize> in, std::span<std::uint8_t, kAesBlockSize> out);

// The process's AES cipher implementations, fetched from OpenSSL's default provider once
// (an EVP_aes_*() object makes OpenSSL 3 fetch by name on every EVP_EncryptInit, a string
// search under a lock that cost more than the encryption in prep's profile). Never null:
// a provider without AES aborts at first use. For engine/aes_cbc.cpp.
const ::evp_cipher_st* aes_fetched_cipher(std::size_t key_size, bool cbc);

}  // namespace persoflow
