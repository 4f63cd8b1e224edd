#include "formats/record_splitter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace persoflow::formats {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::span<const std::uint8_t> span_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text_of(const SecureBytes& b) {
  const auto v = b.reveal();
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

// A SplitItem flattened for comparison: a record's bytes, or an error's reason.
struct Item {
  bool record = true;
  std::uint64_t number = 0;
  std::uint64_t offset = 0;
  std::string text;
  bool operator==(const Item&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Item& i) {
  return os << (i.record ? "record " : "error ") << i.number << " @" << i.offset << " '" << i.text
            << "'";
}

Item rec(std::uint64_t number, std::uint64_t offset, std::string bytes) {
  return {true, number, offset, std::move(bytes)};
}
Item err(std::uint64_t number, std::uint64_t offset, std::string reason) {
  return {false, number, offset, std::move(reason)};
}

Item flatten(const SplitItem& item) {
  if (const auto* r = std::get_if<Record>(&item))
    return rec(r->number, r->offset, text_of(r->bytes));
  const auto& e = std::get<RecordError>(item);
  return err(e.number, e.offset, e.reason);
}

void drain(RecordSplitter& s, std::vector<Item>& out) {
  while (auto item = s.next()) out.push_back(flatten(*item));
}

// Splits `input` fed in chunks whose sizes come from `next_size`.
template <typename NextSize>
std::vector<Item> split_with(const RecordLayout& layout, std::string_view input, NextSize next_size,
                             SplitterLimits limits = {}) {
  auto s = RecordSplitter::create(layout, limits);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  std::vector<Item> out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    const std::size_t n = std::min(next_size(), input.size() - pos);
    s->feed(span_of(input.substr(pos, n)));
    pos += n;
    EXPECT_EQ(s->bytes_fed(), pos);
    drain(*s, out);
  }
  s->finish();
  drain(*s, out);
  EXPECT_FALSE(s->next().has_value());
  return out;
}

std::vector<Item> split(const RecordLayout& layout, std::string_view input, std::size_t chunk,
                        SplitterLimits limits = {}) {
  return split_with(
      layout, input, [chunk] { return chunk; }, limits);
}

std::vector<Item> split_random(const RecordLayout& layout, std::string_view input,
                               std::uint32_t seed, SplitterLimits limits = {}) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> size(1, 97);
  return split_with(
      layout, input, [&] { return size(rng); }, limits);
}

// Every chunking gives the same items as feeding the whole input at once.
std::vector<Item> split_every_way(const RecordLayout& layout, std::string_view input,
                                  SplitterLimits limits = {}) {
  const std::vector<Item> whole = split(layout, input, input.size() + 1, limits);
  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                            std::size_t{64}, std::size_t{65536}}) {
    EXPECT_EQ(split(layout, input, chunk, limits), whole) << "chunks of " << chunk;
  }
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    EXPECT_EQ(split_random(layout, input, seed, limits), whole) << "random chunks, seed " << seed;
  }
  return whole;
}

const RecordLayout kXml{RecordFormat::kXml, "card", 0};
RecordLayout fixed(std::size_t length) { return {RecordFormat::kFixedWidth, "card", length}; }

// ------------------------------------------------------------------------------ XML

// Records exercising the scanner: quoted '>' and '</card>' in attribute values, a
// self-closing record, a nested <card>, '</card>' inside CDATA, a comment and a PI.
const std::string kRec1 =
    "<card id=\"c1\" note='a>b' x=\"</card>\"><pan>4000000000000001</pan></card>";
const std::string kRec2 = "<card id=\"c2\"/>";
const std::string kRec3 =
    "<card id=\"c3\"><extra><card>inner</card><card/></extra>"
    "<pan><![CDATA[]></card>] ]>]]]></pan><!-- -> </card> - > -- --><?pi ?</card>?></card>";
const std::string kRec4 = "<card\n  id=\"c4\"\n><name>A &amp; B</name></card >";

