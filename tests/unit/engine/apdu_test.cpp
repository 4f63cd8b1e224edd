#include "engine/apdu.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "engine/dgi.h"

namespace persoflow {
namespace {

Bytes hex(std::string_view text) {
  auto r = from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test hex: " << r.error().message();
    return {};
  }
  return std::move(r).value();
}

template <typename T>
std::string parse_error(const Result<T>& r) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  return r.error().message();
}

std::string command_hex(const Result<CommandApdu>& r) {
  if (!r.has_value()) return "<error: " + r.error().message() + ">";
  return r->to_hex();
}

// Bytes 0, 1, 2, ... of the given size (mod 256).
Bytes counting(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i);
  return b;
}

// ---- real commands from gp-reference.md ----

TEST(CommandApduTest, InitializeUpdateIsCase4Short) {
  // §7.4.1 delete_application(): host challenge B2BDE1A2DC66BD56, "Le 00".
  auto r = CommandApdu::create(0x80, 0x50, 0x00, 0x00, hex("B2BDE1A2DC66BD56"), 256);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->apdu_case(), ApduCase::kCase4);
  EXPECT_EQ(r->form(), LengthForm::kShort);
  EXPECT_EQ(r->to_hex(), "8050000008B2BDE1A2DC66BD5600");
}

TEST(CommandApduTest, ExternalAuthenticateIsCase3) {
  // §7.4.1: host cryptogram || C-MAC, security level 03.
  auto r = CommandApdu::create(0x84, 0x82, 0x03, 0x00, hex("59D54D932423D29F6313C970875F8C2F"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->apdu_case(), ApduCase::kCase3);
  EXPECT_EQ(r->to_hex(), "848203001059D54D932423D29F6313C970875F8C2F");
}

TEST(CommandApduTest, InstallForPersonalization) {
  // §7.10 (D5): plain 80E62000 0E 000008D0D1D2D3D4D50101000000 00.
  auto r = CommandApdu::create(0x80, 0xE6, 0x20, 0x00, hex("000008D0D1D2D3D4D50101000000"), 256);
  EXPECT_EQ(command_hex(r), "80E620000E000008D0D1D2D3D4D5010100000000");
}

TEST(CommandApduTest, StoreDataCarryingDgi9000) {
  // §7.10 (D5): last STORE DATA, P1 80, P2 01, data = DGI 9000 with the three KCVs.
  auto dgi = encode_dgi(0x9000, hex("97DCB0CE4E2CB37DF3"));
  ASSERT_TRUE(dgi.has_value());
  auto r = CommandApdu::create(0x80, 0xE2, 0x80, 0x01, *dgi);
  EXPECT_EQ(command_hex(r), "80E280010C90000997DCB0CE4E2CB37DF3");
}

TEST(CommandApduTest, ParsesRealCommands) {
  struct Case {
    std::string_view hex;
    ApduCase apdu_case;
    std::size_t data_size;
    std::optional<std::uint32_t> le;
  };
  const Case cases[] = {
      {"80F22002", ApduCase::kCase1, 0, std::nullopt},  // §7.5.2
      {"80CA006600", ApduCase::kCase2, 0, 256},         // §7.5.2
      {"80F28002024F0000", ApduCase::kCase4, 2, 256},   // §7.5.2
      {"848203001059D54D932423D29F6313C970875F8C2F", ApduCase::kCase3, 16, std::nullopt},
      {"84F2400218D18C9A7BB2B1B1C7ED1B24E1B1307CB9D71A66ABC55CBC3A00", ApduCase::kCase4, 24,
       256},  // §7.4.1 get_status(), wrapped
      {"84E2600040042F73B3EDBB226FF2562360032B0050CE09B019323B4EEE3B3D713E187FD0CE4D86B6E7AFB5"
       "3B5F1AB70F62CEB445DF939A9C4EC15D71D0A338D186E4C38EE8",
       ApduCase::kCase3, 64, std::nullopt},  // §7.10 (D5) wrapped STORE DATA of DGI 8000
  };
  for (const Case& c : cases) {
    const Bytes bytes = hex(c.hex);
    auto r = CommandApdu::parse(bytes);
    ASSERT_TRUE(r.has_value()) << c.hex << ": " << r.error().message();
    EXPECT_EQ(r->apdu_case(), c.apdu_case) << c.hex;
    EXPECT_EQ(r->form(), LengthForm::kShort) << c.hex;
    EXPECT_EQ(r->data().size(), c.data_size) << c.hex;
    EXPECT_EQ(r->le(), c.le) << c.hex;
    EXPECT_EQ(r->to_bytes(), bytes) << c.hex;
  }
}

TEST(CommandApduTest, ParsedFieldsAreThoseOfTheBytes) {
  auto r = CommandApdu::parse(hex("80E620000E000008D0D1D2D3D4D5010100000000"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->cla(), 0x80);
  EXPECT_EQ(r->ins(), 0xE6);
  EXPECT_EQ(r->p1(), 0x20);
  EXPECT_EQ(r->p2(), 0x00);
  EXPECT_EQ(to_hex(r->data()), "000008D0D1D2D3D4D50101000000");
  EXPECT_EQ(r->le(), 256u);
}

// ---- Le coding ----

TEST(CommandApduTest, ShortLeBoundaries) {
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 1)), "80CA9F7F01");
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 255)), "80CA9F7FFF");
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 256)), "80CA9F7F00");
}

