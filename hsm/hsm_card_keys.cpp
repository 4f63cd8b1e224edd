#include "hsm/hsm_card_keys.h"

#include <string>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

CK_BYTE_PTR mutable_ptr(std::span<const std::uint8_t> s) {
  // PKCS#11 takes non-const input pointers it never writes; never pass null (see hsm_keys.cpp).
  static CK_BYTE empty = 0;
  return s.empty() ? &empty : const_cast<CK_BYTE_PTR>(s.data());
}

Error invalid(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

const char* role_word(CardKeyRole role) {
  switch (role) {
    case CardKeyRole::kEnc:
      return "ENC";
    case CardKeyRole::kMac:
      return "MAC";
    case CardKeyRole::kDek:
      break;
  }
  return "DEK";
}

KeyInfo derived_info(const DerivedKey& key, KeyType type, CardKeyRole role) {
  KeyInfo info;
  info.handle = key.key.handle();
  info.label = std::string("card ") + role_word(role) + " key";
  info.type = type;
  info.usage.encrypt = true;  // derive_static_keys: encrypt, decrypt, sign, verify, derive
  info.usage.sign = true;
  info.usage.wrap = role == CardKeyRole::kDek;  // and the DEK wraps
  return info;
}

}  // namespace

Result<HsmCardKeys> HsmCardKeys::from_token_keys(KeyStore& keys, const KeyInfo& enc, const KeyInfo& mac,
                                                 const KeyInfo& dek) {
  if (!enc.type) {
    return invalid("card ENC key '" + enc.label + "' is a " + ck_key_type_name(enc.ck_key_type) +
                   " key, not a type persoflow uses");
  }
  const KeyType type = *enc.type;
  const bool aes = key_family(type) == KeyFamily::kAes;
  std::array<KeyInfo, 3> info{enc, mac, dek};
  for (std::size_t k = 0; k < info.size(); ++k) {
    const auto role = static_cast<CardKeyRole>(k);
    const KeyInfo& i = info[k];
    const std::string name = std::string("card ") + role_word(role) + " key '" + i.label + "'";
    if (i.type != type) {
      return invalid(name + " is " + ck_key_type_name(i.ck_key_type) + " of " + std::to_string(i.bits) +
                     " bits; the three card keys must have the type of the ENC key (" +
                     std::string(key_type_name(type)) + ")");
    }
    const bool needs_sign = aes && role != CardKeyRole::kDek;
    if (needs_sign && !i.usage.sign) return invalid(name + " lacks the sign usage (AES-CMAC of the SCP03 KDF)");
    if (!needs_sign && !i.usage.encrypt) {
      return invalid(name + " lacks the encrypt usage (" +
                     (aes ? "K-DEK encryption" : "SCP02 session keys") + ")");
    }
    info[k].label = name;
  }
  return HsmCardKeys(keys, type, std::move(info));
}

Result<HsmCardKeys> HsmCardKeys::from_derived(KeyStore& keys, const DerivedKeySet& derived, KeyType type) {
  return HsmCardKeys(keys, type,
                     {derived_info(derived.enc, type, CardKeyRole::kEnc), derived_info(derived.mac, type, CardKeyRole::kMac),
                      derived_info(derived.dek, type, CardKeyRole::kDek)});
}

Result<SecureBytes> HsmCardKeys::aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) {
  const KeyInfo& key = info(role);
  const std::string what = "AES-CMAC under the " + key.label;
  if (key_family(type_) != KeyFamily::kAes) return invalid(what + ": the key is not AES");
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_->token().sessions().lease());
  CK_MECHANISM mech{CKM_AES_CMAC, nullptr, 0};
  PF_TRY(s.check(s.api()->C_SignInit(s.handle(), &mech, key.handle), "C_SignInit", what));
  SecureBytes tag(16);
  CK_ULONG len = static_cast<CK_ULONG>(tag.size());
  PF_TRY(s.check(s.api()->C_Sign(s.handle(), mutable_ptr(data), static_cast<CK_ULONG>(data.size()),
                                 tag.reveal_mutable().data(), &len),
                 "C_Sign", what));
  if (len != 16) return Error(ErrorCode::kHsm, what + ": the module returned " + std::to_string(len) + " bytes, not 16");
  return tag;
}

Result<SecureBytes> HsmCardKeys::cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) {
  const KeyInfo& key = info(role);
  const bool aes = key_family(type_) == KeyFamily::kAes;
  const std::size_t block = aes ? 16 : 8;
  const std::string what = std::string(aes ? "AES" : "3DES") + "-CBC encryption under the " + key.label;
  if (data.empty() || data.size() % block != 0) {
    return invalid(what + ": data of " + std::to_string(data.size()) + " bytes is not whole " +
                   std::to_string(block) + "-byte blocks");
  }
  std::array<CK_BYTE, 16> iv{};
  CK_MECHANISM mech{aes ? CKM_AES_CBC : CKM_DES3_CBC, iv.data(), static_cast<CK_ULONG>(block)};
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_->token().sessions().lease());
  PF_TRY(s.check(s.api()->C_EncryptInit(s.handle(), &mech, key.handle), "C_EncryptInit", what));
  SecureBytes out(data.size());
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  PF_TRY(s.check(s.api()->C_Encrypt(s.handle(), mutable_ptr(data), static_cast<CK_ULONG>(data.size()),
                                    out.reveal_mutable().data(), &len),
                 "C_Encrypt", what));
  out.resize(len);
  return out;
}

Result<Bytes> HsmCardKeys::kcv(CardKeyRole role) {
  auto kcv = keys_->kcv(info(role));
  if (!kcv) {
    Error e = std::move(kcv).error();
    e.add_context("KCV of the " + info(role).label);
    return e;
  }
  return kcv;
}

}  // namespace persoflow::hsm
