// EMV ICC master key derivation (Book 2 A1.4 options A, B, C) and the common session key
// derivation (A1.3.1) against knovichikhin/pyemv's published vectors
// (tests/vectors/emv_icc_keys.vec). Option C has no public vector: its input layout is
// checked digit by digit and its output against AES computed directly with OpenSSL.
#include "engine/emv_icc_keys.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/key_types.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::ByteVec;
using test::hex_bytes;
using test::hex_upper;

ByteVec bytes_of(const SecureBytes& s) { return ByteVec(s.reveal().begin(), s.reveal().end()); }
SecureBytes secure(const ByteVec& v) { return SecureBytes(std::span<const std::uint8_t>(v)); }
std::string field_or_empty(const test::VectorRecord& v, const std::string& name) {
  return v.has(name) ? v.at(name) : std::string();
}

IccDerivationOption option_of(const std::string& name) {
  if (name == "option-a" || name == "A") return IccDerivationOption::kA;
  if (name == "option-b" || name == "B") return IccDerivationOption::kB;
  ADD_FAILURE() << "unknown option " << name;
  return IccDerivationOption::kA;
}

// The KCV field holds 3 bytes where the full key is known, 2 where the source asserts only 2.
void expect_kcv(const ByteVec& key, const std::string& expected) {
  const std::string kcv = hex_upper(test::reference_kcv("des2", key));
  EXPECT_EQ(kcv.substr(0, expected.size()), expected);
}

// Independent AES-ECB (no padding) through OpenSSL EVP, for option C.
ByteVec openssl_aes_ecb(const ByteVec& key, const ByteVec& data) {
  const EVP_CIPHER* cipher = key.size() == 16   ? EVP_aes_128_ecb()
                             : key.size() == 24 ? EVP_aes_192_ecb()
                                                : EVP_aes_256_ecb();
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  ByteVec out(data.size() + 16);
  int len = 0;
  int tail = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nullptr), 1);
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  EXPECT_EQ(
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())),
      1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &tail), 1);
  out.resize(static_cast<std::size_t>(len + tail));
  return out;
}

TEST(EmvIccKeysTest, EveryMasterKeyVectorByteForByte) {
  int n = 0;
  for (const auto& v : test::load_vectors("emv_icc_keys.vec")) {
    if (v.section != "option-a" && v.section != "option-b") continue;
    SCOPED_TRACE("emv_icc_keys.vec line " + std::to_string(v.line));
    const IccDerivationOption option = option_of(v.section);
    const SecureBytes imk = secure(hex_bytes(v.at("IMK")));
    const std::string pan = v.at("PAN");
    const std::string psn = field_or_empty(v, "PSN");

    auto y = icc_mk_input(option, pan, psn);
    ASSERT_TRUE(y.has_value()) << y.error().message();
    if (v.has("Y")) {
      EXPECT_EQ(hex_upper(bytes_of(*y)), v.at("Y"));
    }
    // The derivation data is Y || Y xor FF x 8.
    auto data = icc_mk_derivation_data(option, pan, psn, imk.size());
    ASSERT_TRUE(data.has_value()) << data.error().message();
    ByteVec expected_data = bytes_of(*y);
    for (std::uint8_t b : bytes_of(*y))
      expected_data.push_back(static_cast<std::uint8_t>(b ^ 0xFF));
    EXPECT_EQ(bytes_of(*data), expected_data);

    auto raw = derive_icc_master_key_kat(option, imk, pan, psn, DesParity::kKeepRaw);
    ASSERT_TRUE(raw.has_value()) << raw.error().message();
    if (v.has("Z")) {
      EXPECT_EQ(hex_upper(bytes_of(*raw)), v.at("Z"));
    }
    auto mk = derive_icc_master_key_kat(option, imk, pan, psn);
    ASSERT_TRUE(mk.has_value()) << mk.error().message();
    EXPECT_TRUE(has_odd_parity(mk->reveal()));
    ByteVec adjusted = bytes_of(*raw);
    set_odd_parity(adjusted.data(), adjusted.size());
    EXPECT_EQ(bytes_of(*mk), adjusted);
    if (v.has("MK")) {
      EXPECT_EQ(hex_upper(bytes_of(*mk)), v.at("MK"));
    }
    if (v.has("KCV")) {
      expect_kcv(bytes_of(*mk), v.at("KCV"));
      expect_kcv(bytes_of(*raw), v.at("KCV"));  // parity changes no KCV
    }
    ++n;
  }
  EXPECT_EQ(n, 11);
}

