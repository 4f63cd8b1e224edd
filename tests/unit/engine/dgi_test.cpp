#include "engine/dgi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

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

// The error of parsing hex text (the buffer outlives the parse).
std::string dgis_error(std::string_view text) {
  const Bytes data = hex(text);
  return parse_error(parse_dgis(data));
}

std::string encoded_hex(const Result<Bytes>& r) {
  if (!r.has_value()) return "<error: " + r.error().message() + ">";
  return to_hex(*r);
}

// kaoh/globalplatform storeDataTest.c test_build_store_data_keys_scp03_aes128, expected
// output (gp-reference.md §7.8): DGI 00B9 (key control templates) then three DGI 8113.
constexpr std::string_view kAes128KeyDgis =
    "00B930"
    "B71080018881011083010196010197020003B9088201018403504A77B9088201028403F2A8DF"
    "B9088201038403D7D0E4"
    "811310D533E59B45A153ED7E5E9C5DFCFD4AAA"
    "8113103EF0B1A5E3059DAB21FCE23A7B61C4CA"
    "811310ADDE68F7AD497268D31A0DDD5C74B08F";

// Same file, test_build_store_data_keys_scp03_aes256_single: a 32-byte 8113 value.
constexpr std::string_view kAes256KeyDgis =
    "00B91CB71080018881012083010296010097020003B908820101840375E208"
    "8113205A6E045708FB7196F02E553D02C3A692C77147EBD5121DE8D0FAE7762423B6BF";

// gp-reference.md §7.10 (D5): DGI 8000 value (three keys encrypted under SKU_DEK) and the
// clear DGI 9000 with their KCVs, as carried by the two STORE DATA commands.
constexpr std::string_view kDgi8000Value =
    "BE32EF81C6B32FC559414F7CFA49F6AFDC839B2E7F45E0D42C9509228C7B76F4"
    "0C726264A515DD0BCF5B0DD1840BA56F";

TEST(DgiLengthTest, OneByteUpTo254ThenFfForm) {
  EXPECT_EQ(encoded_hex(encode_dgi_length(0)), "00");
  EXPECT_EQ(encoded_hex(encode_dgi_length(127)), "7F");
  EXPECT_EQ(encoded_hex(encode_dgi_length(128)), "80");  // no BER long form here
  EXPECT_EQ(encoded_hex(encode_dgi_length(254)), "FE");
  EXPECT_EQ(encoded_hex(encode_dgi_length(255)), "FF00FF");
  EXPECT_EQ(encoded_hex(encode_dgi_length(256)), "FF0100");
  EXPECT_EQ(encoded_hex(encode_dgi_length(65534)), "FFFFFE");
  EXPECT_EQ(encoded_hex(encode_dgi_length(65535)), "FFFFFF");
}

TEST(DgiLengthTest, RefusesMoreThan65535) {
  auto r = encode_dgi_length(65536);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(),
            "DGI: value length 65536 exceeds the FF xx xx form (at most 65535)");
}

TEST(DgiEncodeTest, CpsKeyCheckValueDgi9000) {
  EXPECT_EQ(encoded_hex(encode_dgi(0x9000, hex("97DCB0CE4E2CB37DF3"))), "90000997DCB0CE4E2CB37DF3");
}

TEST(DgiEncodeTest, CpsEncryptedKeysDgi8000) {
  auto r = encode_dgi(0x8000, hex(kDgi8000Value));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(to_hex(*r), "800030" + std::string(kDgi8000Value));
}

TEST(DgiEncodeTest, PinDgis) {
  EXPECT_EQ(encoded_hex(encode_dgi(0x8010, hex("9E56D8A648684F41"))), "8010089E56D8A648684F41");
  EXPECT_EQ(encoded_hex(encode_dgi(0x9010, hex("0303"))), "9010020303");
  EXPECT_EQ(encoded_hex(encode_dgi(0x0101, Bytes{})), "010100");
}

