// GHASH (NIST SP 800-38D §6.4): the authentication half of AES-GCM, for streams the
// HSM decrypts in counter mode. PKCS#11 GCM decryption withholds all plaintext until
// the tag verifies, so a multi-gigabyte AuthEnvelopedData cannot be decrypted with
// CKM_AES_GCM in bounded memory; persoflow decrypts it with CKM_AES_CTR in the HSM
// and checks the tag as E(K, J0) xor GHASH_H(A, C), with H = E(K, 0^128) and E(K, J0)
// computed by the HSM (docs/formats/issuer-envelope.md).
//
// 4-bit table method (Shoup): 256 bytes of table per key, kept in SecureBytes.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "engine/secure_bytes.h"

namespace persoflow {

class Ghash {
 public:
  // `h` is the 16-byte hash subkey E(K, 0^128).
  explicit Ghash(std::span<const std::uint8_t> h);

  // All AAD first (any chunking), then all ciphertext (any chunking).
  void update_aad(std::span<const std::uint8_t> data);
  void update_ciphertext(std::span<const std::uint8_t> data);

  // GHASH_H(A, C) including the length block. The object is spent afterwards.
  std::array<std::uint8_t, 16> finish();

 private:
  void absorb(std::span<const std::uint8_t> data);
  void pad_partial();
  void multiply(std::uint8_t block[16]);

  SecureBytes table_;  // 16 entries of (hi, lo) 64-bit halves: M[i] = i * H
  std::uint8_t state_[16] = {};
  std::uint8_t partial_[16] = {};
  std::size_t partial_len_ = 0;
  std::uint64_t aad_bytes_ = 0;
  std::uint64_t ct_bytes_ = 0;
  bool in_ciphertext_ = false;
};

}  // namespace persoflow