TEST(EmvIccKeysTest, EverySessionKeyVector) {
  int n = 0;
  for (const auto& v : test::load_vectors("emv_icc_keys.vec")) {
    if (v.section != "session-key") continue;
    SCOPED_TRACE("emv_icc_keys.vec line " + std::to_string(v.line));
    SecureBytes mk;
    if (v.has("MK")) {
      mk = secure(hex_bytes(v.at("MK")));
    } else {
      auto derived =
          derive_icc_master_key_kat(option_of(v.at("Option")), secure(hex_bytes(v.at("IMK"))),
                                    v.at("PAN"), field_or_empty(v, "PSN"));
      ASSERT_TRUE(derived.has_value()) << derived.error().message();
      mk = std::move(*derived);
    }
    auto sk = derive_common_session_key_kat(mk, hex_bytes(v.at("R")));
    ASSERT_TRUE(sk.has_value()) << sk.error().message();
    EXPECT_TRUE(has_odd_parity(sk->reveal()));
    if (v.has("SK")) {
      EXPECT_EQ(hex_upper(bytes_of(*sk)), v.at("SK"));
    }
    if (v.has("KCV")) {
      expect_kcv(bytes_of(*sk), v.at("KCV"));
    }
    ++n;
  }
  EXPECT_EQ(n, 8);
}

TEST(EmvIccKeysTest, OptionAPadsShortInputsWithZerosOnTheLeft) {
  // 12-digit PAN + PSN = 14 digits -> two 0 digits in front.
  auto y = icc_mk_input(IccDerivationOption::kA, "123456789012", "01");
  ASSERT_TRUE(y.has_value()) << y.error().message();
  EXPECT_EQ(hex_upper(bytes_of(*y)), "0012345678901201");
  // 19-digit PAN: the rightmost 16 of 21 digits.
  auto y19 = icc_mk_input(IccDerivationOption::kA, "1234567890123456789", "");
  ASSERT_TRUE(y19.has_value());
  EXPECT_EQ(hex_upper(bytes_of(*y19)), "6789012345678900");
  // An absent PSN is "00".
  auto absent = icc_mk_input(IccDerivationOption::kA, "5413330089010012", "");
  auto zero = icc_mk_input(IccDerivationOption::kA, "5413330089010012", "00");
  ASSERT_TRUE(absent.has_value() && zero.has_value());
  EXPECT_TRUE(absent->equals(*zero));
}

TEST(EmvIccKeysTest, OptionBIsOptionAUpToSixteenDigitsOnly) {
  for (const char* pan : {"123456789012", "5413330089010012"}) {
    auto a = icc_mk_input(IccDerivationOption::kA, pan, "07");
    auto b = icc_mk_input(IccDerivationOption::kB, pan, "07");
    ASSERT_TRUE(a.has_value() && b.has_value());
    EXPECT_TRUE(a->equals(*b)) << pan;
  }
  auto a = icc_mk_input(IccDerivationOption::kA, "12345678901234567", "45");
  auto b = icc_mk_input(IccDerivationOption::kB, "12345678901234567", "45");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_FALSE(a->equals(*b));
  // Y of option B is 16 decimal digits whatever the digest.
  for (const char* pan :
       {"12345678901234567", "123456789012345679", "000000000000000005", "9999999999999999999"}) {
    auto y = icc_mk_input(IccDerivationOption::kB, pan, "23");
    ASSERT_TRUE(y.has_value());
    for (std::uint8_t byte : y->reveal()) {
      EXPECT_LT(byte >> 4, 10) << pan;
      EXPECT_LT(byte & 0x0F, 10) << pan;
    }
  }
}