TEST(CommandApduTest, ExtendedLeBoundaries) {
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 257)), "80CA9F7F000101");
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 65535)), "80CA9F7F00FFFF");
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 65536)), "80CA9F7F000000");
  EXPECT_EQ(command_hex(
                CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 256, ApduEncoding::kForceExtended)),
            "80CA9F7F000100");
  EXPECT_EQ(
      command_hex(CommandApdu::create(0x80, 0xCA, 0x9F, 0x7F, {}, 1, ApduEncoding::kForceExtended)),
      "80CA9F7F000001");
}

TEST(CommandApduTest, ParseDecodesLeZeroAsTheMaximum) {
  auto short_le = CommandApdu::parse(hex("80CA006600"));
  ASSERT_TRUE(short_le.has_value());
  EXPECT_EQ(short_le->le(), 256u);
  auto ext_le = CommandApdu::parse(hex("80CA0066000000"));
  ASSERT_TRUE(ext_le.has_value());
  EXPECT_EQ(ext_le->apdu_case(), ApduCase::kCase2);
  EXPECT_EQ(ext_le->form(), LengthForm::kExtended);
  EXPECT_EQ(ext_le->le(), 65536u);
  auto case4 = CommandApdu::parse(hex("80E2000000000201020000"));
  ASSERT_TRUE(case4.has_value());
  EXPECT_EQ(case4->apdu_case(), ApduCase::kCase4);
  EXPECT_EQ(case4->le(), 65536u);
}

// ---- Lc coding ----

TEST(CommandApduTest, DataLengthBoundaries) {
  auto d255 = CommandApdu::create(0x80, 0xE2, 0x00, 0x00, counting(255));
  ASSERT_TRUE(d255.has_value());
  EXPECT_EQ(d255->form(), LengthForm::kShort);
  Bytes b = d255->to_bytes();
  ASSERT_EQ(b.size(), 4u + 1 + 255);
  EXPECT_EQ(to_hex(std::span(b).first(6)), "80E20000FF00");
  EXPECT_EQ(b.back(), 0xFE);

  auto d256 = CommandApdu::create(0x80, 0xE2, 0x00, 0x00, counting(256));
  ASSERT_TRUE(d256.has_value());
  EXPECT_EQ(d256->form(), LengthForm::kExtended);
  b = d256->to_bytes();
  ASSERT_EQ(b.size(), 4u + 3 + 256);
  EXPECT_EQ(to_hex(std::span(b).first(8)), "80E2000000010000");

  auto d65535 = CommandApdu::create(0x80, 0xE2, 0x00, 0x00, counting(65535));
  ASSERT_TRUE(d65535.has_value());
  b = d65535->to_bytes();
  ASSERT_EQ(b.size(), 4u + 3 + 65535);
  EXPECT_EQ(to_hex(std::span(b).first(7)), "80E2000000FFFF");
}

