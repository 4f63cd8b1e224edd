// Static-key diversification inside the HSM (hsm/key_derivation.h): for every EMV CPS
// and VISA2 vector of tests/vectors/diversification.vec the master is loaded from its
// known value, the card keys are derived by C_DeriveKey, and their HSM-computed KCVs
// are checked against OpenSSL's KCV of the expected key (reference_kcv) and against the
// host engine's diversify_key. KDF3 runs as CMAC calls; the derived objects are sensitive,
// non-extractable session objects destroyed with their set.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "engine/key_diversification.h"
#include "hsm/key_derivation.h"
#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/reference_scp.h"
#include "tests/support/vector_file.h"

namespace persoflow::test {
namespace {

SecureBytes secure(const ByteVec& v) { return SecureBytes(std::span<const std::uint8_t>(v)); }

const hsm::DerivedKey& pick(const hsm::DerivedKeySet& set, StaticKeyType t) {
  switch (t) {
    case StaticKeyType::kEnc: return set.enc;
    case StaticKeyType::kMac: return set.mac;
    case StaticKeyType::kDek: return set.dek;
  }
  return set.enc;
}

class HsmKeyDerivationTest : public HsmTest {
 protected:
  // The master (KMC) from its known value, usable only for derivation.
  hsm::KeyInfo master(const std::string& hex_value) {
    auto it = masters_.find(hex_value);
    if (it != masters_.end()) return it->second;
    const std::string label = "kmc-" + std::to_string(masters_.size());
    auto k = keys_->create_from_value(hsm::KeySpec{label, KeyType::kDes2, KeyUsage{.derive = true}, std::nullopt},
                                      secure(hex_bytes(hex_value)));
    EXPECT_TRUE(k.has_value()) << k.error().message();
    masters_.emplace(hex_value, *k);
    return *k;
  }

  std::size_t count_objects(bool token_objects) {
    auto s = token_->sessions().lease();
    EXPECT_TRUE(s.has_value());
    CK_BBOOL flag = token_objects ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &flag, sizeof flag}};
    CK_FUNCTION_LIST* api = s->api();
    EXPECT_EQ(api->C_FindObjectsInit(s->handle(), tmpl, 1), CKR_OK);
    std::size_t count = 0;
    CK_OBJECT_HANDLE batch[32];
    CK_ULONG n = 0;
    while (api->C_FindObjects(s->handle(), batch, 32, &n) == CKR_OK && n > 0) count += n;
    api->C_FindObjectsFinal(s->handle());
    return count;
  }

  CK_RV get_attribute(CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type, std::vector<std::uint8_t>& value) {
    auto s = token_->sessions().lease();
    EXPECT_TRUE(s.has_value());
    value.assign(64, 0);
    CK_ATTRIBUTE a{type, value.data(), static_cast<CK_ULONG>(value.size())};
    const CK_RV rv = s->api()->C_GetAttributeValue(s->handle(), handle, &a, 1);
    if (rv == CKR_OK) value.resize(a.ulValueLen);
    return rv;
  }

  std::map<std::string, hsm::KeyInfo> masters_;
};