const std::string kDocument =
    "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!-- issuer batch <card>not a record</card> -->\n"
    "<?producer x=\"<card>\"?>\n"
    "<batch id=\"b>1\" note='<card>'>\n  " +
    kRec1 + "\n  <!-- <card id=\"fake\"> -->\n  " + kRec2 +
    "\n  <![CDATA[ <card>not a record</card> ]]>\n  " + kRec3 +
    "\n  stray text is ignored\n  <header><card>not a record</card></header>\n  " + kRec4 +
    "\n</batch>\n<!-- trailer -->\n";

TEST(XmlSplitterTest, SplitsRecordsWithExactBytesAndOffsets) {
  const auto items = split(kXml, kDocument, kDocument.size());
  EXPECT_THAT(
      items, ElementsAre(rec(1, kDocument.find(kRec1), kRec1), rec(2, kDocument.find(kRec2), kRec2),
                         rec(3, kDocument.find(kRec3), kRec3),
                         err(0, kDocument.find("<header>"),
                             "an element other than <card> between records; skipped"),
                         rec(4, kDocument.find(kRec4), kRec4)));
}

TEST(XmlSplitterTest, SameOutputWhateverTheChunking) {
  const auto items = split_every_way(kXml, kDocument);
  EXPECT_EQ(items.size(), 5u);
}

// Names beyond the 256 bytes the scanner keeps (it keeps 257: enough to tell them from
// any valid record element name), in and between records, whatever the chunking.
TEST(XmlSplitterTest, LongNamesInAndBetweenRecords) {
  const std::string root(300, 'r');
  const std::string child(300, 'x');
  const std::string r1 = "<card id=\"1\"><" + child + ">v</" + child + "><" + child + "/></card>";
  const std::string r2 = "<card><" + child + " a='1'>v</" + child + "\n></card>";
  const std::string doc = "<" + root + ">" + r1 + "<" + child + ">t</" + child + ">" + r2 + "</" + root + ">";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(rec(1, doc.find(r1), r1),
                          err(0, doc.find("<" + child + ">t"), "an element other than <card> between records; skipped"),
                          rec(2, doc.find(r2), r2)));
}

TEST(XmlSplitterTest, SelfClosingRecords) {
  const std::string doc = "<r><card/><card a=\"/>\" /><card\tb='1'/></r>";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(rec(1, 3, "<card/>"), rec(2, 10, "<card a=\"/>\" />"),
                          rec(3, 25, "<card\tb='1'/>")));
}

TEST(XmlSplitterTest, NestedSameNameElementsStayInTheirRecord) {
  const std::string r1 = "<card><card><card>x</card></card><card/></card>";
  const std::string r2 = "<card>y</card>";
  const std::string doc = "<r>" + r1 + r2 + "</r>";
  EXPECT_THAT(split_every_way(kXml, doc), ElementsAre(rec(1, 3, r1), rec(2, 3 + r1.size(), r2)));
}

TEST(XmlSplitterTest, RecordsAreOnlyDirectChildrenOfTheRoot) {
  const std::string doc = "<r><group><card>a</card></group><card>b</card></r>";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(err(0, 3, "an element other than <card> between records; skipped"),
                          rec(1, doc.find("<card>b"), "<card>b</card>")));
}

TEST(XmlSplitterTest, RecordElementIsMatchedByWholeName) {
  const std::string doc = "<r><cards/><card:x/><cardholder>z</cardholder><card>ok</card></r>";
  const auto items = split_every_way(kXml, doc);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_FALSE(items[0].record);
  EXPECT_FALSE(items[1].record);
  EXPECT_FALSE(items[2].record);
  EXPECT_EQ(items[3], rec(1, doc.find("<card>ok"), "<card>ok</card>"));
}

TEST(XmlSplitterTest, CrlfDocument) {
  const std::string r1 = "<card id=\"1\">\r\n  <pan>1</pan>\r\n</card>";
  const std::string doc = "<?xml version=\"1.0\"?>\r\n<r>\r\n" + r1 + "\r\n<card/>\r\n</r>\r\n";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(rec(1, doc.find(r1), r1), rec(2, doc.find("<card/>"), "<card/>")));
}