TEST(DgiEncodeTest, RebuildsTheKaohKeyLoadingOutput) {
  Bytes out;
  ASSERT_TRUE(append_dgi(out, 0x00B9,
                         hex("B71080018881011083010196010197020003B9088201018403504A77"
                             "B9088201028403F2A8DFB9088201038403D7D0E4"))
                  .has_value());
  ASSERT_TRUE(append_dgi(out, 0x8113, hex("D533E59B45A153ED7E5E9C5DFCFD4AAA")).has_value());
  ASSERT_TRUE(append_dgi(out, 0x8113, hex("3EF0B1A5E3059DAB21FCE23A7B61C4CA")).has_value());
  ASSERT_TRUE(append_dgi(out, 0x8113, hex("ADDE68F7AD497268D31A0DDD5C74B08F")).has_value());
  EXPECT_EQ(to_hex(out), kAes128KeyDgis);
}

TEST(DgiEncodeTest, AppendLeavesOutputUnchangedOnFailure) {
  Bytes out = hex("9010020303");
  const Bytes too_long(kMaxDgiLength + 1, 0x00);
  auto s = append_dgi(out, 0x0101, too_long);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(to_hex(out), "9010020303");
  EXPECT_FALSE(encode_dgi(0x0101, too_long).has_value());
}

TEST(DgiEncodeTest, BoundaryLengthsRoundTrip) {
  struct Case {
    std::size_t length;
    std::size_t header_size;
  };
  const Case cases[] = {{0, 3},   {1, 3},   {127, 3},  {128, 3},  {254, 3},
                        {255, 5}, {256, 5}, {4096, 5}, {65535, 5}};
  for (const Case& c : cases) {
    Bytes value(c.length);
    for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<std::uint8_t>(i * 13);
    auto enc = encode_dgi(0x0202, value);
    ASSERT_TRUE(enc.has_value()) << c.length;
    ASSERT_EQ(enc->size(), c.header_size + c.length) << c.length;
    auto parsed = parse_dgis(*enc);
    ASSERT_TRUE(parsed.has_value()) << c.length << ": " << parsed.error().message();
    ASSERT_EQ(parsed->size(), 1u);
    const Dgi& d = (*parsed)[0];
    EXPECT_EQ(d.id, 0x0202);
    EXPECT_EQ(d.offset, 0u);
    EXPECT_EQ(d.header_size, c.header_size) << c.length;
    EXPECT_EQ(d.encoded_size(), enc->size());
    EXPECT_TRUE(std::equal(d.value.begin(), d.value.end(), value.begin(), value.end()));
  }
}

TEST(DgiParseTest, SplitsTheKaohKeyLoadingOutput) {
  const Bytes data = hex(kAes128KeyDgis);
  ASSERT_EQ(data.size(), 108u);
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].id, 0x00B9);
  EXPECT_EQ((*r)[0].offset, 0u);
  EXPECT_EQ((*r)[0].value.size(), 48u);
  EXPECT_EQ((*r)[0].value_offset(), 3u);
  const char* keys[] = {"D533E59B45A153ED7E5E9C5DFCFD4AAA", "3EF0B1A5E3059DAB21FCE23A7B61C4CA",
                        "ADDE68F7AD497268D31A0DDD5C74B08F"};
  const std::size_t offsets[] = {51, 70, 89};
  for (std::size_t i = 0; i < 3; ++i) {
    const Dgi& d = (*r)[i + 1];
    EXPECT_EQ(d.id, 0x8113);
    EXPECT_EQ(d.offset, offsets[i]);
    EXPECT_EQ(d.header_size, 3u);
    EXPECT_EQ(to_hex(d.value), keys[i]);
  }
  EXPECT_EQ((*r)[3].value.data(), data.data() + 92);  // a view into the input
}

TEST(DgiParseTest, SplitsTheAes256Output) {
  const Bytes data = hex(kAes256KeyDgis);
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].value.size(), 0x1Cu);
  EXPECT_EQ((*r)[1].id, 0x8113);
  EXPECT_EQ((*r)[1].offset, 31u);
  EXPECT_EQ(to_hex((*r)[1].value),
            "5A6E045708FB7196F02E553D02C3A692C77147EBD5121DE8D0FAE7762423B6BF");
}

TEST(DgiParseTest, EmptyInputGivesNoDgis) {
  const Bytes data;
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(DgiParseTest, EmptyValueDgi) {
  const Bytes data = hex("0101009010020303");
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_TRUE((*r)[0].value.empty());
  EXPECT_EQ((*r)[1].offset, 3u);
}

TEST(DgiParseTest, AcceptsNonMinimalFfForm) {
  const Bytes data = hex("9010FF00020303");
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].header_size, 5u);
  EXPECT_EQ(to_hex((*r)[0].value), "0303");
}

