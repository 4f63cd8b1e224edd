// Clear card static keys (engine/card_keys.h): the CardKeys operations over the host
// primitives (engine/aes_cmac.h, engine/aes_cbc.h, engine/des_mac.h).
#include "engine/card_keys.h"

#include <array>
#include <string>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "engine/scp03.h"

namespace persoflow {
namespace {

const char* role_name(CardKeyRole role) {
  switch (role) {
    case CardKeyRole::kEnc:
      return "card ENC key";
    case CardKeyRole::kMac:
      return "card MAC key";
    case CardKeyRole::kDek:
      return "card DEK key";
  }
  return "card key";
}

template <typename T>
Result<T> with_context(Result<T> r, const std::string& context) {
  if (r) return r;
  Error e = std::move(r).error();
  e.add_context(context);
  return e;
}

Error invalid(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

}  // namespace

Result<ClearCardKeys> ClearCardKeys::create(StaticKeySet keys, KeyFamily family) {
  const std::size_t n = keys.enc.size();
  const std::string family_name = family == KeyFamily::kAes ? "AES" : "DES";
  for (auto [role, key] : {std::pair{CardKeyRole::kEnc, &keys.enc}, std::pair{CardKeyRole::kMac, &keys.mac},
                           std::pair{CardKeyRole::kDek, &keys.dek}}) {
    if (!key_type_for(family, key->size())) {
      return invalid(std::string(role_name(role)) + ": an " + family_name + " card key is " +
                     (family == KeyFamily::kAes ? "16, 24 or 32" : "16 or 24") + " bytes, got " +
                     std::to_string(key->size()));
    }
    if (key->size() != n) return invalid("the card ENC, MAC and DEK keys must have the same length");
  }
  const KeyType type = *key_type_for(family, n);
  return ClearCardKeys(std::move(keys), type);
}

const SecureBytes& ClearCardKeys::key(CardKeyRole role) const {
  switch (role) {
    case CardKeyRole::kEnc:
      return keys_.enc;
    case CardKeyRole::kMac:
      return keys_.mac;
    case CardKeyRole::kDek:
      break;
  }
  return keys_.dek;
}

Result<SecureBytes> ClearCardKeys::aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) {
  if (key_family(type_) != KeyFamily::kAes) {
    return invalid(std::string("AES-CMAC under the ") + role_name(role) + ": the key is not AES");
  }
  PF_TRY_CTX(check_aes_key(key(role)), std::string("AES-CMAC under the ") + role_name(role));
  return aes_cmac_secret(key(role), data);
}

Result<SecureBytes> ClearCardKeys::cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) {
  const std::string what = std::string("CBC encryption under the ") + role_name(role);
  if (key_family(type_) == KeyFamily::kDes) {
    static const std::array<std::uint8_t, kDesBlockSize> kZero{};
    PF_ASSIGN_OR_RETURN(SecureBytes out, with_context(tdes_cbc_derive(key(role), kZero, data), what));
    return out;
  }
  static const std::array<std::uint8_t, kAesBlockSize> kZero{};
  PF_ASSIGN_OR_RETURN(Bytes out, with_context(aes_cbc_encrypt(key(role), kZero, data), what));
  SecureBytes secret(out);
  detail::secure_wipe(out.data(), out.size());  // may be a key (CardKeys results are secret)
  return secret;
}

Result<Bytes> ClearCardKeys::kcv(CardKeyRole role) {
  if (key_family(type_) == KeyFamily::kAes) return aes_kcv(key(role));
  PF_ASSIGN_OR_RETURN(Bytes block, tdes_ecb_encrypt(key(role), kcv_block(KeyFamily::kDes)));
  block.resize(kKcvLength);
  return block;
}

}  // namespace persoflow
