#include "config/profile_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <string>
#include <string_view>

#include "engine/attribute_rules.h"
#include "engine/hex.h"
#include "tests/support/temp_dir.h"

namespace persoflow::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kProfilesDir = PERSOFLOW_TEST_VECTORS_DIR "/../../config/profiles";

// A small valid XML-records profile. Line numbers matter: the tests below name them.
constexpr std::string_view kXml =
    R"(<profile id="test" version="1">
  <issuer>Test Bank</issuer>
  <transport-key kek-id="A1B2C3D4" uri="pkcs11:object=tk-1"/>
  <records format="xml" element="card"/>
  <key-class name="pan" dkep="pkcs11:object=dkep-pan"/>
  <key-class name="general" dkep="pkcs11:object=dkep-general"/>
  <key-class name="secret" dkep="pkcs11:object=dkep-secret"/>
  <integrity-key uri="pkcs11:object=xof-integrity"/>
  <xof segment-cards="512"/>
  <attributes>
    <attribute name="card_id" source="@id" type="alphanumeric" key-class="general" reveal="clear"/>
    <attribute name="pan" source="pan" type="digits" min-length="13" max-length="19" luhn="true" key-class="pan" reveal="mask-pan"/>
    <attribute name="holder" source="name" type="name" required="false" key-class="general"/>
    <attribute name="pin_block" source="pin" type="hex" key-class="secret" field-encryption="aes-kwp" field-key="pkcs11:object=pin-tk"/>
  </attributes>
  <card-id attribute="card_id"/>
</profile>
)";

// A small valid fixed-width profile.
constexpr std::string_view kFixed =
    R"(<profile id="test-fixed" version="2">
  <issuer>Test Bank</issuer>
  <transport-key kek-id="A1B2C3D4" uri="pkcs11:object=tk-1"/>
  <records format="fixed-width" record-length="64"/>
  <key-class name="pan" dkep="pkcs11:object=dkep-pan"/>
  <key-class name="general" dkep="pkcs11:object=dkep-general"/>
  <integrity-key uri="pkcs11:object=xof-integrity"/>
  <attributes>
    <attribute name="card_id" offset="0" length="10" type="alphanumeric" key-class="general" reveal="clear"/>
    <attribute name="pan" offset="10" length="19" type="digits" luhn="true" key-class="pan" reveal="mask-pan"/>
    <attribute name="expiry" offset="29" length="4" type="yymm" key-class="general"/>
  </attributes>
  <card-id attribute="card_id"/>
</profile>
)";

// `base` with the one occurrence of `from` replaced by `to`.
std::string edit(std::string_view base, std::string_view from, std::string_view to) {
  std::string s(base);
  const auto pos = s.find(from);
  if (pos == std::string::npos || s.find(from, pos + 1) != std::string::npos) {
    ADD_FAILURE() << "'" << from << "' does not occur exactly once";
    return s;
  }
  s.replace(pos, from.size(), to);
  return s;
}

// The kParse message for `xml`, or a marker that fails any comparison.
std::string error_of(std::string_view xml) {
  auto r = parse_profile(xml, "p.xml");
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  return r.error().message();
}

Bytes sha256_of(std::string_view data) {
  Bytes out(32);
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr), 1);
  return out;
}

// --- The shipped example profiles ---------------------------------------------------

void expect_acme_common(const Profile& p) {
  EXPECT_EQ(p.issuer, "ACME Bank");
  EXPECT_EQ(p.version, "1");
  ASSERT_EQ(p.transport_keys.size(), 1u);
  EXPECT_EQ(p.transport_keys[0].kek_id, (Bytes{0xA1, 0xB2, 0xC3, 0xD4}));
  EXPECT_EQ(p.transport_keys[0].uri, "pkcs11:object=tk-acme-01");
  ASSERT_NE(p.transport_key(Bytes{0xA1, 0xB2, 0xC3, 0xD4}), nullptr);
  ASSERT_EQ(p.key_classes.size(), 4u);
  for (const char* k : {"pan", "track", "general", "secret"}) {
    ASSERT_NE(p.key_class(k), nullptr) << k;
    EXPECT_EQ(p.key_class(k)->dkep_uri, std::string("pkcs11:object=dkep-") + k);
  }
  EXPECT_EQ(p.integrity_key_uri, "pkcs11:object=xof-integrity");
  EXPECT_EQ(p.segment_cards, 1024u);
  EXPECT_EQ(p.card_id_attribute, "card_id");
  ASSERT_EQ(p.attributes.size(), 7u);
  const char* names[] = {
      "card_id",  "pan", "expiry", "service_code", "cardholder_name", "discretionary_data",
      "pin_block"};
  for (std::size_t i = 0; i < 7; ++i) EXPECT_EQ(p.attributes[i].name, names[i]);

  const AttributeSpec* id = p.attribute("card_id");
  EXPECT_EQ(id->type, AttributeType::kAlphanumeric);
  EXPECT_EQ(id->reveal, Reveal::kClear);
  EXPECT_TRUE(id->required);
  EXPECT_FALSE(id->luhn);

  const AttributeSpec* pan = p.attribute("pan");
  EXPECT_EQ(pan->type, AttributeType::kDigits);
  EXPECT_TRUE(pan->luhn);
  EXPECT_EQ(pan->min_length, 13u);
  EXPECT_EQ(pan->reveal, Reveal::kMaskPan);
  EXPECT_EQ(pan->key_class, "pan");

  EXPECT_EQ(p.attribute("expiry")->type, AttributeType::kYymm);
  EXPECT_EQ(p.attribute("expiry")->key_class, "track");
  EXPECT_EQ(p.attribute("service_code")->min_length, 3u);
  EXPECT_EQ(p.attribute("cardholder_name")->type, AttributeType::kName);
  EXPECT_EQ(p.attribute("cardholder_name")->reveal, Reveal::kNever);
  EXPECT_EQ(p.attribute("discretionary_data")->reveal, Reveal::kNever);

  const AttributeSpec* pin = p.attribute("pin_block");
  EXPECT_EQ(pin->type, AttributeType::kHex);
  EXPECT_EQ(pin->field_encryption, FieldEncryption::kAesKwp);
  EXPECT_EQ(pin->field_key_uri, "pkcs11:object=pin-tk-acme");
  EXPECT_EQ(pin->key_class, "secret");
  EXPECT_EQ(pin->reveal, Reveal::kNever);
  for (const auto& a : p.attributes) {
    if (a.name != "pin_block") {
      EXPECT_EQ(a.field_encryption, FieldEncryption::kNone) << a.name;
    }
  }
}

