#include "engine/tlv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Errors of parsing hex text, flat or as a tree (the buffer outlives the parse).
std::string flat_error(std::string_view text, const TlvParseOptions& options = {}) {
  const Bytes data = hex(text);
  return parse_error(parse_tlvs(data, options));
}
std::string tree_error(std::string_view text, const TlvParseOptions& options = {}) {
  const Bytes data = hex(text);
  return parse_error(parse_tlv_tree(data, options));
}

std::string encoded_hex(const Result<Bytes>& r) {
  if (!r.has_value()) return "<error: " + r.error().message() + ">";
  return to_hex(*r);
}

// Re-encodes a parsed tree from tags, values and children only.
Bytes rebuild(const std::vector<Tlv>& tlvs) {
  Bytes out;
  for (const Tlv& t : tlvs) {
    const Bytes value = t.constructed ? rebuild(t.children) : Bytes(t.value.begin(), t.value.end());
    EXPECT_TRUE(append_tlv(out, t.tag, value).has_value());
  }
  return out;
}

// The 00B9 DGI value of kaoh/globalplatform storeDataTest.c
// test_build_store_data_keys_scp03_aes128 (gp-reference.md §7.8): a B7 key attribute
// template and three B9 templates holding key id (82) and KCV (84).
constexpr std::string_view kKeyControlTemplates =
    "B71080018881011083010196010197020003"
    "B9088201018403504A77"
    "B9088201028403F2A8DF"
    "B9088201038403D7D0E4";

// GET STATUS response of kaoh scp03Test.c get_status_aes_192 without SW (gp-reference §7.4.1).
constexpr std::string_view kGetStatusResponse = "E30D4F07A00000015153509F700101";

// ---- tags ----

TEST(TlvTagTest, EncodesOneTwoAndThreeByteTags) {
  EXPECT_EQ(encoded_hex(encode_tag(0x5A)), "5A");
  EXPECT_EQ(encoded_hex(encode_tag(0x70)), "70");
  EXPECT_EQ(encoded_hex(encode_tag(0x9F70)), "9F70");
  EXPECT_EQ(encoded_hex(encode_tag(0x5F2D)), "5F2D");
  EXPECT_EQ(encoded_hex(encode_tag(0xBF0C)), "BF0C");
  EXPECT_EQ(encoded_hex(encode_tag(0xDF8101)), "DF8101");
  EXPECT_EQ(encoded_hex(encode_tag(0xFF40)), "FF40");
}

TEST(TlvTagTest, RejectsMalformedTags) {
  const Tag bad[] = {
      0x00,        // padding, not a tag
      0x1F,        // announces a subsequent byte that is missing
      0x9F,        // same, context class
      0x5A01,      // first byte does not announce a second
      0x9F81,      // second byte announces a third that is missing
      0x9F0101,    // second byte does not announce the third
      0x9F818101,  // four bytes
  };
  for (Tag tag : bad) {
    auto r = encode_tag(tag);
    ASSERT_FALSE(r.has_value()) << format_tag(tag);
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << format_tag(tag);
  }
  // 5F announces a second byte, 81 a third, 01 ends: well formed.
  EXPECT_EQ(encoded_hex(encode_tag(0x5F8101)), "5F8101");
  EXPECT_EQ(encode_tag(0x9F818101).error().message(),
            "BER-TLV: tag 9F818101 is longer than 3 bytes");
  EXPECT_EQ(encode_tag(0).error().message(), "BER-TLV: tag 00 is padding, not a tag");
}

TEST(TlvTagTest, ConstructedBitIsB6OfTheFirstByte) {
  EXPECT_TRUE(tag_is_constructed(0x70));
  EXPECT_TRUE(tag_is_constructed(0xE3));
  EXPECT_TRUE(tag_is_constructed(0xA5));
  EXPECT_TRUE(tag_is_constructed(0xBF0C));
  EXPECT_TRUE(tag_is_constructed(0xFF40));
  EXPECT_FALSE(tag_is_constructed(0x5A));
  EXPECT_FALSE(tag_is_constructed(0x9F70));
  EXPECT_FALSE(tag_is_constructed(0xDF8101));
  EXPECT_FALSE(tag_is_constructed(0x84));
  EXPECT_FALSE(tag_is_constructed(0));
}

