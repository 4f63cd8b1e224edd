// Keys in a real SoftHSM token: generation attributes, KCVs against public vectors
// and an independent OpenSSL computation, lookup by URI of keys made by pkcs11-tool,
// and the handle cache.
#include <gtest/gtest.h>

#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow::test {
namespace {

SecureBytes secure(const ByteVec& v) { return SecureBytes(std::span<const std::uint8_t>(v)); }

hsm::KeySpec spec(const std::string& label, KeyType type, KeyUsage usage) {
  return hsm::KeySpec{label, type, usage, std::nullopt};
}

TEST_F(HsmTest, GeneratedKeysAreSensitiveNonExtractableWithExactlyTheAskedUsages) {
  const KeyType types[] = {KeyType::kAes128, KeyType::kAes192, KeyType::kAes256, KeyType::kDes2,
                           KeyType::kDes3};
  const KeyUsage usage{.wrap = true, .unwrap = true};
  for (KeyType type : types) {
    const std::string label = "gen-" + std::string(key_type_name(type));
    auto key = keys_->generate(spec(label, type, usage));
    ASSERT_TRUE(key.has_value()) << key.error().message();
    EXPECT_EQ(key->label, label);
    ASSERT_TRUE(key->type.has_value());
    EXPECT_EQ(*key->type, type);
    EXPECT_EQ(key->bits, key_bits(type));
    EXPECT_TRUE(key->token_object);
    EXPECT_TRUE(key->private_object);
    EXPECT_TRUE(key->sensitive);
    EXPECT_FALSE(key->extractable);
    EXPECT_TRUE(key->always_sensitive);
    EXPECT_TRUE(key->never_extractable);
    EXPECT_EQ(key->usage, usage);
    EXPECT_EQ(key->id.size(), 8u);
    auto kcv = keys_->kcv(*key);
    ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
    EXPECT_EQ(kcv->size(), 3u);
  }
}

TEST_F(HsmTest, ValueOfAGeneratedKeyCannotBeRead) {
  auto key = keys_->generate(spec("secret", KeyType::kAes128, KeyUsage{.encrypt = true}));
  ASSERT_TRUE(key.has_value());
  auto lease = token_->sessions().lease();
  ASSERT_TRUE(lease.has_value());
  std::uint8_t value[32];
  CK_ATTRIBUTE a{CKA_VALUE, value, sizeof value};
  EXPECT_EQ(lease->api()->C_GetAttributeValue(lease->handle(), key->handle, &a, 1),
            static_cast<CK_RV>(CKR_ATTRIBUTE_SENSITIVE));
}

TEST_F(HsmTest, GenerateRefusesAnExistingLabel) {
  ASSERT_TRUE(keys_->generate(spec("dup", KeyType::kAes128, KeyUsage{.encrypt = true})).has_value());
  auto again = keys_->generate(spec("dup", KeyType::kDes2, KeyUsage{.encrypt = true}));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(again.error().message().find("'dup'"), std::string::npos);
}

TEST_F(HsmTest, KcvsOfPublicVectorsThroughTheHsm) {
  const auto vectors = load_vectors("kcv.vec");
  int n = 0;
  for (const auto& v : vectors) {
    SCOPED_TRACE("kcv.vec line " + std::to_string(v.line));
    auto type = parse_key_type(v.at("Type"));
    ASSERT_TRUE(type.has_value());
    const ByteVec key = hex_bytes(v.at("Key"));
    const ByteVec expected = hex_bytes(v.at("KCV"));
    // The vector itself, recomputed independently with OpenSSL.
    EXPECT_EQ(reference_kcv(v.at("Type"), key), expected);
    // A clear value checked on a temporary session object (ceremony components).
    auto direct = keys_->kcv_of_value(*type, secure(key));
    ASSERT_TRUE(direct.has_value()) << direct.error().message();
    EXPECT_EQ(*direct, expected);
    // A stored key without the encrypt usage (KCV through a session copy).
    auto stored = keys_->create_from_value(
        spec("vec-" + std::to_string(n++), *type, KeyUsage{.derive = true}), secure(key));
    ASSERT_TRUE(stored.has_value()) << stored.error().message();
    EXPECT_FALSE(stored->usage.encrypt);
    auto kcv = keys_->kcv(*stored);
    ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
    EXPECT_EQ(*kcv, expected);
  }
  EXPECT_GE(n, 13);
  // The session copies made for the KCVs are gone: only the stored keys remain.
  auto all = keys_->list();
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(static_cast<int>(all->size()), n);
}

TEST_F(HsmTest, KeyWrittenByPkcs11ToolIsFoundByUriWithTheRightKcv) {
  const ByteVec key = hex_bytes("0123456789ABCDEFFEDCBA9876543210");
  write_file(token_env_->dir() / "key.bin", std::string(key.begin(), key.end()));
  token_env_->pkcs11_tool({"--write-object", (token_env_->dir() / "key.bin").string(), "--type",
                           "secrkey", "--key-type", "AES:16", "--label", "ext-aes", "--id", "c0ffee"});
  auto found = keys_->find("pkcs11:token=" + token_env_->label() + ";object=ext-aes;type=secret-key");
  ASSERT_TRUE(found.has_value()) << found.error().message();
  EXPECT_EQ(found->id, (Bytes{0xC0, 0xFF, 0xEE}));
  auto by_id = keys_->find("pkcs11:id=%c0%ff%ee");
  ASSERT_TRUE(by_id.has_value()) << by_id.error().message();
  EXPECT_EQ(by_id->handle, found->handle);
  auto kcv = keys_->kcv(*found);
  ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
  EXPECT_EQ(*kcv, reference_kcv("aes128", key));

  const ByteVec des = hex_bytes("0123456789ABCDEFFEDCBA98765432100011223344556677");
  write_file(token_env_->dir() / "des.bin", std::string(des.begin(), des.end()));
  token_env_->pkcs11_tool({"--write-object", (token_env_->dir() / "des.bin").string(), "--type",
                           "secrkey", "--key-type", "DES3:24", "--label", "ext-des3"});
  auto des_key = keys_->find("pkcs11:object=ext-des3");
  ASSERT_TRUE(des_key.has_value()) << des_key.error().message();
  auto des_kcv = keys_->kcv(*des_key);
  ASSERT_TRUE(des_kcv.has_value()) << des_kcv.error().message();
  EXPECT_EQ(*des_kcv, reference_kcv("des3", des));
}

TEST_F(HsmTest, LookupIsCachedSoTheHsmIsSearchedOncePerUri) {
  ASSERT_TRUE(keys_->generate(spec("cached", KeyType::kAes128, KeyUsage{.encrypt = true})).has_value());
  auto first = keys_->find("pkcs11:object=cached");
  ASSERT_TRUE(first.has_value());
  // Delete the key behind persoflow's back: a second find() that searched again
  // would fail, the cached one still answers with the same handle.
  token_env_->pkcs11_tool({"--delete-object", "--type", "secrkey", "--label", "cached"});
  auto second = keys_->find("pkcs11:object=cached");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->handle, first->handle);
  // A different URI is a new search, which sees the key is gone.
  EXPECT_FALSE(keys_->find("pkcs11:object=cached;type=secret-key").has_value());
}