TEST(CommandApduTest, Case4FormChoice) {
  // Fits short: 255 bytes of data and Le 256.
  auto s = CommandApdu::create(0x80, 0xE2, 0x01, 0x00, counting(255), 256);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->form(), LengthForm::kShort);
  Bytes b = s->to_bytes();
  ASSERT_EQ(b.size(), 4u + 1 + 255 + 1);
  EXPECT_EQ(b[4], 0xFF);
  EXPECT_EQ(b.back(), 0x00);

  // Data forces extended; Le 256 is then coded 0100.
  auto e = CommandApdu::create(0x80, 0xE2, 0x01, 0x00, counting(256), 256);
  ASSERT_TRUE(e.has_value());
  b = e->to_bytes();
  ASSERT_EQ(b.size(), 4u + 3 + 256 + 2);
  EXPECT_EQ(to_hex(std::span(b).last(2)), "0100");

  // Le forces extended for one byte of data.
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xE2, 0x01, 0x00, hex("AA"), 257)),
            "80E20100000001AA0101");
  // Largest case 4E.
  auto max = CommandApdu::create(0x80, 0xE2, 0x01, 0x00, counting(65535), 65536);
  ASSERT_TRUE(max.has_value());
  b = max->to_bytes();
  ASSERT_EQ(b.size(), 4u + 3 + 65535 + 2);
  EXPECT_EQ(to_hex(std::span(b).first(7)), "80E2010000FFFF");
  EXPECT_EQ(to_hex(std::span(b).last(2)), "0000");
}

TEST(CommandApduTest, ForceExtended) {
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xE2, 0x00, 0x00, hex("AA"), std::nullopt,
                                            ApduEncoding::kForceExtended)),
            "80E20000000001AA");
  EXPECT_EQ(command_hex(CommandApdu::create(0x80, 0xE2, 0x00, 0x00, hex("AABB"), 2,
                                            ApduEncoding::kForceExtended)),
            "80E20000000002AABB0002");
  // Case 1 has no length to extend.
  auto c1 =
      CommandApdu::create(0x80, 0xF2, 0x20, 0x02, {}, std::nullopt, ApduEncoding::kForceExtended);
  ASSERT_TRUE(c1.has_value());
  EXPECT_EQ(c1->apdu_case(), ApduCase::kCase1);
  EXPECT_EQ(c1->form(), LengthForm::kShort);
  EXPECT_EQ(c1->to_hex(), "80F22002");
}

TEST(CommandApduTest, EveryCaseAndFormRoundTrips) {
  const std::size_t sizes[] = {0, 1, 255, 256, 65535};
  const std::optional<std::uint32_t> les[] = {std::nullopt, 1, 256, 257, 65536};
  const ApduEncoding encodings[] = {ApduEncoding::kAuto, ApduEncoding::kForceExtended};
  for (std::size_t n : sizes) {
    for (const auto& le : les) {
      for (ApduEncoding enc : encodings) {
        SCOPED_TRACE("data " + std::to_string(n) + " le " + (le ? std::to_string(*le) : "-") +
                     (enc == ApduEncoding::kForceExtended ? " forced" : " auto"));
        const Bytes data = counting(n);
        auto apdu = CommandApdu::create(0x84, 0xE2, 0x60, 0x07, data, le, enc);
        ASSERT_TRUE(apdu.has_value()) << apdu.error().message();
        const bool has_lengths = n > 0 || le.has_value();
        const bool extended =
            has_lengths && (n > 255 || (le && *le > 256) || enc == ApduEncoding::kForceExtended);
        EXPECT_EQ(apdu->form(), extended ? LengthForm::kExtended : LengthForm::kShort);
        std::size_t expected_size = 4;
        if (n > 0) expected_size += (extended ? 3 : 1) + n;
        if (le) expected_size += extended ? (n > 0 ? 2 : 3) : 1;
        const Bytes bytes = apdu->to_bytes();
        ASSERT_EQ(bytes.size(), expected_size);

        auto back = CommandApdu::parse(bytes);
        ASSERT_TRUE(back.has_value()) << back.error().message();
        EXPECT_TRUE(*back == *apdu);
        EXPECT_EQ(back->le(), le);
        EXPECT_EQ(back->data(), data);
        EXPECT_EQ(back->to_bytes(), bytes);
      }
    }
  }
}