TEST(TlvTagTest, SizeAndFormat) {
  EXPECT_EQ(tag_size(0x5A), 1u);
  EXPECT_EQ(tag_size(0x9F70), 2u);
  EXPECT_EQ(tag_size(0xDF8101), 3u);
  EXPECT_EQ(tag_size(0), 0u);
  EXPECT_EQ(format_tag(0x9F70), "9F70");
  EXPECT_EQ(format_tag(0x4F), "4F");
  EXPECT_EQ(format_tag(0xDF8101), "DF8101");
  EXPECT_EQ(format_tag(0), "00");
}

// ---- lengths and encoding ----

TEST(TlvLengthTest, ShortAndLongFormBoundaries) {
  EXPECT_EQ(encoded_hex(encode_tlv_length(0)), "00");
  EXPECT_EQ(encoded_hex(encode_tlv_length(127)), "7F");
  EXPECT_EQ(encoded_hex(encode_tlv_length(128)), "8180");
  EXPECT_EQ(encoded_hex(encode_tlv_length(255)), "81FF");
  EXPECT_EQ(encoded_hex(encode_tlv_length(256)), "820100");
  EXPECT_EQ(encoded_hex(encode_tlv_length(65535)), "82FFFF");
  EXPECT_EQ(encoded_hex(encode_tlv_length(65536)), "83010000");
  EXPECT_EQ(encoded_hex(encode_tlv_length(0xFFFFFF)), "83FFFFFF");
}

TEST(TlvLengthTest, RefusesLengthsBeyondThreeBytes) {
  auto r = encode_tlv_length(0x1000000);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("16777216"), std::string::npos) << r.error().message();
}

TEST(TlvEncodeTest, BuildsTheGetStatusResponseTemplate) {
  Bytes inner;
  ASSERT_TRUE(append_tlv(inner, 0x4F, hex("A0000001515350")).has_value());
  ASSERT_TRUE(append_tlv(inner, 0x9F70, hex("01")).has_value());
  EXPECT_EQ(encoded_hex(encode_tlv(0xE3, inner)), kGetStatusResponse);
}

TEST(TlvEncodeTest, GlobalPlatformDataFields) {
  // GET STATUS search criteria and tag list (gp-reference §5.5, pySim ADF_SD.get_status).
  EXPECT_EQ(encoded_hex(encode_tlv(0x4F, Bytes{})), "4F00");
  EXPECT_EQ(encoded_hex(encode_tlv(0x5C, hex("4F9F70C5CC"))), "5C054F9F70C5CC");
  // INSTALL parameters of the kaoh SCP02 trace (gp-reference §5.1): C9 01 00, EF { C8 0207D0 }.
  Bytes params;
  ASSERT_TRUE(append_tlv(params, 0xC9, hex("00")).has_value());
  ASSERT_TRUE(append_tlv(params, 0xEF, hex("C80207D0")).has_value());
  EXPECT_EQ(to_hex(params), "C90100EF04C80207D0");
}

TEST(TlvEncodeTest, AppendLeavesOutputUnchangedOnFailure) {
  Bytes out = hex("5A0111");
  EXPECT_FALSE(append_tlv(out, 0x9F, hex("01")).has_value());
  EXPECT_EQ(to_hex(out), "5A0111");
}

