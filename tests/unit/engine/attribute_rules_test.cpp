#include "engine/attribute_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

namespace persoflow {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

AttributeSpec spec_of(AttributeType type) {
  AttributeSpec s;
  s.name = "attr";
  s.type = type;
  s.required = true;
  s.key_class = "general";
  return s;
}

AttributeSpec pan_spec() {
  AttributeSpec s = spec_of(AttributeType::kDigits);
  s.name = "pan";
  s.min_length = 13;
  s.max_length = 19;
  s.luhn = true;
  s.reveal = Reveal::kMaskPan;
  return s;
}

AttributeSpec pin_block_spec() {
  AttributeSpec s = spec_of(AttributeType::kHex);
  s.field_encryption = FieldEncryption::kAesKwp;
  s.field_key_uri = "pkcs11:object=pin-tk-acme";
  return s;
}

// The reason, or a marker that fails any comparison with a real reason.
std::string reason(const AttributeSpec& spec, std::string_view value) {
  return check_attribute(spec, value).value_or("<valid>");
}

// --- Luhn -------------------------------------------------------------------------

TEST(LuhnTest, KnownValidNumbers) {
  EXPECT_TRUE(luhn_valid("4111111111111111"));  // Visa test PAN
  EXPECT_TRUE(luhn_valid("79927398713"));       // the textbook example
  EXPECT_TRUE(luhn_valid("5555555555554444"));  // Mastercard test PAN
  EXPECT_TRUE(luhn_valid("378282246310005"));   // Amex test PAN, odd length
  EXPECT_TRUE(luhn_valid("6011111111111117"));  // Discover test PAN
  EXPECT_TRUE(luhn_valid("4000056655665556"));
  EXPECT_TRUE(luhn_valid("0"));   // sum 0
  EXPECT_TRUE(luhn_valid("18"));  // 1*2 + 8 = 10
  EXPECT_TRUE(luhn_valid("59"));  // 5*2 = 10 -> 1; 1 + 9 = 10
}

TEST(LuhnTest, KnownInvalidNumbers) {
  EXPECT_FALSE(luhn_valid("4111111111111112"));
  EXPECT_FALSE(luhn_valid("79927398710"));
  EXPECT_FALSE(luhn_valid("79927398711"));
  EXPECT_FALSE(luhn_valid("79927398712"));
  EXPECT_FALSE(luhn_valid("79927398714"));
  EXPECT_FALSE(luhn_valid("5555555555554440"));
  EXPECT_FALSE(luhn_valid("1"));
}

TEST(LuhnTest, DoubledDigitsAboveNineAreReduced) {
  // A doubled 5 is 10, counted as 1 + 0 = 1. Without that reduction "50" would sum
  // to 10 and pass, and "59" to 19 and fail.
  EXPECT_FALSE(luhn_valid("50"));
  EXPECT_TRUE(luhn_valid("59"));
  EXPECT_TRUE(luhn_valid("91"));  // 9*2 = 18 -> 9; 9 + 1 = 10
}

TEST(LuhnTest, TransposedDigitsAreCaught) {
  EXPECT_TRUE(luhn_valid("4111111111111111"));
  EXPECT_FALSE(luhn_valid("1411111111111111"));
}

TEST(LuhnTest, EmptyAndNonDigitsAreInvalid) {
  EXPECT_FALSE(luhn_valid(""));
  EXPECT_FALSE(luhn_valid("4111 1111 1111 1111"));
  EXPECT_FALSE(luhn_valid("411111111111111A"));
  EXPECT_FALSE(luhn_valid("-18"));
}

// --- Masking ----------------------------------------------------------------------

TEST(MaskPanTest, KeepsFirstSixAndLastFour) {
  EXPECT_EQ(mask_pan("4111111111111111"), "411111******1111");
  EXPECT_EQ(mask_pan("5413330089020011"), "541333******0011");
  EXPECT_EQ(mask_pan("4761739001010010123"), "476173*********0123");  // 19 digits
  EXPECT_EQ(mask_pan("378282246310005"), "378282*****0005");          // 15 digits
}

TEST(MaskPanTest, ThirteenIsTheShortestPartlyShownLength) {
  EXPECT_EQ(mask_pan("4222222222222"), "422222***2222");
  EXPECT_EQ(mask_pan("422222222222"), "************");  // 12: fully masked
}

TEST(MaskPanTest, ShortValuesAreFullyMasked) {
  EXPECT_EQ(mask_pan(""), "");
  EXPECT_EQ(mask_pan("1"), "*");
  EXPECT_EQ(mask_pan("1234567890"), "**********");
  EXPECT_EQ(mask_pan("79927398713"), "***********");
}

TEST(MaskPanTest, NeverShowsTheMiddleDigits) {
  const std::string masked = mask_pan("4000123456789010");
  EXPECT_THAT(masked, Not(HasSubstr("123456")));
  EXPECT_EQ(masked.size(), 16u);
  EXPECT_EQ(masked.substr(6, 6), "******");
}

// --- Trimming and revealing ---------------------------------------------------------

TEST(TrimFixedWidthTest, RemovesTrailingSpacesOnly) {
  EXPECT_EQ(trim_fixed_width("JOHN SMITH      "), "JOHN SMITH");
  EXPECT_EQ(trim_fixed_width("  0042"), "  0042");
  EXPECT_EQ(trim_fixed_width("0042\t "), "0042\t");
  EXPECT_EQ(trim_fixed_width("        "), "");
  EXPECT_EQ(trim_fixed_width(""), "");
  EXPECT_EQ(trim_fixed_width("A"), "A");
}

TEST(RevealedTest, FollowsTheRevealSetting) {
  AttributeSpec s = spec_of(AttributeType::kDigits);
  s.reveal = Reveal::kNever;
  EXPECT_EQ(revealed(s, "4111111111111111"), "");
  s.reveal = Reveal::kMaskPan;
  EXPECT_EQ(revealed(s, "4111111111111111"), "411111******1111");
  s.reveal = Reveal::kClear;
  EXPECT_EQ(revealed(s, "4111111111111111"), "4111111111111111");
}

TEST(RevealedTest, DefaultSpecRevealsNothing) {
  EXPECT_EQ(revealed(AttributeSpec{}, "SECRET"), "");
}

// --- Presence -----------------------------------------------------------------------

TEST(CheckAttributeTest, EmptyRequiredValueIsMissing) {
  EXPECT_EQ(reason(spec_of(AttributeType::kText), ""), "missing required value");
}

TEST(CheckAttributeTest, EmptyOptionalValueIsAcceptedWhateverTheRules) {
  AttributeSpec s = pan_spec();
  s.required = false;
  EXPECT_EQ(check_attribute(s, ""), std::nullopt);
}

// --- Types --------------------------------------------------------------------------

TEST(CheckAttributeTest, Digits) {
  const auto s = spec_of(AttributeType::kDigits);
  EXPECT_EQ(check_attribute(s, "0123456789"), std::nullopt);
  EXPECT_EQ(reason(s, "12a4"), "not digits (character 3)");
  EXPECT_EQ(reason(s, " 123"), "not digits (character 1)");
  EXPECT_EQ(reason(s, "123 "), "not digits (character 4)");
  EXPECT_EQ(reason(s, "-12"), "not digits (character 1)");
  EXPECT_EQ(reason(s, "１"), "not digits (character 1)");  // full-width digit, UTF-8
}

TEST(CheckAttributeTest, Alphanumeric) {
  const auto s = spec_of(AttributeType::kAlphanumeric);
  EXPECT_EQ(check_attribute(s, "C0001abcXYZ"), std::nullopt);
  EXPECT_EQ(reason(s, "C-0001"), "not alphanumeric (character 2)");
  EXPECT_EQ(reason(s, "AB CD"), "not alphanumeric (character 3)");
  EXPECT_EQ(reason(s, "ABé"), "not alphanumeric (character 3)");
}

TEST(CheckAttributeTest, Hex) {
  const auto s = spec_of(AttributeType::kHex);
  EXPECT_EQ(check_attribute(s, "0123456789abcdefABCDEF"), std::nullopt);
  EXPECT_EQ(reason(s, "0G"), "not hex (character 2)");
  EXPECT_EQ(reason(s, "AB CD"), "not hex (character 3)");
  EXPECT_EQ(reason(s, "ABC"), "odd number of hex digits (3)");
}

TEST(CheckAttributeTest, Yymm) {
  const auto s = spec_of(AttributeType::kYymm);
  EXPECT_EQ(check_attribute(s, "2501"), std::nullopt);
  EXPECT_EQ(check_attribute(s, "9912"), std::nullopt);
  EXPECT_EQ(check_attribute(s, "0006"), std::nullopt);
  EXPECT_EQ(reason(s, "2513"), "month 13 is not 01-12");
  EXPECT_EQ(reason(s, "2500"), "month 00 is not 01-12");
  EXPECT_EQ(reason(s, "25/1"), "not digits (character 3)");
  EXPECT_EQ(reason(s, "251"), "length 3 is not 4 (YYMM)");
  EXPECT_EQ(reason(s, "202512"), "length 6 is not 4 (YYMM)");
}

TEST(CheckAttributeTest, Name) {
  const auto s = spec_of(AttributeType::kName);
  EXPECT_EQ(check_attribute(s, "O'BRIEN-SMITH/JOHN J. JR, 3RD"), std::nullopt);
  EXPECT_EQ(reason(s, "JOHN_SMITH"), "not allowed in a name (character 5)");
  EXPECT_EQ(reason(s, "JOSÉ"), "not allowed in a name (character 4)");
  EXPECT_EQ(reason(s, "A\tB"), "not allowed in a name (character 2)");
  EXPECT_EQ(reason(s, "SMITH<"), "not allowed in a name (character 6)");
}

TEST(CheckAttributeTest, Text) {
  const auto s = spec_of(AttributeType::kText);
  EXPECT_EQ(check_attribute(s, " !\"#~ any printable ASCII {}|"), std::nullopt);
  EXPECT_EQ(reason(s, "line\nbreak"), "not printable ASCII (character 5)");
  EXPECT_EQ(reason(s, std::string_view("a\0b", 3)), "not printable ASCII (character 2)");
  EXPECT_EQ(reason(s, "\x7F"), "not printable ASCII (character 1)");
  EXPECT_EQ(reason(s, "caf\xC3\xA9"), "not printable ASCII (character 4)");
}

// --- Lengths ------------------------------------------------------------------------

TEST(CheckAttributeTest, MinimumAndMaximumLength) {
  AttributeSpec s = spec_of(AttributeType::kDigits);
  s.min_length = 12;
  s.max_length = 19;
  EXPECT_EQ(reason(s, "12345678901"), "length 11 below minimum 12");
  EXPECT_EQ(check_attribute(s, "123456789012"), std::nullopt);
  EXPECT_EQ(check_attribute(s, "1234567890123456789"), std::nullopt);
  EXPECT_EQ(reason(s, "12345678901234567890"), "length 20 above maximum 19");
}

TEST(CheckAttributeTest, MaxLengthZeroMeansNoMaximum) {
  AttributeSpec s = spec_of(AttributeType::kText);
  s.max_length = 0;
  EXPECT_EQ(check_attribute(s, std::string(5000, 'x')), std::nullopt);
}

TEST(CheckAttributeTest, CharactersAreCheckedBeforeLength) {
  AttributeSpec s = spec_of(AttributeType::kDigits);
  s.min_length = 10;
  EXPECT_EQ(reason(s, "12X"), "not digits (character 3)");
}

// --- PANs ---------------------------------------------------------------------------

TEST(CheckAttributeTest, PanWithLuhn) {
  const auto s = pan_spec();
  EXPECT_EQ(check_attribute(s, "4111111111111111"), std::nullopt);
  EXPECT_EQ(check_attribute(s, "5555555555554444"), std::nullopt);
  EXPECT_EQ(reason(s, "4111111111111112"), "fails the Luhn check");
  EXPECT_EQ(reason(s, "411111111111"), "length 12 below minimum 13");
  EXPECT_EQ(reason(s, "4111-1111-1111-1111"), "not digits (character 5)");
}

TEST(CheckAttributeTest, LuhnIsOnlyCheckedWhenAsked) {
  AttributeSpec s = pan_spec();
  s.luhn = false;
  EXPECT_EQ(check_attribute(s, "4111111111111112"), std::nullopt);
}

// --- Field-encrypted values -------------------------------------------------------

TEST(CheckAttributeTest, AesKwpWrappedValueLengths) {
  const auto s = pin_block_spec();
  EXPECT_EQ(check_attribute(s, std::string(32, 'A')), std::nullopt);  // 16 bytes: 8-byte PIN block
  EXPECT_EQ(check_attribute(s, std::string(48, 'a')), std::nullopt);  // 24 bytes: ISO format 4
  EXPECT_EQ(reason(s, std::string(16, 'A')),
            "wrapped value of 8 bytes is not an AES key wrap with padding (a multiple of 8 "
            "bytes, at least 16)");
  EXPECT_EQ(reason(s, std::string(40, 'A')),
            "wrapped value of 20 bytes is not an AES key wrap with padding (a multiple of 8 "
            "bytes, at least 16)");
  EXPECT_EQ(reason(s, std::string(33, 'A')), "odd number of hex digits (33)");
  EXPECT_EQ(reason(s, std::string(31, 'A') + "Z"), "not hex (character 32)");
}

// --- No value in any reason -------------------------------------------------------

TEST(CheckAttributeTest, ReasonsNeverContainTheValue) {
  struct Case {
    AttributeSpec spec;
    std::string value;
  };
  AttributeSpec short_name = spec_of(AttributeType::kName);
  short_name.max_length = 5;
  AttributeSpec long_cvv = spec_of(AttributeType::kDigits);
  long_cvv.min_length = 9;
  const Case cases[] = {
      {pan_spec(), "4111111111111112"},
      {pan_spec(), "411111111111"},
      {pan_spec(), "41111111111111111111"},
      {pan_spec(), "4111111X11111111"},
      {spec_of(AttributeType::kYymm), "2513"},
      {spec_of(AttributeType::kYymm), "25130"},
      {spec_of(AttributeType::kHex), "ABCDEF012"},
      {spec_of(AttributeType::kHex), "ABCDEFXY"},
      {spec_of(AttributeType::kAlphanumeric), "SECRET-VALUE"},
      {spec_of(AttributeType::kText), "SECRET\tVALUE"},
      {short_name, "JOHN SMITH"},
      {long_cvv, "987654"},
      {pin_block_spec(), "00112233445566778899AABBCCDDEEFF0011"},
  };
  for (const auto& c : cases) {
    const auto r = check_attribute(c.spec, c.value);
    ASSERT_TRUE(r.has_value()) << "expected a rejection";
    EXPECT_THAT(*r, Not(HasSubstr(c.value)));
    // Nor a recognisable part of it (the first half of the value).
    EXPECT_THAT(*r, Not(HasSubstr(c.value.substr(0, c.value.size() / 2))));
  }
}

// --- Spellings ----------------------------------------------------------------------

TEST(SpellingTest, NamesMatchTheProfileVocabulary) {
  EXPECT_EQ(attribute_type_name(AttributeType::kDigits), "digits");
  EXPECT_EQ(attribute_type_name(AttributeType::kAlphanumeric), "alphanumeric");
  EXPECT_EQ(attribute_type_name(AttributeType::kHex), "hex");
  EXPECT_EQ(attribute_type_name(AttributeType::kYymm), "yymm");
  EXPECT_EQ(attribute_type_name(AttributeType::kName), "name");
  EXPECT_EQ(attribute_type_name(AttributeType::kText), "text");
  EXPECT_EQ(field_encryption_name(FieldEncryption::kNone), "none");
  EXPECT_EQ(field_encryption_name(FieldEncryption::kAesKwp), "aes-kwp");
  EXPECT_EQ(reveal_name(Reveal::kNever), "never");
  EXPECT_EQ(reveal_name(Reveal::kMaskPan), "mask-pan");
  EXPECT_EQ(reveal_name(Reveal::kClear), "clear");
}

}  // namespace
}  // namespace persoflow