TEST(ShippedProfileTest, XmlProfile) {
  const std::string path = kProfilesDir + "/acme-import-xml.xml";
  auto r = load_profile(path);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->id, "acme-import-xml");
  EXPECT_EQ(r->records.format, RecordFormat::kXml);
  EXPECT_EQ(r->records.record_element, "card");
  EXPECT_EQ(r->attribute("card_id")->source, "@id");
  EXPECT_EQ(r->attribute("pan")->source, "pan");
  EXPECT_EQ(r->attribute("pan")->max_length, 19u);
  EXPECT_EQ(r->attribute("pin_block")->source, "pin-block");
  expect_acme_common(*r);
  EXPECT_EQ(r->sha256, sha256_of(test::read_file(path)));
}

TEST(ShippedProfileTest, FixedWidthProfile) {
  const std::string path = kProfilesDir + "/acme-import-fixed.xml";
  auto r = load_profile(path);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->id, "acme-import-fixed");
  EXPECT_EQ(r->records.format, RecordFormat::kFixedWidth);
  EXPECT_EQ(r->records.record_length, 128u);
  expect_acme_common(*r);
  const std::pair<std::size_t, std::size_t> layout[] = {{0, 16},  {16, 19}, {35, 4}, {39, 3},
                                                        {42, 26}, {68, 8},  {76, 48}};
  for (std::size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(r->attributes[i].offset, layout[i].first) << r->attributes[i].name;
    EXPECT_EQ(r->attributes[i].length, layout[i].second) << r->attributes[i].name;
    EXPECT_EQ(r->attributes[i].source, "");
  }
  EXPECT_EQ(r->sha256, sha256_of(test::read_file(path)));
}

TEST(ShippedProfileTest, DocumentationShowsTheXmlProfileVerbatim) {
  const std::string doc = test::read_file(PERSOFLOW_TEST_VECTORS_DIR "/../../docs/profile.md");
  EXPECT_THAT(doc, HasSubstr(test::read_file(kProfilesDir + "/acme-import-xml.xml")))
      << "docs/profile.md section 1 is out of date";
}

TEST(ShippedProfileTest, SampleRecordOfTheDocumentationValidates) {
  auto r = load_profile(kProfilesDir + "/acme-import-xml.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const std::pair<const char*, std::string> record[] = {{"card_id", "C000000001"},
                                                        {"pan", "4111111111111111"},
                                                        {"expiry", "2712"},
                                                        {"service_code", "201"},
                                                        {"cardholder_name", "JOHN Q SMITH"},
                                                        {"discretionary_data", "00123"},
                                                        {"pin_block", std::string(48, 'A')}};
  for (const auto& [name, value] : record) {
    EXPECT_EQ(check_attribute(*r->attribute(name), value), std::nullopt) << name;
  }
  EXPECT_EQ(check_attribute(*r->attribute("pan"), "4111111111111112"), "fails the Luhn check");
  EXPECT_EQ(revealed(*r->attribute("pan"), "4111111111111111"), "411111******1111");
  EXPECT_EQ(revealed(*r->attribute("card_id"), "C000000001"), "C000000001");
  EXPECT_EQ(revealed(*r->attribute("cardholder_name"), "JOHN Q SMITH"), "");
  EXPECT_EQ(revealed(*r->attribute("pin_block"), std::string(48, 'A')), "");
}

// --- Parsing, defaults, hash -----------------------------------------------------