TEST(TlvEncodeTest, LargestAndTooLargeValues) {
  const Bytes largest(kMaxTlvLength, 0xA5);
  auto ok = encode_tlv(0xC9, largest);
  ASSERT_TRUE(ok.has_value());
  ASSERT_EQ(ok->size(), 5 + kMaxTlvLength);
  EXPECT_EQ(to_hex(std::span(*ok).first(6)), "C983FFFFFFA5");

  const Bytes too_large(kMaxTlvLength + 1, 0xA5);
  auto bad = encode_tlv(0xC9, too_large);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST(TlvEncodeTest, BoundaryLengthsRoundTrip) {
  struct Case {
    std::size_t length;
    std::size_t header_size;
  };
  const Case cases[] = {{0, 2},   {1, 2},     {127, 2},   {128, 3},  {255, 3},
                        {256, 4}, {65535, 4}, {65536, 5}, {70000, 5}};
  for (const Case& c : cases) {
    Bytes value(c.length);
    for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<std::uint8_t>(i * 7);
    auto enc = encode_tlv(0xC9, value);
    ASSERT_TRUE(enc.has_value()) << c.length;
    ASSERT_EQ(enc->size(), c.header_size + c.length);
    auto parsed = parse_tlvs(*enc);
    ASSERT_TRUE(parsed.has_value()) << c.length << ": " << parsed.error().message();
    ASSERT_EQ(parsed->size(), 1u);
    const Tlv& t = (*parsed)[0];
    EXPECT_EQ(t.tag, 0xC9u);
    EXPECT_FALSE(t.constructed);
    EXPECT_EQ(t.header_size, c.header_size) << c.length;
    EXPECT_EQ(t.value_offset(), c.header_size);
    EXPECT_EQ(t.encoded_size(), enc->size());
    EXPECT_TRUE(std::equal(t.value.begin(), t.value.end(), value.begin(), value.end()));
  }
}

// ---- parsing ----

TEST(TlvParseTest, FlatParseKeepsTemplatesWhole) {
  const Bytes data = hex(kGetStatusResponse);
  auto r = parse_tlvs(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  const Tlv& e3 = (*r)[0];
  EXPECT_EQ(e3.tag, 0xE3u);
  EXPECT_TRUE(e3.constructed);
  EXPECT_EQ(e3.offset, 0u);
  EXPECT_EQ(e3.header_size, 2u);
  EXPECT_EQ(e3.value.size(), 13u);
  EXPECT_TRUE(e3.children.empty());
  EXPECT_EQ(e3.value.data(), data.data() + 2);  // a view into the input, not a copy
}

TEST(TlvParseTest, TreeParseFindsNestedObjects) {
  const Bytes data = hex(kGetStatusResponse);
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  const Tlv& e3 = (*r)[0];
  ASSERT_EQ(e3.children.size(), 2u);
  const Tlv& aid = e3.children[0];
  EXPECT_EQ(aid.tag, 0x4Fu);
  EXPECT_EQ(aid.offset, 2u);
  EXPECT_EQ(to_hex(aid.value), "A0000001515350");
  const Tlv& state = e3.children[1];
  EXPECT_EQ(state.tag, 0x9F70u);
  EXPECT_FALSE(state.constructed);
  EXPECT_EQ(state.offset, 11u);
  EXPECT_EQ(state.header_size, 3u);
  EXPECT_EQ(state.value_offset(), 14u);
  EXPECT_EQ(to_hex(state.value), "01");
}

TEST(TlvParseTest, KeyControlReferenceTemplates) {
  const Bytes data = hex(kKeyControlTemplates);
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].tag, 0xB7u);
  ASSERT_EQ((*r)[0].children.size(), 5u);
  EXPECT_EQ((*r)[0].children[0].tag, 0x80u);  // key type
  EXPECT_EQ(to_hex((*r)[0].children[0].value), "88");
  EXPECT_EQ((*r)[0].children[4].tag, 0x97u);  // key purpose
  EXPECT_EQ(to_hex((*r)[0].children[4].value), "0003");
  const char* kcvs[] = {"504A77", "F2A8DF", "D7D0E4"};
  const std::size_t offsets[] = {18, 28, 38};
  for (std::size_t i = 0; i < 3; ++i) {
    const Tlv& b9 = (*r)[i + 1];
    EXPECT_EQ(b9.tag, 0xB9u);
    EXPECT_EQ(b9.offset, offsets[i]);
    ASSERT_EQ(b9.children.size(), 2u);
    EXPECT_EQ(b9.children[0].tag, 0x82u);
    EXPECT_EQ(b9.children[0].value.size(), 1u);
    EXPECT_EQ(std::size_t{b9.children[0].value[0]}, i + 1);
    EXPECT_EQ(to_hex(b9.children[1].value), kcvs[i]);
    EXPECT_EQ(b9.children[1].offset, offsets[i] + 5);
  }
  EXPECT_EQ(rebuild(*r), data);
}

