// AES-CMAC and the SCP03 KDF (gp-reference.md §1.1) against published vectors:
// RFC 4493 / NIST SP 800-38B (cmac.vec, aes_cmac.vec), blaufish/scp03_kdf_testvectors and
// GlobalPlatformPro's SCP03 session keys (scp03_kdf.vec).
#include "engine/scp03_kdf.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "engine/aes_cmac.h"
#include "engine/hex.h"
#include "engine/scp03.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::load_vectors;

Bytes hex(const std::string& text) {
  auto r = from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test hex: " << r.error().message();
    return {};
  }
  return std::move(r).value();
}

SecureBytes key(const std::string& text) {
  auto r = secure_from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test key hex";
    return SecureBytes();
  }
  return std::move(r).value();
}

std::string revealed_hex(const SecureBytes& s) { return to_hex(s.reveal()); }

void expect_cmac_vectors(const std::string& file, std::size_t expected_count) {
  const auto vectors = load_vectors(file);
  EXPECT_EQ(vectors.size(), expected_count);
  for (const auto& v : vectors) {
    SCOPED_TRACE(file + " line " + std::to_string(v.line));
    auto mac = aes_cmac(key(v.at("Key")), hex(v.at("Message")));
    ASSERT_TRUE(mac.has_value()) << mac.error().message();
    EXPECT_EQ(to_hex(*mac), v.at("Mac"));
    auto secret = aes_cmac_secret(key(v.at("Key")), hex(v.at("Message")));
    ASSERT_TRUE(secret.has_value());
    EXPECT_EQ(revealed_hex(*secret), v.at("Mac"));
  }
}

TEST(AesCmacTest, Rfc4493Aes128Vectors) { expect_cmac_vectors("cmac.vec", 4); }

TEST(AesCmacTest, Sp80038bAes192And256Vectors) { expect_cmac_vectors("aes_cmac.vec", 8); }

TEST(AesCmacTest, RejectsKeysThatAreNotAes) {
  for (std::size_t n : {0u, 8u, 15u, 17u, 33u}) {
    auto r = aes_cmac(SecureBytes(n), hex("00"));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Scp03KdfTest, BlaufishVectorsAll40) {
  int count = 0;
  for (const auto& v : load_vectors("scp03_kdf.vec")) {
    if (v.section != "blaufish") continue;
    SCOPED_TRACE("scp03_kdf.vec line " + std::to_string(v.line));
    const Bytes constant = hex(v.at("Constant"));
    ASSERT_EQ(constant.size(), 1u);
    const Bytes expected = hex(v.at("Output"));
    auto out = scp03_kdf(key(v.at("Key")), constant[0],
                         static_cast<std::uint16_t>(expected.size() * 8), hex(v.at("Context")));
    ASSERT_TRUE(out.has_value()) << out.error().message();
    EXPECT_EQ(revealed_hex(*out), v.at("Output"));
    ++count;
  }
  EXPECT_EQ(count, 40);
}

TEST(Scp03KdfTest, GlobalPlatformProSessionKeysAndKcvs) {
  int count = 0;
  for (const auto& v : load_vectors("scp03_kdf.vec")) {
    if (v.section != "gpp_session_keys") continue;
    SCOPED_TRACE("scp03_kdf.vec line " + std::to_string(v.line));
    auto out = scp03_kdf(key(v.at("Key")), hex(v.at("Constant"))[0], 128, hex(v.at("Context")));
    ASSERT_TRUE(out.has_value()) << out.error().message();
    EXPECT_EQ(revealed_hex(*out), v.at("Output"));
    auto kcv = aes_kcv(*out);
    ASSERT_TRUE(kcv.has_value());
    EXPECT_EQ(to_hex(*kcv), v.at("Kcv"));
    ++count;
  }
  EXPECT_EQ(count, 3);
}

// The fixed input of gp-reference.md §1.1, built by hand: 00 x 11 || C || 00 || L || i || context.
TEST(Scp03KdfTest, BlockLayoutMatchesAmendmentD) {
  const SecureBytes k = key("404142434445464748494A4B4C4D4E4F");
  const Bytes context = hex("00112233445566778899AABBCCDDEEFF");
  auto one =
      aes_cmac(k, hex("0000000000000000000000 04 00 0080 01 00112233445566778899AABBCCDDEEFF"));
  auto out128 = scp03_kdf(k, Scp03Constant::kSEnc, 128, context);
  ASSERT_TRUE(one.has_value() && out128.has_value());
  EXPECT_EQ(revealed_hex(*out128), to_hex(*one));

  // 64 bits: L = 0040 in the block, first 8 bytes kept.
  auto one64 =
      aes_cmac(k, hex("0000000000000000000000 00 00 0040 01 00112233445566778899AABBCCDDEEFF"));
  auto out64 = scp03_kdf(k, Scp03Constant::kCardCryptogram, 64, context);
  ASSERT_TRUE(one64.has_value() && out64.has_value());
  EXPECT_EQ(revealed_hex(*out64), to_hex(*one64).substr(0, 16));

  // 192 bits (AES-192 session keys): i = 1 and 2 under L = 00C0, 24 bytes kept.
  auto b1 =
      aes_cmac(k, hex("0000000000000000000000 06 00 00C0 01 00112233445566778899AABBCCDDEEFF"));
  auto b2 =
      aes_cmac(k, hex("0000000000000000000000 06 00 00C0 02 00112233445566778899AABBCCDDEEFF"));
  auto out192 = scp03_kdf(k, Scp03Constant::kSMac, 192, context);
  ASSERT_TRUE(b1.has_value() && b2.has_value() && out192.has_value());
  EXPECT_EQ(revealed_hex(*out192), (to_hex(*b1) + to_hex(*b2)).substr(0, 48));
}

TEST(Scp03KdfTest, RejectsBadLengthsAndKeys) {
  const SecureBytes k = key("404142434445464748494A4B4C4D4E4F");
  for (std::uint16_t l : {std::uint16_t{0}, std::uint16_t{12}}) {
    auto r = scp03_kdf(k, 0x04, l, hex("00"));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  auto r = scp03_kdf(SecureBytes(10), 0x04, 128, hex("00"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace persoflow