void check_scheme(hsm::KeyStore& keys, const hsm::KeyInfo& kmc, const VectorRecord& rec,
                  DiversificationScheme scheme) {
  SCOPED_TRACE("diversification.vec line " + std::to_string(rec.line) + " [" + rec.section + "]");
  const ByteVec kdd = hex_bytes(rec.at("KDD"));
  const auto type = static_cast<StaticKeyType>(hex_bytes(rec.at("Type")).at(0));
  const ByteVec expected_key = hex_bytes(rec.at("Key"));
  const ByteVec expected_kcv = reference_kcv("des2", expected_key);  // OpenSSL, independent
  if (rec.has("KCV")) {
    ASSERT_EQ(hex_upper(expected_kcv), rec.at("KCV"));  // the vector file agrees with itself
  }
  if (rec.has("Input")) {
    auto input = diversification_input(scheme, kdd, type);
    ASSERT_TRUE(input.has_value());
    EXPECT_EQ(hex_upper(*input), rec.at("Input"));
  }

  auto set = hsm::derive_static_keys(keys, kmc, scheme, kdd, KeyType::kDes2);
  ASSERT_TRUE(set.has_value()) << set.error().message();
  const hsm::DerivedKey& derived = pick(*set, type);
  EXPECT_EQ(hex_upper(derived.kcv), hex_upper(expected_kcv));

  // The KCV through KeyStore::kcv on a KeyInfo for the handle agrees with the set's.
  hsm::KeyInfo info;
  info.handle = derived.key.handle();
  info.label = "derived";
  info.type = KeyType::kDes2;
  info.usage.encrypt = true;
  auto kcv = keys.kcv(info);
  ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
  EXPECT_EQ(hex_upper(*kcv), hex_upper(expected_kcv));

  // And the host engine computes the same key (both parities: DES ignores parity bits).
  for (DesParity parity : {DesParity::kAdjustOdd, DesParity::kKeepRaw}) {
    auto host = diversify_key(scheme, secure(hex_bytes(rec.at("Master"))), kdd, type, parity);
    ASSERT_TRUE(host.has_value()) << host.error().message();
    const ByteVec host_key(host->reveal().begin(), host->reveal().end());
    EXPECT_EQ(hex_upper(reference_kcv("des2", host_key)), hex_upper(derived.kcv));
    if (parity == DesParity::kKeepRaw) {
      EXPECT_EQ(hex_upper(host_key), rec.at("Key"));
    }
  }
}