TEST(TlvParseTest, EmptyInputGivesNoTlvs) {
  const Bytes data;
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(TlvParseTest, NestedRecordTemplateRoundTrips) {
  // An EMV record (DGI 0101-style) with a nested FCI-like template three levels down.
  Bytes fci_issuer;
  ASSERT_TRUE(append_tlv(fci_issuer, 0x9F4D, hex("0B0A")).has_value());
  ASSERT_TRUE(append_tlv(fci_issuer, 0x5F2D, hex("656E6672")).has_value());
  Bytes a5;
  ASSERT_TRUE(append_tlv(a5, 0x50, hex("5649534120435245444954")).has_value());
  ASSERT_TRUE(append_tlv(a5, 0xBF0C, fci_issuer).has_value());
  Bytes record;
  ASSERT_TRUE(append_tlv(record, 0x57, hex("4761739001010010D22122011143804400000F")).has_value());
  ASSERT_TRUE(append_tlv(record, 0x5F20, Bytes(26, 0x20)).has_value());
  ASSERT_TRUE(append_tlv(record, 0x8C, Bytes(200, 0x9F)).has_value());  // 81 C8 length
  ASSERT_TRUE(append_tlv(record, 0xA5, a5).has_value());
  auto encoded = encode_tlv(0x70, record);
  ASSERT_TRUE(encoded.has_value());
  EXPECT_EQ(to_hex(std::span(*encoded).first(4)), "7082011B");

  auto r = parse_tlv_tree(*encoded);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(rebuild(*r), *encoded);
  const Tlv* lang = find_tlv(*r, 0x5F2D);
  ASSERT_NE(lang, nullptr);
  EXPECT_EQ(to_hex(lang->value), "656E6672");
  EXPECT_EQ(encoded->at(lang->value_offset()), 0x65);
}

TEST(TlvParseTest, AcceptsNonMinimalLongFormLengths) {
  const Bytes data = hex("5A8101119F70820001AA");
  auto r = parse_tlvs(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].header_size, 3u);
  EXPECT_EQ(to_hex((*r)[0].value), "11");
  EXPECT_EQ((*r)[1].header_size, 5u);
  EXPECT_EQ(to_hex((*r)[1].value), "AA");
}

// ---- padding ----

TEST(TlvPaddingTest, ZeroBytesAreSkippedBeforeBetweenAndAfter) {
  const Bytes data = hex("00005A0111009F70010100");
  auto r = parse_tlvs(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].tag, 0x5Au);
  EXPECT_EQ((*r)[0].offset, 2u);
  EXPECT_EQ((*r)[1].tag, 0x9F70u);
  EXPECT_EQ((*r)[1].offset, 6u);
}

TEST(TlvPaddingTest, ZeroBytesInsideTemplatesAreSkipped) {
  const Bytes data = hex("7006005A01110000");
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  ASSERT_EQ((*r)[0].children.size(), 1u);
  EXPECT_EQ((*r)[0].children[0].offset, 3u);
}

TEST(TlvPaddingTest, OnlyPaddingGivesNoTlvs) {
  const Bytes data = hex("000000");
  auto r = parse_tlvs(data);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TEST(TlvPaddingTest, SkippingCanBeTurnedOff) {
  const TlvParseOptions strict{.skip_zero_padding = false};
  EXPECT_EQ(flat_error("005A0111", strict),
            "BER-TLV: padding byte 00 at offset 0 where a tag is expected (padding skipping is "
            "off)");
  EXPECT_EQ(tree_error("7004005A0111", strict),
            "BER-TLV: padding byte 00 at offset 2 where a tag is expected (padding skipping is "
            "off)");
  EXPECT_EQ(flat_error("5A0111", strict), "<no error>");
}

TEST(TlvPaddingTest, FfIsATagByteNotPadding) {
  EXPECT_EQ(flat_error("5A0111FF"),
            "BER-TLV: tag at offset 3 is truncated (FF announces another byte, but the data "
            "ends)");
  const Bytes data = hex("FF4004E202E100");
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].tag, 0xFF40u);
  EXPECT_TRUE((*r)[0].constructed);
  ASSERT_NE(find_tlv(*r, 0xE1), nullptr);
  EXPECT_TRUE(find_tlv(*r, 0xE1)->value.empty());
}

