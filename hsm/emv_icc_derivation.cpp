#include "hsm/emv_icc_derivation.h"

#include <string>
#include <vector>

#include "engine/aes_cbc.h"
#include "hsm/ck_rv.h"
#include "hsm/key_derivation.h"

namespace persoflow::hsm {
namespace {

// The self-test's public values: knovichikhin/pyemv kd.py module doctest (commit
// cf6b82d7a1e1b57c87d18a2caae2115f8b3e4309; tests/vectors/emv_icc_keys.vec, first record)
// and GlobalPlatform's default test key 404142..4F as the K-DEK. None is a secret.
constexpr std::string_view kSelfTestImk = "0123456789ABCDEFFEDCBA9876543210";
constexpr std::string_view kSelfTestPan = "99012345678901234";
constexpr std::string_view kSelfTestPsn = "45";
constexpr std::string_view kSelfTestRawZ = "67F8292358083F5EA6AB7FDA58D43A6B";
constexpr std::string_view kSelfTestMk = "67F8292358083E5EA7AB7FDA58D53B6B";  // Z with odd parity
constexpr std::string_view kSelfTestKcv = "BA7CD9";
constexpr std::string_view kSelfTestDek = "404142434445464748494A4B4C4D4E4F";

std::string what_derive(IccDerivationOption option, const KeyInfo& imk) {
  return "deriving an ICC master key (option " + std::string(icc_derivation_option_name(option)) +
         ") from '" + imk.label + "'";
}

// The IMK's length in bytes, after checking that it suits the option.
Result<std::size_t> checked_imk_length(const KeyInfo& imk, IccDerivationOption option) {
  const std::string name(icc_derivation_option_name(option));
  if (!imk.usage.derive) {
    return Error(ErrorCode::kInvalidArgument,
                 "issuer master key '" + imk.label + "' lacks the derive usage (CKA_DERIVE)");
  }
  if (option == IccDerivationOption::kC) {
    if (imk.ck_key_type != CKK_AES || !imk.type || key_family(*imk.type) != KeyFamily::kAes) {
      return Error(ErrorCode::kInvalidArgument,
                   "ICC master key option C needs an AES issuer master key; '" + imk.label +
                       "' is " + ck_key_type_name(imk.ck_key_type));
    }
    return key_length_bytes(*imk.type);
  }
  if (imk.ck_key_type == CKK_DES2) return std::size_t{16};
  if (imk.ck_key_type == CKK_DES3) return std::size_t{24};
  return Error(ErrorCode::kInvalidArgument,
               "ICC master key option " + name +
                   " needs a 3DES issuer master key (CKK_DES2 or CKK_DES3); '" + imk.label +
                   "' is " + ck_key_type_name(imk.ck_key_type));
}

// C_DeriveKey(CKM_DES3/AES_ECB_ENCRYPT_DATA) on the token's object session: `data`
// encrypted as independent ECB blocks under the IMK becomes the value of the master key
// (the leftmost `mk_length` bytes for AES, through CKA_VALUE_LEN).
Result<SessionKey> derive_object(KeyStore& keys, const KeyInfo& imk, IccDerivationOption option,
                                 SecureBytes& data, std::size_t mk_length, bool host_readable) {
  const bool aes = option == IccDerivationOption::kC;
  auto d = data.reveal_mutable();
  CK_KEY_DERIVATION_STRING_DATA params{d.data(), static_cast<CK_ULONG>(d.size())};
  CK_MECHANISM mech{aes ? CKM_AES_ECB_ENCRYPT_DATA : CKM_DES3_ECB_ENCRYPT_DATA, &params,
                    sizeof params};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = aes ? CKK_AES : CKK_DES2;
  CK_ULONG value_len = static_cast<CK_ULONG>(mk_length);
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  // Sensitive unless the profile opted in to the host path (via="host"): then the value is
  // read once, for this card, to be encrypted under a key the module cannot wrap under.
  CK_BBOOL sensitive = host_readable ? CK_FALSE : CK_TRUE;
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &no, sizeof no},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &sensitive, sizeof sensitive},
      // Extractable only so that C_WrapKey can put it under the card's K-DEK (DGI 8000).
      {CKA_EXTRACTABLE, &yes, sizeof yes},
      {CKA_ENCRYPT, &yes, sizeof yes},
      {CKA_DECRYPT, &no, sizeof no},
      {CKA_SIGN, &no, sizeof no},
      {CKA_VERIFY, &no, sizeof no},
      {CKA_WRAP, &no, sizeof no},
      {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
  };
  if (aes) tmpl.push_back({CKA_VALUE_LEN, &value_len, sizeof value_len});
  ObjectSession s = keys.token().object_session();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(s.check(s.api()->C_DeriveKey(s.handle(), &mech, imk.handle, tmpl.data(),
                                      static_cast<CK_ULONG>(tmpl.size()), &handle),
                 "C_DeriveKey",
                 what_derive(option, imk) +
                     (aes ? " with CKM_AES_ECB_ENCRYPT_DATA" : " with CKM_DES3_ECB_ENCRYPT_DATA")));
  return SessionKey(keys.token(), handle);
}