TEST_F(HsmTest, FindErrorsNameTheUri) {
  auto missing = keys_->find("pkcs11:object=nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("pkcs11:object=nope"), std::string::npos);

  auto other_token = keys_->find("pkcs11:token=elsewhere;object=x");
  ASSERT_FALSE(other_token.has_value());
  EXPECT_EQ(other_token.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(other_token.error().message().find("elsewhere"), std::string::npos);

  auto vague = keys_->find("pkcs11:token=" + token_env_->label());
  ASSERT_FALSE(vague.has_value());
  EXPECT_EQ(vague.error().code(), ErrorCode::kInvalidArgument);

  auto not_secret = keys_->find("pkcs11:object=x;type=private");
  ASSERT_FALSE(not_secret.has_value());
  EXPECT_EQ(not_secret.error().code(), ErrorCode::kInvalidArgument);

  auto bad = keys_->find("pkcs12:object=x");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kParse);
}

TEST_F(HsmTest, AmbiguousLabelIsRefused) {
  const ByteVec key = hex_bytes("00112233445566778899AABBCCDDEEFF");
  write_file(token_env_->dir() / "k.bin", std::string(key.begin(), key.end()));
  for (const char* id : {"01", "02"}) {
    token_env_->pkcs11_tool({"--write-object", (token_env_->dir() / "k.bin").string(), "--type",
                             "secrkey", "--key-type", "AES:16", "--label", "twin", "--id", id});
  }
  auto twin = keys_->find("pkcs11:object=twin");
  ASSERT_FALSE(twin.has_value());
  EXPECT_EQ(twin.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(twin.error().message().find("ambiguous"), std::string::npos);
  EXPECT_TRUE(keys_->find("pkcs11:object=twin;id=%02").has_value());
}

TEST_F(HsmTest, ListIsSortedAndCountsEveryKey) {
  ASSERT_TRUE(keys_->generate(spec("b-key", KeyType::kDes3, KeyUsage{.derive = true})).has_value());
  ASSERT_TRUE(keys_->generate(spec("a-key", KeyType::kAes256, KeyUsage{.sign = true})).has_value());
  auto all = keys_->list();
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].label, "a-key");
  EXPECT_EQ((*all)[1].label, "b-key");
  EXPECT_EQ((*all)[1].uri.rfind("pkcs11:token=" + token_env_->label() + ";object=b-key;id=", 0), 0u);
}

TEST_F(HsmTest, CreateFromValueChecksTheLength) {
  auto r = keys_->create_from_value(spec("short", KeyType::kAes256, KeyUsage{.encrypt = true}),
                                    secure(ByteVec(16, 0x11)));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace persoflow::test
