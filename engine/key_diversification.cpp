#include "engine/key_diversification.h"

#include <string>

#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "engine/key_types.h"

namespace persoflow {
namespace {

Status check_kdd(std::span<const std::uint8_t> kdd) {
  if (kdd.size() != kKddLength) {
    return Error(ErrorCode::kInvalidArgument,
                 "key diversification data must be 10 bytes, got " + std::to_string(kdd.size()));
  }
  return ok_status();
}

// Six bytes that identify the card in each DES scheme.
Bytes des_card_part(DiversificationScheme scheme, std::span<const std::uint8_t> kdd) {
  if (scheme == DiversificationScheme::kEmvCps) return Bytes(kdd.begin() + 4, kdd.end());
  Bytes part(kdd.begin(), kdd.begin() + 2);  // VISA2: AID[-2:] || IC serial number
  part.insert(part.end(), kdd.begin() + 4, kdd.begin() + 8);
  return part;
}

}  // namespace

Result<DiversificationScheme> parse_diversification_scheme(std::string_view name) {
  if (name == "emv") return DiversificationScheme::kEmvCps;
  if (name == "visa2") return DiversificationScheme::kVisa2;
  if (name == "kdf3") return DiversificationScheme::kKdf3;
  return Error(ErrorCode::kInvalidArgument,
               "unknown diversification scheme '" + std::string(name) +
                   "' (expected emv, visa2 or kdf3)");
}

std::string_view diversification_scheme_name(DiversificationScheme scheme) {
  switch (scheme) {
    case DiversificationScheme::kEmvCps: return "emv";
    case DiversificationScheme::kVisa2: return "visa2";
    case DiversificationScheme::kKdf3: return "kdf3";
  }
  return "?";
}

Result<Bytes> diversification_input(DiversificationScheme scheme, std::span<const std::uint8_t> kdd,
                                    StaticKeyType type) {
  PF_TRY(check_kdd(kdd));
  const auto t = static_cast<std::uint8_t>(type);
  if (scheme == DiversificationScheme::kKdf3) {
    Bytes block = {0x01, 0x00, 0x00, 0x00, t, 0x00};
    block.insert(block.end(), kdd.begin(), kdd.end());
    return block;
  }
  const Bytes part = des_card_part(scheme, kdd);
  Bytes block(part);
  block.push_back(0xF0);
  block.push_back(t);
  block.insert(block.end(), part.begin(), part.end());
  block.push_back(0x0F);
  block.push_back(t);
  return block;
}

Result<SecureBytes> diversify_key(DiversificationScheme scheme, const SecureBytes& master_key,
                                  std::span<const std::uint8_t> kdd, StaticKeyType type,
                                  DesParity parity) {
  PF_ASSIGN_OR_RETURN(Bytes input, diversification_input(scheme, kdd, type));
  if (scheme == DiversificationScheme::kKdf3) {
    if (master_key.size() != 16 && master_key.size() != 24 && master_key.size() != 32) {
      return Error(ErrorCode::kInvalidArgument, "KDF3 master key must be an AES key of 16, 24 or 32 bytes");
    }
    SecureBytes key;
    for (std::uint8_t counter = 1; key.size() < master_key.size(); ++counter) {
      input[0] = counter;
      PF_ASSIGN_OR_RETURN(SecureBytes block, aes_cmac_secret(master_key, input));
      key.append(block.reveal());
    }
    key.resize(master_key.size());
    return key;
  }
  if (master_key.size() != 16) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(diversification_scheme_name(scheme)) +
                     " master key must be a 16-byte 2-key 3DES key, got " +
                     std::to_string(master_key.size()));
  }
  PF_ASSIGN_OR_RETURN(SecureBytes key, tdes_ecb_derive(master_key, input));
  if (parity == DesParity::kAdjustOdd) {
    set_odd_parity(key.reveal_mutable().data(), key.size());
  }
  return key;
}

Result<StaticKeySet> diversify_static_keys(DiversificationScheme scheme, const SecureBytes& master_key,
                                           std::span<const std::uint8_t> kdd, DesParity parity) {
  StaticKeySet keys;
  PF_ASSIGN_OR_RETURN(keys.enc, diversify_key(scheme, master_key, kdd, StaticKeyType::kEnc, parity));
  PF_ASSIGN_OR_RETURN(keys.mac, diversify_key(scheme, master_key, kdd, StaticKeyType::kMac, parity));
  PF_ASSIGN_OR_RETURN(keys.dek, diversify_key(scheme, master_key, kdd, StaticKeyType::kDek, parity));
  return keys;
}

}  // namespace persoflow