TEST(CommandApduTest, EqualityIncludesTheForm) {
  auto a = CommandApdu::create(0x80, 0xCA, 0x00, 0x66, {}, 256);
  auto b = CommandApdu::create(0x80, 0xCA, 0x00, 0x66, {}, 256);
  auto forced = CommandApdu::create(0x80, 0xCA, 0x00, 0x66, {}, 256, ApduEncoding::kForceExtended);
  auto other_p2 = CommandApdu::create(0x80, 0xCA, 0x00, 0x67, {}, 256);
  ASSERT_TRUE(a.has_value() && b.has_value() && forced.has_value() && other_p2.has_value());
  EXPECT_TRUE(*a == *b);
  EXPECT_FALSE(*a == *forced);
  EXPECT_FALSE(*a == *other_p2);
}

// ---- create() validation ----

TEST(CommandApduTest, CreateRefusesTooMuchData) {
  auto r = CommandApdu::create(0x80, 0xE2, 0x00, 0x00, Bytes(65536, 0x00));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(),
            "APDU: command data is 65536 bytes; at most 65535 fit in an "
            "extended Lc");
}

TEST(CommandApduTest, CreateRefusesLeOutOfRange) {
  for (std::uint32_t le : {0u, 65537u, 0xFFFFFFFFu}) {
    auto r = CommandApdu::create(0x80, 0xCA, 0x00, 0x66, {}, le);
    ASSERT_FALSE(r.has_value()) << le;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(CommandApdu::create(0x80, 0xCA, 0x00, 0x66, {}, 0u).error().message(),
            "APDU: Le 0 is out of range (the expected byte count, 1..65536; short Le 00 is 256)");
}

// ---- parse() errors ----

TEST(CommandApduParseErrorTest, TooShort) {
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E200"))),
            "APDU: command of 3 bytes is too short (CLA INS P1 P2 take 4)");
  EXPECT_EQ(parse_error(CommandApdu::parse(Bytes{})),
            "APDU: command of 0 bytes is too short (CLA INS P1 P2 take 4)");
}

TEST(CommandApduParseErrorTest, ShortLcInconsistent) {
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E20000050102"))),
            "APDU: short Lc at offset 4 announces 5 data bytes but 2 bytes follow it (case 3 "
            "needs 5, case 4 needs 6)");
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E200000201020304"))),
            "APDU: short Lc at offset 4 announces 2 data bytes but 4 bytes follow it (case 3 "
            "needs 2, case 4 needs 3)");
  // A STORE DATA with one byte of its DGI missing.
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E280010C90000997DCB0CE4E2CB37D"))),
            "APDU: short Lc at offset 4 announces 12 data bytes but 11 bytes follow it (case 3 "
            "needs 12, case 4 needs 13)");
}

TEST(CommandApduParseErrorTest, ExtendedMarkerWithoutLength) {
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E200000001"))),
            "APDU: byte 00 at offset 4 opens an extended length, but only 1 byte follows it (an "
            "extended Le or Lc takes 2)");
}

TEST(CommandApduParseErrorTest, ExtendedLcZeroWithData) {
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E20000000000AA"))),
            "APDU: extended Lc at offset 5 is 0000 but 1 bytes follow it (a case 2E command "
            "ends after its 2-byte Le)");
}

