// The XOF intermediate file through a real SoftHSM token: round trips, card lookup,
// edge cases, determinism and the golden digest, the absence of clear values, and the
// writer's input checks. Tampering: xof_tamper_test.cpp; publication: atomic_file_test.cpp.
#include <gtest/gtest.h>

#include <thread>

#include "formats/sha256_digest.h"
#include "tests/integration/xof_test_fixture.h"

namespace persoflow::test {
namespace {

using formats::EncodedSegment;

TEST_F(XofTest, RoundTripOfSeveralSegmentsWithAbsentValuesAndWrappedBlobs) {
  const auto want = cards(8);  // segments of 3, 3 and 2 cards
  const auto path = dir_ / "acme.xof";
  ASSERT_TRUE(write_xof(path, want).has_value());

  auto reader = XofReader::open(path.string(), *integrity_);
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  const XofHeader& h = reader->header();
  EXPECT_EQ(h.record_count, 8u);
  EXPECT_EQ(h.reject_count, 2u);
  EXPECT_EQ(h.segment_count, 3u);
  EXPECT_EQ(h.segment_cards, 3u);
  EXPECT_EQ(h.profile_id, "acme-debit");
  EXPECT_EQ(h.profile_version, "2.1");
  formats::Sha256Digest source;
  source.fill(0xA5);
  EXPECT_EQ(h.source_sha256, source);
  ASSERT_EQ(h.classes.size(), 3u);
  EXPECT_EQ(h.classes[1].name, "pan");
  EXPECT_EQ(h.classes[1].dkep_uri, "pkcs11:token=perso;object=dkep-pan");
  EXPECT_EQ(Bytes(h.classes[1].kcv.begin(), h.classes[1].kcv.end()), *pan_->kcv());
  EXPECT_EQ(Bytes(h.integrity_kcv.begin(), h.integrity_kcv.end()), *integrity_->kcv());
  ASSERT_EQ(h.attributes.size(), 6u);
  EXPECT_EQ(h.attributes[kPinBlock].kind, formats::XofAttributeKind::kWrapped);
  EXPECT_EQ(h.attributes[kPan].kind, formats::XofAttributeKind::kValue);
  // "secret" holds only a wrapped attribute: no block for it.
  EXPECT_EQ(h.block_classes(), (std::vector<std::uint16_t>{0, 1}));
  ASSERT_EQ(reader->segment_count(), 3u);
  EXPECT_EQ(reader->segment_table()[2].card_count, 2u);
  EXPECT_TRUE(reader->check_keys(class_keys_).has_value());
  ASSERT_TRUE(reader->verify_all().has_value());

  std::vector<XofCard> got;
  for (std::size_t i = 0; i < reader->segment_count(); ++i) {
    auto seg = reader->read_segment(i);
    ASSERT_TRUE(seg.has_value()) << seg.error().message();
    EXPECT_EQ(seg->segment_number, i);
    EXPECT_EQ(seg->blocks.size(), 2u);
    auto decoded = reader->decode_segment(*seg, class_keys_);
    ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
    for (auto& c : *decoded) got.push_back(std::move(c));
  }
  expect_same_cards(got, want);
  EXPECT_FALSE(got[1].values[kName].has_value());
  EXPECT_FALSE(got[1].values[kPinBlock].has_value());
  EXPECT_TRUE(got[2].values[kPinBlock].has_value());
}

// prep's planner decrypts only the class of the SE key: that class's values come back,
// the kind-1 blobs as always, and the other classes' values stay empty (not decrypted:
// a wrong key there is not even used).
TEST_F(XofTest, DecodingSomeClassesLeavesTheOthersEmpty) {
  const auto want = cards(8);
  const auto path = dir_ / "acme.xof";
  ASSERT_TRUE(write_xof(path, want).has_value());
  auto reader = XofReader::open(path.string(), *integrity_);
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  auto seg = reader->read_segment(0);
  ASSERT_TRUE(seg.has_value()) << seg.error().message();
  auto full = reader->decode_segment(*seg, class_keys_);
  ASSERT_TRUE(full.has_value()) << full.error().message();

  const std::vector<AeadKey*> pan_only = {nullptr, pan_.get(), nullptr};
  auto pan = reader->decode_segment_classes(*seg, pan_only);
  ASSERT_TRUE(pan.has_value()) << pan.error().message();
  ASSERT_EQ(pan->size(), full->size());
  for (std::size_t i = 0; i < pan->size(); ++i) {
    const XofCard& p = (*pan)[i];
    const XofCard& f = (*full)[i];
    EXPECT_EQ(p.card_id, f.card_id);
    ASSERT_TRUE(p.values[kPan].has_value());
    EXPECT_TRUE(p.values[kPan]->equals(*f.values[kPan]));
    ASSERT_TRUE(p.values[kExpiry].has_value());
    EXPECT_TRUE(p.values[kExpiry]->equals(*f.values[kExpiry]));
    EXPECT_FALSE(p.values[kCardId].has_value()) << "the ident class was not decoded";
    EXPECT_FALSE(p.values[kName].has_value());
    EXPECT_EQ(p.values[kPinBlock].has_value(), f.values[kPinBlock].has_value()) << "wrapped blobs are copied";
  }

  const std::vector<AeadKey*> wrong_ident = {wrong_dkep_.get(), pan_.get(), nullptr};
  auto wrong = reader->decode_segment_classes(*seg, wrong_ident);
  ASSERT_FALSE(wrong.has_value()) << "a class whose key is given is decrypted, and checked";
  EXPECT_EQ(wrong.error().code(), ErrorCode::kIntegrity);
  // The full decode still wants every class's key.
  auto missing = reader->decode_segment(*seg, pan_only);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("no DKep given for this class"), std::string::npos);
}

TEST_F(XofTest, CardIdLookupGivesSegmentAndPosition) {
  const auto path = dir_ / "lookup.xof";
  ASSERT_TRUE(write_xof(path, cards(8)).has_value());
  auto reader = XofReader::open(path.string(), *integrity_);
  ASSERT_TRUE(reader.has_value());
  auto found = reader->find_card("CARD-1007");
  ASSERT_TRUE(found.has_value()) << found.error().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, std::make_pair(std::size_t{2}, std::size_t{1}));
  auto first = reader->find_card("CARD-1000");
  ASSERT_TRUE(first.has_value() && first->has_value());
  EXPECT_EQ(**first, std::make_pair(std::size_t{0}, std::size_t{0}));
  auto missing = reader->find_card("CARD-9999");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
  // The position found is where the card is.
  auto seg = reader->read_segment(2);
  ASSERT_TRUE(seg.has_value());
  auto decoded = reader->decode_segment(*seg, class_keys_);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_TRUE((*decoded)[1].values[kPan]->equals(*text("4999PANVALUE1007")));
}