TEST(XmlSplitterTest, RecordsComeOutAsSoonAsTheyAreComplete) {
  auto s = RecordSplitter::create(kXml);
  ASSERT_TRUE(s.has_value());
  s->feed(span_of("<r><card>12"));
  EXPECT_FALSE(s->next().has_value());
  EXPECT_EQ(s->buffered_bytes(), 8u);  // "<card>12"
  s->feed(span_of("34</card><ca"));
  auto item = s->next();
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(flatten(*item), rec(1, 3, "<card>1234</card>"));
  EXPECT_FALSE(s->next().has_value());
  s->feed(span_of("rd/></r>"));
  ASSERT_TRUE((item = s->next()).has_value());
  EXPECT_EQ(flatten(*item), rec(2, 20, "<card/>"));
  s->finish();
  EXPECT_FALSE(s->next().has_value());
  EXPECT_EQ(s->buffered_bytes(), 0u);
}

TEST(XmlSplitterTest, OversizedRecordIsSkippedAndTheNextOneYielded) {
  const std::string big = "<card><pan>" + std::string(300, '7') + "</pan></card>";
  const std::string small = "<card><pan>1</pan></card>";
  const std::string doc = "<r>" + small + big + small + "</r>";
  const SplitterLimits limits{.max_record_bytes = 100};
  EXPECT_THAT(split_every_way(kXml, doc, limits),
              ElementsAre(rec(1, 3, small),
                          err(2, 3 + small.size(), "larger than the limit of 100 bytes; skipped"),
                          rec(3, 3 + small.size() + big.size(), small)));
}

TEST(XmlSplitterTest, RecordOfExactlyTheLimitIsAccepted) {
  const std::string r = "<card>" + std::string(87, 'x') + "</card>";  // 100 bytes
  ASSERT_EQ(r.size(), 100u);
  EXPECT_THAT(split_every_way(kXml, "<r>" + r + "</r>", {.max_record_bytes = 100}),
              ElementsAre(rec(1, 3, r)));
  EXPECT_THAT(split_every_way(kXml, "<r>" + r + "</r>", {.max_record_bytes = 99}),
              ElementsAre(err(1, 3, "larger than the limit of 99 bytes; skipped")));
}

TEST(XmlSplitterTest, UnterminatedFinalRecord) {
  const std::string doc = "<r><card>a</card><card><pan>12";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(rec(1, 3, "<card>a</card>"),
                          err(2, 17, "unterminated: the stream ends before </card>")));
}

TEST(XmlSplitterTest, StreamEndingInsideMarkupOutsideRecords) {
  EXPECT_THAT(split_every_way(kXml, "<r><card/><!-- x"),
              ElementsAre(rec(1, 3, "<card/>"), err(0, 10, "the stream ends inside a comment")));
  EXPECT_THAT(split_every_way(kXml, "<r><card/></r"),
              ElementsAre(rec(1, 3, "<card/>"), err(0, 10, "the stream ends inside a tag")));
  EXPECT_THAT(split_every_way(kXml, "<r><card/>"),
              ElementsAre(rec(1, 3, "<card/>"),
                          err(0, 10, "the stream ends before the root element is closed")));
}

TEST(XmlSplitterTest, RecordCutByTheEndOfTheRoot) {
  const std::string doc = "<r><card><pan>1</pan></r><!-- -->";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(err(1, 3, "unterminated: the root element ends before </card>")));
}

TEST(XmlSplitterTest, UnclosedChildEndsAtTheRecordEndTag) {
  // Not well-formed (pugixml rejects it later), but its neighbours are unaffected.
  const std::string bad = "<card><pan>1</card>";
  const std::string good = "<card><pan>2</pan></card>";
  const std::string doc = "<r>" + bad + good + "</r>";
  EXPECT_THAT(split_every_way(kXml, doc),
              ElementsAre(rec(1, 3, bad), rec(2, 3 + bad.size(), good)));
}

