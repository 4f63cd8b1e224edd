#include "hsm/key_derivation.h"

#include <string>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

const char* type_name(StaticKeyType t) {
  switch (t) {
    case StaticKeyType::kEnc: return "K-ENC";
    case StaticKeyType::kMac: return "K-MAC";
    case StaticKeyType::kDek: return "K-DEK";
  }
  return "K-?";
}

Status check_request(const KeyInfo& master, DiversificationScheme scheme, std::span<const std::uint8_t> kdd,
                     KeyType target) {
  const std::string scheme_name(diversification_scheme_name(scheme));
  if (kdd.size() != kKddLength) {
    return Error(ErrorCode::kInvalidArgument,
                 "key diversification data must be 10 bytes, got " + std::to_string(kdd.size()));
  }
  if (scheme == DiversificationScheme::kKdf3) {
    if (key_family(target) != KeyFamily::kAes || !master.type || key_family(*master.type) != KeyFamily::kAes ||
        key_length_bytes(target) != key_length_bytes(*master.type)) {
      return Error(ErrorCode::kInvalidArgument,
                   "kdf3 master key '" + master.label + "' and the card keys must be AES keys of the same length");
    }
    if (!master.usage.sign) {
      return Error(ErrorCode::kInvalidArgument,
                   "kdf3 master key '" + master.label + "' lacks the sign usage (CKA_SIGN): kdf3 is computed "
                   "with AES-CMAC calls (docs/key-derivation.md)");
    }
    return ok_status();
  }
  if (target != KeyType::kDes2) {
    return Error(ErrorCode::kUnsupported,
                 scheme_name + " diversification produces 2-key 3DES keys (des2), not " +
                     std::string(key_type_name(target)) + " (docs/key-derivation.md)");
  }
  if (master.ck_key_type != CKK_DES2) {
    return Error(ErrorCode::kInvalidArgument,
                 scheme_name + " master key '" + master.label + "' must be a 16-byte 2-key 3DES key (CKK_DES2), got " +
                     ck_key_type_name(master.ck_key_type));
  }
  if (!master.usage.derive) {
    return Error(ErrorCode::kInvalidArgument,
                 "master key '" + master.label + "' lacks the derive usage (CKA_DERIVE)");
  }
  return ok_status();
}

// C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA) on the token's object session: the 16-byte
// diversification block, encrypted as two independent 3DES-ECB blocks under the
// master, becomes the value of a CKK_DES2 session key.
Result<SessionKey> derive_one(KeyStore& keys, const KeyInfo& master, DiversificationScheme scheme,
                              std::span<const std::uint8_t> kdd, StaticKeyType type, bool wrappable) {
  PF_ASSIGN_OR_RETURN(Bytes input, diversification_input(scheme, kdd, type));
  if (input.size() != 16) {
    return Error(ErrorCode::kInternal, "diversification block is " + std::to_string(input.size()) + " bytes, not 16");
  }
  CK_KEY_DERIVATION_STRING_DATA data{input.data(), static_cast<CK_ULONG>(input.size())};
  CK_MECHANISM mech{CKM_DES3_ECB_ENCRYPT_DATA, &data, sizeof data};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_DES2;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  // The DEK also wraps: keys and secrets go key-to-key into DGIs under it (DGI 8000, 8010).
  CK_BBOOL wrap = type == StaticKeyType::kDek ? CK_TRUE : CK_FALSE;
  // A key set the script loads (PUT KEY) goes key-to-key under the session's K-DEK.
  CK_BBOOL extractable = wrappable ? CK_TRUE : CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &no, sizeof no},       {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &extractable, sizeof extractable},
      {CKA_ENCRYPT, &yes, sizeof yes},   {CKA_DECRYPT, &yes, sizeof yes},
      {CKA_SIGN, &yes, sizeof yes},      {CKA_VERIFY, &yes, sizeof yes},
      {CKA_WRAP, &wrap, sizeof wrap},    {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &yes, sizeof yes},
  };
  ObjectSession s = keys.token().object_session();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(s.check(s.api()->C_DeriveKey(s.handle(), &mech, master.handle, tmpl,
                                      static_cast<CK_ULONG>(std::size(tmpl)), &handle),
                 "C_DeriveKey",
                 std::string("deriving ") + type_name(type) + " (" +
                     std::string(diversification_scheme_name(scheme)) + ") from '" + master.label +
                     "' with CKM_DES3_ECB_ENCRYPT_DATA"));
  return SessionKey(keys.token(), handle);
}