Result<Bytes> wrap_under_aes_dek(KeyStore& keys, const IccMasterKey& mk, const KeyInfo& dek,
                                 std::span<const std::uint8_t> chain_iv = {}) {
  if (!dek.type || key_family(*dek.type) != KeyFamily::kAes) {
    return Error(ErrorCode::kUnsupported,
                 "K-DEK '" + dek.label + "' is " + ck_key_type_name(dek.ck_key_type) +
                     ": ICC master keys are wrapped under an AES K-DEK (SCP03, AES-CBC) only "
                     "(docs/key-derivation.md)");
  }
  if (!dek.usage.wrap) {
    return Error(ErrorCode::kInvalidArgument,
                 "K-DEK '" + dek.label + "' lacks the wrap usage (CKA_WRAP)");
  }
  const std::size_t length = key_length_bytes(mk.type);
  if (length % 16 != 0) {
    return Error(ErrorCode::kUnsupported,
                 "an ICC master key of " + std::to_string(length) +
                     " bytes is not a whole number of AES blocks: AES-CBC cannot wrap it");
  }
  if (!chain_iv.empty() && chain_iv.size() != 16) {
    return Error(ErrorCode::kInvalidArgument, "an AES-CBC IV is 16 bytes, not " + std::to_string(chain_iv.size()));
  }
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  Bytes iv = chain_iv.empty() ? Bytes(16, 0x00) : Bytes(chain_iv.begin(), chain_iv.end());
  CK_MECHANISM mech{CKM_AES_CBC, iv.data(), static_cast<CK_ULONG>(iv.size())};
  Bytes out(length + 16);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  PF_TRY(
      s.check(s.api()->C_WrapKey(s.handle(), &mech, dek.handle, mk.key.handle(), out.data(), &len),
              "C_WrapKey", "wrapping an ICC master key under '" + dek.label + "' (CKM_AES_CBC)"));
  out.resize(len);
  return out;
}

// A session object from a public test value (self-test only), sensitive and not
// extractable, with one usage.
Result<SessionKey> create_test_key(KeyStore& keys, CK_KEY_TYPE key_type, const SecureBytes& value,
                                   CK_ATTRIBUTE_TYPE usage, const std::string& what) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  SecureBytes v = value;
  auto bytes = v.reveal_mutable();
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &no, sizeof no},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {usage, &yes, sizeof yes},
      {CKA_VALUE, bytes.data(), static_cast<CK_ULONG>(bytes.size())},
  };
  ObjectSession s = keys.token().object_session();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(s.check(
      s.api()->C_CreateObject(s.handle(), tmpl, static_cast<CK_ULONG>(std::size(tmpl)), &handle),
      "C_CreateObject", what));
  return SessionKey(keys.token(), handle);
}

// A missing mechanism is kUnsupported (this module cannot serve the request); other
// failures keep their code.
Error self_test_error(Error error) {
  const auto rv = error.ck_rv();
  if (rv && (*rv == CKR_MECHANISM_INVALID || *rv == CKR_MECHANISM_PARAM_INVALID ||
             *rv == CKR_KEY_NOT_WRAPPABLE)) {
    error = Error::hsm(*rv, error.function(), error.message(), ErrorCode::kUnsupported);
  }
  error.add_context("EMV ICC master key self-test on this PKCS#11 module");
  return error;
}

Status run_self_test(KeyStore& keys) {
  PF_ASSIGN_OR_RETURN(SecureBytes imk_value, secure_from_hex(kSelfTestImk));
  PF_ASSIGN_OR_RETURN(SecureBytes dek_value, secure_from_hex(kSelfTestDek));
  PF_ASSIGN_OR_RETURN(SessionKey imk_key, create_test_key(keys, CKK_DES2, imk_value, CKA_DERIVE,
                                                          "loading the self-test IMK"));
  PF_ASSIGN_OR_RETURN(SessionKey dek_key, create_test_key(keys, CKK_AES, dek_value, CKA_WRAP,
                                                          "loading the self-test K-DEK"));
  KeyInfo imk;
  imk.handle = imk_key.handle();
  imk.label = "self-test IMK";
  imk.ck_key_type = CKK_DES2;
  imk.type = KeyType::kDes2;
  imk.usage.derive = true;
  KeyInfo dek;
  dek.handle = dek_key.handle();
  dek.label = "self-test K-DEK";
  dek.ck_key_type = CKK_AES;
  dek.type = KeyType::kAes128;
  dek.usage.wrap = true;

  PF_ASSIGN_OR_RETURN(IccMasterKey mk, derive_icc_master_key(keys, imk, IccDerivationOption::kA,
                                                             kSelfTestPan, kSelfTestPsn));
  if (to_hex(mk.kcv) != kSelfTestKcv) {
    return Error(ErrorCode::kIntegrity, "the derived ICC master key has KCV " + to_hex(mk.kcv) +
                                            ", the published "
                                            "vector's is " +
                                            std::string(kSelfTestKcv));
  }
  PF_ASSIGN_OR_RETURN(Bytes wrapped, wrap_under_aes_dek(keys, mk, dek));

  const Bytes zero_iv(16, 0x00);
  PF_ASSIGN_OR_RETURN(Bytes mk_bytes, from_hex(kSelfTestMk));
  PF_ASSIGN_OR_RETURN(Bytes z_bytes, from_hex(kSelfTestRawZ));
  PF_ASSIGN_OR_RETURN(Bytes expected, aes_cbc_encrypt(dek_value, zero_iv, mk_bytes));
  PF_ASSIGN_OR_RETURN(Bytes raw, aes_cbc_encrypt(dek_value, zero_iv, z_bytes));
  if (constant_time_equal(wrapped, expected)) return ok_status();
  if (constant_time_equal(wrapped, raw)) {
    return Error(
        ErrorCode::kUnsupported,
        "the module keeps the raw value of derived DES keys (no odd parity): DGI 8000 would carry "
        "ICC master keys that are not parity-adjusted, and the host cannot adjust a wrapped value "
        "(docs/key-derivation.md)");
  }
  return Error(
      ErrorCode::kIntegrity,
      "the wrapped ICC master key is neither the published (parity-adjusted) MK nor its raw value "
      "under the test K-DEK");
}

}  // namespace