TEST(XmlSplitterTest, TooDeepRecordIsAnError) {
  std::string deep = "<card>";
  for (int i = 0; i < 5; ++i) deep += "<a>";
  for (int i = 0; i < 5; ++i) deep += "</a>";
  deep += "</card>";
  const std::string doc = "<r>" + deep + "<card/></r>";
  EXPECT_THAT(split_every_way(kXml, doc, {.max_record_depth = 5}),
              ElementsAre(err(1, 3, "elements nested deeper than 5 levels; skipped"),
                          rec(2, 3 + deep.size(), "<card/>")));
  EXPECT_THAT(split_every_way(kXml, doc, {.max_record_depth = 6}),
              ElementsAre(rec(1, 3, deep), rec(2, 3 + deep.size(), "<card/>")));
}

TEST(XmlSplitterTest, PrologProblemsAreReportedAndSkipped) {
  const std::string doc =
      "junk<!DOCTYPE r [<!ENTITY e \"<card>]>\">]><r><card/></r>trailing<extra><card/></extra>";
  EXPECT_THAT(
      split_every_way(kXml, doc),
      ElementsAre(err(0, 0, "text before the root element"),
                  err(0, 4, "DOCTYPE declarations are not accepted; skipped"),
                  rec(1, doc.find("<card/>"), "<card/>"),
                  err(0, doc.find("trailing"), "text after the root element"),
                  err(0, doc.find("<extra>"), "an element after the root element; skipped")));
}

TEST(XmlSplitterTest, MalformedMarkupBetweenRecords) {
  const std::string doc = "<r><card/>< x <!x <card/></oops></r>";
  EXPECT_THAT(
      split_every_way(kXml, doc),
      ElementsAre(rec(1, 3, "<card/>"),
                  err(0, 10, "'<' that starts no tag, comment or declaration"),
                  err(0, 14, "'<!' that starts no comment, CDATA section or DOCTYPE"),
                  rec(2, 18, "<card/>"), err(0, 25, "an end tag that closes no open element")));
}

TEST(XmlSplitterTest, EmptyStreamHasNoRootElement) {
  EXPECT_THAT(split(kXml, "", 1), ElementsAre(err(0, 0, "no root element")));
  EXPECT_THAT(split_every_way(kXml, " \n<!-- only -->\n"),
              ElementsAre(err(0, 16, "no root element")));
}

TEST(XmlSplitterTest, RootThatIsTheRecordElementIsReported) {
  const auto items = split_every_way(kXml, "<card><pan>1</pan></card>");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0], err(0, 0,
                          "the root element is <card>, the record element; records must be "
                          "children of a root element"));
  EXPECT_FALSE(items[1].record);  // <pan> is no record
}

TEST(XmlSplitterTest, OtherRecordElementNamesAndNamespacePrefixes) {
  const RecordLayout layout{RecordFormat::kXml, "p:Card", 0};
  const std::string doc = "<p:Batch xmlns:p=\"urn:x\"><p:Card n=\"1\"/><Card/></p:Batch>";
  EXPECT_THAT(split_every_way(layout, doc),
              ElementsAre(rec(1, 25, "<p:Card n=\"1\"/>"),
                          err(0, 40, "an element other than <p:Card> between records; skipped")));
}