// kdf3 (gp-reference.md §4.3): K_t = CMAC(MK, 01 00 00 00 t 00 KDD) || CMAC(MK, 02 ...)
// truncated to the master's length. SoftHSM 2.6.1 has no CMAC-based key derivation
// (no CKM_SP800_108_COUNTER_KDF), so the CMAC blocks come back through C_Sign: the card
// key's value transits host memory (SecureBytes, zeroized) on its way into a sensitive,
// non-extractable session object. prep's run report lists this exposure.
Result<SessionKey> derive_kdf3(KeyStore& keys, const KeyInfo& master, std::span<const std::uint8_t> kdd,
                               StaticKeyType type, KeyType target, bool wrappable) {
  const std::size_t length = key_length_bytes(target);
  SecureBytes value;
  for (std::uint8_t counter = 1; value.size() < length; ++counter) {
    Bytes input{counter, 0x00, 0x00, 0x00, static_cast<std::uint8_t>(type), 0x00};
    input.insert(input.end(), kdd.begin(), kdd.end());
    PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
    CK_MECHANISM mech{CKM_AES_CMAC, nullptr, 0};
    const std::string what = std::string("deriving ") + type_name(type) + " (kdf3) from '" + master.label + "'";
    PF_TRY(s.check(s.api()->C_SignInit(s.handle(), &mech, master.handle), "C_SignInit", what));
    SecureBytes block(16);
    CK_ULONG len = 16;
    PF_TRY(s.check(s.api()->C_Sign(s.handle(), input.data(), static_cast<CK_ULONG>(input.size()),
                                   block.reveal_mutable().data(), &len),
                   "C_Sign", what));
    value.append(block.reveal().first(len));
  }
  value.resize(length);
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  // The DEK also wraps: keys and secrets go key-to-key into DGIs under it (DGI 8000, 8010).
  CK_BBOOL wrap = type == StaticKeyType::kDek ? CK_TRUE : CK_FALSE;
  // A key set the script loads (PUT KEY) goes key-to-key under the session's K-DEK.
  CK_BBOOL extractable = wrappable ? CK_TRUE : CK_FALSE;
  auto v = value.reveal_mutable();
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &no, sizeof no},       {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &extractable, sizeof extractable},
      {CKA_ENCRYPT, &yes, sizeof yes},   {CKA_DECRYPT, &yes, sizeof yes},
      {CKA_SIGN, &yes, sizeof yes},      {CKA_VERIFY, &yes, sizeof yes},
      {CKA_WRAP, &wrap, sizeof wrap},    {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},      {CKA_VALUE, v.data(), static_cast<CK_ULONG>(v.size())},
  };
  ObjectSession s = keys.token().object_session();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(s.check(s.api()->C_CreateObject(s.handle(), tmpl, static_cast<CK_ULONG>(std::size(tmpl)), &handle),
                 "C_CreateObject", std::string("storing the kdf3 ") + type_name(type) + " as a session object"));
  return SessionKey(keys.token(), handle);
}

