// Key diversification: a master key and the card's 10-byte key diversification data
// (KDD, bytes 0..9 of the INITIALIZE UPDATE response) give the card's static
// K-ENC / K-MAC / K-DEK (gp-reference.md §4). Key type byte t: 01 ENC, 02 MAC, 03 DEK.
//
//   EMV CPS ("EMV", CPS v1.1 §4.1; KDD = KMCID(6, IIN-based) || CSN(4)):
//     K_t = 3DES-ECB(KMC, KDD[4:10] || F0 || t || KDD[4:10] || 0F || t)
//   VISA2 (KDD = AID[-2:] || CPLC fab date(2) || IC serial(4) || IC batch(2)):
//     K_t = 3DES-ECB(MK, KDD[0:2] || KDD[4:8] || F0 || t || KDD[0:2] || KDD[4:8] || 0F || t)
//   KDF3 (AES; GlobalPlatformPro's vendor convention, not Amendment D):
//     K_t = CMAC(MK, 01 || 000000 || t || 00 || KDD) || CMAC(MK, 02 || ...) ... truncated
//           to the master key length
//
// DES master keys are 16 bytes (2-key 3DES); AES master keys 16, 24 or 32 bytes. DES
// results are parity-adjusted (odd parity) unless asked otherwise; parity changes no
// cryptogram and no KCV but keeps strict HSMs from refusing the key on import.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

inline constexpr std::size_t kKddLength = 10;

enum class DiversificationScheme : std::uint8_t { kEmvCps, kVisa2, kKdf3 };

// "emv" | "visa2" | "kdf3" (GlobalPlatformPro's names).
Result<DiversificationScheme> parse_diversification_scheme(std::string_view name);
std::string_view diversification_scheme_name(DiversificationScheme scheme);

enum class StaticKeyType : std::uint8_t { kEnc = 0x01, kMac = 0x02, kDek = 0x03 };

enum class DesParity : std::uint8_t { kAdjustOdd, kKeepRaw };

// The card's static secure-channel key set.
struct StaticKeySet {
  SecureBytes enc;
  SecureBytes mac;
  SecureBytes dek;
};

// The data the master key encrypts (EMV/VISA2: two 8-byte blocks) or MACs (KDF3: the
// block of counter 01), for logs and HSM derivation templates. Not secret.
Result<Bytes> diversification_input(DiversificationScheme scheme, std::span<const std::uint8_t> kdd,
                                    StaticKeyType type);

// One static key. kInvalidArgument for a KDD that is not 10 bytes or a master key of the
// wrong length for the scheme.
Result<SecureBytes> diversify_key(DiversificationScheme scheme, const SecureBytes& master_key,
                                  std::span<const std::uint8_t> kdd, StaticKeyType type,
                                  DesParity parity = DesParity::kAdjustOdd);

// ENC, MAC and DEK.
Result<StaticKeySet> diversify_static_keys(DiversificationScheme scheme, const SecureBytes& master_key,
                                           std::span<const std::uint8_t> kdd,
                                           DesParity parity = DesParity::kAdjustOdd);

}  // namespace persoflow