TEST(ProfileParserTest, ParsesTheXmlExample) {
  auto r = parse_profile(kXml, "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->id, "test");
  EXPECT_EQ(r->segment_cards, 512u);
  EXPECT_EQ(r->attribute("holder")->required, false);
  EXPECT_EQ(r->attribute("holder")->reveal, Reveal::kNever);  // the default
  EXPECT_EQ(r->attribute("holder")->max_length, 0u);
  EXPECT_EQ(r->attribute("pan")->required, true);  // the default
  EXPECT_EQ(r->attribute("pin_block")->field_key_uri, "pkcs11:object=pin-tk");
}

TEST(ProfileParserTest, ParsesTheFixedWidthExample) {
  auto r = parse_profile(kFixed, "f.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->records.format, RecordFormat::kFixedWidth);
  EXPECT_EQ(r->records.record_length, 64u);
  EXPECT_EQ(r->records.record_element, "");
  EXPECT_EQ(r->attribute("expiry")->offset, 29u);
  EXPECT_EQ(r->attribute("expiry")->length, 4u);
}

TEST(ProfileParserTest, Defaults) {
  std::string xml = edit(kXml, "  <xof segment-cards=\"512\"/>\n", "");
  xml = edit(xml, " element=\"card\"", "");
  auto r = parse_profile(xml, "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->segment_cards, 1024u);
  EXPECT_EQ(r->records.record_element, "card");
  auto f = parse_profile(edit(kFixed, " record-length=\"64\"", ""), "f.xml");
  ASSERT_TRUE(f.has_value()) << f.error().message();
  EXPECT_EQ(f->records.record_length, 0u);
}

TEST(ProfileParserTest, XofWithoutSegmentCardsKeepsTheDefault) {
  auto r = parse_profile(edit(kXml, "<xof segment-cards=\"512\"/>", "<xof/>"), "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->segment_cards, 1024u);
}

TEST(ProfileParserTest, ElementsInAnyOrder) {
  // <card-id> and <attributes> before <records>: the format still decides source/offset.
  std::string xml = edit(kXml, "  <records format=\"xml\" element=\"card\"/>\n", "");
  xml = edit(xml, "<profile id=\"test\" version=\"1\">\n",
             "<profile id=\"test\" version=\"1\">\n  <card-id attribute=\"card_id\"/>\n");
  xml = edit(xml, "  <card-id attribute=\"card_id\"/>\n</profile>",
             "  <records format=\"xml\" element=\"card\"/>\n</profile>");
  auto r = parse_profile(xml, "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->card_id_attribute, "card_id");
}

TEST(ProfileParserTest, CommentsDeclarationAndCdataAreAccepted) {
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- a comment -->\n" +
                    edit(kXml, "<issuer>Test Bank</issuer>",
                         "<!-- c --><issuer>\n    <![CDATA[Test & Sons]]> Bank\n  </issuer>");
  auto r = parse_profile(xml, "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->issuer, "Test & Sons Bank");
}

TEST(ProfileParserTest, Sha256IsOfTheBytesAsGiven) {
  auto a = parse_profile(kXml, "p.xml");
  ASSERT_TRUE(a.has_value()) << a.error().message();
  EXPECT_EQ(a->sha256, sha256_of(kXml));
  EXPECT_EQ(a->sha256.size(), 32u);
  // A comment changes nothing parsed but changes the hash.
  const std::string commented = std::string(kXml) + "<!-- edited -->\n";
  auto b = parse_profile(commented, "p.xml");
  ASSERT_TRUE(b.has_value()) << b.error().message();
  EXPECT_EQ(b->sha256, sha256_of(commented));
  EXPECT_NE(a->sha256, b->sha256);
  EXPECT_EQ(a->attributes.size(), b->attributes.size());
}

TEST(ProfileParserTest, KekIdMayBeLowerCaseOrSpaced) {
  auto r = parse_profile(edit(kXml, "kek-id=\"A1B2C3D4\"", "kek-id=\"a1 b2 c3 d4 e5\""), "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->transport_keys[0].kek_id, (Bytes{0xA1, 0xB2, 0xC3, 0xD4, 0xE5}));
}

TEST(ProfileParserTest, SeveralTransportKeys) {
  auto r = parse_profile(
      edit(kXml, "  <records",
           "  <transport-key kek-id=\"0102\" uri=\"pkcs11:token=t;object=tk-2\"/>\n  <records"),
      "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->transport_keys.size(), 2u);
  EXPECT_EQ(r->transport_key(Bytes{0x01, 0x02})->uri, "pkcs11:token=t;object=tk-2");
}

TEST(ProfileParserTest, ExplicitFieldEncryptionNone) {
  auto r = parse_profile(
      edit(kXml, "type=\"name\" required", "type=\"name\" field-encryption=\"none\" required"),
      "p.xml");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->attribute("holder")->field_encryption, FieldEncryption::kNone);
}

TEST(ProfileParserTest, SegmentCardsBounds) {
  for (const char* ok : {"1", "65536"}) {
    auto r = parse_profile(
        edit(kXml, "segment-cards=\"512\"", std::string("segment-cards=\"") + ok + "\""), "p.xml");
    EXPECT_TRUE(r.has_value()) << ok;
  }
  for (const char* bad : {"0", "65537", "-1", "+5", "1k", "", " 5", "99999999999999999999999"}) {
    EXPECT_EQ(
        error_of(edit(kXml, "segment-cards=\"512\"", std::string("segment-cards=\"") + bad + "\"")),
        "p.xml:9: <xof>: segment-cards must be a whole number from 1 to 65536")
        << bad;
  }
}

// --- XML structure ----------------------------------------------------------------

TEST(ProfileParserErrorTest, MalformedXmlNamesTheLine) {
  EXPECT_THAT(error_of(edit(kXml, "  </attributes>", "  </attribute>")),
              StartsWith("p.xml:15: malformed XML: "));
  EXPECT_THAT(error_of(edit(kXml, "<records format=\"xml\"", "<records format=xml")),
              StartsWith("p.xml:4: malformed XML: "));
}

TEST(ProfileParserErrorTest, EmptyDocument) {
  EXPECT_EQ(error_of(""), "p.xml:1: no root element");
  EXPECT_EQ(error_of("<?xml version=\"1.0\"?>\n<!-- only a comment -->\n"),
            "p.xml:1: no root element");
}

TEST(ProfileParserErrorTest, TextOutsideTheRootElement) {
  EXPECT_EQ(error_of(std::string(kXml) + "trailing\n"), "p.xml:18: text outside the root element");
  EXPECT_EQ(error_of("\nleading\n" + std::string(kXml)), "p.xml:2: text outside the root element");
}

TEST(ProfileParserErrorTest, ByteOrderMarkDoesNotShiftLines) {
  const std::string bom = "\xEF\xBB\xBF";
  EXPECT_TRUE(parse_profile(bom + std::string(kXml), "p.xml").has_value());
  EXPECT_EQ(error_of(bom + edit(kXml, "segment-cards=\"512\"", "segment-cards=\"0\"")),
            "p.xml:9: <xof>: segment-cards must be a whole number from 1 to 65536");
}

TEST(ProfileParserErrorTest, DoctypeIsRefused) {
  EXPECT_EQ(error_of("<?xml version=\"1.0\"?>\n<!DOCTYPE profile [<!ENTITY x \"y\">]>\n" +
                     std::string(kXml)),
            "p.xml:2: a DOCTYPE is not allowed in a profile");
}

TEST(ProfileParserErrorTest, SecondRootElement) {
  EXPECT_EQ(error_of(std::string(kXml) + "<profile id=\"x\" version=\"1\"/>\n"),
            "p.xml:18: a second root element <profile>");
}

TEST(ProfileParserErrorTest, WrongRootElement) {
  EXPECT_EQ(error_of("\n<config/>\n"), "p.xml:2: root element is <config>, expected <profile>");
}

TEST(ProfileParserErrorTest, UnknownElementInProfile) {
  EXPECT_EQ(error_of(edit(kXml, "  <xof", "  <hsm slot=\"1\"/>\n  <xof")),
            "p.xml:9: unknown element <hsm> in <profile> (known: attributes, card-id, "
            "integrity-key, issuer, key-class, prep, records, transport-key, xof)");
}

TEST(ProfileParserErrorTest, UnknownElementInAttributes) {
  EXPECT_EQ(error_of(edit(kXml, "  </attributes>", "    <field name=\"x\"/>\n  </attributes>")),
            "p.xml:15: unknown element <field> in <attributes> (known: attribute)");
}

TEST(ProfileParserErrorTest, ChildElementInsideALeafElement) {
  EXPECT_EQ(
      error_of(edit(
          kXml, "<integrity-key uri=\"pkcs11:object=xof-integrity\"/>",
          "<integrity-key uri=\"pkcs11:object=xof-integrity\">\n    <x/>\n  </integrity-key>")),
      "p.xml:9: unexpected element <x> inside <integrity-key>");
  EXPECT_EQ(error_of(edit(kXml, "<issuer>Test Bank</issuer>", "<issuer>Test <b>Bank</b></issuer>")),
            "p.xml:2: unexpected element <b> inside <issuer>");
}

TEST(ProfileParserErrorTest, TextWhereNoneBelongs) {
  EXPECT_EQ(error_of(edit(kXml, "<records format=\"xml\" element=\"card\"/>",
                          "<records format=\"xml\" element=\"card\">card</records>")),
            "p.xml:4: unexpected text inside <records>");
  EXPECT_EQ(error_of(edit(kXml, "  <attributes>\n", "  <attributes>\n    stray\n")),
            "p.xml:11: unexpected text inside <attributes>");
  EXPECT_EQ(error_of(edit(kXml, "  <xof", "  stray\n  <xof")),
            "p.xml:9: unexpected text inside <profile>");
}

TEST(ProfileParserErrorTest, UnknownAttributeOnAttribute) {
  EXPECT_EQ(error_of(edit(kXml, "type=\"name\" required", "type=\"name\" mask=\"yes\" required")),
            "p.xml:13: unknown attribute mask= on <attribute> (known: field-encryption, field-key, "
            "key-class, length, luhn, max-length, min-length, name, offset, required, reveal, "
            "source, type)");
}

TEST(ProfileParserErrorTest, UnknownAttributeOnEachElement) {
  EXPECT_EQ(error_of(edit(kXml, "version=\"1\"", "version=\"1\" owner=\"x\"")),
            "p.xml:1: unknown attribute owner= on <profile> (known: id, version)");
  EXPECT_EQ(error_of(edit(kXml, "<issuer>", "<issuer lang=\"en\">")),
            "p.xml:2: <issuer> takes no attributes (found lang=)");
  EXPECT_EQ(error_of(edit(kXml, "uri=\"pkcs11:object=tk-1\"",
                          "uri=\"pkcs11:object=tk-1\" kcv=\"ABCDEF\"")),
            "p.xml:3: unknown attribute kcv= on <transport-key> (known: kek-id, uri)");
  EXPECT_EQ(error_of(edit(kXml, "element=\"card\"", "element=\"card\" encoding=\"utf-8\"")),
            "p.xml:4: unknown attribute encoding= on <records> (known: element, format, "
            "record-length)");
  EXPECT_EQ(error_of(edit(kXml, "<key-class name=\"pan\"", "<key-class usage=\"x\" name=\"pan\"")),
            "p.xml:5: unknown attribute usage= on <key-class> (known: dkep, name)");
  EXPECT_EQ(error_of(edit(kXml, "<integrity-key ", "<integrity-key alg=\"cmac\" ")),
            "p.xml:8: unknown attribute alg= on <integrity-key> (known: uri)");
  EXPECT_EQ(error_of(edit(kXml, "<xof ", "<xof zstd=\"1\" ")),
            "p.xml:9: unknown attribute zstd= on <xof> (known: segment-cards)");
  EXPECT_EQ(error_of(edit(kXml, "  <attributes>", "  <attributes count=\"4\">")),
            "p.xml:10: <attributes> takes no attributes (found count=)");
  EXPECT_EQ(error_of(edit(kXml, "<card-id attribute=\"card_id\"/>",
                          "<card-id attribute=\"card_id\" name=\"x\"/>")),
            "p.xml:16: unknown attribute name= on <card-id> (known: attribute)");
}

TEST(ProfileParserErrorTest, RepeatedXmlAttribute) {
  EXPECT_EQ(error_of(edit(kXml, "type=\"name\" required", "type=\"name\" type=\"text\" required")),
            "p.xml:13: type= repeated on <attribute>");
}

TEST(ProfileParserErrorTest, ErrorsNameTheLineOfTheXmlAttribute) {
  // An <attribute> written over several lines: the error names the line of luhn=.
  const std::string xml = edit(kXml, "type=\"name\" required=\"false\"",
                               "type=\"name\"\n               required=\"false\"\n"
                               "               luhn=\"true\"");
  EXPECT_EQ(error_of(xml), "p.xml:15: attribute 'holder': luhn=\"true\" needs type=\"digits\"");
}

TEST(ProfileParserErrorTest, CrLfLineEndingsCountLines) {
  std::string crlf;
  for (char c : kXml) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  EXPECT_TRUE(parse_profile(crlf, "p.xml").has_value());
  EXPECT_EQ(error_of(edit(crlf, "segment-cards=\"512\"", "segment-cards=\"0\"")),
            "p.xml:9: <xof>: segment-cards must be a whole number from 1 to 65536");
}

// --- Required and repeated elements -------------------------------------------------

TEST(ProfileParserErrorTest, EachRequiredElementMustBePresent) {
  const std::pair<std::string_view, std::string_view> removals[] = {
      {"  <issuer>Test Bank</issuer>\n", "issuer"},
      {"  <transport-key kek-id=\"A1B2C3D4\" uri=\"pkcs11:object=tk-1\"/>\n", "transport-key"},
      {"  <records format=\"xml\" element=\"card\"/>\n", "records"},
      {"  <integrity-key uri=\"pkcs11:object=xof-integrity\"/>\n", "integrity-key"},
      {"  <card-id attribute=\"card_id\"/>\n", "card-id"},
  };
  for (const auto& [line, name] : removals) {
    EXPECT_EQ(error_of(edit(kXml, line, "")),
              "p.xml:1: <profile> has no <" + std::string(name) + "> element");
  }
  const auto attributes_start = kXml.find("  <attributes>");
  const auto attributes_end = kXml.find("  <card-id");
  std::string no_attributes(kXml);
  no_attributes.erase(attributes_start, attributes_end - attributes_start);
  EXPECT_EQ(error_of(no_attributes), "p.xml:1: <profile> has no <attributes> element");
}

TEST(ProfileParserErrorTest, NoKeyClassAtAll) {
  std::string xml(kXml);
  for (const char* kc : {"  <key-class name=\"pan\" dkep=\"pkcs11:object=dkep-pan\"/>\n",
                         "  <key-class name=\"general\" dkep=\"pkcs11:object=dkep-general\"/>\n",
                         "  <key-class name=\"secret\" dkep=\"pkcs11:object=dkep-secret\"/>\n"}) {
    xml = edit(xml, kc, "");
  }
  EXPECT_EQ(error_of(xml), "p.xml:1: <profile> has no <key-class> element");
}

TEST(ProfileParserErrorTest, EmptyAttributesList) {
  const auto start = kXml.find("    <attribute ");
  const auto end = kXml.find("  </attributes>");
  std::string xml(kXml);
  xml.erase(start, end - start);
  EXPECT_EQ(error_of(xml), "p.xml:10: <attributes> declares no <attribute>");
}

TEST(ProfileParserErrorTest, RepeatedSingleElements) {
  EXPECT_EQ(error_of(edit(kXml, "  <xof", "  <issuer>Other</issuer>\n  <xof")),
            "p.xml:9: <issuer> repeated (first at line 2)");
  EXPECT_EQ(error_of(edit(kXml, "  <xof", "  <records format=\"xml\"/>\n  <xof")),
            "p.xml:9: <records> repeated (first at line 4)");
  EXPECT_EQ(error_of(edit(kXml, "</profile>", "  <xof segment-cards=\"1\"/>\n</profile>")),
            "p.xml:17: <xof> repeated (first at line 9)");
  EXPECT_EQ(error_of(edit(kXml, "</profile>", "  <card-id attribute=\"pan\"/>\n</profile>")),
            "p.xml:17: <card-id> repeated (first at line 16)");
  EXPECT_EQ(
      error_of(edit(kXml, "</profile>", "  <integrity-key uri=\"pkcs11:object=i2\"/>\n</profile>")),
      "p.xml:17: <integrity-key> repeated (first at line 8)");
  EXPECT_EQ(error_of(edit(kXml, "</profile>", "  <attributes/>\n</profile>")),
            "p.xml:17: <attributes> repeated (first at line 10)");
}

// --- Required attributes and plain values -------------------------------------------

TEST(ProfileParserErrorTest, MissingRequiredAttributes) {
  EXPECT_EQ(error_of(edit(kXml, " id=\"test\"", "")), "p.xml:1: missing required id= on <profile>");
  EXPECT_EQ(error_of(edit(kXml, " version=\"1\"", "")),
            "p.xml:1: missing required version= on <profile>");
  EXPECT_EQ(error_of(edit(kXml, " kek-id=\"A1B2C3D4\"", "")),
            "p.xml:3: missing required kek-id= on <transport-key>");
  EXPECT_EQ(error_of(edit(kXml, " uri=\"pkcs11:object=tk-1\"", "")),
            "p.xml:3: missing required uri= on <transport-key>");
  EXPECT_EQ(error_of(edit(kXml, " format=\"xml\"", "")),
            "p.xml:4: missing required format= on <records>");
  EXPECT_EQ(error_of(edit(kXml, " dkep=\"pkcs11:object=dkep-pan\"", "")),
            "p.xml:5: missing required dkep= on <key-class>");
  EXPECT_EQ(error_of(edit(kXml, "<key-class name=\"pan\" ", "<key-class ")),
            "p.xml:5: missing required name= on <key-class>");
  EXPECT_EQ(error_of(edit(kXml, " uri=\"pkcs11:object=xof-integrity\"", "")),
            "p.xml:8: missing required uri= on <integrity-key>");
  EXPECT_EQ(error_of(edit(kXml, "name=\"holder\" ", "")),
            "p.xml:13: missing required name= on <attribute>");
  EXPECT_EQ(error_of(edit(kXml, " source=\"name\"", "")),
            "p.xml:13: missing required source= on <attribute>");
  EXPECT_EQ(error_of(edit(kXml, " type=\"name\"", "")),
            "p.xml:13: missing required type= on <attribute>");
  EXPECT_EQ(error_of(edit(kXml, "required=\"false\" key-class=\"general\"", "required=\"false\"")),
            "p.xml:13: missing required key-class= on <attribute>");
  EXPECT_EQ(error_of(edit(kXml, "<card-id attribute=\"card_id\"/>", "<card-id/>")),
            "p.xml:16: missing required attribute= on <card-id>");
}

TEST(ProfileParserErrorTest, EmptyIssuer) {
  EXPECT_EQ(error_of(edit(kXml, "<issuer>Test Bank</issuer>", "<issuer>  </issuer>")),
            "p.xml:2: <issuer> is empty");
  EXPECT_EQ(error_of(edit(kXml, "<issuer>Test Bank</issuer>", "<issuer/>")),
            "p.xml:2: <issuer> is empty");
}

TEST(ProfileParserErrorTest, BadIdentifiers) {
  EXPECT_EQ(error_of(edit(kXml, "id=\"test\"", "id=\"acme import\"")),
            "p.xml:1: <profile>: id 'acme import' must be 1-64 letters, digits, '_', '.' or '-'");
  EXPECT_EQ(error_of(edit(kXml, "version=\"1\"", "version=\"\"")),
            "p.xml:1: <profile>: version '' must be 1-64 letters, digits, '_', '.' or '-'");
  EXPECT_EQ(error_of(edit(kXml, "name=\"holder\"", "name=\"holder/name\"")),
            "p.xml:13: <attribute>: name 'holder/name' must be 1-64 letters, digits, '_', '.' or "
            "'-'");
  EXPECT_EQ(error_of(edit(kXml, "name=\"holder\"", "name=\"" + std::string(65, 'a') + "\"")),
            "p.xml:13: <attribute>: name '" + std::string(65, 'a') +
                "' must be 1-64 letters, digits, '_', '.' or '-'");
  EXPECT_EQ(error_of(edit(kXml, "<key-class name=\"pan\"", "<key-class name=\"p a n\"")),
            "p.xml:5: <key-class>: name 'p a n' must be 1-64 letters, digits, '_', '.' or '-'");
}

TEST(ProfileParserErrorTest, BadEnumValues) {
  EXPECT_EQ(error_of(edit(kXml, "format=\"xml\"", "format=\"csv\"")),
            "p.xml:4: <records>: unknown format 'csv' (known: xml, fixed-width)");
  EXPECT_EQ(error_of(edit(kXml, "type=\"name\"", "type=\"string\"")),
            "p.xml:13: attribute 'holder': unknown type 'string' (known: digits, alphanumeric, "
            "hex, yymm, name, text)");
  EXPECT_EQ(
      error_of(edit(kXml, "type=\"name\" required", "type=\"name\" reveal=\"masked\" required")),
      "p.xml:13: attribute 'holder': unknown reveal 'masked' (known: never, mask-pan, clear)");
  EXPECT_EQ(error_of(edit(kXml, "field-encryption=\"aes-kwp\"", "field-encryption=\"aes-kw\"")),
            "p.xml:14: attribute 'pin_block': unknown field-encryption 'aes-kw' (known: none, "
            "aes-kwp)");
  EXPECT_EQ(error_of(edit(kXml, "type=\"digits\"", "type=\"Digits\"")),
            "p.xml:12: attribute 'pan': unknown type 'Digits' (known: digits, alphanumeric, hex, "
            "yymm, name, text)");
}

TEST(ProfileParserErrorTest, BadBooleans) {
  EXPECT_EQ(error_of(edit(kXml, "required=\"false\"", "required=\"no\"")),
            "p.xml:13: attribute 'holder': required must be \"true\" or \"false\"");
  EXPECT_EQ(error_of(edit(kXml, "luhn=\"true\"", "luhn=\"1\"")),
            "p.xml:12: attribute 'pan': luhn must be \"true\" or \"false\"");
}

TEST(ProfileParserErrorTest, BadLengths) {
  EXPECT_EQ(error_of(edit(kXml, "min-length=\"13\"", "min-length=\"thirteen\"")),
            "p.xml:12: attribute 'pan': min-length must be a whole number from 0 to 1048576");
  EXPECT_EQ(error_of(edit(kXml, "max-length=\"19\"", "max-length=\"-19\"")),
            "p.xml:12: attribute 'pan': max-length must be a whole number from 0 to 1048576");
  EXPECT_EQ(error_of(edit(kXml, "min-length=\"13\"", "min-length=\"20\"")),
            "p.xml:12: attribute 'pan': min-length 20 exceeds max-length 19");
}

// --- Uniqueness and references ----------------------------------------------------

TEST(ProfileParserErrorTest, DuplicateAttributeName) {
  EXPECT_EQ(error_of(edit(kXml, "name=\"holder\"", "name=\"pan\"")),
            "p.xml:13: attribute 'pan' repeated (first at line 12)");
}

TEST(ProfileParserErrorTest, DuplicateSource) {
  EXPECT_EQ(error_of(edit(kXml, "source=\"name\"", "source=\"pan\"")),
            "p.xml:13: attribute 'holder': source 'pan' is already read by the attribute at line "
            "12");
}

TEST(ProfileParserErrorTest, BadSource) {
  EXPECT_EQ(error_of(edit(kXml, "source=\"name\"", "source=\"holder/name\"")),
            "p.xml:13: attribute 'holder': source 'holder/name' is neither an element name nor "
            "@attribute-name");
  EXPECT_EQ(error_of(edit(kXml, "source=\"@id\"", "source=\"@\"")),
            "p.xml:11: attribute 'card_id': source '@' is neither an element name nor "
            "@attribute-name");
  EXPECT_EQ(error_of(edit(kXml, "source=\"name\"", "source=\"1name\"")),
            "p.xml:13: attribute 'holder': source '1name' is neither an element name nor "
            "@attribute-name");
}

TEST(ProfileParserErrorTest, DuplicateKeyClassName) {
  EXPECT_EQ(error_of(edit(kXml, "name=\"secret\" dkep", "name=\"pan\" dkep")),
            "p.xml:7: key class 'pan' repeated (first at line 5)");
}

TEST(ProfileParserErrorTest, UndeclaredKeyClass) {
  EXPECT_EQ(error_of(edit(kXml, "required=\"false\" key-class=\"general\"",
                          "required=\"false\" key-class=\"track\"")),
            "p.xml:13: attribute 'holder': key class 'track' is not declared (declared: pan, "
            "general, secret)");
}

TEST(ProfileParserErrorTest, UnusedKeyClass) {
  EXPECT_EQ(
      error_of(edit(
          kXml, "  <integrity-key",
          "  <key-class name=\"track\" dkep=\"pkcs11:object=dkep-track\"/>\n  <integrity-key")),
      "p.xml:8: key class 'track' is declared but no attribute uses it");
}

TEST(ProfileParserErrorTest, KekIdMustBeHexAndUnique) {
  EXPECT_EQ(error_of(edit(kXml, "kek-id=\"A1B2C3D4\"", "kek-id=\"A1B2C3DX\"")),
            "p.xml:3: <transport-key>: kek-id: hex: invalid character at offset 7");
  EXPECT_EQ(
      error_of(edit(kXml, "kek-id=\"A1B2C3D4\"", "kek-id=\"A1B2C3D\"")),
      "p.xml:3: <transport-key>: kek-id: hex: odd number of digits (unpaired digit at offset 6)");
  EXPECT_EQ(error_of(edit(kXml, "kek-id=\"A1B2C3D4\"", "kek-id=\"\"")),
            "p.xml:3: <transport-key>: kek-id is empty");
  EXPECT_EQ(error_of(edit(
                kXml, "  <records",
                "  <transport-key kek-id=\"a1b2 c3d4\" uri=\"pkcs11:object=tk-2\"/>\n  <records")),
            "p.xml:4: <transport-key>: kek-id A1B2C3D4 repeated (first at line 3)");
}

// --- Key URIs -----------------------------------------------------------------------

TEST(ProfileParserErrorTest, EveryKeyUriMustParse) {
  EXPECT_THAT(error_of(edit(kXml, "uri=\"pkcs11:object=tk-1\"", "uri=\"tk-1\"")),
              StartsWith("p.xml:3: <transport-key>: uri: PKCS#11 URI 'tk-1': "));
  EXPECT_THAT(error_of(edit(kXml, "dkep=\"pkcs11:object=dkep-pan\"",
                            "dkep=\"pkcs11:object=dkep-pan;colour=red\"")),
              StartsWith("p.xml:5: key class 'pan': dkep: PKCS#11 URI "));
  EXPECT_THAT(
      error_of(edit(kXml, "uri=\"pkcs11:object=xof-integrity\"", "uri=\"pkcs11:object=%G1\"")),
      StartsWith("p.xml:8: <integrity-key>: uri: PKCS#11 URI "));
  EXPECT_THAT(error_of(edit(kXml, "field-key=\"pkcs11:object=pin-tk\"",
                            "field-key=\"pkcs:object=pin-tk\"")),
              StartsWith("p.xml:14: attribute 'pin_block': field-key: PKCS#11 URI "));
}

TEST(ProfileParserErrorTest, EveryKeyUriMustNameOneKey) {
  EXPECT_EQ(error_of(edit(kXml, "uri=\"pkcs11:object=tk-1\"", "uri=\"pkcs11:token=perso\"")),
            "p.xml:3: <transport-key>: uri must name one key (object= or id=)");
  EXPECT_EQ(error_of(edit(kXml, "dkep=\"pkcs11:object=dkep-general\"", "dkep=\"pkcs11:\"")),
            "p.xml:6: key class 'general': dkep must name one key (object= or id=)");
  EXPECT_EQ(
      error_of(edit(kXml, "uri=\"pkcs11:object=xof-integrity\"", "uri=\"pkcs11:type=secret-key\"")),
      "p.xml:8: <integrity-key>: uri must name one key (object= or id=)");
  EXPECT_EQ(
      error_of(edit(kXml, "field-key=\"pkcs11:object=pin-tk\"", "field-key=\"pkcs11:token=t\"")),
      "p.xml:14: attribute 'pin_block': field-key must name one key (object= or id=)");
  // id= alone names one key.
  EXPECT_TRUE(
      parse_profile(edit(kXml, "uri=\"pkcs11:object=tk-1\"", "uri=\"pkcs11:id=%01%02\""), "p.xml")
          .has_value());
}

TEST(ProfileParserErrorTest, KeyUriTypeMustBeSecretKey) {
  EXPECT_EQ(
      error_of(edit(kXml, "uri=\"pkcs11:object=tk-1\"", "uri=\"pkcs11:object=tk-1;type=private\"")),
      "p.xml:3: <transport-key>: uri must name a secret key (type=secret-key or no type)");
  EXPECT_TRUE(parse_profile(edit(kXml, "uri=\"pkcs11:object=tk-1\"",
                                 "uri=\"pkcs11:object=tk-1;type=secret-key\""),
                            "p.xml")
                  .has_value());
}

TEST(ProfileParserErrorTest, PinInAUriIsRefusedAndNotQuoted) {
  const std::string msg = error_of(
      edit(kXml, "uri=\"pkcs11:object=tk-1\"", "uri=\"pkcs11:object=tk-1?pin-value=987123\""));
  EXPECT_THAT(msg, StartsWith("p.xml:3: <transport-key>: uri: "));
  EXPECT_THAT(msg, Not(HasSubstr("987123")));
}

// --- Attribute rules ----------------------------------------------------------------

TEST(ProfileParserErrorTest, LuhnNeedsDigits) {
  EXPECT_EQ(error_of(edit(kXml, "type=\"name\" required=\"false\"",
                          "type=\"name\" luhn=\"true\" required=\"false\"")),
            "p.xml:13: attribute 'holder': luhn=\"true\" needs type=\"digits\"");
}

TEST(ProfileParserErrorTest, LuhnCheckedValueIsNeverClear) {
  EXPECT_EQ(error_of(edit(kXml, "reveal=\"mask-pan\"", "reveal=\"clear\"")),
            "p.xml:12: attribute 'pan': a Luhn-checked value (a PAN) must not have "
            "reveal=\"clear\" (use mask-pan or never)");
}

TEST(ProfileParserErrorTest, MaskPanNeedsDigits) {
  EXPECT_EQ(
      error_of(edit(kXml, "type=\"name\" required", "type=\"name\" reveal=\"mask-pan\" required")),
      "p.xml:13: attribute 'holder': reveal=\"mask-pan\" needs type=\"digits\"");
}

TEST(ProfileParserErrorTest, FieldEncryptedMustBeHex) {
  EXPECT_EQ(error_of(edit(kXml, "source=\"pin\" type=\"hex\"", "source=\"pin\" type=\"text\"")),
            "p.xml:14: attribute 'pin_block': a field-encrypted attribute must have type=\"hex\"");
}

TEST(ProfileParserErrorTest, FieldEncryptedMustNeverBeRevealed) {
  for (const char* reveal : {"clear", "mask-pan"}) {
    const std::string xml =
        edit(kXml, "field-key=\"pkcs11:object=pin-tk\"",
             std::string("field-key=\"pkcs11:object=pin-tk\" reveal=\"") + reveal + "\"");
    const std::string msg = error_of(xml);
    if (std::string_view(reveal) == "mask-pan") {
      EXPECT_EQ(msg, "p.xml:14: attribute 'pin_block': reveal=\"mask-pan\" needs type=\"digits\"");
    } else {
      EXPECT_EQ(msg,
                "p.xml:14: attribute 'pin_block': a field-encrypted attribute must have "
                "reveal=\"never\"");
    }
  }
}

TEST(ProfileParserErrorTest, FieldEncryptionNeedsAFieldKey) {
  EXPECT_EQ(error_of(edit(kXml, " field-key=\"pkcs11:object=pin-tk\"", "")),
            "p.xml:14: attribute 'pin_block': field-encryption=\"aes-kwp\" needs a field-key");
}

TEST(ProfileParserErrorTest, FieldKeyNeedsFieldEncryption) {
  EXPECT_EQ(error_of(edit(kXml, "field-encryption=\"aes-kwp\" ", "")),
            "p.xml:14: attribute 'pin_block': field-key without field-encryption=\"aes-kwp\"");
  EXPECT_EQ(error_of(edit(kXml, "field-encryption=\"aes-kwp\"", "field-encryption=\"none\"")),
            "p.xml:14: attribute 'pin_block': field-key without field-encryption=\"aes-kwp\"");
}

// --- The card id --------------------------------------------------------------------

TEST(ProfileParserErrorTest, CardIdMustBeDeclared) {
  EXPECT_EQ(
      error_of(edit(kXml, "<card-id attribute=\"card_id\"/>", "<card-id attribute=\"cardid\"/>")),
      "p.xml:16: <card-id> names attribute 'cardid', which is not declared");
}

TEST(ProfileParserErrorTest, CardIdMustBeRequired) {
  EXPECT_EQ(
      error_of(edit(kXml, "type=\"alphanumeric\"", "type=\"alphanumeric\" required=\"false\"")),
      "p.xml:11: attribute 'card_id' is the card id (<card-id> at line 16): it must be "
      "required");
}

TEST(ProfileParserErrorTest, CardIdIsNeverAPan) {
  EXPECT_EQ(
      error_of(edit(kXml, "<card-id attribute=\"card_id\"/>", "<card-id attribute=\"pan\"/>")),
      "p.xml:12: attribute 'pan' is the card id (<card-id> at line 16): it must not have "
      "luhn=\"true\" (never a PAN)");
}

TEST(ProfileParserErrorTest, CardIdMustNotBeFieldEncrypted) {
  EXPECT_EQ(error_of(edit(kXml, "<card-id attribute=\"card_id\"/>",
                          "<card-id attribute=\"pin_block\"/>")),
            "p.xml:14: attribute 'pin_block' is the card id (<card-id> at line 16): it must not be "
            "field-encrypted");
}

TEST(ProfileParserErrorTest, CardIdMustBeClear) {
  EXPECT_EQ(error_of(edit(kXml, "key-class=\"general\" reveal=\"clear\"", "key-class=\"general\"")),
            "p.xml:11: attribute 'card_id' is the card id (<card-id> at line 16): it must have "
            "reveal=\"clear\"");
}

// --- Format-specific attributes -----------------------------------------------------

TEST(ProfileParserErrorTest, XmlRecordsTakeNoFixedWidthSettings) {
  EXPECT_EQ(error_of(edit(kXml, "element=\"card\"", "element=\"card\" record-length=\"80\"")),
            "p.xml:4: <records>: record-length applies to format=\"fixed-width\" only");
  EXPECT_EQ(error_of(edit(kXml, "source=\"name\"", "source=\"name\" offset=\"0\"")),
            "p.xml:13: attribute 'holder': offset is for fixed-width records; XML records use "
            "source");
  EXPECT_EQ(error_of(edit(kXml, "source=\"name\"", "source=\"name\" length=\"26\"")),
            "p.xml:13: attribute 'holder': length is for fixed-width records; XML records use "
            "source");
}

TEST(ProfileParserErrorTest, RecordElementMustBeAnXmlName) {
  EXPECT_EQ(error_of(edit(kXml, "element=\"card\"", "element=\"a card\"")),
            "p.xml:4: <records>: element 'a card' is not an XML element name");
}

TEST(ProfileParserErrorTest, FixedWidthRecordsTakeNoXmlSettings) {
  EXPECT_EQ(error_of(edit(kFixed, "record-length=\"64\"", "record-length=\"64\" element=\"card\"")),
            "p.xml:4: <records>: element applies to format=\"xml\" only");
  EXPECT_EQ(error_of(edit(kFixed, "name=\"expiry\"", "name=\"expiry\" source=\"expiry\"")),
            "p.xml:11: attribute 'expiry': source is for XML records; fixed-width records use "
            "offset and length");
}

TEST(ProfileParserErrorTest, FixedWidthNeedsOffsetAndLength) {
  EXPECT_EQ(error_of(edit(kFixed, " offset=\"29\"", "")),
            "p.xml:11: missing required offset= on <attribute>");
  EXPECT_EQ(error_of(edit(kFixed, " length=\"4\"", "")),
            "p.xml:11: missing required length= on <attribute>");
  EXPECT_EQ(error_of(edit(kFixed, "length=\"4\"", "length=\"0\"")),
            "p.xml:11: attribute 'expiry': length must be a whole number from 1 to 1048576");
  EXPECT_EQ(error_of(edit(kFixed, "record-length=\"64\"", "record-length=\"x\"")),
            "p.xml:4: <records>: record-length must be a whole number from 0 to 1048576");
}

TEST(ProfileParserErrorTest, FixedWidthFieldMustFitTheRecord) {
  EXPECT_EQ(error_of(edit(kFixed, "offset=\"29\"", "offset=\"61\"")),
            "p.xml:11: attribute 'expiry': bytes 61-64 do not fit in record-length 64");
  EXPECT_TRUE(parse_profile(edit(kFixed, "offset=\"29\"", "offset=\"60\""), "p.xml").has_value());
  // Without a record length (one record per line) any offset fits.
  EXPECT_TRUE(parse_profile(edit(edit(kFixed, "offset=\"29\"", "offset=\"500\""),
                                 " record-length=\"64\"", ""),
                            "p.xml")
                  .has_value());
}

TEST(ProfileParserErrorTest, FixedWidthFieldsMustNotOverlap) {
  EXPECT_EQ(error_of(edit(kFixed, "offset=\"29\"", "offset=\"28\"")),
            "p.xml:11: attribute 'expiry' (bytes 28-31) overlaps attribute 'pan' (bytes 10-28, "
            "line 10)");
  EXPECT_EQ(error_of(edit(kFixed, "offset=\"29\"", "offset=\"0\"")),
            "p.xml:11: attribute 'expiry' (bytes 0-3) overlaps attribute 'card_id' (bytes 0-9, "
            "line 9)");
  // One shared byte, the later field ending where the earlier one starts.
  EXPECT_EQ(error_of(edit(edit(kFixed, "offset=\"0\" length=\"10\"", "offset=\"40\" length=\"10\""),
                          "offset=\"29\"", "offset=\"37\"")),
            "p.xml:11: attribute 'expiry' (bytes 37-40) overlaps attribute 'card_id' (bytes 40-49, "
            "line 9)");
  // Adjacent fields and gaps are fine.
  EXPECT_TRUE(parse_profile(edit(kFixed, "offset=\"29\"", "offset=\"40\""), "p.xml").has_value());
}

TEST(ProfileParserErrorTest, FixedWidthLengthLimits) {
  EXPECT_EQ(error_of(edit(kFixed, "type=\"yymm\"", "type=\"yymm\" max-length=\"5\"")),
            "p.xml:11: attribute 'expiry': max-length 5 exceeds the field length 4");
  EXPECT_EQ(error_of(edit(kFixed, "type=\"yymm\"", "type=\"yymm\" min-length=\"5\"")),
            "p.xml:11: attribute 'expiry': min-length 5 exceeds the field length 4");
}

// --- Files --------------------------------------------------------------------------

TEST(LoadProfileTest, ErrorsNameThePathAndLine) {
  test::TempDir dir;
  const auto path = (dir / "bad.xml").string();
  test::write_file(path, edit(kXml, "segment-cards=\"512\"", "segment-cards=\"0\""));
  auto r = load_profile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_EQ(r.error().message(),
            path + ":9: <xof>: segment-cards must be a whole number from 1 to 65536");
}

TEST(LoadProfileTest, MissingFileIsNotFound) {
  test::TempDir dir;
  const auto path = (dir / "absent.xml").string();
  auto r = load_profile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr(path));
}

TEST(LoadProfileTest, DirectoryIsAnIoError) {
  test::TempDir dir;
  auto r = load_profile(dir.path().string());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
}

TEST(LoadProfileTest, OversizedFileIsRefused) {
  test::TempDir dir;
  const auto path = (dir / "huge.xml").string();
  test::write_file(path,
                   std::string(kXml) + "<!--" + std::string(std::size_t{1} << 20, 'x') + "-->\n");
  auto r = load_profile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), path + ": profile larger than 1 MiB");
}

TEST(LoadProfileTest, Sha256MatchesTheFile) {
  test::TempDir dir;
  const auto path = (dir / "p.xml").string();
  test::write_file(path, std::string(kXml));
  auto r = load_profile(path);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->sha256, sha256_of(kXml));
}

}  // namespace
}  // namespace persoflow::config
