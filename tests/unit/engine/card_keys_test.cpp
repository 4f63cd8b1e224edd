// ClearCardKeys (engine/card_keys.h): lengths and families refused, and each operation
// checked against an independent OpenSSL computation (tests/support/reference_crypto.h)
// or the engine's primitive it stands for.
#include "engine/card_keys.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "tests/support/reference_crypto.h"

namespace persoflow {
namespace {

SecureBytes key(const std::string& hex) { return SecureBytes(test::hex_bytes(hex)); }

const std::string kA16 = "000102030405060708090A0B0C0D0E0F";
const std::string kB16 = "101112131415161718191A1B1C1D1E1F";
const std::string kC16 = "202122232425262728292A2B2C2D2E2F";
const std::string kA24 = "000102030405060708090A0B0C0D0E0F1011121314151617";
const std::string kA32 = kA16 + kB16;

Result<ClearCardKeys> make(const std::string& e, const std::string& m, const std::string& d, KeyFamily f) {
  return ClearCardKeys::create(StaticKeySet{key(e), key(m), key(d)}, f);
}

TEST(ClearCardKeysTest, TypesFromFamilyAndLength) {
  struct Case {
    std::string k;
    KeyFamily family;
    KeyType type;
  };
  for (const Case& c : {Case{kA16, KeyFamily::kAes, KeyType::kAes128}, Case{kA24, KeyFamily::kAes, KeyType::kAes192},
                        Case{kA32, KeyFamily::kAes, KeyType::kAes256}, Case{kA16, KeyFamily::kDes, KeyType::kDes2},
                        Case{kA24, KeyFamily::kDes, KeyType::kDes3}}) {
    auto k = make(c.k, c.k, c.k, c.family);
    ASSERT_TRUE(k.has_value()) << k.error().message();
    EXPECT_EQ(k->type(), c.type);
  }
}

TEST(ClearCardKeysTest, RefusesWrongLengthsWithoutQuotingKeys) {
  auto check = [](Result<ClearCardKeys> r, const std::string& named) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(named), std::string::npos) << r.error().message();
    EXPECT_EQ(r.error().message().find("0102030405"), std::string::npos);
  };
  check(make(kA32, kA16, kA16, KeyFamily::kDes), "ENC");   // 32-byte DES
  check(make(kA16, kA16, "0001020304", KeyFamily::kAes), "DEK");
  check(make(kA16, kA24, kA16, KeyFamily::kAes), "same length");
  check(make(kA16, kA16, kA24, KeyFamily::kDes), "same length");
  check(make("", kA16, kA16, KeyFamily::kAes), "ENC");
}

TEST(ClearCardKeysTest, OperationsUseTheRoleKey) {
  auto k = make(kA16, kB16, kC16, KeyFamily::kAes);
  ASSERT_TRUE(k.has_value());
  const test::ByteVec data = test::hex_bytes("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51");
  auto mac = k->aes_cmac(CardKeyRole::kMac, data);
  ASSERT_TRUE(mac.has_value());
  auto ref = aes_cmac(key(kB16), data);
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(to_hex(mac->reveal()), to_hex(*ref));

  // RFC 4493 example 3 (AES-128 key 2B7E1516...): checks the role mapping end to end.
  auto rfc = make("2B7E151628AED2A6ABF7158809CF4F3C", kA16, kA16, KeyFamily::kAes);
  ASSERT_TRUE(rfc.has_value());
  auto tag = rfc->aes_cmac(CardKeyRole::kEnc, test::hex_bytes("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411"));
  ASSERT_TRUE(tag.has_value());
  EXPECT_EQ(to_hex(tag->reveal()), "DFA66747DE9AE63030CA32611497C827");

  // AES-CBC with a zero IV of one block is AES-ECB: FIPS-197 C.1 (key 000102..0F).
  auto cbc = k->cbc_encrypt(CardKeyRole::kEnc, test::hex_bytes("00112233445566778899AABBCCDDEEFF"));
  ASSERT_TRUE(cbc.has_value());
  EXPECT_EQ(to_hex(cbc->reveal()), "69C4E0D86A7B0430D8CDB78070B4C55A");
  EXPECT_FALSE(k->cbc_encrypt(CardKeyRole::kDek, test::hex_bytes("0011")).has_value()) << "not whole blocks";

  for (auto [role, hex] : {std::pair{CardKeyRole::kEnc, kA16}, std::pair{CardKeyRole::kMac, kB16},
                           std::pair{CardKeyRole::kDek, kC16}}) {
    auto kcv = k->kcv(role);
    ASSERT_TRUE(kcv.has_value());
    EXPECT_EQ(*kcv, test::reference_kcv("aes128", test::hex_bytes(hex)));
  }
}

TEST(ClearCardKeysTest, DesKeys) {
  const std::string k = "404142434445464748494A4B4C4D4E4F";
  auto d = make(k, kA16, kB16, KeyFamily::kDes);
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(d->aes_cmac(CardKeyRole::kEnc, test::hex_bytes("00")).has_value()) << "CMAC needs AES";
  // SCP02 S-ENC of GPP TestPlaintextKeys (scp02_sessions.vec [session-keys]).
  auto s_enc = d->cbc_encrypt(CardKeyRole::kEnc, test::hex_bytes("01820000000000000000000000000000"));
  ASSERT_TRUE(s_enc.has_value());
  EXPECT_EQ(to_hex(s_enc->reveal()), "010B0371D78377B801F2D62AFC671D95");
  auto kcv = d->kcv(CardKeyRole::kDek);
  ASSERT_TRUE(kcv.has_value());
  EXPECT_EQ(*kcv, test::reference_kcv("des2", test::hex_bytes(kB16)));
}

}  // namespace
}  // namespace persoflow