Result<DerivedKey> derive_with_kcv(KeyStore& keys, const KeyInfo& master, DiversificationScheme scheme,
                                   std::span<const std::uint8_t> kdd, StaticKeyType type, KeyType target,
                                   const DeriveOptions& options) {
  const bool wrappable = options.wrappable;
  // derive_one's ObjectSession is released before a failure here destroys the key
  // (SessionKey's destructor takes the object session itself).
  PF_ASSIGN_OR_RETURN(SessionKey key, scheme == DiversificationScheme::kKdf3
                                           ? derive_kdf3(keys, master, kdd, type, target, wrappable)
                                           : derive_one(keys, master, scheme, kdd, type, wrappable));
  if (!options.kcvs) return DerivedKey{std::move(key), {}};
  PF_ASSIGN_OR_RETURN(Bytes kcv, session_key_kcv(keys, key, target));
  return DerivedKey{std::move(key), std::move(kcv)};
}

}  // namespace

Result<Bytes> session_key_kcv(KeyStore& keys, const SessionKey& key, KeyType type) {
  KeyInfo info;
  info.handle = key.handle();
  info.label = "session key";
  info.type = type;
  info.usage.encrypt = true;
  return keys.kcv(info);
}

Result<DerivedKeySet> derive_static_keys(KeyStore& keys, const KeyInfo& master, DiversificationScheme scheme,
                                         std::span<const std::uint8_t> kdd, KeyType target,
                                         const DeriveOptions& options) {
  PF_TRY(check_request(master, scheme, kdd, target));
  PF_ASSIGN_OR_RETURN(DerivedKey enc,
                      derive_with_kcv(keys, master, scheme, kdd, StaticKeyType::kEnc, target, options));
  PF_ASSIGN_OR_RETURN(DerivedKey mac,
                      derive_with_kcv(keys, master, scheme, kdd, StaticKeyType::kMac, target, options));
  PF_ASSIGN_OR_RETURN(DerivedKey dek,
                      derive_with_kcv(keys, master, scheme, kdd, StaticKeyType::kDek, target, options));
  return DerivedKeySet{std::move(enc), std::move(mac), std::move(dek)};
}

Result<Bytes> wrap_key_aes_cbc(KeyStore& keys, const SessionKey& key, std::size_t key_length,
                               const KeyInfo& wrapping, std::span<const std::uint8_t> iv) {
  if (!wrapping.type || key_family(*wrapping.type) != KeyFamily::kAes) {
    return Error(ErrorCode::kUnsupported, "wrapping key '" + wrapping.label + "' is " +
                                              ck_key_type_name(wrapping.ck_key_type) +
                                              ": keys are wrapped with AES-CBC under an AES key only");
  }
  if (!wrapping.usage.wrap) {
    return Error(ErrorCode::kInvalidArgument, "wrapping key '" + wrapping.label + "' lacks the wrap usage (CKA_WRAP)");
  }
  if (key_length % 16 != 0) {
    return Error(ErrorCode::kUnsupported, "a key of " + std::to_string(key_length) +
                                              " bytes is not a whole number of AES blocks: AES-CBC cannot wrap it");
  }
  if (iv.size() != 16) {
    return Error(ErrorCode::kInvalidArgument, "an AES-CBC IV is 16 bytes, not " + std::to_string(iv.size()));
  }
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  Bytes iv_copy(iv.begin(), iv.end());
  CK_MECHANISM mech{CKM_AES_CBC, iv_copy.data(), static_cast<CK_ULONG>(iv_copy.size())};
  Bytes out(key_length + 16);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  PF_TRY(s.check(s.api()->C_WrapKey(s.handle(), &mech, wrapping.handle, key.handle(), out.data(), &len),
                 "C_WrapKey", "wrapping a derived key under '" + wrapping.label + "' (CKM_AES_CBC)"));
  if (len != key_length) {
    return Error(ErrorCode::kHsm, "C_WrapKey(CKM_AES_CBC) returned " + std::to_string(len) + " bytes for a key of " +
                                      std::to_string(key_length));
  }
  out.resize(len);
  return out;
}

}  // namespace persoflow::hsm