TEST(EmvIccKeysTest, OptionCInputIsThirtyTwoDigitsAndMatchesOpenSslAes) {
  const std::string pan = "5413330089010012";
  auto y = icc_mk_input(IccDerivationOption::kC, pan, "01");
  ASSERT_TRUE(y.has_value()) << y.error().message();
  EXPECT_EQ(hex_upper(bytes_of(*y)), "00000000000000541333008901001201");

  const ByteVec imk128 = hex_bytes("0123456789ABCDEFFEDCBA9876543210");
  const ByteVec imk192 = hex_bytes("0123456789ABCDEFFEDCBA98765432100011223344556677");
  const ByteVec imk256 =
      hex_bytes("0123456789ABCDEFFEDCBA987654321000112233445566778899AABBCCDDEEFF");
  ByteVec y_ff = bytes_of(*y);
  for (std::uint8_t b : bytes_of(*y)) y_ff.push_back(static_cast<std::uint8_t>(b ^ 0xFF));
  for (const ByteVec* imk : {&imk128, &imk192, &imk256}) {
    SCOPED_TRACE("IMK of " + std::to_string(imk->size()) + " bytes");
    auto data = icc_mk_derivation_data(IccDerivationOption::kC, pan, "01", imk->size());
    ASSERT_TRUE(data.has_value()) << data.error().message();
    EXPECT_EQ(bytes_of(*data), imk->size() == 16 ? bytes_of(*y) : y_ff);
    EXPECT_EQ(icc_master_key_length(IccDerivationOption::kC, imk->size()), imk->size());

    auto mk = derive_icc_master_key_kat(IccDerivationOption::kC, secure(*imk), pan, "01");
    ASSERT_TRUE(mk.has_value()) << mk.error().message();
    ByteVec expected = openssl_aes_ecb(*imk, imk->size() == 16 ? bytes_of(*y) : y_ff);
    expected.resize(imk->size());
    EXPECT_EQ(bytes_of(*mk), expected);
  }
  // Regression only: gp-reference.md §7.10 (D4) computed this value with the same
  // algorithm; it is not a published vector.
  auto d4 = derive_icc_master_key_kat(IccDerivationOption::kC, secure(imk128), pan, "01");
  ASSERT_TRUE(d4.has_value());
  EXPECT_EQ(hex_upper(bytes_of(*d4)), "372408CF7B408A1AB846063FE7E1AD36");
}

TEST(EmvIccKeysTest, ParityCheck) {
  EXPECT_TRUE(has_odd_parity(hex_bytes("0101FE")));
  EXPECT_FALSE(has_odd_parity(hex_bytes("0100")));
  ByteVec z = hex_bytes("67F8292358083F5EA6AB7FDA58D43A6B");  // a raw Z of the vectors
  EXPECT_FALSE(has_odd_parity(z));
  set_odd_parity(z.data(), z.size());
  EXPECT_TRUE(has_odd_parity(z));
  EXPECT_EQ(hex_upper(z), "67F8292358083E5EA7AB7FDA58D53B6B");
}