TEST(XmlSplitterTest, InvalidConfigurationIsRefused) {
  for (const char* name : {"", "1card", "card id", "ca<rd", "card>"}) {
    auto s = RecordSplitter::create({RecordFormat::kXml, name, 0});
    ASSERT_FALSE(s.has_value()) << name;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(RecordSplitter::create(kXml, {.max_record_bytes = 0}).has_value());
  EXPECT_FALSE(RecordSplitter::create(fixed(101), {.max_record_bytes = 100}).has_value());
  EXPECT_TRUE(RecordSplitter::create(fixed(100), {.max_record_bytes = 100}).has_value());
}

TEST(XmlSplitterTest, FeedAfterFinishIsABug) {
  auto s = RecordSplitter::create(kXml);
  ASSERT_TRUE(s.has_value());
  s->finish();
  EXPECT_TRUE(s->finished());
  EXPECT_THROW(s->feed(span_of("<r/>")), std::logic_error);
}

TEST(RecordErrorTest, ToErrorNamesRecordAndOffset) {
  const Error e = RecordError{7, 1234, "wrong length: 3 bytes, expected 10"}.to_error();
  EXPECT_EQ(e.code(), ErrorCode::kParse);
  EXPECT_EQ(e.message(), "record 7 at byte 1234: wrong length: 3 bytes, expected 10");
  const RecordError outside{0, 5, "no root element"};
  EXPECT_EQ(outside.to_error().message(), "at byte 5: no root element");
}

// ---------------------------------------------------------------------- fixed width

TEST(FixedWidthSplitterTest, LinesWithLfAndCrlf) {
  const std::string doc = "AAAA  1\nBBBB 22\r\nCC\r\n\nDDDD\r\n";
  EXPECT_THAT(split_every_way(fixed(0), doc),
              ElementsAre(rec(1, 0, "AAAA  1"), rec(2, 8, "BBBB 22"), rec(3, 17, "CC"),
                          rec(4, 22, "DDDD")));
}

TEST(FixedWidthSplitterTest, LastLineWithoutLineEndAndTrailingEmptyLines) {
  EXPECT_THAT(split_every_way(fixed(0), "AB\nCD"), ElementsAre(rec(1, 0, "AB"), rec(2, 3, "CD")));
  EXPECT_THAT(split_every_way(fixed(0), "AB\r\n\r\n\n"), ElementsAre(rec(1, 0, "AB")));
  EXPECT_THAT(split_every_way(fixed(0), "AB\r"), ElementsAre(rec(1, 0, "AB")));
  EXPECT_THAT(split_every_way(fixed(0), ""), ElementsAre());
}

TEST(FixedWidthSplitterTest, LoneCrIsData) {
  EXPECT_THAT(split_every_way(fixed(0), "A\rB\nC\r\r\n"),
              ElementsAre(rec(1, 0, "A\rB"), rec(2, 4, "C\r")));
}

TEST(FixedWidthSplitterTest, FixedLengthLinesOfWrongLength) {
  const std::string doc =
      "0123456789\r\n"    // 1 ok
      "012345678\r\n"     // 2 short
      "0123456789AB\r\n"  // 3 long
      "ABCDEFGHIJ\r\n"    // 4 ok
      "\r\n"              // empty line: not a record
      "abcdefghij";       // 5 ok, no line end
  EXPECT_THAT(split_every_way(fixed(10), doc),
              ElementsAre(rec(1, 0, "0123456789"), err(2, 12, "wrong length: 9 bytes, expected 10"),
                          err(3, 23, "wrong length: 12 bytes, expected 10"),
                          rec(4, doc.find("ABCDEFGHIJ"), "ABCDEFGHIJ"),
                          rec(5, doc.find("abcdefghij"), "abcdefghij")));
}

TEST(FixedWidthSplitterTest, ShortFirstLineStillMeansLines) {
  EXPECT_THAT(split_every_way(fixed(4), "abc\nABCD\n"),
              ElementsAre(err(1, 0, "wrong length: 3 bytes, expected 4"), rec(2, 4, "ABCD")));
}

TEST(FixedWidthSplitterTest, RecordsWithoutSeparators) {
  EXPECT_THAT(
      split_every_way(fixed(4), "AAAABBBB\r\nCCCCDDDD\n\nEE"),
      ElementsAre(rec(1, 0, "AAAA"), rec(2, 4, "BBBB"), rec(3, 10, "CCCC"), rec(4, 14, "DDDD"),
                  err(5, 20, "wrong length: 2 bytes, expected 4 (the stream ends inside it)")));
  EXPECT_THAT(split_every_way(fixed(4), "AAAA\rBBB\n"),
              ElementsAre(rec(1, 0, "AAAA"), rec(2, 4, "\rBBB")));
  EXPECT_THAT(split_every_way(fixed(3), "AAABB\nCCC"),
              ElementsAre(rec(1, 0, "AAA"), err(2, 3, "wrong length: 2 bytes, expected 3"),
                          rec(3, 6, "CCC")));
  EXPECT_THAT(split_every_way(fixed(1), "abc"),
              ElementsAre(rec(1, 0, "a"), rec(2, 1, "b"), rec(3, 2, "c")));
}

TEST(FixedWidthSplitterTest, UnterminatedFinalRecordOfWrongLength) {
  EXPECT_THAT(split_every_way(fixed(5), "ABCDE\nFG"),
              ElementsAre(rec(1, 0, "ABCDE"), err(2, 6, "wrong length: 2 bytes, expected 5")));
}

TEST(FixedWidthSplitterTest, OverlongLineIsSkipped) {
  const std::string doc = "short\n" + std::string(50, 'x') + "\r\nnext\n";
  EXPECT_THAT(
      split_every_way(fixed(0), doc, {.max_record_bytes = 20}),
      ElementsAre(rec(1, 0, "short"), err(2, 6, "longer than the limit of 20 bytes; skipped"),
                  rec(3, 58, "next")));
}

// --------------------------------------------------------------------- memory bound

// Feeds a generated XML stream of about 50 MB in 64 KiB chunks, never holding it whole:
// after each feed the splitter holds at most the records of that chunk plus one partial
// record, and every record's number and offset are the ones the generator wrote.
TEST(SplitterMemoryTest, FiftyMegabytesInSixtyFourKibChunks) {
  constexpr std::size_t kChunk = 64 * 1024;
  constexpr std::size_t kTarget = 50 * 1000 * 1000;
  constexpr std::size_t kLimit = 16 * 1024;
  auto s = RecordSplitter::create(kXml, {.max_record_bytes = kLimit});
  ASSERT_TRUE(s.has_value());

  struct Expected {
    std::uint64_t offset;
    bool oversized;
  };
  std::vector<Expected> expected;  // 16 bytes per record: bounded by the test, not the splitter
  std::string pending = "<?xml version=\"1.0\"?>\n<batch>\n";
  std::uint64_t written = 0;
  bool closed = false;
  std::uint64_t good = 0, oversized = 0;
  std::size_t max_buffered = 0, max_record = 0;
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::size_t> filler(0, 3000);

  auto take = [&](std::vector<Item>* sink) {
    while (auto item = s->next()) {
      const Item i = flatten(*item);
      ASSERT_LE(i.number, expected.size());
      const Expected& e = expected[i.number - 1];
      EXPECT_EQ(i.offset, e.offset) << "record " << i.number;
      EXPECT_EQ(i.record, !e.oversized) << "record " << i.number;
      (i.record ? good : oversized) += 1;
      if (sink != nullptr) sink->push_back(i);
    }
  };
  while (written + pending.size() < kTarget || !pending.empty()) {
    while (pending.size() < kChunk && written + pending.size() < kTarget) {
      const std::uint64_t n = expected.size() + 1;
      const bool big = n % 5000 == 0;  // ~1 in 5000 records is over the limit
      std::string r = "<card id=\"" + std::to_string(n) + "\"><pan>4000" + std::to_string(n) +
                      "</pan><!-- c --><filler a='>'>" +
                      std::string(big ? 3 * kLimit : filler(rng), 'f') + "</filler></card>\n";
      expected.push_back({written + pending.size(), big});
      if (!big) max_record = std::max(max_record, r.size());
      pending += r;
    }
    if (written + pending.size() >= kTarget && !closed) {
      pending += "</batch>\n";
      closed = true;
    }
    const std::size_t n = std::min(kChunk, pending.size());
    s->feed(span_of(std::string_view(pending).substr(0, n)));
    written += n;
    pending.erase(0, n);
    max_buffered = std::max(max_buffered, s->buffered_bytes());
    ASSERT_LE(s->buffered_bytes(), kChunk + kLimit);
    take(nullptr);
    ASSERT_LE(s->buffered_bytes(), kLimit);
  }
  s->finish();
  std::vector<Item> tail;
  take(&tail);
  EXPECT_TRUE(tail.empty());
  EXPECT_GE(written, kTarget);
  EXPECT_EQ(good + oversized, expected.size());
  EXPECT_EQ(oversized, expected.size() / 5000);
  EXPECT_GT(oversized, 0u);
  EXPECT_LE(max_buffered, kChunk + max_record);
}

TEST(SplitterMemoryTest, OverlongFixedLinesAreNotBuffered) {
  auto s = RecordSplitter::create(fixed(0), {.max_record_bytes = 1000});
  ASSERT_TRUE(s.has_value());
  const std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 100; ++i) {
    s->feed(span_of(chunk));
    ASSERT_LE(s->buffered_bytes(), 1000u);
  }
  s->feed(span_of("\nok\n"));
  std::vector<Item> items;
  drain(*s, items);
  EXPECT_THAT(items, ElementsAre(err(1, 0, "longer than the limit of 1000 bytes; skipped"),
                                 rec(2, 100 * 64 * 1024 + 1, "ok")));
}