// ---- errors ----

TEST(TlvErrorTest, ValueRunningPastTheEnd) {
  Bytes data = hex("5A01119F7082012C");
  data.resize(data.size() + 12, 0x11);
  EXPECT_EQ(parse_error(parse_tlvs(data)),
            "BER-TLV: length at offset 5 runs past the end of the data (needs 300 bytes, 12 left)");
  EXPECT_EQ(flat_error("5A02AA"),
            "BER-TLV: length at offset 1 runs past the end of the data (needs 2 bytes, 1 left)");
}

TEST(TlvErrorTest, TruncatedTags) {
  EXPECT_EQ(flat_error("9F"),
            "BER-TLV: tag at offset 0 is truncated (9F announces another byte, but the data ends)");
  EXPECT_EQ(flat_error("5A01119F81"),
            "BER-TLV: tag at offset 3 is truncated (9F81 announces another byte, but the data "
            "ends)");
}

TEST(TlvErrorTest, TagsLongerThanThreeBytes) {
  EXPECT_EQ(flat_error("9F81810100"),
            "BER-TLV: tag at offset 0 is longer than 3 bytes (9F8181 continues)");
}

TEST(TlvErrorTest, MissingLength) {
  EXPECT_EQ(flat_error("5A"), "BER-TLV: length missing at offset 1 (the data ends after tag 5A)");
  EXPECT_EQ(flat_error("5A01119F70"),
            "BER-TLV: length missing at offset 5 (the data ends after tag 9F70)");
}

TEST(TlvErrorTest, IndefiniteLength) {
  EXPECT_EQ(flat_error("70805A01110000"),
            "BER-TLV: indefinite length (80) at offset 1 is not allowed (EMV and GlobalPlatform "
            "use definite lengths only)");
}

TEST(TlvErrorTest, MoreThanThreeLengthBytes) {
  EXPECT_EQ(flat_error("5A840000000111"),
            "BER-TLV: length at offset 1 starts with 84: more than 3 length bytes are not "
            "supported (at most 83)");
  EXPECT_EQ(flat_error("5AFF"),
            "BER-TLV: length at offset 1 starts with FF: more than 3 length bytes are not "
            "supported (at most 83)");
}

TEST(TlvErrorTest, TruncatedLongFormLength) {
  EXPECT_EQ(flat_error("5A8201"),
            "BER-TLV: length at offset 1 is truncated (82 needs 2 length bytes after it, 1 left)");
  EXPECT_EQ(flat_error("5A83"),
            "BER-TLV: length at offset 1 is truncated (83 needs 3 length bytes after it, 0 left)");
  EXPECT_EQ(flat_error("5A81"),
            "BER-TLV: length at offset 1 is truncated (81 needs 1 length bytes after it, 0 left)");
}

TEST(TlvErrorTest, ChildRunningPastItsTemplate) {
  const Bytes data = hex("E3054F07A0000000");  // 4F claims 7 bytes, E3 holds 5 in all
  EXPECT_TRUE(parse_tlvs(data).has_value());   // the flat parse does not look inside
  EXPECT_EQ(parse_error(parse_tlv_tree(data)),
            "BER-TLV: length at offset 3 runs past the end of the value of template E3 at "
            "offset 0 (needs 7 bytes, 3 left)");
}

TEST(TlvErrorTest, TemplateValueThatIsNotTlv) {
  EXPECT_EQ(tree_error("70029F01"),
            "BER-TLV: length missing at offset 4 (the value of template 70 at offset 0 ends "
            "after tag 9F01)");
}

TEST(TlvErrorTest, SecondTemplateErrorNamesAbsoluteOffset) {
  EXPECT_EQ(tree_error("70035A0111"
                       "7003"
                       "5A0511"),
            "BER-TLV: length at offset 8 runs past the end of the value of template 70 at "
            "offset 5 (needs 5 bytes, 1 left)");
}

Bytes nested_templates(int levels) {
  Bytes inner = hex("5A0111");
  for (int i = 0; i < levels; ++i) {
    auto wrapped = encode_tlv(0x70, inner);
    EXPECT_TRUE(wrapped.has_value());
    inner = std::move(wrapped).value();
  }
  return inner;
}

