// Files that must not be read: truncated at every length, one byte flipped anywhere (and
// in each region with the expected error), segments swapped, removed or spliced from
// another file, blocks moved, wrong integrity key, wrong DKep. Every failure is kParse or
// kIntegrity and names the file.
#include <gtest/gtest.h>

#include "formats/big_endian_codec.h"
#include "tests/integration/xof_test_fixture.h"

namespace persoflow::test {
namespace {

class XofTamperTest : public XofTest {
 protected:
  void SetUp() override {
    XofTest::SetUp();
    if (HasFatalFailure()) return;
    good_path_ = dir_ / "good.xof";
    ASSERT_TRUE(write_xof(good_path_, cards(8)).has_value());
    good_ = file_bytes(good_path_);
    auto reader = XofReader::open(good_path_.string(), *integrity_);
    ASSERT_TRUE(reader.has_value()) << reader.error().message();
    table_ = reader->segment_table();
    ASSERT_EQ(table_.size(), 3u);
    auto seg1 = reader->read_segment(1);
    ASSERT_TRUE(seg1.has_value());
    seg1_ = std::move(*seg1);
    footer_offset_ = formats::load_be(good_.data() + good_.size() - 16, 8);
  }

  // Reads `bytes` as a file the way a later run does; the reading must fail with kParse
  // or kIntegrity naming the file. Returns the error.
  Error rejected(const Bytes& bytes, const std::string& what) {
    const auto path = dir_ / "bad.xof";
    put_file(path, bytes);
    auto r = read_all(path);
    if (r.has_value()) {
      ADD_FAILURE() << what << ": a damaged file was read";
      return Error(ErrorCode::kInternal, "read");
    }
    const Error& e = r.error();
    EXPECT_TRUE(e.code() == ErrorCode::kParse || e.code() == ErrorCode::kIntegrity)
        << what << ": " << error_code_name(e.code()) << " " << e.message();
    EXPECT_NE(e.message().find(path.string()), std::string::npos) << what << ": " << e.message();
    return e;
  }

  Bytes flipped(std::size_t offset, std::uint8_t mask = 0x01) const {
    Bytes b = good_;
    b[offset] ^= mask;
    return b;
  }

  Bytes segment_bytes(const Bytes& file, const formats::XofSegmentEntry& e) const {
    return Bytes(file.begin() + static_cast<std::ptrdiff_t>(e.offset),
                 file.begin() + static_cast<std::ptrdiff_t>(e.offset + e.length));
  }