TEST(SplitterMemoryTest, TextCommentsAndStrayElementsBetweenRecordsAreNotBuffered) {
  auto s = RecordSplitter::create(kXml);
  ASSERT_TRUE(s.has_value());
  s->feed(span_of("<r><card/><header><y>"));
  std::vector<Item> items;
  drain(*s, items);
  // Each chunk ends inside a stray element.
  const std::string filler = "</y><x a='1'>text <card>not a record</card></x><!-- c --> <y>z";
  for (int i = 0; i < 2000; ++i) {
    s->feed(span_of(filler));
    ASSERT_EQ(s->buffered_bytes(), 0u);
  }
  s->feed(span_of("</y></header><card/></r>"));
  s->finish();
  drain(*s, items);
  EXPECT_THAT(items,
              ElementsAre(rec(1, 3, "<card/>"),
                          err(0, 10, "an element other than <card> between records; skipped"),
                          rec(2, 21 + 2000 * filler.size() + 13, "<card/>")));
}

TEST(SplitterMemoryTest, OversizedRecordIsNotBufferedWhileSkipped) {
  auto s = RecordSplitter::create(kXml, {.max_record_bytes = 100});
  ASSERT_TRUE(s.has_value());
  s->feed(span_of("<r><card>" + std::string(80, 'a')));
  EXPECT_EQ(s->buffered_bytes(), 86u);
  s->feed(span_of(std::string(80, 'b')));
  EXPECT_EQ(s->buffered_bytes(), 0u);
  s->feed(span_of(std::string(80, 'c') + "</card><card>"));
  EXPECT_EQ(s->buffered_bytes(), 6u);
  std::vector<Item> items;
  drain(*s, items);
  EXPECT_THAT(items, ElementsAre(err(1, 3, "larger than the limit of 100 bytes; skipped")));
}

