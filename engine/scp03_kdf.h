// SCP03 data derivation (GPC v2.2 Amendment D v1.1.1 §4.1.5): NIST SP 800-108 KDF in
// counter mode with PRF = AES-CMAC. gp-reference.md §1.1:
//
//   block(i) = 00 x 11 || constant || 00 || L (2 bytes, bits, big-endian) || i || context
//   output   = CMAC(K, block(1)) || CMAC(K, block(2)) || ...  truncated to L/8 bytes
#pragma once

#include <cstdint>
#include <span>

#include "engine/aes_cmac.h"
#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

// Derivation constants of Amd D Table 4-1.
enum class Scp03Constant : std::uint8_t {
  kCardCryptogram = 0x00,
  kHostCryptogram = 0x01,
  kCardChallenge = 0x02,
  kSEnc = 0x04,
  kSMac = 0x06,
  kSRmac = 0x07,
};

// The fixed input of block `counter_i` (1..255): 00 x 11 || constant || 00 || L || i ||
// context. Public (no key): a caller holding the key elsewhere (an HSM, engine/card_keys.h)
// MACs it itself; AES-192/256 outputs need blocks 1 and 2.
Bytes scp03_kdf_input(std::uint8_t constant, std::uint16_t l_bits, std::uint8_t counter_i,
                      std::span<const std::uint8_t> context);

// Derives `l_bits` bits (a positive multiple of 8, at most 255 blocks of 128) from `key`
// (AES-128/192/256). Any constant byte is accepted (the published KDF vectors use
// constants outside Table 4-1). The output is secret: the caller reveals it only when it
// is public (cryptograms, challenges).
Result<SecureBytes> scp03_kdf(const SecureBytes& key, std::uint8_t constant, std::uint16_t l_bits,
                              std::span<const std::uint8_t> context);

// The same over a key already expanded (an SCP03 session's S-MAC: its cryptograms and
// C-MACs share one schedule).
Result<SecureBytes> scp03_kdf(AesKeySchedule& key, std::uint8_t constant, std::uint16_t l_bits,
                              std::span<const std::uint8_t> context);

inline Result<SecureBytes> scp03_kdf(const SecureBytes& key, Scp03Constant constant,
                                     std::uint16_t l_bits, std::span<const std::uint8_t> context) {
  return scp03_kdf(key, static_cast<std::uint8_t>(constant), l_bits, context);
}

}  // namespace persoflow