Result<IccMasterKey> derive_icc_master_key(KeyStore& keys, const KeyInfo& imk,
                                           IccDerivationOption option, std::string_view pan,
                                           std::string_view psn, bool host_readable) {
  PF_ASSIGN_OR_RETURN(std::size_t imk_length, checked_imk_length(imk, option));
  auto data = icc_mk_derivation_data(option, pan, psn, imk_length);
  if (!data.has_value()) return with_context(std::move(data).error(), what_derive(option, imk));
  const std::size_t mk_length = icc_master_key_length(option, imk_length);
  const KeyType type = option == IccDerivationOption::kC ? *imk.type : KeyType::kDes2;
  // derive_object's ObjectSession is released before a failure here destroys the key
  // (SessionKey's destructor takes the object session itself).
  PF_ASSIGN_OR_RETURN(SessionKey key, derive_object(keys, imk, option, *data, mk_length, host_readable));
  PF_ASSIGN_OR_RETURN(Bytes kcv, session_key_kcv(keys, key, type));
  return IccMasterKey{std::move(key), type, std::move(kcv)};
}

Result<IccMasterKeySet> derive_icc_master_keys(KeyStore& keys, const IccIssuerMasterKeys& imks,
                                               IccDerivationOption option, std::string_view pan,
                                               std::string_view psn, bool host_readable) {
  PF_ASSIGN_OR_RETURN(IccMasterKey ac, derive_icc_master_key(keys, imks.ac, option, pan, psn, host_readable));
  PF_ASSIGN_OR_RETURN(IccMasterKey smi, derive_icc_master_key(keys, imks.smi, option, pan, psn, host_readable));
  PF_ASSIGN_OR_RETURN(IccMasterKey smc, derive_icc_master_key(keys, imks.smc, option, pan, psn, host_readable));
  return IccMasterKeySet{std::move(ac), std::move(smi), std::move(smc)};
}

Result<SecureBytes> read_icc_master_key(KeyStore& keys, const IccMasterKey& mk) {
  const std::size_t length = key_length_bytes(mk.type);
  SecureBytes value(length);
  auto v = value.reveal_mutable();
  CK_ATTRIBUTE attr{CKA_VALUE, v.data(), static_cast<CK_ULONG>(v.size())};
  ObjectSession s = keys.token().object_session();
  PF_TRY(s.check(s.api()->C_GetAttributeValue(s.handle(), mk.key.handle(), &attr, 1), "C_GetAttributeValue",
                 "reading an ICC master key for the host path (it must have been derived host-readable)"));
  if (attr.ulValueLen != length) {
    return Error(ErrorCode::kHsm, "the module returned an ICC master key of " + std::to_string(attr.ulValueLen) +
                                      " bytes, not " + std::to_string(length));
  }
  // The host holds the value now: parity is fixed here, whatever the module kept.
  if (key_family(mk.type) == KeyFamily::kDes) set_odd_parity(v.data(), v.size());
  return value;
}

Result<IccMasterKeyWrapper> IccMasterKeyWrapper::create(KeyStore& keys) {
  Status test = run_self_test(keys);
  if (!test.has_value()) return self_test_error(std::move(test).error());
  return IccMasterKeyWrapper(keys);
}

Result<Bytes> IccMasterKeyWrapper::wrap(const IccMasterKey& mk, const KeyInfo& dek) const {
  return wrap_under_aes_dek(*keys_, mk, dek);
}

Result<Bytes> IccMasterKeyWrapper::wrap(const IccMasterKey& mk, const KeyInfo& dek,
                                        std::span<const std::uint8_t> iv) const {
  return wrap_under_aes_dek(*keys_, mk, dek, iv);
}

}  // namespace persoflow::hsm