  std::filesystem::path good_path_;
  Bytes good_;
  std::vector<formats::XofSegmentEntry> table_;
  formats::XofSegment seg1_;
  std::uint64_t footer_offset_ = 0;
};

TEST_F(XofTamperTest, TheGoodFileReads) {
  auto got = read_all(good_path_);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  expect_same_cards(*got, cards(8));
}

TEST_F(XofTamperTest, TruncationAtEveryLengthIsRefused) {
  for (std::size_t len = 0; len < good_.size(); ++len) {
    const Error e = rejected(Bytes(good_.begin(), good_.begin() + static_cast<std::ptrdiff_t>(len)),
                             "truncated to " + std::to_string(len));
    EXPECT_EQ(e.code(), ErrorCode::kParse) << len << ": " << e.message();
  }
}

TEST_F(XofTamperTest, ExtraBytesBeforeOrAfterAreRefused) {
  Bytes appended = good_;
  appended.push_back(0);
  EXPECT_EQ(rejected(appended, "appended").code(), ErrorCode::kParse);
  Bytes prepended = good_;
  prepended.insert(prepended.begin(), 0);
  EXPECT_EQ(rejected(prepended, "prepended").code(), ErrorCode::kParse);
}

TEST_F(XofTamperTest, AnyFlippedBitIsDetected) {
  for (std::size_t i = 0; i < good_.size(); ++i) {
    rejected(flipped(i, 0x01), "bit 0 of byte " + std::to_string(i));
    rejected(flipped(i, 0x80), "bit 7 of byte " + std::to_string(i));
    if (HasFailure()) return;
  }
}

TEST_F(XofTamperTest, EachRegionReportsWhereAndWhy) {
  struct Case {
    const char* region;
    std::size_t offset;
    ErrorCode code;
    const char* says;
  };
  const std::size_t seg1 = table_[1].offset;
  const std::size_t size = good_.size();
  const Case cases[] = {
      {"header: profile id", formats::kXofFixedHeaderEnd + 2, ErrorCode::kIntegrity, "header"},
      {"header: record count", formats::kXofRecordCountOffset + 7, ErrorCode::kIntegrity, "header"},
      {"segment index: card id", seg1 + 16 + 2, ErrorCode::kIntegrity, "segment 1"},
      {"segment block", seg1 + seg1_.blocks[0].offset + 5, ErrorCode::kIntegrity, "segment 1"},
      {"segment block tag", seg1 + seg1_.blocks[1].offset + seg1_.blocks[1].length - 1,
       ErrorCode::kIntegrity, "segment 1"},
      {"segment wrapped blob", seg1 + table_[1].length - 1, ErrorCode::kIntegrity, "segment 1"},
      {"footer segment table", footer_offset_ + 12 + 20, ErrorCode::kIntegrity, "footer tag"},
      {"footer header hash", size - 16 - 16 - 3, ErrorCode::kIntegrity, "header"},
      {"footer tag", size - 16 - 1, ErrorCode::kIntegrity, "footer tag"},
      {"footer magic", footer_offset_, ErrorCode::kParse, "footer magic"},
      {"trailer footer offset", size - 16 + 7, ErrorCode::kParse, "footer"},
      {"trailer magic", size - 1, ErrorCode::kParse, "trailer"},
      {"file magic", 1, ErrorCode::kParse, "magic"},
  };
  for (const Case& c : cases) {
    const Error e = rejected(flipped(c.offset), c.region);
    EXPECT_EQ(e.code(), c.code) << c.region << ": " << e.message();
    EXPECT_NE(e.message().find(c.says), std::string::npos) << c.region << ": " << e.message();
    EXPECT_NE(e.message().find("offset"), std::string::npos) << c.region << ": " << e.message();
  }
}

TEST_F(XofTamperTest, SwappedSegmentsAreDetected) {
  const Bytes s0 = segment_bytes(good_, table_[0]), s1 = segment_bytes(good_, table_[1]);
  Bytes swapped(good_.begin(), good_.begin() + static_cast<std::ptrdiff_t>(table_[0].offset));
  swapped.insert(swapped.end(), s1.begin(), s1.end());
  swapped.insert(swapped.end(), s0.begin(), s0.end());
  swapped.insert(swapped.end(), good_.begin() + static_cast<std::ptrdiff_t>(table_[2].offset),
                 good_.end());
  ASSERT_EQ(swapped.size(), good_.size());
  const Error e = rejected(swapped, "segments 0 and 1 swapped");
  EXPECT_EQ(e.code(), ErrorCode::kIntegrity) << e.message();
  EXPECT_NE(e.message().find("segment 0"), std::string::npos) << e.message();

  // Behind the hash, each segment also carries its number.
  auto h = header();
  ASSERT_TRUE(h.has_value());
  auto moved = formats::parse_xof_segment(*h, s0, table_[1].offset, 1, "moved");
  ASSERT_FALSE(moved.has_value());
  EXPECT_EQ(moved.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(moved.error().message().find("reordered"), std::string::npos);
}

TEST_F(XofTamperTest, ARemovedSegmentIsDetected) {
  Bytes removed = good_;
  removed.erase(removed.begin() + static_cast<std::ptrdiff_t>(table_[1].offset),
                removed.begin() + static_cast<std::ptrdiff_t>(table_[1].offset + table_[1].length));
  EXPECT_EQ(rejected(removed, "segment 1 removed").code(), ErrorCode::kParse);
  // With the trailer pointing at the footer again, the segment table no longer fits.
  formats::store_be(removed.data() + removed.size() - 16, footer_offset_ - table_[1].length, 8);
  const Error e = rejected(removed, "segment 1 removed, trailer fixed");
  EXPECT_EQ(e.code(), ErrorCode::kIntegrity) << e.message();
  EXPECT_NE(e.message().find("removed"), std::string::npos) << e.message();
  // The last segment removed with footer and trailer moved up.
  Bytes last_removed(good_.begin(), good_.begin() + static_cast<std::ptrdiff_t>(table_[2].offset));
  last_removed.insert(last_removed.end(),
                      good_.begin() + static_cast<std::ptrdiff_t>(footer_offset_), good_.end());
  formats::store_be(last_removed.data() + last_removed.size() - 16, table_[2].offset, 8);
  EXPECT_EQ(rejected(last_removed, "last segment removed").code(), ErrorCode::kIntegrity);
}

TEST_F(XofTamperTest, ASegmentSplicedFromAnotherFileIsDetected) {
  const auto other_path = dir_ / "other-source.xof";
  ASSERT_TRUE(write_xof(other_path, cards(8), Bytes(32, 0xA6)).has_value());
  const Bytes other = file_bytes(other_path);
  auto other_reader = XofReader::open(other_path.string(), *integrity_);
  ASSERT_TRUE(other_reader.has_value());
  const auto other_table = other_reader->segment_table();
  ASSERT_EQ(other_table[1].offset, table_[1].offset);
  ASSERT_EQ(other_table[1].length, table_[1].length);  // same cards, same sizes
  const Bytes foreign = segment_bytes(other, other_table[1]);
  ASSERT_NE(foreign, segment_bytes(good_, table_[1]));

  Bytes spliced = good_;
  std::copy(foreign.begin(), foreign.end(),
            spliced.begin() + static_cast<std::ptrdiff_t>(table_[1].offset));
  const Error e = rejected(spliced, "segment 1 from another file");
  EXPECT_EQ(e.code(), ErrorCode::kIntegrity) << e.message();
  EXPECT_NE(e.message().find("segment 1"), std::string::npos) << e.message();

  // Behind the hash, the AES-GCM AAD binds the file id: the foreign blocks do not open.
  auto good_reader = XofReader::open(good_path_.string(), *integrity_);
  ASSERT_TRUE(good_reader.has_value());
  auto parsed =
      formats::parse_xof_segment(good_reader->header(), foreign, table_[1].offset, 1, "spliced");
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  auto decoded = good_reader->decode_segment(*parsed, class_keys_);
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kIntegrity);

  // And a block moved to another class's place does not open either.
  formats::XofSegment moved = seg1_;
  std::swap(moved.blocks[0].offset, moved.blocks[1].offset);
  std::swap(moved.blocks[0].length, moved.blocks[1].length);
  auto moved_decoded = good_reader->decode_segment(moved, class_keys_);
  ASSERT_FALSE(moved_decoded.has_value());
  EXPECT_EQ(moved_decoded.error().code(), ErrorCode::kIntegrity);
}

TEST_F(XofTamperTest, BehindTheHashTheIndexMustNameTheEncryptedCards) {
  Bytes seg = segment_bytes(good_, table_[1]);
  seg[16 + 2 + 8] ^= 0x01;  // the first card id, "CARD-1003", now reads "CARD-1002"
  auto reader = XofReader::open(good_path_.string(), *integrity_);
  ASSERT_TRUE(reader.has_value());
  auto parsed = formats::parse_xof_segment(reader->header(), seg, table_[1].offset, 1, "index");
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->card_ids[0], "CARD-1002");
  auto decoded = reader->decode_segment(*parsed, class_keys_);
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(decoded.error().message().find("CARD-1002"), std::string::npos)
      << decoded.error().message();
  // Decoding only the card ids' class checks them the same way.
  const std::vector<AeadKey*> ident_only = {class_keys_[0], nullptr, nullptr};
  auto partial = reader->decode_segment_classes(*parsed, ident_only);
  ASSERT_FALSE(partial.has_value());
  EXPECT_EQ(partial.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(partial.error().message().find("CARD-1002"), std::string::npos) << partial.error().message();
}

TEST_F(XofTamperTest, AWrongIntegrityKeyIsRefusedAsSuch) {
  auto r = XofReader::open(good_path_.string(), *wrong_integrity_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(r.error().message().find("wrong key"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(good_path_.string()), std::string::npos);
}

TEST_F(XofTamperTest, AWrongDkepIsRefused) {
  auto r = XofReader::open(good_path_.string(), *integrity_);
  ASSERT_TRUE(r.has_value());
  const std::vector<AeadKey*> wrong{ident_.get(), wrong_dkep_.get(), secret_.get()};
  auto checked = r->check_keys(wrong);
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(checked.error().message().find("'pan'"), std::string::npos)
      << checked.error().message();
  auto seg = r->read_segment(0);
  ASSERT_TRUE(seg.has_value());
  auto decoded = r->decode_segment(*seg, wrong);
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(decoded.error().message().find("segment 0"), std::string::npos)
      << decoded.error().message();
  EXPECT_NE(decoded.error().message().find("'pan'"), std::string::npos)
      << decoded.error().message();
}

TEST_F(XofTamperTest, NotAnXofAndMissingFilesAreRefused) {
  EXPECT_EQ(rejected(Bytes{'h', 'e', 'l', 'l', 'o'}, "text").code(), ErrorCode::kParse);
  EXPECT_EQ(rejected(Bytes{}, "empty").code(), ErrorCode::kParse);
  auto missing = XofReader::open((dir_ / "absent.xof").string(), *integrity_);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace persoflow::test