TEST(DgiParseTest, FindReturnsTheFirstMatch) {
  const Bytes data = hex(kAes128KeyDgis);
  auto r = parse_dgis(data);
  ASSERT_TRUE(r.has_value());
  const Dgi* key = find_dgi(*r, 0x8113);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->offset, 51u);
  ASSERT_NE(find_dgi(*r, 0x00B9), nullptr);
  EXPECT_EQ(find_dgi(*r, 0x8000), nullptr);
  EXPECT_EQ(find_dgi({}, 0x8113), nullptr);
}

TEST(DgiErrorTest, TruncatedHeaders) {
  EXPECT_EQ(dgis_error("80"),
            "DGI: header at offset 0 is truncated (1 bytes left; a DGI needs 2 identifier bytes "
            "and a length)");
  EXPECT_EQ(dgis_error("90000997DCB0CE4E2CB37DF38000"),
            "DGI: header at offset 12 is truncated (2 bytes left; a DGI needs 2 identifier bytes "
            "and a length)");
}

TEST(DgiErrorTest, TruncatedFfLength) {
  EXPECT_EQ(dgis_error("8000FF01"),
            "DGI: length of DGI 8000 at offset 2 is truncated (FF needs 2 length bytes after it, "
            "1 left)");
  EXPECT_EQ(dgis_error("9010020303"
                       "8201FF"),
            "DGI: length of DGI 8201 at offset 7 is truncated (FF needs 2 length bytes after it, "
            "0 left)");
}

TEST(DgiErrorTest, ValueOneByteShort) {
  EXPECT_EQ(dgis_error("9010030303"),
            "DGI: length of DGI 9010 at offset 2 runs past the end of the data (needs 3 bytes, "
            "2 left)");
  EXPECT_EQ(dgis_error("9010FF0003"
                       "0303"),
            "DGI: length of DGI 9010 at offset 2 runs past the end of the data (needs 3 bytes, "
            "2 left)");
}

TEST(DgiErrorTest, ValueRunningPastTheEnd) {
  Bytes data = hex("800030");
  data.resize(data.size() + 10, 0xAA);
  EXPECT_EQ(parse_error(parse_dgis(data)),
            "DGI: length of DGI 8000 at offset 2 runs past the end of the data (needs 48 bytes, "
            "10 left)");
  EXPECT_EQ(dgis_error("90000997DCB0CE4E2CB37DF3"
                       "8010FF0100AABB"),
            "DGI: length of DGI 8010 at offset 14 runs past the end of the data (needs 256 "
            "bytes, 2 left)");
}

TEST(DgiHeaderTest, ReadsAHeaderWhoseValueContinuesElsewhere) {
  // A STORE DATA block that carries only the start of a long DGI 8201.
  const Bytes block = hex("8201FF0100AABBCC");
  auto h = read_dgi_header(block, 0);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(h->id, 0x8201);
  EXPECT_EQ(h->header_size, 5u);
  EXPECT_EQ(h->value_length, 256u);
  EXPECT_FALSE(parse_dgis(block).has_value());

  auto short_form = read_dgi_header(hex("0101FE"), 0);
  ASSERT_TRUE(short_form.has_value());
  EXPECT_EQ(short_form->header_size, 3u);
  EXPECT_EQ(short_form->value_length, 254u);
}

TEST(DgiHeaderTest, OffsetPastTheEnd) {
  EXPECT_EQ(parse_error(read_dgi_header(hex("010100"), 3)),
            "DGI: header at offset 3 is truncated (0 bytes left; a DGI needs 2 identifier bytes "
            "and a length)");
  EXPECT_EQ(parse_error(read_dgi_header(hex("010100"), 50)),
            "DGI: header at offset 50 is truncated (0 bytes left; a DGI needs 2 identifier bytes "
            "and a length)");
}

TEST(DgiFormatTest, FourHexDigits) {
  EXPECT_EQ(format_dgi_id(0x0101), "0101");
  EXPECT_EQ(format_dgi_id(0x00B9), "00B9");
  EXPECT_EQ(format_dgi_id(0x9000), "9000");
}

}  // namespace
}  // namespace persoflow