TEST(TlvErrorTest, NestingDepthIsLimited) {
  const Bytes data = nested_templates(kMaxTlvDepth);
  auto ok = parse_tlv_tree(data);
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  const Tlv* leaf = find_tlv(*ok, 0x5A);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(leaf->offset, 2u * kMaxTlvDepth);

  const Bytes too_deep = nested_templates(kMaxTlvDepth + 1);
  EXPECT_EQ(parse_error(parse_tlv_tree(too_deep)),
            "BER-TLV: template 70 at offset 64 is nested deeper than 32 levels");
  // The flat parse reads one level and does not care.
  EXPECT_TRUE(parse_tlvs(too_deep).has_value());
}

// ---- header reading ----

TEST(TlvHeaderTest, ReadsHeaderWithoutTheValue) {
  const Bytes data = hex("708201005A01");
  auto h = read_tlv_header(data, 0);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(h->tag, 0x70u);
  EXPECT_TRUE(h->constructed);
  EXPECT_EQ(h->header_size, 4u);
  EXPECT_EQ(h->value_length, 256u);

  auto second = read_tlv_header(data, 4);
  ASSERT_TRUE(second.has_value()) << second.error().message();
  EXPECT_EQ(second->tag, 0x5Au);
  EXPECT_FALSE(second->constructed);
  EXPECT_EQ(second->header_size, 2u);
  EXPECT_EQ(second->value_length, 1u);
}

TEST(TlvHeaderTest, ErrorsNameTheOffset) {
  const Bytes data = hex("5A0111");
  EXPECT_EQ(parse_error(read_tlv_header(data, 3)), "BER-TLV: no tag at offset 3 (end of the data)");
  EXPECT_EQ(parse_error(read_tlv_header(data, 99)),
            "BER-TLV: no tag at offset 99 (end of the data)");
  EXPECT_EQ(parse_error(read_tlv_header(data, 2)),
            "BER-TLV: length missing at offset 3 (the data ends after tag 11)");
  EXPECT_EQ(parse_error(read_tlv_header(hex("9F7081"), 0)),
            "BER-TLV: length at offset 2 is truncated (81 needs 1 length bytes after it, 0 left)");
}

// ---- find ----

TEST(TlvFindTest, DepthFirstInDocumentOrder) {
  // 70 { 5A AA } then 5A BB: the child inside the template comes first.
  const Bytes data = hex("70035A01AA5A01BB");
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const Tlv* first = find_tlv(*r, 0x5A);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(to_hex(first->value), "AA");
  EXPECT_EQ(first->offset, 2u);
  const Tlv* tmpl = find_tlv(*r, 0x70);
  ASSERT_NE(tmpl, nullptr);
  EXPECT_EQ(tmpl->offset, 0u);
  EXPECT_EQ(find_tlv(*r, 0x9F70), nullptr);
  EXPECT_EQ(find_tlv({}, 0x5A), nullptr);
}

TEST(TlvFindTest, FindsSecondSiblingAndKcv) {
  const Bytes data = hex(kKeyControlTemplates);
  auto r = parse_tlv_tree(data);
  ASSERT_TRUE(r.has_value());
  const Tlv* purpose = find_tlv(*r, 0x97);
  ASSERT_NE(purpose, nullptr);
  EXPECT_EQ(to_hex(purpose->value), "0003");
  const Tlv* kcv = find_tlv(*r, 0x84);
  ASSERT_NE(kcv, nullptr);
  EXPECT_EQ(to_hex(kcv->value), "504A77");
  EXPECT_EQ(kcv->offset, 23u);
  // Searching only the third B9 finds its own KCV.
  const Tlv* third_kcv = find_tlv((*r)[3].children, 0x84);
  ASSERT_NE(third_kcv, nullptr);
  EXPECT_EQ(to_hex(third_kcv->value), "D7D0E4");
}

TEST(TlvFindTest, FlatParseDoesNotSearchInsideTemplates) {
  const Bytes data = hex(kGetStatusResponse);
  auto r = parse_tlvs(data);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(find_tlv(*r, 0x4F), nullptr);
  EXPECT_NE(find_tlv(*r, 0xE3), nullptr);
}

}  // namespace
}  // namespace persoflow
