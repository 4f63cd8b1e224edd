#include "formats/record_fields.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/record_splitter.h"

namespace persoflow::formats {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::span<const std::uint8_t> span_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text_of(const SecureBytes& b) {
  const auto v = b.reveal();
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

Record record(std::string_view bytes, std::uint64_t number = 3, std::uint64_t offset = 99) {
  return Record{number, offset, SecureBytes(span_of(bytes))};
}

AttributeSpec xml_attr(std::string name, std::string source) {
  AttributeSpec a;
  a.name = std::move(name);
  a.source = std::move(source);
  return a;
}

AttributeSpec fixed_attr(std::string name, std::size_t offset, std::size_t length) {
  AttributeSpec a;
  a.name = std::move(name);
  a.offset = offset;
  a.length = length;
  return a;
}

Profile xml_profile(std::vector<AttributeSpec> attributes) {
  Profile p;
  p.records = {RecordFormat::kXml, "card", 0};
  p.attributes = std::move(attributes);
  return p;
}

Profile fixed_profile(std::vector<AttributeSpec> attributes, std::size_t record_length = 0) {
  Profile p;
  p.records = {RecordFormat::kFixedWidth, "card", record_length};
  p.attributes = std::move(attributes);
  return p;
}

const Profile kCardProfile =
    xml_profile({xml_attr("card_id", "@id"), xml_attr("pan", "pan"), xml_attr("name", "name"),
                 xml_attr("expiry", "exp"), xml_attr("phone", "phone")});

// The value of `name`, or "<absent>".
std::string value_of(const RecordFields& f, std::string_view name) {
  const SecureBytes* v = f.value(name);
  return v == nullptr ? "<absent>" : text_of(*v);
}

// The message of the error extracting `bytes` under `profile`.
std::string error_of(const Profile& profile, std::string_view bytes,
                     ErrorCode code = ErrorCode::kParse) {
  auto r = extract_fields(profile, record(bytes));
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), code) << r.error().message();
  return r.error().message();
}

// ---------------------------------------------------------------------------- XML