TEST_F(XofTest, FileWithoutCardsHasNoSegments) {
  const auto path = dir_ / "empty.xof";
  ASSERT_TRUE(write_xof(path, {}).has_value());
  auto reader = XofReader::open(path.string(), *integrity_);
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  EXPECT_EQ(reader->segment_count(), 0u);
  EXPECT_EQ(reader->header().record_count, 0u);
  EXPECT_TRUE(reader->verify_all().has_value());
  auto missing = reader->find_card("CARD-1000");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
  EXPECT_EQ(reader->read_segment(0).error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(XofTest, EmptySegmentsAndAFullSegmentRoundTrip) {
  auto h = header();
  ASSERT_TRUE(h.has_value()) << h.error().message();
  const auto path = dir_ / "edges.xof";
  auto w = XofWriter::create(path.string(), *h);
  ASSERT_TRUE(w.has_value()) << w.error().message();
  const auto full = cards(3);
  const std::vector<XofCard> none;
  for (std::uint32_t n = 0; n < 3; ++n) {
    // 0 cards, 3 cards (the segment size), 0 cards.
    auto seg =
        formats::encode_segment(*h, n, n == 1 ? std::span(full) : std::span(none), class_keys_);
    ASSERT_TRUE(seg.has_value()) << seg.error().message();
    ASSERT_TRUE(w->append(*seg).has_value());
  }
  ASSERT_TRUE(w->finish(*integrity_, 3, 0).has_value());
  auto got = read_all(path);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  expect_same_cards(*got, full);
  auto reader = XofReader::open(path.string(), *integrity_);
  ASSERT_TRUE(reader.has_value());
  EXPECT_EQ(reader->segment_table()[0].card_count, 0u);
  auto found = reader->find_card("CARD-1002");
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ(**found, std::make_pair(std::size_t{1}, std::size_t{2}));
}

TEST_F(XofTest, SameInputsAndKeysGiveByteIdenticalFiles) {
  const auto all = cards(7);
  ASSERT_TRUE(write_xof(dir_ / "a.xof", all).has_value());
  ASSERT_TRUE(write_xof(dir_ / "b.xof", all).has_value());
  const Bytes a = file_bytes(dir_ / "a.xof");
  EXPECT_EQ(a, file_bytes(dir_ / "b.xof"));
  // Another source digest changes the file (file id, nonces, every block).
  ASSERT_TRUE(write_xof(dir_ / "c.xof", all, Bytes(32, 0xA6)).has_value());
  EXPECT_NE(a, file_bytes(dir_ / "c.xof"));
}

TEST_F(XofTest, SegmentsEncodedInParallelEqualSegmentsEncodedInSequence) {
  auto h = header();
  ASSERT_TRUE(h.has_value());
  const auto all = cards(24);
  constexpr int kSegments = 8;
  std::vector<Bytes> serial(kSegments), parallel(kSegments);
  for (int n = 0; n < kSegments; ++n) {
    auto seg = formats::encode_segment(*h, static_cast<std::uint32_t>(n),
                                       std::span(all).subspan(3 * n, 3), class_keys_);
    ASSERT_TRUE(seg.has_value());
    serial[n] = seg->bytes;
  }
  std::vector<std::thread> threads;
  for (int n = 0; n < kSegments; ++n) {
    threads.emplace_back([&, n] {
      auto seg = formats::encode_segment(*h, static_cast<std::uint32_t>(n),
                                         std::span(all).subspan(3 * n, 3), class_keys_);
      if (seg.has_value()) parallel[n] = seg->bytes;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(parallel, serial);
}

// The SHA-256 of the XOF for fixed inputs (cards(8), source digest A5 x 32, profile_ with
// digest 5A x 32, key values from XofTest::key_value, zstd level 3 of libzstd 1.5.4, 2
// rejects). It changes when the format, the derivations, zstd's output or SoftHSM's
// GCM/CMAC change, and must not change otherwise. To regenerate after a deliberate format
// change (bump kXofFormatVersion) or a zstd upgrade: run this test, check the round-trip
// and tamper tests still pass, and paste the digest it prints.
TEST_F(XofTest, GoldenDigestForFixedInputsAndKeys) {
  constexpr const char* kGolden =
      "BB4BD61E358B2E28D098D81A1F265447F8898C3D0472D11428B4DA9A9FE815A7";
  ASSERT_EQ(formats::zstd_library_version(), 10504u)
      << "the golden digest was made with zstd 1.5.4";
  const auto path = dir_ / "golden.xof";
  ASSERT_TRUE(write_xof(path, cards(8)).has_value());
  auto digest = formats::sha256(file_bytes(path));
  ASSERT_TRUE(digest.has_value());
  EXPECT_EQ(to_hex(*digest), kGolden);
}

TEST_F(XofTest, FileIdChangesWithEveryInputThatShapesThePlaintext) {
  auto base = header();
  ASSERT_TRUE(base.has_value());
  auto same = header();
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(base->file_id, same->file_id);
  std::vector<formats::XofFileId> ids{base->file_id};
  ids.push_back(header(Bytes(32, 0xA6))->file_id);      // source
  ids.push_back(header(Bytes(32, 0xA5), 19)->file_id);  // zstd level
  profile_.sha256 = Bytes(32, 0x5B);
  ids.push_back(header()->file_id);  // profile
  profile_.sha256 = Bytes(32, 0x5A);
  profile_.segment_cards = 4;
  ids.push_back(header()->file_id);  // segment size
  profile_.segment_cards = 3;
  class_keys_[1] = wrong_dkep_.get();
  ids.push_back(header()->file_id);  // a DKep
  for (std::size_t i = 0; i < ids.size(); ++i) {
    for (std::size_t j = i + 1; j < ids.size(); ++j) EXPECT_NE(ids[i], ids[j]) << i << " vs " << j;
  }
  // Nonces differ per segment and class.
  auto n00 = formats::xof_block_nonce(base->file_id, 0, 0),
       n01 = formats::xof_block_nonce(base->file_id, 0, 1),
       n10 = formats::xof_block_nonce(base->file_id, 1, 0);
  EXPECT_NE(*n00, *n01);
  EXPECT_NE(*n00, *n10);
}

TEST_F(XofTest, NoAttributeValueAppearsInClearButCardIdsDo) {
  const auto all = cards(8);
  const auto path = dir_ / "clear.xof";
  ASSERT_TRUE(write_xof(path, all).has_value());
  const Bytes bytes = file_bytes(path);
  for (const auto& c : all) {
    EXPECT_TRUE(contains(bytes, c.card_id)) << c.card_id;  // the index is in clear
    for (std::size_t a : {kName, kPan, kExpiry}) {
      if (!c.values[a]) continue;
      const auto v = c.values[a]->reveal();
      EXPECT_FALSE(contains(bytes, std::string(v.begin(), v.end())))
          << "attribute " << a << " of " << c.card_id;
    }
  }
  for (const char* marker : {"ZQXNAME", "PANVALUE", "EXPZ2812", "HOLDER", "4999"}) {
    EXPECT_FALSE(contains(bytes, marker)) << marker;
  }
}

TEST_F(XofTest, EncodeRefusesCardsThatDoNotFitTheHeader) {
  auto h = header();
  ASSERT_TRUE(h.has_value());
  auto encode = [&](std::vector<XofCard> cs) {
    return formats::encode_segment(*h, 0, cs, class_keys_);
  };
  auto too_many = encode(cards(4));
  ASSERT_FALSE(too_many.has_value());
  EXPECT_EQ(too_many.error().code(), ErrorCode::kInvalidArgument);

  auto short_values = cards(1);
  short_values[0].values.pop_back();
  EXPECT_EQ(encode(short_values).error().code(), ErrorCode::kInvalidArgument);

  auto wrong_id = cards(1);
  wrong_id[0].card_id = "CARD-OTHER";
  EXPECT_EQ(encode(wrong_id).error().code(), ErrorCode::kInvalidArgument);

  auto empty_blob = cards(1);
  empty_blob[0].values[kCvcKey] = SecureBytes();
  EXPECT_EQ(encode(empty_blob).error().code(), ErrorCode::kInvalidArgument);

  std::vector<AeadKey*> two_keys{ident_.get(), pan_.get()};
  EXPECT_EQ(formats::encode_segment(*h, 0, cards(1), two_keys).error().code(),
            ErrorCode::kInvalidArgument);
  auto error = encode(wrong_id).error().message();
  EXPECT_EQ(error.find("4999PANVALUE"), std::string::npos) << error;
}

TEST_F(XofTest, HeaderRefusesAProfileItCannotRepresent) {
  auto kcvs = class_kcvs();
  const Bytes integrity_kcv = *integrity_->kcv();
  EXPECT_EQ(formats::make_xof_header(profile_, Bytes(31, 0), kcvs, integrity_kcv).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      formats::make_xof_header(profile_, Bytes(32, 0), {kcvs[0]}, integrity_kcv).error().code(),
      ErrorCode::kInvalidArgument);
  EXPECT_EQ(formats::make_xof_header(profile_, Bytes(32, 0), kcvs, integrity_kcv, 0).error().code(),
            ErrorCode::kInvalidArgument);
  Profile no_id = profile_;
  no_id.card_id_attribute = "missing";
  EXPECT_EQ(formats::make_xof_header(no_id, Bytes(32, 0), kcvs, integrity_kcv).error().code(),
            ErrorCode::kInvalidArgument);
  Profile wrapped_id = profile_;
  wrapped_id.card_id_attribute = "pin_block";
  EXPECT_EQ(formats::make_xof_header(wrapped_id, Bytes(32, 0), kcvs, integrity_kcv).error().code(),
            ErrorCode::kInvalidArgument);
  Profile bad_class = profile_;
  bad_class.attributes[kPan].key_class = "nope";
  EXPECT_EQ(formats::make_xof_header(bad_class, Bytes(32, 0), kcvs, integrity_kcv).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(XofTest, WriterRefusesSegmentsOutOfOrderAWrongCountAndAWrongIntegrityKey) {
  auto h = header();
  ASSERT_TRUE(h.has_value());
  const auto path = dir_ / "refused.xof";
  auto w = XofWriter::create(path.string(), *h);
  ASSERT_TRUE(w.has_value());
  const auto all = cards(6);
  auto seg0 = formats::encode_segment(*h, 0, std::span(all).subspan(0, 3), class_keys_);
  auto seg1 = formats::encode_segment(*h, 1, std::span(all).subspan(3, 3), class_keys_);
  ASSERT_TRUE(seg0.has_value() && seg1.has_value());
  EXPECT_EQ(w->append(*seg1).error().code(), ErrorCode::kInternal);
  ASSERT_TRUE(w->append(*seg0).has_value());
  EXPECT_EQ(w->append(*seg0).error().code(), ErrorCode::kInternal);
  ASSERT_TRUE(w->append(*seg1).has_value());
  EXPECT_EQ(w->finish(*integrity_, 5, 0).error().code(), ErrorCode::kInternal);
  EXPECT_EQ(w->finish(*wrong_integrity_, 6, 0).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(w->finish(*integrity_, 6, 0).has_value());
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(w->finish(*integrity_, 6, 0).error().code(), ErrorCode::kInternal);
  EXPECT_TRUE(read_all(path).has_value());
}

}  // namespace
}  // namespace persoflow::test
