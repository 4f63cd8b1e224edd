// EMV CPS, VISA2 and KDF3 static-key diversification against GlobalPlatformPro's vectors
// and kaoh/globalplatform's VISA2 real-card trace (tests/vectors/diversification.vec).
#include "engine/key_diversification.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/key_types.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::ByteVec;
using test::hex_bytes;

ByteVec bytes_of(const SecureBytes& s) { return ByteVec(s.reveal().begin(), s.reveal().end()); }

DiversificationScheme scheme_of(const std::string& section) {
  auto s = parse_diversification_scheme(section);
  EXPECT_TRUE(s.has_value()) << section;
  return s.has_value() ? *s : DiversificationScheme::kEmvCps;
}

TEST(DiversificationTest, EveryVectorByteForByte) {
  int n = 0;
  for (const auto& v : test::load_vectors("diversification.vec")) {
    const DiversificationScheme scheme = scheme_of(v.section);
    const SecureBytes master(hex_bytes(v.at("Master")));
    const ByteVec kdd = hex_bytes(v.at("KDD"));
    const auto type = static_cast<StaticKeyType>(hex_bytes(v.at("Type")).at(0));
    const ByteVec raw = hex_bytes(v.at("Key"));
    const bool des = scheme != DiversificationScheme::kKdf3;
    SCOPED_TRACE("diversification.vec line " + std::to_string(v.line));

    if (v.has("Input")) {
      auto input = diversification_input(scheme, kdd, type);
      ASSERT_TRUE(input.has_value()) << input.error().message();
      EXPECT_EQ(to_hex(*input), v.at("Input"));
    }
    // Raw output equals the source's key.
    auto key_raw = diversify_key(scheme, master, kdd, type, DesParity::kKeepRaw);
    ASSERT_TRUE(key_raw.has_value()) << key_raw.error().message();
    EXPECT_EQ(bytes_of(*key_raw), raw);
    // Default output: DES keys parity-adjusted, AES keys untouched.
    auto key = diversify_key(scheme, master, kdd, type);
    ASSERT_TRUE(key.has_value()) << key.error().message();
    ByteVec expected = raw;
    if (des) set_odd_parity(expected.data(), expected.size());
    EXPECT_EQ(bytes_of(*key), expected);
    if (v.has("KCV")) {
      EXPECT_EQ(test::hex_upper(test::reference_kcv(des ? "des2" : "aes", bytes_of(*key))),
                v.at("KCV"));
    }
    ++n;
  }
  EXPECT_EQ(n, 19);
}

TEST(DiversificationTest, StaticKeySetMatchesSingleKeyDerivations) {
  const SecureBytes master(hex_bytes("404142434445464748494A4B4C4D4E4F"));
  const ByteVec kdd = hex_bytes("00004181116665F5B830");
  auto keys = diversify_static_keys(DiversificationScheme::kVisa2, master, kdd, DesParity::kKeepRaw);
  ASSERT_TRUE(keys.has_value()) << keys.error().message();
  EXPECT_EQ(to_hex(keys->enc.reveal()), "884017FCA6EC4FF6382A4E1AF85AFA51");
  EXPECT_EQ(to_hex(keys->mac.reveal()), "39FC0CD420D3DF51EA93F2DD169B7D33");
  EXPECT_EQ(to_hex(keys->dek.reveal()), "5409B00FA873CEFAB1C02CD692E8E769");
}

TEST(DiversificationTest, DesOutputHasOddParityInEveryByte) {
  const SecureBytes master(hex_bytes("404142434445464748494A4B4C4D4E4F"));
  auto keys = diversify_static_keys(DiversificationScheme::kEmvCps, master, hex_bytes("00010203040506070809"));
  ASSERT_TRUE(keys.has_value());
  for (const SecureBytes* k : {&keys->enc, &keys->mac, &keys->dek}) {
    for (std::uint8_t b : k->reveal()) EXPECT_EQ(__builtin_popcount(b) % 2, 1);
  }
}

TEST(DiversificationTest, EmvUsesTheSixLeastSignificantKddBytesOnly) {
  // gp-reference §9 item 6: changing KDD[0:4] must not change the EMV key, VISA2 must
  // ignore KDD[2:4] and KDD[8:10].
  const SecureBytes master(hex_bytes("404142434445464748494A4B4C4D4E4F"));
  auto a = diversify_key(DiversificationScheme::kEmvCps, master, hex_bytes("00010203040506070809"), StaticKeyType::kEnc);
  auto b = diversify_key(DiversificationScheme::kEmvCps, master, hex_bytes("FFFFFFFF040506070809"), StaticKeyType::kEnc);
  auto c = diversify_key(DiversificationScheme::kEmvCps, master, hex_bytes("000102030405060708FF"), StaticKeyType::kEnc);
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_TRUE(a->equals(*b));
  EXPECT_FALSE(a->equals(*c));
  auto v1 = diversify_key(DiversificationScheme::kVisa2, master, hex_bytes("00010203040506070809"), StaticKeyType::kMac);
  auto v2 = diversify_key(DiversificationScheme::kVisa2, master, hex_bytes("0001EEEE04050607EEEE"), StaticKeyType::kMac);
  ASSERT_TRUE(v1.has_value() && v2.has_value());
  EXPECT_TRUE(v1->equals(*v2));
}

TEST(DiversificationTest, SchemeNamesRoundTrip) {
  for (auto s : {DiversificationScheme::kEmvCps, DiversificationScheme::kVisa2, DiversificationScheme::kKdf3}) {
    auto parsed = parse_diversification_scheme(diversification_scheme_name(s));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, s);
  }
  auto bad = parse_diversification_scheme("EMV2");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST(DiversificationTest, RejectsWrongKddAndMasterKeyLengths) {
  const SecureBytes des_master(hex_bytes("404142434445464748494A4B4C4D4E4F"));
  for (std::size_t len : {0u, 9u, 11u}) {
    auto r = diversify_key(DiversificationScheme::kEmvCps, des_master, ByteVec(len, 1), StaticKeyType::kEnc);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  const ByteVec kdd(10, 1);
  auto des24 = diversify_key(DiversificationScheme::kVisa2, SecureBytes(ByteVec(24, 0x40)), kdd, StaticKeyType::kEnc);
  ASSERT_FALSE(des24.has_value());
  EXPECT_EQ(des24.error().code(), ErrorCode::kInvalidArgument);
  auto aes20 = diversify_key(DiversificationScheme::kKdf3, SecureBytes(ByteVec(20, 0x40)), kdd, StaticKeyType::kEnc);
  ASSERT_FALSE(aes20.has_value());
  EXPECT_EQ(aes20.error().code(), ErrorCode::kInvalidArgument);
  // The error never quotes the key.
  EXPECT_EQ(aes20.error().message().find("4040"), std::string::npos);
}

}  // namespace
}  // namespace persoflow