TEST(XmlFieldsTest, ElementsAndAttributesTrimmedAndDecoded) {
  auto r =
      extract_fields(kCardProfile, record("<card kind=\"debit\" id=\"\tC-0001\n\">\n"
                                          "  <pan>\n    4000&#49;234&#x31;2341234 \r\n  </pan>\n"
                                          "  <name> A &amp; B &lt;C&gt; O&apos;Neil </name>\n"
                                          "  <exp>2712</exp>\n"
                                          "</card>"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->record_number, 3u);
  EXPECT_EQ(r->record_offset, 99u);
  ASSERT_EQ(r->fields.size(), 5u);
  EXPECT_EQ(r->fields[0].name, "card_id");  // profile order
  EXPECT_EQ(r->fields[4].name, "phone");
  EXPECT_EQ(value_of(*r, "card_id"), "C-0001");
  EXPECT_EQ(value_of(*r, "pan"), "4000123412341234");
  EXPECT_EQ(value_of(*r, "name"), "A & B <C> O'Neil");
  EXPECT_EQ(value_of(*r, "expiry"), "2712");
  EXPECT_EQ(value_of(*r, "phone"), "<absent>");
  ASSERT_NE(r->find("phone"), nullptr);
  EXPECT_FALSE(r->find("phone")->value.has_value());
  EXPECT_EQ(r->find("nothing"), nullptr);
  EXPECT_EQ(r->value("nothing"), nullptr);
}

TEST(XmlFieldsTest, CdataAndCommentsInsideAValue) {
  auto r = extract_fields(
      kCardProfile,
      record("<card><pan> <![CDATA[4000<&>]]>12<!-- note -->34<?pi x?> </pan></card>"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(value_of(*r, "pan"), "4000<&>1234");
}

TEST(XmlFieldsTest, EmptyValuesAreAbsent) {
  auto r = extract_fields(kCardProfile,
                          record("<card id=\"  \"><pan/><name> \n\t </name><exp></exp></card>"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (const char* name : {"card_id", "pan", "name", "expiry", "phone"}) {
    EXPECT_EQ(value_of(*r, name), "<absent>") << name;
  }
}

TEST(XmlFieldsTest, OnlyDirectChildrenOfTheRecordElementCount) {
  auto r = extract_fields(
      kCardProfile, record("<card><extra><pan>1</pan><exp>2</exp></extra><exp>2712</exp></card>"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(value_of(*r, "pan"), "<absent>");
  EXPECT_EQ(value_of(*r, "expiry"), "2712");
}

TEST(XmlFieldsTest, NonAsciiBytesArePassedOnForValidation) {
  auto r = extract_fields(kCardProfile, record("<card><name>Jos\xC3\xA9 \xFF</name></card>"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(value_of(*r, "name"), "Jos\xC3\xA9 \xFF");
}

TEST(XmlFieldsTest, RepeatedElementIsAnError) {
  EXPECT_EQ(error_of(kCardProfile, "<card><pan>1</pan><name>x</name><pan>2</pan></card>"),
            "record 3 at byte 99: element <pan> appears 2 times; at most once is allowed");
}

TEST(XmlFieldsTest, RepeatedAttributeIsAnError) {
  EXPECT_EQ(error_of(kCardProfile, "<card id=\"1\" kind=\"x\" id=\"2\"/>"),
            "record 3 at byte 99: attribute id of <card> appears 2 times");
}

TEST(XmlFieldsTest, ElementHoldingElementsIsAnError) {
  EXPECT_EQ(error_of(kCardProfile, "<card><name><first>A</first></name></card>"),
            "record 3 at byte 99: element <name> holds elements instead of text");
}

TEST(XmlFieldsTest, NotWellFormedRecordNamesPugixmlsReasonAndOffset) {
  const std::string bad = "<card><pan>1</pan><name>x</nmae></card>";
  const std::string msg = error_of(kCardProfile, bad);
  EXPECT_THAT(msg, StartsWith("record 3 at byte 99: not well-formed XML: "));
  EXPECT_THAT(msg, HasSubstr("tag"));  // pugixml: "Start-end tags mismatch"
  EXPECT_THAT(msg, HasSubstr(" of the record"));
  for (const char* other : {"<card><pan>1</pan>", "<card a=1/>", "<card><pan>1</pan></cards>",
                            "<card><pan>1</pan></card><x>", "<card x=\"1>"}) {
    EXPECT_THAT(error_of(kCardProfile, other), HasSubstr(": not well-formed XML: ")) << other;
  }
}

TEST(XmlFieldsTest, NulByteIsRefused) {
  constexpr char kBytes[] =
      "<card><pan>12\0"
      "34</pan></card>";
  const std::string bytes(kBytes, sizeof(kBytes) - 1);
  EXPECT_EQ(error_of(kCardProfile, bytes),
            "record 3 at byte 99: a NUL byte at byte 13 of the record");
}

TEST(XmlFieldsTest, RecordMustBeOneRecordElement) {
  EXPECT_EQ(error_of(kCardProfile, "<other><pan>1</pan></other>"),
            "record 3 at byte 99: the record is not one <card> element");
  for (const char* other : {"<card/><card/>", "<card/>junk", "junk<card/>", "", " <card/>"}) {
    EXPECT_EQ(error_of(kCardProfile, other),
              "record 3 at byte 99: the record is not one <card> element")
        << other;
  }
}

TEST(XmlFieldsTest, AttributeWithoutSourceIsAProfileError) {
  for (const char* source : {"", "@"}) {
    const std::string msg =
        error_of(xml_profile({xml_attr("pan", source)}), "<card/>", ErrorCode::kInvalidArgument);
    EXPECT_EQ(msg, "profile attribute pan: no source element or attribute") << source;
  }
}

// A malformed record is rejected alone; its neighbours split and parse.
TEST(XmlFieldsTest, MalformedRecordRejectedAloneWhileItsNeighboursParse) {
  const std::string r1 = "<card id=\"1\"><pan>4000000000000001</pan></card>";
  const std::string r2 = "<card id=\"2\"><pan>4929173650812377</pan><name>x</nmae></card>";
  const std::string r3 = "<card id=\"3\"><pan>4000000000000003</pan></card>";
  const std::string doc = "<batch>\n" + r1 + "\n" + r2 + "\n" + r3 + "\n</batch>\n";
  auto s = RecordSplitter::create(kCardProfile.records);
  ASSERT_TRUE(s.has_value());
  for (std::size_t i = 0; i < doc.size(); i += 5)
    s->feed(span_of(std::string_view(doc).substr(i, 5)));
  s->finish();
  std::vector<Result<RecordFields>> results;
  while (auto item = s->next()) {
    ASSERT_TRUE(std::holds_alternative<Record>(*item)) << std::get<RecordError>(*item).reason;
    results.push_back(extract_fields(kCardProfile, std::get<Record>(*item)));
  }
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].has_value()) << results[0].error().message();
  EXPECT_EQ(value_of(*results[0], "pan"), "4000000000000001");
  ASSERT_FALSE(results[1].has_value());
  const std::string msg = results[1].error().message();
  EXPECT_THAT(msg, StartsWith("record 2 at byte " + std::to_string(doc.find(r2)) +
                              ": not well-formed XML: "));
  EXPECT_THAT(msg, Not(HasSubstr("4929")));
  ASSERT_TRUE(results[2].has_value()) << results[2].error().message();
  EXPECT_EQ(value_of(*results[2], "pan"), "4000000000000003");
  EXPECT_EQ(results[2]->record_number, 3u);
  EXPECT_EQ(results[2]->record_offset, doc.find(r3));
}

// ------------------------------------------- the common shape and the pugixml path

TEST(XmlFieldsTest, RecordsOfTheCommonShapeAreReadWithoutADom) {
  const Profile& p = kCardProfile;
  for (const char* simple : {
           "<card id=\"C-1\"><pan>4000123412341234</pan><name>A B</name><exp>2712</exp></card>",
           "<card kind='x' id=\" C-1 \">\n  <pan> 4000 </pan>\n  <phone/>\n  <exp />\n</card>",
           "<card\n id=\"1\" />",
           "<card></card>",
       }) {
    EXPECT_TRUE(xml_record_has_common_shape(p, record(simple))) << simple;
  }
  for (const char* other : {
           "<card id=\"a&amp;b\"/>",                   // an entity
           "<card id=\"a\tb\"/>",                     // a tab pugixml turns into a space
           "<card><pan>1\r\n2</pan></card>",          // a line end pugixml normalizes
           "<card><pan a=\"1\">1</pan></card>",        // an attribute on a child
           "<card><pan><x>1</x></pan></card>",         // an element inside a child
           "<card><!-- c --><pan>1</pan></card>",      // a comment
           "<card><pan>1</pan><pan>2</pan></card>",    // a source element twice
           "<card id=\"1\" id=\"2\"/>",                // a source attribute twice
           "<card><pan>1</pan ></card>",               // an end tag with a space
           "<card><pan>1</pna></card>",                // malformed
       }) {
    EXPECT_FALSE(xml_record_has_common_shape(p, record(other))) << other;
  }
}

// Random records, well-formed or not, near the common shape: extract_fields (the
// one-pass reader where it applies) and the pugixml path give the same values, or the
// same error.
TEST(XmlFieldsTest, CommonShapeReaderAgreesWithPugixmlOnRandomRecords) {
  const Profile p = xml_profile({xml_attr("card_id", "@id"), xml_attr("kind", "@kind"), xml_attr("pan", "pan"),
                                 xml_attr("name", "name"), xml_attr("expiry", "exp"), xml_attr("dotted", "x.y"),
                                 xml_attr("dashed", "@a-b"), xml_attr("phone", "phone")});
  std::mt19937 rng(20261122);
  auto pick = [&](const std::vector<std::string>& v) -> const std::string& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  auto chance = [&](int percent) { return std::uniform_int_distribution<int>(0, 99)(rng) < percent; };
  const std::vector<std::string> names = {"pan", "name", "exp", "phone", "x.y", "extra", "a-b", "_u",
                                          "id",  "kind", "9x",  "x:y",   "\xC3\xA9t", "card", "cards"};
  const std::vector<std::string> attr_names = {"id", "kind", "a-b", "x", "id", "kind", "x:y", "9x", "_z"};
  const std::vector<std::string> text = {"4000123412341234", "4000123412341234", " ", "\t", "\n", "\r\n", "\r",
                                         "&amp;", "&#49;", "&bogus;", "&", "<", ">", "'", "\"", "]]>",
                                         "\xC3\xA9", "A B", "x", "", "", "="};
  // Half the records draw their text only from characters both paths read as they are.
  const std::vector<std::string> clean_text = {"4000123412341234", " ", "A B", "x", "'", "\"", ">",
                                               "]]>", "\xC3\xA9", "=", "", "/"};
  const std::vector<std::string> spaces = {" ", " ", " ", "", "\n", "\t", "  ", "\r\n"};
  bool clean = false;
  auto some_text = [&](int parts) {
    std::string t;
    const int n = std::uniform_int_distribution<int>(0, parts)(rng);
    for (int i = 0; i < n; ++i) t += pick(clean ? clean_text : text);
    return t;
  };
  std::size_t common = 0;
  constexpr int kRecords = 30000;
  for (int round = 0; round < kRecords; ++round) {
    clean = chance(50);
    std::string r = chance(97) ? "<card" : pick({"<cards", "< card", "<x.card", "<card:x"});
    const int attributes = std::uniform_int_distribution<int>(0, 4)(rng);
    for (int i = 0; i < attributes; ++i) {
      r += chance(92) ? pick(spaces) : "";
      r += pick(attr_names);
      r += chance(90) ? "=" : pick({" =", "= ", " = "});
      const char quote = chance(70) ? '"' : '\'';
      std::string v = some_text(3);
      if (chance(80)) v.erase(std::remove(v.begin(), v.end(), quote), v.end());
      r += chance(97) ? std::string(1, quote) + v + quote : v;
    }
    if (chance(8)) {
      r += pick({"/>", " />", "/ >"});
    } else {
      r += chance(90) ? ">" : " >";
      const int children = std::uniform_int_distribution<int>(0, 6)(rng);
      for (int i = 0; i < children; ++i) {
        r += chance(50) ? pick(spaces) : "";
        const std::string& n = pick(names);
        switch (std::uniform_int_distribution<int>(clean ? 10 : 0, 19)(rng)) {
          case 0:
            r += "<" + n + "/>";
            break;
          case 1:
            r += "<" + n + " />";
            break;
          case 2:
            r += "<" + n + " a=\"1\">" + some_text(2) + "</" + n + ">";
            break;
          case 3:
            r += "<" + n + ">" + some_text(2) + "</" + pick(names) + ">";
            break;
          case 4:
            r += "<" + n + ">" + some_text(1) + "<sub>" + some_text(1) + "</sub></" + n + ">";
            break;
          case 5:
            r += "<" + n + "><![CDATA[" + some_text(2) + "]]></" + n + ">";
            break;
          case 6:
            r += pick({"<!-- c -->", "<?pi x?>", "<!DOCTYPE x>", "<!x>"});
            break;
          case 7:
            r += some_text(2);
            break;
          case 8:
            r += "<" + n + ">" + some_text(2) + "</" + n + " >";
            break;
          case 9:
            r += "<" + n + ">" + some_text(2);  // left open
            break;
          default: {
            std::string t = some_text(3);
            if (chance(70)) t.erase(std::remove(t.begin(), t.end(), '<'), t.end());
            r += "<" + n + ">" + t + "</" + n + ">";
          }
        }
      }
      r += chance(50) ? pick(spaces) : "";
      r += chance(94) ? std::string("</card>") : pick({"</card >", "</cards>", "", "</card><x>", "</card>x"});
    }
    const Record rec = record(r, 7, 1234);
    common += xml_record_has_common_shape(p, rec) ? 1 : 0;
    const auto fast = extract_fields(p, rec);
    const auto dom = extract_xml_fields_with_dom(p, rec);
    ASSERT_EQ(fast.has_value(), dom.has_value())
        << r << "\n" << (fast ? dom.error().message() : fast.error().message());
    if (!fast) {
      EXPECT_EQ(fast.error().code(), dom.error().code()) << r;
      EXPECT_EQ(fast.error().message(), dom.error().message()) << r;
      continue;
    }
    ASSERT_EQ(fast->fields.size(), dom->fields.size());
    EXPECT_EQ(fast->record_number, 7u);
    EXPECT_EQ(fast->record_offset, 1234u);
    for (std::size_t i = 0; i < fast->fields.size(); ++i) {
      EXPECT_EQ(fast->fields[i].name, dom->fields[i].name);
      ASSERT_EQ(fast->fields[i].value.has_value(), dom->fields[i].value.has_value()) << r << "\n" << i;
      if (fast->fields[i].value) {
        ASSERT_EQ(text_of(*fast->fields[i].value), text_of(*dom->fields[i].value)) << r << "\n" << i;
      }
    }
  }
  // Both paths were exercised.
  EXPECT_GT(common, kRecords / 10u);
  EXPECT_LT(common, kRecords * 9u / 10u);
}

// ---------------------------------------------------------------------- fixed width

const Profile kFixedProfile = fixed_profile(
    {fixed_attr("pan", 0, 19), fixed_attr("name", 19, 12), fixed_attr("expiry", 31, 4),
     fixed_attr("title", 35, 6), fixed_attr("note", 41, 5)});

TEST(FixedWidthFieldsTest, FieldsAreRightTrimmedOfSpaces) {
  //                      0                  19          31  35    41
  auto r =
      extract_fields(kFixedProfile, record("4000123412341234      JOHN SMITH  2712      \t x  "));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(value_of(*r, "pan"), "4000123412341234");
  EXPECT_EQ(value_of(*r, "name"), "   JOHN SMIT");  // leading spaces kept, cut at width
  EXPECT_EQ(value_of(*r, "expiry"), "H  2");
  EXPECT_EQ(value_of(*r, "title"), "712");
  EXPECT_EQ(value_of(*r, "note"), "   \t");
}

TEST(FixedWidthFieldsTest, BlankAndMissingFieldsAreAbsentAndShortLinesCut) {
  const std::string line = "4000123412341234   " + std::string(12, ' ') + "27";
  auto r = extract_fields(kFixedProfile, record(line));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(value_of(*r, "pan"), "4000123412341234");
  EXPECT_EQ(value_of(*r, "name"), "<absent>");   // all spaces
  EXPECT_EQ(value_of(*r, "expiry"), "27");       // cut at the end of the line
  EXPECT_EQ(value_of(*r, "title"), "<absent>");  // starts past the end
  EXPECT_EQ(value_of(*r, "note"), "<absent>");
}

TEST(FixedWidthFieldsTest, ZeroWidthIsAProfileError) {
  EXPECT_EQ(error_of(fixed_profile({fixed_attr("pan", 0, 0)}), "1234", ErrorCode::kInvalidArgument),
            "profile attribute pan: no width");
}

TEST(FixedWidthFieldsTest, SplitAndExtractFixedLengthRecords) {
  const Profile p = fixed_profile({fixed_attr("id", 0, 4), fixed_attr("pan", 4, 6)}, 10);
  auto s = RecordSplitter::create(p.records);
  ASSERT_TRUE(s.has_value());
  s->feed(span_of("0001123456\r\n0002654321\r\n"));
  s->finish();
  std::vector<std::string> ids;
  while (auto item = s->next()) {
    ASSERT_TRUE(std::holds_alternative<Record>(*item));
    auto f = extract_fields(p, std::get<Record>(*item));
    ASSERT_TRUE(f.has_value()) << f.error().message();
    ids.push_back(value_of(*f, "id") + ":" + value_of(*f, "pan"));
  }
  EXPECT_THAT(ids, ::testing::ElementsAre("0001:123456", "0002:654321"));
}

// ----------------------------------------------------------- no content in messages

TEST(FieldMessagesTest, ErrorsQuoteNoRecordContent) {
  const std::string pan = "4929173650812377";
  const std::string name = "ZYXWQUINTAVALLE";
  const std::vector<std::string> bad = {
      "<card><pan>" + pan + "</pan><pan>" + pan + "</pan></card>",
      "<card id='" + pan + "' id='" + name + "'/>",
      "<card><pan>" + pan + "</pan><name><x>" + name + "</x></name></card>",
      "<card><pan>" + pan + "</pan><name>" + name + "</nmae></card>",
      "<card><pan " + name + "=" + pan + "/></card>",
      "<card><" + name + ">" + pan + "</card>",
      "<" + name + "><pan>" + pan + "</pan></" + name + ">",
      "<card><pan>" + pan + std::string(1, '\0') + name + "</pan></card>",
  };
  for (const auto& bytes : bad) {
    const std::string msg = error_of(kCardProfile, bytes);
    EXPECT_THAT(msg, StartsWith("record 3 at byte 99: "));
    for (const std::string& secret : {pan, name}) {
      for (std::size_t k = 0; k + 6 <= secret.size(); ++k) {
        EXPECT_THAT(msg, Not(HasSubstr(secret.substr(k, 6)))) << msg;
      }
    }
  }
}

}  // namespace
}  // namespace persoflow::formats