TEST(EmvIccKeysTest, RefusesMalformedCardIdsWithoutQuotingThePan) {
  const std::string pan = "5413330089010012";
  struct Case {
    std::string pan;
    std::string psn;
  };
  const std::vector<Case> bad = {
      {"", "01"},
      {"54133300890", "01"},           // 11 digits
      {"54133300890100123456", "01"},  // 20 digits
      {"541333008901001A", "01"},      // hex letter
      {"5413 330089010012", "01"},     // space
      {"-413330089010012", "01"},
      {pan, "1"},
      {pan, "012"},
      {pan, "0A"},
      {pan, " 1"},
  };
  for (IccDerivationOption option :
       {IccDerivationOption::kA, IccDerivationOption::kB, IccDerivationOption::kC}) {
    for (const Case& c : bad) {
      SCOPED_TRACE("option " + std::string(icc_derivation_option_name(option)) + " PAN length " +
                   std::to_string(c.pan.size()) + " PSN length " + std::to_string(c.psn.size()));
      auto y = icc_mk_input(option, c.pan, c.psn);
      ASSERT_FALSE(y.has_value());
      EXPECT_EQ(y.error().code(), ErrorCode::kInvalidArgument);
      const std::string& m = y.error().message();
      // No run of 4 digits of the PAN appears in the message.
      for (std::size_t i = 0; i + 4 <= c.pan.size(); ++i) {
        EXPECT_EQ(m.find(c.pan.substr(i, 4)), std::string::npos) << m;
      }
      auto mk = derive_icc_master_key_kat(option, SecureBytes(ByteVec(16, 0x40)), c.pan, c.psn);
      ASSERT_FALSE(mk.has_value());
      EXPECT_EQ(mk.error().code(), ErrorCode::kInvalidArgument);
    }
  }
  EXPECT_TRUE(check_icc_card_id(pan, "").has_value());
  EXPECT_TRUE(check_icc_card_id("123456789012", "99").has_value());
  EXPECT_TRUE(check_icc_card_id("1234567890123456789", "00").has_value());
}

TEST(EmvIccKeysTest, RefusesIssuerMasterKeysOfTheWrongLength) {
  const std::string pan = "5413330089010012";
  for (std::size_t len : {0u, 8u, 15u, 32u}) {
    auto r = derive_icc_master_key_kat(IccDerivationOption::kA, SecureBytes(ByteVec(len, 0x40)),
                                       pan, "01");
    ASSERT_FALSE(r.has_value()) << len;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    auto d = icc_mk_derivation_data(IccDerivationOption::kB, pan, "01", len);
    ASSERT_FALSE(d.has_value()) << len;
  }
  for (std::size_t len : {0u, 8u, 20u, 33u}) {
    auto r = derive_icc_master_key_kat(IccDerivationOption::kC, SecureBytes(ByteVec(len, 0x40)),
                                       pan, "01");
    ASSERT_FALSE(r.has_value()) << len;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message().find("4040"), std::string::npos);
  }
  // A 3-key IMK K1 K2 K1 is the 2-key IMK K1 K2.
  const ByteVec k1k2 = hex_bytes("0123456789ABCDEFFEDCBA9876543210");
  ByteVec k1k2k1 = k1k2;
  k1k2k1.insert(k1k2k1.end(), k1k2.begin(), k1k2.begin() + 8);
  auto two =
      derive_icc_master_key_kat(IccDerivationOption::kA, secure(k1k2), "99012345678901234", "45");
  auto three =
      derive_icc_master_key_kat(IccDerivationOption::kA, secure(k1k2k1), "99012345678901234", "45");
  ASSERT_TRUE(two.has_value() && three.has_value());
  EXPECT_TRUE(two->equals(*three));
}

TEST(EmvIccKeysTest, SessionKeyRefusesWrongLengths) {
  const SecureBytes mk(hex_bytes("0123456789ABCDEFFEDCBA9876543210"));
  auto short_r = derive_common_session_key_kat(mk, hex_bytes("001C0000000000"));
  ASSERT_FALSE(short_r.has_value());
  EXPECT_EQ(short_r.error().code(), ErrorCode::kInvalidArgument);
  auto des3 =
      derive_common_session_key_kat(SecureBytes(ByteVec(24, 0x40)), hex_bytes("001C000000000000"));
  ASSERT_FALSE(des3.has_value());
  EXPECT_EQ(des3.error().code(), ErrorCode::kInvalidArgument);
  auto raw = derive_common_session_key_kat(mk, hex_bytes("001C000000000000"), DesParity::kKeepRaw);
  ASSERT_TRUE(raw.has_value());
  ByteVec adjusted = bytes_of(*raw);
  set_odd_parity(adjusted.data(), adjusted.size());
  EXPECT_EQ(hex_upper(adjusted), "E9FB384AF807B940FEDCEA613461B0C4");
}

}  // namespace
}  // namespace persoflow
