// GHASH (NIST SP 800-38D §6.4): the authentication half of AES-GCM, for streams the
// HSM decrypts in counter mode. PKCS#11 GCM decryption withholds all plaintext until
// the tag verifies, so a multi-gigabyte AuthEnvelopedData cannot be decrypted with
// CKM_AES_GCM in bounded memory; persoflow decrypts it with CKM_AES_CTR in the HSM
// and checks the tag as E(K, J0) xor GHASH_H(A, C), with H = E(K, 0^128) and E(K, J0)
// computed by the HSM (docs/formats/issuer-envelope.md).
//
// Carry-less multiplication (PCLMULQDQ) where the CPU has it, checked at run time; the
// 4-bit table method (Shoup) otherwise: 256 bytes of table per key. Either way the key
// material (H, or the table) is kept in SecureBytes. The table method is about 200 MB/s,
// a tenth of an import's CPU for the issuer file; CLMUL is more than ten times faster.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "engine/secure_bytes.h"

namespace persoflow {

class Ghash {
 public:
  enum class Method : std::uint8_t {
    kFastest,  // CLMUL when the CPU has it, else the table
    kTable,    // always the table (tests compare both)
  };
  // `h` is the 16-byte hash subkey E(K, 0^128).
  explicit Ghash(std::span<const std::uint8_t> h, Method method = Method::kFastest);

  // Whether this object multiplies with CLMUL.
  bool uses_clmul() const { return clmul_; }

  // All AAD first (any chunking), then all ciphertext (any chunking).
  void update_aad(std::span<const std::uint8_t> data);
  void update_ciphertext(std::span<const std::uint8_t> data);

  // GHASH_H(A, C) including the length block. The object is spent afterwards.
  std::array<std::uint8_t, 16> finish();

 private:
  void absorb(std::span<const std::uint8_t> data);
  void pad_partial();
  void multiply(std::uint8_t block[16]);
  // state_ = (state_ xor block) * H for each of `blocks` whole blocks at `data`.
  void absorb_blocks(const std::uint8_t* data, std::size_t blocks);

  // Table method: 16 entries of (hi, lo) 64-bit halves, M[i] = i * H.
  // CLMUL: H with its bytes reversed (16 bytes).
  SecureBytes table_;
  bool clmul_ = false;
  std::uint8_t state_[16] = {};
  std::uint8_t partial_[16] = {};
  std::size_t partial_len_ = 0;
  std::uint64_t aad_bytes_ = 0;
  std::uint64_t ct_bytes_ = 0;
  bool in_ciphertext_ = false;
};

}  // namespace persoflow
