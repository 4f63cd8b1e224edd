#include "formats/key_component_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <string_view>

#include "tests/support/temp_dir.h"

namespace persoflow::formats {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A 16-byte component with no repeated 8-digit run, so any quotation of it is visible.
constexpr std::string_view kComponentHex = "0123456789ABCDEFFEDCBA9876543210";
constexpr std::string_view kComponentSpaced = "0123 4567 89AB CDEF FEDC BA98 7654 3210";
const Bytes kComponent = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                          0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
const Bytes kKcv = {0x08, 0xD7, 0xB4};

SecureBytes text_of(std::string_view s) {
  return SecureBytes(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

Bytes bytes_of(const SecureBytes& b) {
  auto v = b.reveal();
  return Bytes(v.begin(), v.end());
}

std::string upper_without_spaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t') out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// Fails if `message` quotes any 6 consecutive hex digits of `hex` (spaces ignored,
// either case).
void expect_no_digits_of(const std::string& message, std::string_view hex) {
  const std::string msg = upper_without_spaces(message);
  const std::string digits = upper_without_spaces(hex);
  for (std::size_t i = 0; i + 6 <= digits.size(); ++i) {
    EXPECT_EQ(msg.find(digits.substr(i, 6)), std::string::npos)
        << "message quotes component digits " << digits.substr(i, 6) << ": " << message;
  }
}

// The message of a kParse error from parsing `text`, checked not to quote `secret_hex`.
std::string parse_error(std::string_view text, std::string_view secret_hex = kComponentHex) {
  auto r = parse_key_component(text_of(text), "c1.txt");
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  expect_no_digits_of(r.error().message(), secret_hex);
  return r.error().message();
}

// ---------------------------------------------------------------- parse_kcv_entry

class KcvFormsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(KcvFormsTest, ParsesToThreeBytes) {
  auto r = parse_kcv_entry(GetParam(), "kcv");
  ASSERT_TRUE(r.has_value()) << GetParam() << ": " << r.error().message();
  ASSERT_TRUE(r->has_value()) << GetParam();
  EXPECT_EQ(**r, kKcv) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Accepted, KcvFormsTest,
                         ::testing::Values("KCV: 08D7B4", "kcv=08d7b4", "08D7B4", "08d7b4",
                                           "KCV:08D7B4", "KCV = 08D7B4", "Kcv 08D7B4", "KCV08D7B4",
                                           "kCv:  08 D7 B4", "08 D7 B4", "  KCV: 08D7B4 \r",
                                           "\tkcv\t=\t08d7b4\t"));

TEST(ParseKcvEntryTest, EmptyEntryIsNoKcv) {
  for (const char* text : {"", "   ", "\t\r"}) {
    auto r = parse_kcv_entry(text, "kcv");
    ASSERT_TRUE(r.has_value()) << r.error().message();
    EXPECT_FALSE(r->has_value()) << "'" << text << "'";
  }
}

class BadKcvTest : public ::testing::TestWithParam<const char*> {};

TEST_P(BadKcvTest, IsAParseErrorNamingWhere) {
  auto r = parse_kcv_entry(GetParam(), "component 2 of 3 KCV");
  ASSERT_FALSE(r.has_value()) << "accepted '" << GetParam() << "'";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_EQ(r.error().message(), "component 2 of 3 KCV: a KCV is 6 hex digits (3 bytes)");
}

INSTANTIATE_TEST_SUITE_P(Refused, BadKcvTest,
                         ::testing::Values("KCV:", "kcv", "KCV=", "08D7", "08D7B4C2", "08D7B",
                                           "KCV: 08D7B", "KCV: 08D7B4C2", "0 8D7B4", "KCV: XYZ123",
                                           "KCV:: 08D7B4", "KCV - 08D7B4", "checksum 08D7B4",
                                           "08D7B4 # kcv", "08-D7-B4"));

// ---------------------------------------------------------------- parse_key_component

TEST(ParseKeyComponentTest, ComponentAlone) {
  auto r = parse_key_component(text_of(std::string(kComponentHex) + "\n"), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  EXPECT_FALSE(r->kcv.has_value());
}

TEST(ParseKeyComponentTest, ComponentWithoutTrailingNewline) {
  auto r = parse_key_component(text_of(kComponentHex), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
}

TEST(ParseKeyComponentTest, DocumentedExample) {
  const std::string text = "# component 1 of tk-acme-01, custodian A\n" + std::string(kComponentSpaced) +
                           "\nKCV: 08D7B4\n";
  auto r = parse_key_component(text_of(text), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST(ParseKeyComponentTest, LowerCaseHexAndKcv) {
  const std::string text = "0123456789abcdeffedcba9876543210\nkcv=08d7b4\n";
  auto r = parse_key_component(text_of(text), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST(ParseKeyComponentTest, BareKcvLine) {
  auto r = parse_key_component(text_of(std::string(kComponentHex) + "\n08D7B4\n"), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST(ParseKeyComponentTest, TabsBetweenBytePairs) {
  auto r = parse_key_component(text_of("01\t23 45\t 67 89 AB CD EF FE DC BA 98 76 54 32 10"), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
}

TEST(ParseKeyComponentTest, CommentsAndBlankLinesAnywhere) {
  const std::string text = "\n# custodian A\n   \n  # indented comment\n" + std::string(kComponentSpaced) +
                           "\n\n# the KCV follows\n\nKCV: 08D7B4\n# signed A\n\n";
  auto r = parse_key_component(text_of(text), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST(ParseKeyComponentTest, CrLfLineEndings) {
  const std::string text = "# c\r\n" + std::string(kComponentSpaced) + "\r\nKCV: 08D7B4\r\n";
  auto r = parse_key_component(text_of(text), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST(ParseKeyComponentTest, ComponentLengthIsTakenAsGiven) {
  auto r = parse_key_component(text_of("00112233445566778899AABBCCDDEEFF0011223344556677\n"), "c1.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->value.size(), 24u);
}

TEST(ParseKeyComponentTest, EmptyTextHasNoComponent) {
  EXPECT_EQ(parse_error(""), "c1.txt: no key component in the file");
}

TEST(ParseKeyComponentTest, OnlyCommentsAndBlanksHaveNoComponent) {
  EXPECT_EQ(parse_error("# component 1\n\n   \n# nothing else\n"), "c1.txt: no key component in the file");
}

TEST(ParseKeyComponentTest, OddNumberOfHexDigits) {
  // The last digit of the component is missing.
  const std::string msg = parse_error("# c\n0123 4567 89AB CDEF FEDC BA98 7654 321\nKCV: 08D7B4\n");
  EXPECT_THAT(msg, StartsWith("c1.txt:2: the component must be hex digits ("));
  EXPECT_THAT(msg, HasSubstr("odd number of digits"));
}

TEST(ParseKeyComponentTest, InvalidCharacterInComponent) {
  const std::string msg = parse_error("0123 4567 89AB CDEF FEDC BA98 7654 32G0\n");
  EXPECT_THAT(msg, StartsWith("c1.txt:1: the component must be hex digits ("));
  EXPECT_THAT(msg, HasSubstr("invalid character"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("32G0")));
}

TEST(ParseKeyComponentTest, SeparatorInsideAByte) {
  const std::string msg = parse_error("012 3456789ABCDEFFEDCBA9876543210\n");
  EXPECT_THAT(msg, StartsWith("c1.txt:1: the component must be hex digits ("));
}

TEST(ParseKeyComponentTest, KcvLabelOnComponentLineIsNotHex) {
  const std::string msg = parse_error("Component: 0123456789ABCDEFFEDCBA9876543210\n");
  EXPECT_THAT(msg, StartsWith("c1.txt:1: the component must be hex digits"));
}

TEST(ParseKeyComponentTest, BadKcvLengthNamesItsLine) {
  EXPECT_EQ(parse_error(std::string(kComponentHex) + "\n\nKCV: 08D7\n"),
            "c1.txt:3: a KCV is 6 hex digits (3 bytes)");
  EXPECT_EQ(parse_error(std::string(kComponentHex) + "\nKCV: 08D7B4C2\n"),
            "c1.txt:2: a KCV is 6 hex digits (3 bytes)");
  EXPECT_EQ(parse_error(std::string(kComponentHex) + "\nKCV: 08D7B\n"),
            "c1.txt:2: a KCV is 6 hex digits (3 bytes)");
}

TEST(ParseKeyComponentTest, ExtraLineAfterKcv) {
  EXPECT_EQ(parse_error(std::string(kComponentHex) + "\nKCV: 08D7B4\n\n08D7B4\n"),
            "c1.txt:4: unexpected line after the KCV");
  EXPECT_EQ(parse_error(std::string(kComponentHex) + "\nKCV: 08D7B4\ncustodian A\n"),
            "c1.txt:3: unexpected line after the KCV");
}

TEST(ParseKeyComponentTest, ComponentSplitOverTwoLinesIsRefusedWithoutQuotingIt) {
  // The second half would be taken as the KCV line; the message must not quote it.
  const std::string text = "0123 4567 89AB CDEF\nFEDC BA98 7654 3210\n";
  const std::string msg = parse_error(text);
  EXPECT_EQ(msg, "c1.txt:2: a KCV is 6 hex digits (3 bytes)");
}

TEST(ParseKeyComponentTest, SecondComponentAfterKcvIsNotQuoted) {
  const std::string other = "00112233445566778899AABBCCDDEEFF";
  const std::string msg = parse_error(std::string(kComponentHex) + "\nKCV: 08D7B4\n" + other + "\n", other);
  EXPECT_EQ(msg, "c1.txt:3: unexpected line after the KCV");
  expect_no_digits_of(msg, kComponentHex);
}

TEST(ParseKeyComponentTest, NameIsUsedInMessages) {
  auto r = parse_key_component(text_of("# only a comment\n"), "/ceremony/tk-acme-01/c2.txt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "/ceremony/tk-acme-01/c2.txt: no key component in the file");
}

// ---------------------------------------------------------------- read_key_component_file

class ReadKeyComponentFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& content) {
    const fs::path p = dir_ / name;
    test::write_file(p, content);
    return p.string();
  }
  test::TempDir dir_;
};

TEST_F(ReadKeyComponentFileTest, ReadsComponentAndKcv) {
  const std::string path =
      write("c1.txt", "# component 1 of tk-acme-01, custodian A\n" + std::string(kComponentSpaced) +
                          "\nKCV: 08D7B4\n");
  auto r = read_key_component_file(path);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST_F(ReadKeyComponentFileTest, ReadsComponentWithoutKcv) {
  auto r = read_key_component_file(write("c1.txt", std::string(kComponentHex)));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  EXPECT_FALSE(r->kcv.has_value());
}

TEST_F(ReadKeyComponentFileTest, ErrorsNameThePathAndLine) {
  const std::string path = write("c1.txt", "# c\n0123 4567 89AB CDEF FEDC BA98 7654 321\n");
  auto r = read_key_component_file(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_THAT(r.error().message(), StartsWith(path + ":2: the component must be hex digits"));
  expect_no_digits_of(r.error().message(), kComponentHex);
}

TEST_F(ReadKeyComponentFileTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "absent.txt").string();
  auto r = read_key_component_file(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr("cannot open key component file " + path));
}

TEST_F(ReadKeyComponentFileTest, DirectoryIsAnIoError) {
  auto r = read_key_component_file(dir_.path().string());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
  EXPECT_THAT(r.error().message(), HasSubstr(dir_.path().string()));
}

TEST_F(ReadKeyComponentFileTest, EmptyFileHasNoComponent) {
  const std::string path = write("empty.txt", "");
  auto r = read_key_component_file(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_EQ(r.error().message(), path + ": no key component in the file");
}

// A valid component file padded with a comment to exactly `size` bytes.
std::string padded_file(std::size_t size) {
  const std::string body = std::string(kComponentHex) + "\nKCV: 08D7B4\n";
  const std::string head = "# ";
  std::string text = head + std::string(size - head.size() - 1 - body.size(), 'x') + "\n" + body;
  EXPECT_EQ(text.size(), size);
  return text;
}

TEST_F(ReadKeyComponentFileTest, FileOf4096BytesIsAccepted) {
  auto r = read_key_component_file(write("big.txt", padded_file(4096)));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(bytes_of(r->value), kComponent);
  ASSERT_TRUE(r->kcv.has_value());
  EXPECT_EQ(*r->kcv, kKcv);
}

TEST_F(ReadKeyComponentFileTest, FileLargerThan4096BytesIsRefused) {
  const std::string path = write("big.txt", padded_file(4097));
  auto r = read_key_component_file(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_EQ(r.error().message(), path + ": larger than 4096 bytes: not a key component file");
}

TEST_F(ReadKeyComponentFileTest, MuchLargerFileIsRefusedWithoutQuotingIt) {
  std::string text;
  while (text.size() < 100000) text += std::string(kComponentSpaced) + "\n";
  const std::string path = write("huge.txt", text);
  auto r = read_key_component_file(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_THAT(r.error().message(), HasSubstr("larger than 4096 bytes"));
  expect_no_digits_of(r.error().message(), kComponentHex);
}

}  // namespace
}  // namespace persoflow::formats
