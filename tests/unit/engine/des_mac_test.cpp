// pad80, 3DES/DES block operations, full 3DES MAC and retail MAC against the intermediate
// values of published SCP02 sessions (tests/vectors/des_mac.vec).
#include "engine/des_mac.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::hex_bytes;

SecureBytes key_of(const std::string& hex) { return SecureBytes(hex_bytes(hex)); }

template <typename T>
ErrorCode code_of(const Result<T>& r) {
  EXPECT_FALSE(r.has_value());
  return r.has_value() ? ErrorCode::kInternal : r.error().code();
}

TEST(DesMacTest, FullTripleDesMacVectors) {
  int n = 0;
  for (const auto& v : test::load_vectors("des_mac.vec")) {
    if (v.section != "full-3des-mac") continue;
    auto mac = full_3des_mac(key_of(v.at("Key")), hex_bytes(v.at("ICV")), hex_bytes(v.at("Data")));
    ASSERT_TRUE(mac.has_value()) << "line " << v.line << ": " << mac.error().message();
    EXPECT_EQ(to_hex(*mac), v.at("Mac")) << "line " << v.line;
    ++n;
  }
  EXPECT_EQ(n, 2);
}

TEST(DesMacTest, RetailMacVectors) {
  int n = 0;
  for (const auto& v : test::load_vectors("des_mac.vec")) {
    if (v.section != "retail-mac") continue;
    auto mac = retail_mac(key_of(v.at("Key")), hex_bytes(v.at("ICV")), hex_bytes(v.at("Data")));
    ASSERT_TRUE(mac.has_value()) << "line " << v.line << ": " << mac.error().message();
    EXPECT_EQ(to_hex(*mac), v.at("Mac")) << "line " << v.line;
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST(DesMacTest, SingleDesWithFirstKeyHalfVector) {
  int n = 0;
  for (const auto& v : test::load_vectors("des_mac.vec")) {
    if (v.section != "des-ecb") continue;
    const SecureBytes key = key_of(v.at("Key"));
    auto ct = des_ecb_encrypt(key, hex_bytes(v.at("Data")));
    ASSERT_TRUE(ct.has_value()) << ct.error().message();
    EXPECT_EQ(to_hex(*ct), v.at("Encrypted"));
    // Only K1 matters: an 8-byte key and K1 || anything give the same result.
    auto k1_only = des_ecb_encrypt(SecureBytes(key.reveal().first(8)), hex_bytes(v.at("Data")));
    ASSERT_TRUE(k1_only.has_value());
    EXPECT_EQ(*k1_only, *ct);
    ++n;
  }
  EXPECT_EQ(n, 1);
}

TEST(DesMacTest, Pad80AlwaysAddsAndAlignsToEightBytes) {
  EXPECT_EQ(to_hex(pad80(Bytes{}, kDesBlockSize)), "8000000000000000");
  EXPECT_EQ(to_hex(pad80(hex_bytes("01020304050607"), kDesBlockSize)), "0102030405060780");
  EXPECT_EQ(to_hex(pad80(hex_bytes("0102030405060708"), kDesBlockSize)),
            "01020304050607088000000000000000");
}

TEST(DesMacTest, Unpad80FindsTheMarkerAndRejectsMissingPadding) {
  auto n = unpad80_length(hex_bytes("0102038000000000"));
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 3u);
  auto whole = unpad80_length(hex_bytes("8000000000000000"));
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(*whole, 0u);
  EXPECT_EQ(code_of(unpad80_length(hex_bytes("0102030000000000"))), ErrorCode::kParse);
  EXPECT_EQ(code_of(unpad80_length(hex_bytes("0000000000000000"))), ErrorCode::kParse);
  EXPECT_EQ(code_of(unpad80_length(Bytes{})), ErrorCode::kParse);
}

TEST(DesMacTest, RetailMacEqualsFullMacWhenBothKeyHalvesAreEqual) {
  // With K1 = K2 the final 3DES step is single DES, so both MACs are the plain DES CBC-MAC.
  const SecureBytes k = key_of("0123456789ABCDEF0123456789ABCDEF");
  const Bytes icv = hex_bytes("0011223344556677");
  for (std::size_t len : {0u, 1u, 7u, 8u, 9u, 23u, 64u}) {
    Bytes data(len, 0x5A);
    auto retail = retail_mac(k, icv, data);
    auto full = full_3des_mac(k, icv, data);
    ASSERT_TRUE(retail.has_value() && full.has_value());
    EXPECT_EQ(*retail, *full) << "length " << len;
  }
}

TEST(DesMacTest, CbcEncryptDecryptRoundTripsWithTwoAndThreeKeyTdes) {
  const Bytes icv = hex_bytes("A1A2A3A4A5A6A7A8");
  const Bytes data = hex_bytes("000102030405060708090A0B0C0D0E0F1011121314151617");
  for (const char* hex : {"404142434445464748494A4B4C4D4E4F",
                          "404142434445464748494A4B4C4D4E4F5051525354555657"}) {
    const SecureBytes k = key_of(hex);
    auto ct = tdes_cbc_encrypt(k, icv, data);
    ASSERT_TRUE(ct.has_value());
    EXPECT_NE(*ct, data);
    auto pt = tdes_cbc_decrypt(k, icv, *ct);
    ASSERT_TRUE(pt.has_value());
    EXPECT_EQ(Bytes(pt->reveal().begin(), pt->reveal().end()), data);
    auto ecb = tdes_ecb_encrypt(k, data);
    ASSERT_TRUE(ecb.has_value());
    auto back = tdes_ecb_decrypt(k, *ecb);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(Bytes(back->reveal().begin(), back->reveal().end()), data);
    auto derived = tdes_ecb_derive(k, data);
    ASSERT_TRUE(derived.has_value());
    EXPECT_EQ(Bytes(derived->reveal().begin(), derived->reveal().end()), *ecb);
  }
}

TEST(DesMacTest, RejectsBadKeysIcvsAndUnalignedData) {
  const SecureBytes good = key_of("404142434445464748494A4B4C4D4E4F");
  const Bytes zero8(8, 0);
  EXPECT_EQ(code_of(tdes_ecb_encrypt(key_of("4041424344454647"), zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(tdes_ecb_encrypt(SecureBytes(std::size_t{20}), zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(tdes_ecb_encrypt(good, Bytes(7, 0))), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(tdes_cbc_encrypt(good, Bytes(7, 0), zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(des_ecb_encrypt(SecureBytes(std::size_t{7}), zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(retail_mac(good, Bytes(9, 0), zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(retail_mac(key_of("4041424344454647"), zero8, zero8)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(full_3des_mac(good, Bytes{}, zero8)), ErrorCode::kInvalidArgument);
}

TEST(DesMacTest, AMacChangesWithEveryInputBit) {
  const SecureBytes k = key_of("3D19A0E1F74FFE5260157E1E150AC67E");
  const Bytes icv(8, 0);
  const Bytes data = hex_bytes("84820100107C799B3C771DBAE6");
  auto base = retail_mac(k, icv, data);
  ASSERT_TRUE(base.has_value());
  for (std::size_t i = 0; i < data.size(); ++i) {
    Bytes flipped = data;
    flipped[i] ^= 0x01;
    auto m = retail_mac(k, icv, flipped);
    ASSERT_TRUE(m.has_value());
    EXPECT_NE(*m, *base) << "byte " << i;
  }
}

}  // namespace
}  // namespace persoflow