TEST(CommandApduParseErrorTest, ExtendedLcInconsistent) {
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E20000000003"
                                               "0102"))),
            "APDU: extended Lc at offset 5 announces 3 data bytes but 2 bytes follow it (case 3E "
            "needs 3, case 4E needs 5)");
  // Case 4E with a one-byte Le.
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E20000000002"
                                               "0102"
                                               "00"))),
            "APDU: extended Lc at offset 5 announces 2 data bytes but 3 bytes follow it (case 3E "
            "needs 2, case 4E needs 4)");
  EXPECT_EQ(parse_error(CommandApdu::parse(hex("80E20000000002"
                                               "0102030405"))),
            "APDU: extended Lc at offset 5 announces 2 data bytes but 5 bytes follow it (case 3E "
            "needs 2, case 4E needs 4)");
}

// ---- responses ----

TEST(ResponseApduTest, ParsesDataAndStatusWord) {
  // §7.4.1 get_status_aes_192 card response.
  const Bytes bytes = hex("E30D4F07A00000015153509F7001019000");
  auto r = ResponseApdu::parse(bytes);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(to_hex(r->data()), "E30D4F07A00000015153509F700101");
  EXPECT_EQ(r->sw(), 0x9000);
  EXPECT_EQ(r->sw1(), 0x90);
  EXPECT_EQ(r->sw2(), 0x00);
  EXPECT_TRUE(r->is_success());
  EXPECT_EQ(r->to_bytes(), bytes);
  EXPECT_EQ(r->to_hex(), "E30D4F07A00000015153509F7001019000");
}

TEST(ResponseApduTest, InitializeUpdateResponse) {
  auto r = ResponseApdu::parse(
      hex("00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA0000159000"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->data().size(), 32u);
  EXPECT_TRUE(r->is_success());
}

TEST(ResponseApduTest, StatusOnly) {
  auto r = ResponseApdu::parse(hex("6A88"));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->data().empty());
  EXPECT_EQ(r->sw(), 0x6A88);
  EXPECT_EQ(r->sw1(), 0x6A);
  EXPECT_EQ(r->sw2(), 0x88);
  EXPECT_FALSE(r->is_success());
  EXPECT_EQ(format_sw(r->sw()), "6A88");
}

TEST(ResponseApduTest, OnlyExactly9000IsSuccess) {
  for (std::string_view sw : {"6310", "6110", "9001", "6982", "0000"}) {
    auto r = ResponseApdu::parse(hex(sw));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->is_success()) << sw;
  }
}

TEST(ResponseApduTest, ParseErrors) {
  EXPECT_EQ(parse_error(ResponseApdu::parse(hex("90"))),
            "APDU: response of 1 bytes has no status word (SW1 SW2 take the last 2 bytes)");
  EXPECT_EQ(parse_error(ResponseApdu::parse(Bytes{})),
            "APDU: response of 0 bytes has no status word (SW1 SW2 take the last 2 bytes)");
  Bytes too_long(65537 + 2, 0x00);
  EXPECT_EQ(parse_error(ResponseApdu::parse(too_long)),
            "APDU: response data of 65537 bytes before the status word at offset 65537 exceeds "
            "65536");
}

TEST(ResponseApduTest, CreateLimitsAndEquality) {
  auto max = ResponseApdu::create(Bytes(65536, 0x01), 0x9000);
  ASSERT_TRUE(max.has_value());
  EXPECT_EQ(max->to_bytes().size(), 65538u);
  auto too_long = ResponseApdu::create(Bytes(65537, 0x01), 0x9000);
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code(), ErrorCode::kInvalidArgument);

  auto a = ResponseApdu::create(hex("0102"), 0x9000);
  auto b = ResponseApdu::parse(hex("01029000"));
  auto c = ResponseApdu::parse(hex("01026A80"));
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_TRUE(*a == *b);
  EXPECT_FALSE(*a == *c);
  EXPECT_EQ(a->to_hex(), "01029000");
}

TEST(FormatSwTest, FourUpperCaseDigits) {
  EXPECT_EQ(format_sw(0x9000), "9000");
  EXPECT_EQ(format_sw(0x6a88), "6A88");
  EXPECT_EQ(format_sw(0x0001), "0001");
}

}  // namespace
}  // namespace persoflow
