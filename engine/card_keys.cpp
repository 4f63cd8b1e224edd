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

Result<AesKeySchedule*> ClearCardKeys::schedule(CardKeyRole role) {
  std::optional<AesKeySchedule>& s = schedules_[static_cast<std::size_t>(role)];
  if (!s) {
    PF_ASSIGN_OR_RETURN(AesKeySchedule made, AesKeySchedule::create(key(role)));
    s.emplace(std::move(made));
  }
  return &*s;
}

Result<SecureBytes> ClearCardKeys::aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) {
  if (key_family(type_) != KeyFamily::kAes) {
    return invalid(std::string("AES-CMAC under the ") + role_name(role) + ": the key is not AES");
  }
  PF_TRY_CTX(check_aes_key(key(role)), std::string("AES-CMAC under the ") + role_name(role));
  PF_ASSIGN_OR_RETURN(AesKeySchedule * s, schedule(role));
  SecureBytes tag(kAesBlockSize);
  PF_TRY(s->cmac_into(data, std::span<std::uint8_t, kAesBlockSize>(tag.reveal_mutable().data(), kAesBlockSize)));
  return tag;
}

Result<SecureBytes> ClearCardKeys::cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) {
  const auto what = [&] { return std::string("CBC encryption under the ") + role_name(role); };
  if (key_family(type_) == KeyFamily::kDes) {
    static const std::array<std::uint8_t, kDesBlockSize> kZero{};
    auto out = tdes_cbc_derive(key(role), kZero, data);
    if (!out) return with_context(std::move(out), what());
    return out;
  }
  static const std::array<std::uint8_t, kAesBlockSize> kZero{};
  auto s = schedule(role);
  if (!s) return with_context(Result<SecureBytes>(std::move(s).error()), what());
  auto cipher = (*s)->cbc_encrypt(kZero, data);
  if (!cipher) return with_context(Result<SecureBytes>(std::move(cipher).error()), what());
  SecureBytes secret(*cipher);
  detail::secure_wipe(cipher->data(), cipher->size());  // may be a key (CardKeys results are secret)
  return secret;
}

Result<Bytes> ClearCardKeys::kcv(CardKeyRole role) {
  if (key_family(type_) == KeyFamily::kAes) return aes_kcv(key(role));
  PF_ASSIGN_OR_RETURN(Bytes block, tdes_ecb_encrypt(key(role), kcv_block(KeyFamily::kDes)));
  block.resize(kKcvLength);
  return block;
}

}  // namespace persoflow
