#include "engine/hex.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace persoflow {
namespace {

// The message of a kParse error, or a marker that makes the comparison fail.
template <typename T>
std::string parse_error(const Result<T>& r) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  return r.error().message();
}

TEST(HexTest, ToHexIsUpperCaseTwoDigitsPerByte) {
  const Bytes b = {0x00, 0x0A, 0x5C, 0xA0, 0xFF};
  EXPECT_EQ(to_hex(b), "000A5CA0FF");
}

TEST(HexTest, ToHexOfNothingIsEmpty) { EXPECT_EQ(to_hex(Bytes{}), ""); }

TEST(HexTest, FromHexAcceptsBothCases) {
  auto r = from_hex("aBcD0f");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(*r, (Bytes{0xAB, 0xCD, 0x0F}));
}

TEST(HexTest, FromHexOfEmptyTextIsEmpty) {
  auto r = from_hex("");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(HexTest, FromHexOfOnlySeparatorsIsEmpty) {
  auto r = from_hex(" \t ");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(HexTest, SpacesAndTabsBetweenBytesAreSkipped) {
  auto r = from_hex(" 40 41\t42  43 ");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(*r, (Bytes{0x40, 0x41, 0x42, 0x43}));
}

TEST(HexTest, EveryByteValueRoundTrips) {
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  const std::string text = to_hex(all);
  ASSERT_EQ(text.size(), 512u);
  EXPECT_EQ(text.substr(0, 8), "00010203");
  EXPECT_EQ(text.substr(504), "FCFDFEFF");
  auto back = from_hex(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
}

TEST(HexTest, InvalidCharacterIsRejectedWithItsOffset) {
  EXPECT_EQ(parse_error(from_hex("40G1")), "hex: invalid character at offset 2");
  EXPECT_EQ(parse_error(from_hex("0x40")), "hex: invalid character at offset 1");
  EXPECT_EQ(parse_error(from_hex("4041-")), "hex: invalid character at offset 4");
}

TEST(HexTest, OnlySpacesAndTabsAreSeparators) {
  EXPECT_EQ(parse_error(from_hex("40\n41")), "hex: invalid character at offset 2");
  EXPECT_EQ(parse_error(from_hex("40:41")), "hex: invalid character at offset 2");
  EXPECT_EQ(parse_error(from_hex("40\r")), "hex: invalid character at offset 2");
}

TEST(HexTest, NonAsciiIsRejected) {
  EXPECT_EQ(parse_error(from_hex("41\xC3\xA9")), "hex: invalid character at offset 2");
}

TEST(HexTest, OddDigitCountNamesTheUnpairedDigit) {
  EXPECT_EQ(parse_error(from_hex("404")), "hex: odd number of digits (unpaired digit at offset 2)");
  EXPECT_EQ(parse_error(from_hex("A")), "hex: odd number of digits (unpaired digit at offset 0)");
  EXPECT_EQ(parse_error(from_hex("40 4")),
            "hex: odd number of digits (unpaired digit at offset 3)");
}

TEST(HexTest, SeparatorInsideAByteIsRejected) {
  EXPECT_EQ(parse_error(from_hex("4 0")), "hex: separator inside a byte at offset 1");
  EXPECT_EQ(parse_error(from_hex("40 4\t1")), "hex: separator inside a byte at offset 4");
  // A lone digit followed by a space is reported as the split byte it looks like.
  EXPECT_EQ(parse_error(from_hex("40 4 ")), "hex: separator inside a byte at offset 4");
}

TEST(SecureHexTest, DecodesIntoSecureBytes) {
  auto r = secure_from_hex("40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 16u);
  EXPECT_EQ(to_hex(r->reveal()), "404142434445464748494A4B4C4D4E4F");
}

TEST(SecureHexTest, EmptyTextGivesEmptySecret) {
  auto r = secure_from_hex("");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(SecureHexTest, ErrorsNameOffsetsLikeFromHex) {
  EXPECT_EQ(parse_error(secure_from_hex("40G1")), "hex: invalid character at offset 2");
  EXPECT_EQ(parse_error(secure_from_hex("404")),
            "hex: odd number of digits (unpaired digit at offset 2)");
  EXPECT_EQ(parse_error(secure_from_hex("4 0")), "hex: separator inside a byte at offset 1");
}

TEST(SecureHexTest, ErrorNeverQuotesTheSecret) {
  const std::string_view secret = "DEADBEEFCAFEBABE0123Z";
  auto r = secure_from_hex(secret);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message().find("DEADBEEF"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().message().find("CAFE"), std::string::npos);
  EXPECT_NE(r.error().message().find("offset 20"), std::string::npos);
}

}  // namespace
}  // namespace persoflow