TEST_F(HsmKeyDerivationTest, DerivesEmvCpsVectorsInsideTheHsm) {
  int checked = 0;
  for (const auto& rec : load_vectors("diversification.vec")) {
    if (rec.section != "emv") continue;
    check_scheme(*keys_, master(rec.at("Master")), rec, DiversificationScheme::kEmvCps);
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST_F(HsmKeyDerivationTest, DerivesVisa2VectorsInsideTheHsm) {
  int checked = 0;
  for (const auto& rec : load_vectors("diversification.vec")) {
    if (rec.section != "visa2") continue;
    check_scheme(*keys_, master(rec.at("Master")), rec, DiversificationScheme::kVisa2);
    ++checked;
  }
  EXPECT_GE(checked, 6);
}

// kdf3 runs as AES-CMAC calls on the master (no CMAC key derivation in SoftHSM): every
// GPP vector, AES-128 and AES-256, gives the published key's KCV (OpenSSL, independent).
TEST_F(HsmKeyDerivationTest, DerivesKdf3VectorsThroughCmacCalls) {
  int checked = 0;
  for (const auto& rec : load_vectors("diversification.vec")) {
    if (rec.section != "kdf3") continue;
    SCOPED_TRACE("diversification.vec line " + std::to_string(rec.line));
    const ByteVec master_value = hex_bytes(rec.at("Master"));
    const KeyType type = master_value.size() == 32   ? KeyType::kAes256
                         : master_value.size() == 24 ? KeyType::kAes192
                                                     : KeyType::kAes128;
    auto kmc = keys_->create_from_value(
        hsm::KeySpec{"kdf3-" + std::to_string(rec.line), type, KeyUsage{.sign = true}, std::nullopt},
        secure(master_value));
    ASSERT_TRUE(kmc.has_value()) << kmc.error().message();
    const auto t = static_cast<StaticKeyType>(hex_bytes(rec.at("Type")).at(0));
    auto set = hsm::derive_static_keys(*keys_, *kmc, DiversificationScheme::kKdf3, hex_bytes(rec.at("KDD")), type);
    ASSERT_TRUE(set.has_value()) << set.error().message();
    EXPECT_EQ(hex_upper(pick(*set, t).kcv), hex_upper(reference_kcv("aes",
                                                                     hex_bytes(rec.at("Key")))));
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST_F(HsmKeyDerivationTest, Kdf3NeedsTheSignUsage) {
  auto kmc = keys_->create_from_value(hsm::KeySpec{"kdf3-nosign", KeyType::kAes128, KeyUsage{.derive = true}, std::nullopt},
                                      secure(hex_bytes("404142434445464748494A4B4C4D4E4F")));
  ASSERT_TRUE(kmc.has_value()) << kmc.error().message();
  auto set = hsm::derive_static_keys(*keys_, *kmc, DiversificationScheme::kKdf3, hex_bytes("00010203040506070809"),
                                     KeyType::kAes128);
  ASSERT_FALSE(set.has_value());
  EXPECT_NE(set.error().message().find("CKA_SIGN"), std::string::npos) << set.error().message();
}

TEST_F(HsmKeyDerivationTest, DerivationRefusesBadRequests) {
  const hsm::KeyInfo kmc = master("404142434445464748494A4B4C4D4E4F");
  const ByteVec kdd = hex_bytes("00010203040506070809");
  auto aes_target = hsm::derive_static_keys(*keys_, kmc, DiversificationScheme::kEmvCps, kdd, KeyType::kAes128);
  ASSERT_FALSE(aes_target.has_value());
  EXPECT_EQ(aes_target.error().code(), ErrorCode::kUnsupported);

  auto short_kdd = hsm::derive_static_keys(*keys_, kmc, DiversificationScheme::kEmvCps,
                                           std::span<const std::uint8_t>(kdd).first(9), KeyType::kDes2);
  ASSERT_FALSE(short_kdd.has_value());
  EXPECT_EQ(short_kdd.error().code(), ErrorCode::kInvalidArgument);

  auto no_derive = keys_->create_from_value(
      hsm::KeySpec{"kmc-encrypt-only", KeyType::kDes2, KeyUsage{.encrypt = true}, std::nullopt},
      secure(hex_bytes("404142434445464748494A4B4C4D4E4F")));
  ASSERT_TRUE(no_derive.has_value()) << no_derive.error().message();
  auto refused = hsm::derive_static_keys(*keys_, *no_derive, DiversificationScheme::kEmvCps, kdd, KeyType::kDes2);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(HsmKeyDerivationTest, DerivedKeysAreSensitiveSessionObjectsDestroyedWithTheSet) {
  const hsm::KeyInfo kmc = master("404142434445464748494A4B4C4D4E4F");
  const ByteVec kdd = hex_bytes("00010203040506070809");
  const std::size_t token_before = count_objects(true);
  const std::size_t session_before = count_objects(false);
  std::vector<CK_OBJECT_HANDLE> handles;
  {
    auto set = hsm::derive_static_keys(*keys_, kmc, DiversificationScheme::kEmvCps, kdd, KeyType::kDes2);
    ASSERT_TRUE(set.has_value()) << set.error().message();
    handles = {set->enc.key.handle(), set->mac.key.handle(), set->dek.key.handle()};
    EXPECT_EQ(count_objects(true), token_before);
    EXPECT_EQ(count_objects(false), session_before + 3);
    for (CK_OBJECT_HANDLE h : handles) {
      std::vector<std::uint8_t> v;
      EXPECT_EQ(get_attribute(h, CKA_VALUE, v), static_cast<CK_RV>(CKR_ATTRIBUTE_SENSITIVE));
      ASSERT_EQ(get_attribute(h, CKA_SENSITIVE, v), static_cast<CK_RV>(CKR_OK));
      EXPECT_EQ(v, std::vector<std::uint8_t>{CK_TRUE});
      ASSERT_EQ(get_attribute(h, CKA_EXTRACTABLE, v), static_cast<CK_RV>(CKR_OK));
      EXPECT_EQ(v, std::vector<std::uint8_t>{CK_FALSE});
      ASSERT_EQ(get_attribute(h, CKA_TOKEN, v), static_cast<CK_RV>(CKR_OK));
      EXPECT_EQ(v, std::vector<std::uint8_t>{CK_FALSE});
      ASSERT_EQ(get_attribute(h, CKA_KEY_TYPE, v), static_cast<CK_RV>(CKR_OK));
      CK_KEY_TYPE kt = 0;
      ASSERT_EQ(v.size(), sizeof kt);
      std::memcpy(&kt, v.data(), sizeof kt);
      EXPECT_EQ(kt, static_cast<CK_KEY_TYPE>(CKK_DES2));
    }
  }
  EXPECT_EQ(count_objects(true), token_before);
  EXPECT_EQ(count_objects(false), session_before);
  for (CK_OBJECT_HANDLE h : handles) {
    std::vector<std::uint8_t> v;
    EXPECT_EQ(get_attribute(h, CKA_CLASS, v), static_cast<CK_RV>(CKR_OBJECT_HANDLE_INVALID));
  }
}

// What SoftHSM does with DES parity on C_DeriveKey, observed on an extractable throwaway
// derivation made only here: the value equals the engine's raw output up to the parity
// bits (bit 0 of each byte), which DES ignores. docs/key-derivation.md records it.
TEST_F(HsmKeyDerivationTest, SoftHsmDerivedValueMatchesEngineModuloParity) {
  const hsm::KeyInfo kmc = master("404142434445464748494A4B4C4D4E4F");
  const ByteVec kdd = hex_bytes("00010203040506070809");
  auto input = diversification_input(DiversificationScheme::kEmvCps, kdd, StaticKeyType::kEnc);
  ASSERT_TRUE(input.has_value());
  auto s = token_->sessions().lease();
  ASSERT_TRUE(s.has_value());
  CK_KEY_DERIVATION_STRING_DATA data{input->data(), static_cast<CK_ULONG>(input->size())};
  CK_MECHANISM mech{CKM_DES3_ECB_ENCRYPT_DATA, &data, sizeof data};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_DES2;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
                         {CKA_TOKEN, &no, sizeof no},       {CKA_SENSITIVE, &no, sizeof no},
                         {CKA_EXTRACTABLE, &yes, sizeof yes}};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  ASSERT_EQ(s->api()->C_DeriveKey(s->handle(), &mech, kmc.handle, tmpl, 5, &h), static_cast<CK_RV>(CKR_OK));
  ByteVec value(16);
  CK_ATTRIBUTE a{CKA_VALUE, value.data(), 16};
  ASSERT_EQ(s->api()->C_GetAttributeValue(s->handle(), h, &a, 1), static_cast<CK_RV>(CKR_OK));
  s->api()->C_DestroyObject(s->handle(), h);

  auto raw = diversify_key(DiversificationScheme::kEmvCps, secure(hex_bytes("404142434445464748494A4B4C4D4E4F")), kdd,
                           StaticKeyType::kEnc, DesParity::kKeepRaw);
  auto odd = diversify_key(DiversificationScheme::kEmvCps, secure(hex_bytes("404142434445464748494A4B4C4D4E4F")), kdd,
                           StaticKeyType::kEnc, DesParity::kAdjustOdd);
  ASSERT_TRUE(raw.has_value() && odd.has_value());
  const ByteVec raw_v(raw->reveal().begin(), raw->reveal().end());
  const ByteVec odd_v(odd->reveal().begin(), odd->reveal().end());
  for (std::size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(value[i] & 0xFE, raw_v[i] & 0xFE) << "byte " << i;
  }
  const char* parity = value == odd_v ? "odd parity set" : value == raw_v ? "raw (parity untouched)" : "other";
  std::cout << "[ INFO     ] SoftHSM C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA, CKK_DES2) value: " << parity << "\n";
}

}  // namespace
}  // namespace persoflow::test

namespace persoflow::test {
namespace {

// DeriveOptions: without KCVs the keys are the same (their KCV computed afterwards matches);
// only a wrappable key set can be wrapped (PUT KEY), and its wrap under an AES key is
// AES-CBC of the kdf3 value (checked with OpenSSL); a card's ordinary keys refuse C_WrapKey.
TEST_F(HsmKeyDerivationTest, OptionsKcvsAndWrappable) {
  const Bytes master_value = hex_bytes("404142434445464748494A4B4C4D4E4F");
  auto kmc = keys_->create_from_value(hsm::KeySpec{"kdf3-options", KeyType::kAes128, KeyUsage{.sign = true}, std::nullopt},
                                      secure(master_value));
  ASSERT_TRUE(kmc.has_value()) << kmc.error().message();
  const Bytes kdd = hex_bytes("00010203040506070809");
  auto with = hsm::derive_static_keys(*keys_, *kmc, DiversificationScheme::kKdf3, kdd, KeyType::kAes128);
  ASSERT_TRUE(with.has_value()) << with.error().message();
  auto without = hsm::derive_static_keys(*keys_, *kmc, DiversificationScheme::kKdf3, kdd, KeyType::kAes128,
                                         hsm::DeriveOptions{.wrappable = false, .kcvs = false});
  ASSERT_TRUE(without.has_value()) << without.error().message();
  EXPECT_TRUE(without->enc.kcv.empty());
  EXPECT_TRUE(without->dek.kcv.empty());
  auto kcv = hsm::session_key_kcv(*keys_, without->mac.key, KeyType::kAes128);
  ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
  EXPECT_EQ(hex_upper(*kcv), hex_upper(with->mac.kcv));

  // A wrapping key (the role of a session's K-DEK) with a known value.
  const Bytes dek_value = hex_bytes("202122232425262728292A2B2C2D2E2F");
  auto dek = keys_->create_from_value(hsm::KeySpec{"wrapping-dek", KeyType::kAes128, KeyUsage{.wrap = true}, std::nullopt},
                                      secure(dek_value));
  ASSERT_TRUE(dek.has_value()) << dek.error().message();
  const Bytes zero(16, 0x00);
  auto refused = hsm::wrap_key_aes_cbc(*keys_, with->enc.key, 16, *dek, zero);
  ASSERT_FALSE(refused.has_value()) << "a card's ordinary static key is not extractable";
  auto wrappable = hsm::derive_static_keys(*keys_, *kmc, DiversificationScheme::kKdf3, kdd, KeyType::kAes128,
                                           hsm::DeriveOptions{.wrappable = true, .kcvs = true});
  ASSERT_TRUE(wrappable.has_value()) << wrappable.error().message();
  EXPECT_EQ(wrappable->enc.kcv, with->enc.kcv);
  auto wrapped = hsm::wrap_key_aes_cbc(*keys_, wrappable->enc.key, 16, *dek, zero);
  ASSERT_TRUE(wrapped.has_value()) << wrapped.error().message();
  // kdf3 K-ENC (gp-reference.md §4.3), then AES-ECB under the DEK (CBC of one block, zero ICV).
  const Bytes k_enc = ref_diversify_key("kdf3", master_value, kdd, 0x01, RefMasterType::kAes);
  EXPECT_EQ(hex_upper(*wrapped), hex_upper(ref_ecb(RefCipher::kAes, true, dek_value, k_enc)));
  EXPECT_FALSE(hsm::wrap_key_aes_cbc(*keys_, wrappable->enc.key, 24, *dek, zero).has_value()) << "not whole blocks";
  EXPECT_FALSE(hsm::wrap_key_aes_cbc(*keys_, wrappable->enc.key, 16, *dek, Bytes(8, 0)).has_value()) << "short IV";
}

}  // namespace
}  // namespace persoflow::test