// ----------------------------------------------------------- no content in messages

// Every error reason is checked not to quote a distinctive value the input carries.
TEST(SplitterMessagesTest, ErrorsQuoteNoRecordContent) {
  const std::string pan = "4929173650812377";
  const std::string name = "ZYXWQUINTAVALLE";
  std::vector<std::vector<Item>> runs;
  const std::string doc = "<r " + name + "='" + pan + "'>" + pan + "<" + name + ">" + pan + "</" +
                          name + "><card id='" + pan + "'><" + name + ">" + pan +
                          std::string(200, 'p') + "</" + name + "></card><card>" + name +
                          "<a><a><a>" + pan + "</a></a></a></card><" + pan + ">" + "<card " + name +
                          "='" + pan + "'>" + pan;
  runs.push_back(split_every_way(kXml, doc, {.max_record_bytes = 100, .max_record_depth = 2}));
  runs.push_back(
      split_every_way(kXml, pan + name + "<" + name + "/>" + pan + "<" + name + "/><!--" + pan));
  runs.push_back(split_every_way(fixed(10), pan + "\n" + name + "\n" + pan.substr(0, 7)));
  runs.push_back(split_every_way(fixed(0), name + pan + "\n" + pan, {.max_record_bytes = 16}));
  std::size_t errors = 0;
  for (const auto& items : runs) {
    for (const auto& i : items) {
      if (i.record) continue;
      ++errors;
      for (const std::string& secret : {pan, name}) {
        for (std::size_t k = 0; k + 6 <= secret.size(); ++k) {
          EXPECT_THAT(i.text, ::testing::Not(HasSubstr(secret.substr(k, 6)))) << i;
        }
      }
    }
  }
  EXPECT_GE(errors, 10u);
}

}  // namespace
}  // namespace persoflow::formats
