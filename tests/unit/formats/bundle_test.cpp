// The script bundle (formats/bundle.h) on real files in a temporary directory: round
// trip, lookup by card id, determinism, every kind of damage detected where it is,
// hostile segments refused cleanly, nothing published by an unfinished or refused
// writer. The integrity key is a software AES-CMAC (OpenSSL) standing in for the HSM
// key; tests/integration/cli_bundle_inspect_test.cpp uses a real SoftHSM key.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/big_endian_codec.h"
#include "formats/bundle.h"
#include "formats/zstd_codec.h"
#include "tests/support/temp_dir.h"

namespace persoflow::test {
namespace {

namespace fs = std::filesystem;
using formats::BundleApdu;
using formats::BundleCard;
using formats::BundleHeader;
using formats::BundleReader;
using formats::BundleSession;
using formats::BundleEncodedSegment;
using formats::BundleWriter;
using formats::BundleWriterOptions;

// AES-128-CMAC in software: the MacKey contract (16-byte tag, constant-time verify,
// kIntegrity on mismatch, KCV = AES-ECB(01 x 16)[0:3]).
class SoftCmacKey final : public MacKey {
 public:
  explicit SoftCmacKey(std::uint8_t first) : key_(16) {
    for (std::size_t i = 0; i < key_.size(); ++i) key_[i] = static_cast<std::uint8_t>(first + i);
  }
  Result<Bytes> mac(std::span<const std::uint8_t> data) override {
    EVP_MAC* m = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
    EVP_MAC_CTX* ctx = m ? EVP_MAC_CTX_new(m) : nullptr;
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                           OSSL_PARAM_construct_end()};
    Bytes out(16);
    std::size_t len = 0;
    const bool ok = ctx != nullptr && EVP_MAC_init(ctx, key_.data(), key_.size(), params) == 1 &&
                    EVP_MAC_update(ctx, data.data(), data.size()) == 1 &&
                    EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == 16;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    if (!ok) return Error(ErrorCode::kInternal, "test CMAC failed");
    ++macs;
    return out;
  }
  Status verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag) override {
    PF_ASSIGN_OR_RETURN(Bytes expected, mac(data));
    if (tag.size() != expected.size() || CRYPTO_memcmp(tag.data(), expected.data(), tag.size()) != 0) {
      return Error(ErrorCode::kIntegrity, "CMAC mismatch");
    }
    return ok_status();
  }
  Result<Bytes> kcv() override {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    const Bytes block(16, 0x01);
    Bytes out(32);
    int len = 0;
    const bool ok = ctx != nullptr &&
                    EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, key_.data(), nullptr) == 1 &&
                    EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
                    EVP_EncryptUpdate(ctx, out.data(), &len, block.data(), 16) == 1 && len == 16;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) return Error(ErrorCode::kInternal, "test KCV failed");
    return Bytes(out.begin(), out.begin() + 3);
  }
  int macs = 0;

 private:
  Bytes key_;
};

Bytes file_bytes(const fs::path& p) {
  const std::string s = read_file(p);
  return Bytes(s.begin(), s.end());
}
void put_file(const fs::path& p, const Bytes& b) { write_file(p, std::string(b.begin(), b.end())); }

// Card i: two sessions on every third card, a varying number of APDUs, values no
// compressor would produce by accident.
BundleCard card(int i) {
  BundleCard c;
  c.card_id = "CARD-" + std::to_string(1000 + i);
  c.se_id = "SE-" + std::to_string(77000 + i);
  const int sessions = i % 3 == 0 ? 2 : 1;
  for (int s = 0; s < sessions; ++s) {
    BundleSession ses;
    ses.scp = s == 0 ? 3 : 2;
    ses.i = s == 0 ? 0x70 : 0x55;
    ses.level = s == 0 ? 0x03 : 0x01;
    ses.kvn = static_cast<std::uint8_t>(0x30 + s);
    ses.kdd = Bytes(10, static_cast<std::uint8_t>(0xD0 + i));
    ses.sd_aid = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    ses.counter = static_cast<std::uint32_t>(100 + i * 2 + s);
    ses.host_challenge = Bytes(8, static_cast<std::uint8_t>(0x11 * (s + 1)));
    ses.expected_response = Bytes(29, static_cast<std::uint8_t>(0x40 + i));
    ses.apdus.push_back({{0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00},
                         0x9000,
                         "SELECT A000000151000000", {}});
    ses.apdus.push_back({Bytes{0x80, 0x50, 0x30, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}, 0x9000,
                         "INITIALIZE UPDATE", {}});
    for (int k = 0; k < 2 + i % 4; ++k) {
      Bytes cmd{0x84, 0xE2, 0x00, static_cast<std::uint8_t>(k), 0x20};
      for (int b = 0; b < 0x20; ++b) cmd.push_back(static_cast<std::uint8_t>(i * 31 + k * 7 + b));
      ses.apdus.push_back({cmd, k == 1 ? std::uint16_t{0x6A88} : std::uint16_t{0x9000},
                           "STORE DATA DGI 0101 (block " + std::to_string(k + 1) + ")", {}});
    }
    // A PUT KEY whose answer (KVN || KCVs) the station must check.
    ses.apdus.push_back({Bytes{0x84, 0xD8, 0x00, 0x81, 0x04, 0x31, 1, 2, 3}, 0x9000, "PUT KEY",
                         Bytes{0x31, 0xA1, 0xA2, 0xA3, static_cast<std::uint8_t>(i), 0xB2, 0xB3}});
    c.sessions.push_back(std::move(ses));
  }
  return c;
}

std::vector<BundleCard> cards(int n, int first = 0) {
  std::vector<BundleCard> out;
  for (int i = 0; i < n; ++i) out.push_back(card(first + i));
  return out;
}

void expect_same(const BundleCard& got, const BundleCard& want) {
  EXPECT_EQ(got.card_id, want.card_id);
  EXPECT_EQ(got.se_id, want.se_id);
  ASSERT_EQ(got.sessions.size(), want.sessions.size());
  for (std::size_t s = 0; s < want.sessions.size(); ++s) {
    const BundleSession& g = got.sessions[s];
    const BundleSession& w = want.sessions[s];
    EXPECT_EQ(g.scp, w.scp);
    EXPECT_EQ(g.i, w.i);
    EXPECT_EQ(g.level, w.level);
    EXPECT_EQ(g.kvn, w.kvn);
    EXPECT_EQ(g.kdd, w.kdd);
    EXPECT_EQ(g.sd_aid, w.sd_aid);
    EXPECT_EQ(g.counter, w.counter);
    EXPECT_EQ(g.host_challenge, w.host_challenge);
    EXPECT_EQ(g.expected_response, w.expected_response);
    ASSERT_EQ(g.apdus.size(), w.apdus.size());
    for (std::size_t a = 0; a < w.apdus.size(); ++a) {
      EXPECT_EQ(g.apdus[a].command, w.apdus[a].command);
      EXPECT_EQ(g.apdus[a].expected_sw, w.apdus[a].expected_sw);
      EXPECT_EQ(g.apdus[a].label, w.apdus[a].label);
      EXPECT_EQ(g.apdus[a].expected_data, w.apdus[a].expected_data);
    }
    EXPECT_FALSE(g.apdus.back().expected_data.empty());
  }
}

class BundleTest : public ::testing::Test {
 protected:
  BundleHeader header() {
    BundleHeader h;
    h.xof_sha256 = Bytes(32, 0xA5);
    h.profile_sha256 = Bytes(32, 0x5A);
    h.reservation_id = -42;  // negative: the i64 round trip is exercised
    h.profile_id = "acme-debit";
    h.product = "ACME Debit Gold";
    h.segment_cards = 3;
    h.integrity_key_uri = "pkcs11:token=perso;object=bundle-integrity";
    h.integrity_kcv = *key_.kcv();
    return h;
  }

  // `all` in segments of header().segment_cards.
  Result<std::vector<BundleEncodedSegment>> encode(const std::vector<BundleCard>& all) {
    const BundleHeader h = header();
    std::vector<BundleEncodedSegment> out;
    for (std::size_t start = 0, n = 0; start < all.size(); start += h.segment_cards, ++n) {
      const std::size_t count = std::min<std::size_t>(h.segment_cards, all.size() - start);
      PF_ASSIGN_OR_RETURN(auto seg, formats::encode_bundle_segment(
                                        h, static_cast<std::uint32_t>(n),
                                        std::span(all).subspan(start, count)));
      out.push_back(std::move(seg));
    }
    return out;
  }

  // Writes encoded segments; returns finish()'s digest. `runs` gets the number of card
  // index runs the writer spilled, whether finish() succeeded or not.
  Result<Bytes> write_segments(const fs::path& path, const std::vector<BundleEncodedSegment>& segs,
                               BundleWriterOptions options, std::size_t* runs = nullptr,
                               MacKey* integrity = nullptr) {
    PF_ASSIGN_OR_RETURN(BundleWriter w, BundleWriter::create(path.string(), header(), options));
    for (const auto& seg : segs) PF_TRY(w.append(seg));
    auto finished = w.finish(integrity != nullptr ? *integrity : key_);
    if (runs != nullptr) *runs = w.index_runs_spilled();
    return finished;
  }

  // Writes `all` in segments of header().segment_cards; returns finish()'s digest.
  Result<Bytes> write(const fs::path& path, const std::vector<BundleCard>& all) {
    PF_ASSIGN_OR_RETURN(auto segs, encode(all));
    return write_segments(path, segs, BundleWriterOptions{});
  }

  // open + verify_all; the first error, or ok.
  Status open_and_verify(const fs::path& path) {
    PF_ASSIGN_OR_RETURN(BundleReader r, BundleReader::open(path.string(), key_));
    return r.verify_all();
  }

  TempDir dir_{"persoflow-bundle"};
  SoftCmacKey key_{0x30};
};

TEST_F(BundleTest, RoundTripOfSeveralSegments) {
  const auto all = cards(8);  // segments of 3, 3, 2
  const fs::path path = dir_ / "out.bundle";
  auto digest = write(path, all);
  ASSERT_TRUE(digest.has_value()) << digest.error().message();

  auto r = BundleReader::open(path.string(), key_);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->segment_count(), 3u);
  EXPECT_EQ(r->card_count(), 8u);
  const BundleHeader& h = r->header();
  EXPECT_EQ(h.format_version, formats::kBundleFormatVersion);
  EXPECT_EQ(h.xof_sha256, Bytes(32, 0xA5));
  EXPECT_EQ(h.profile_sha256, Bytes(32, 0x5A));
  EXPECT_EQ(h.reservation_id, -42);
  EXPECT_EQ(h.profile_id, "acme-debit");
  EXPECT_EQ(h.product, "ACME Debit Gold");
  EXPECT_EQ(h.segment_cards, 3u);
  EXPECT_EQ(h.zstd_level, 3);
  EXPECT_EQ(h.zstd_version, formats::zstd_library_version());
  EXPECT_EQ(h.integrity_key_uri, "pkcs11:token=perso;object=bundle-integrity");
  EXPECT_EQ(h.integrity_kcv, *key_.kcv());

  formats::BundleTotals totals;
  ASSERT_TRUE(r->verify_all(&totals).has_value());
  std::uint64_t sessions = 0, apdus = 0;
  for (const auto& c : all) {
    sessions += c.sessions.size();
    for (const auto& s : c.sessions) apdus += s.apdus.size();
  }
  EXPECT_EQ(totals.cards, 8u);
  EXPECT_EQ(totals.sessions, sessions);
  EXPECT_EQ(totals.apdus, apdus);

  std::size_t next = 0;
  for (std::size_t i = 0; i < r->segment_count(); ++i) {
    auto seg = r->read_segment(i);
    ASSERT_TRUE(seg.has_value()) << seg.error().message();
    EXPECT_EQ(seg->size(), i < 2 ? 3u : 2u);
    for (const auto& c : *seg) expect_same(c, all[next++]);
  }
  EXPECT_EQ(next, all.size());
  EXPECT_FALSE(r->read_segment(3).has_value());

  // finish() returns the SHA-256 of the published file.
  auto whole = formats::sha256(file_bytes(path));
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(*digest, Bytes(whole->begin(), whole->end()));
}

TEST_F(BundleTest, FindCardThroughTheIndex) {
  const auto all = cards(7);
  const fs::path path = dir_ / "find.bundle";
  ASSERT_TRUE(write(path, all).has_value());
  auto r = BundleReader::open(path.string(), key_);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (int i : {0, 4, 6}) {
    auto found = r->find_card(all[static_cast<std::size_t>(i)].card_id);
    ASSERT_TRUE(found.has_value()) << found.error().message();
    ASSERT_TRUE(found->has_value());
    expect_same(**found, all[static_cast<std::size_t>(i)]);
  }
  auto missing = r->find_card("CARD-9999");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
  auto prefix = r->find_card("CARD-100");  // a prefix of real ids is not a match
  ASSERT_TRUE(prefix.has_value());
  EXPECT_FALSE(prefix->has_value());
}

TEST_F(BundleTest, SameCardsGiveTheSameBytes) {
  const auto all = cards(5);
  ASSERT_TRUE(write(dir_ / "a.bundle", all).has_value());
  ASSERT_TRUE(write(dir_ / "b.bundle", all).has_value());
  const Bytes a = file_bytes(dir_ / "a.bundle");
  EXPECT_EQ(a, file_bytes(dir_ / "b.bundle"));
  // Not trivially: one different APDU byte gives another file.
  auto changed = all;
  changed[4].sessions[0].apdus[2].command.back() ^= 1;
  ASSERT_TRUE(write(dir_ / "c.bundle", changed).has_value());
  EXPECT_NE(a, file_bytes(dir_ / "c.bundle"));
}

// Layout of a 2-segment file, from the footer: where each region lies.
struct Regions {
  std::uint64_t header_end, index_offset, table_offset, footer_offset, size;
};
Regions regions(const Bytes& b) {
  Regions r{};
  r.size = b.size();
  r.header_end = 12 + formats::load_be(b.data() + 8, 4);
  r.footer_offset = r.size - formats::kBundleFooterSize;
  r.index_offset = formats::load_be(b.data() + r.footer_offset + 4, 8);
  r.table_offset = formats::load_be(b.data() + r.footer_offset + 12, 8);
  return r;
}

TEST_F(BundleTest, EveryKindOfDamageIsDetected) {
  const fs::path good = dir_ / "good.bundle";
  ASSERT_TRUE(write(good, cards(5)).has_value());
  const Bytes original = file_bytes(good);
  const Regions g = regions(original);
  ASSERT_TRUE(open_and_verify(good).has_value());

  struct Case {
    std::string name;
    std::uint64_t offset;
    ErrorCode code;
    std::string message;  // a part of the expected message
    bool at_open;         // detected by open(), or only by verify_all()
  };
  const std::uint64_t seg1 = g.header_end + (g.index_offset - g.header_end) / 2;
  const std::vector<Case> cases = {
      {"magic", 1, ErrorCode::kParse, "not a script bundle", true},
      {"version", 13, ErrorCode::kUnsupported, "format version", true},
      {"header xof_sha256", 30, ErrorCode::kIntegrity, "header, index or segment table", true},
      {"header product", g.header_end - 10, ErrorCode::kIntegrity, "header, index or segment table", true},
      {"segment 0 frame", g.header_end + 30, ErrorCode::kIntegrity, "segment 0", false},
      {"segment 1", seg1, ErrorCode::kIntegrity, "segment", false},
      {"index card id", g.index_offset + 16, ErrorCode::kIntegrity, "header, index or segment table", true},
      {"table digest", g.table_offset + 40, ErrorCode::kIntegrity, "header, index or segment table", true},
      {"footer index offset", g.footer_offset + 11, ErrorCode::kIntegrity, "as the footer locates them", true},
      {"footer card count", g.footer_offset + 27, ErrorCode::kIntegrity, "footer tag", true},
      {"footer structure digest", g.footer_offset + 40, ErrorCode::kIntegrity, "header, index or segment table", true},
      {"footer file digest", g.footer_offset + 70, ErrorCode::kIntegrity, "footer tag", true},
      {"footer tag", g.footer_offset + 100, ErrorCode::kIntegrity, "footer tag", true},
      {"trailer", g.size - 1, ErrorCode::kParse, "no trailer", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes damaged = original;
    ASSERT_LT(c.offset, damaged.size());
    damaged[c.offset] ^= 0x01;
    const fs::path path = dir_ / "damaged.bundle";
    put_file(path, damaged);
    auto r = BundleReader::open(path.string(), key_);
    if (c.at_open) {
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error().code(), c.code) << r.error().message();
      EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().message();
      EXPECT_NE(r.error().message().find(path.string()), std::string::npos) << r.error().message();
      EXPECT_NE(r.error().message().find("offset "), std::string::npos) << r.error().message();
      continue;
    }
    ASSERT_TRUE(r.has_value()) << r.error().message();
    Status v = r->verify_all();
    ASSERT_FALSE(v.has_value());
    EXPECT_EQ(v.error().code(), c.code) << v.error().message();
    EXPECT_NE(v.error().message().find(c.message), std::string::npos) << v.error().message();
    EXPECT_NE(v.error().message().find("offset "), std::string::npos) << v.error().message();
  }

  // Truncated anywhere: refused on open.
  for (std::uint64_t keep : {std::uint64_t{0}, std::uint64_t{5}, g.header_end + 3, g.index_offset,
                             g.size - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep));
    const fs::path path = dir_ / "short.bundle";
    put_file(path, Bytes(original.begin(), original.begin() + static_cast<std::ptrdiff_t>(keep)));
    auto r = BundleReader::open(path.string(), key_);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kParse) << r.error().message();
  }

  // Bytes appended after the trailer: the footer is no longer where the end says.
  Bytes longer = original;
  longer.push_back(0);
  put_file(dir_ / "long.bundle", longer);
  EXPECT_FALSE(BundleReader::open((dir_ / "long.bundle").string(), key_).has_value());
}

TEST_F(BundleTest, AnotherIntegrityKeyIsNamedAsSuch) {
  const fs::path path = dir_ / "k.bundle";
  ASSERT_TRUE(write(path, cards(2)).has_value());
  SoftCmacKey other(0x50);
  auto r = BundleReader::open(path.string(), other);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kIntegrity);
  EXPECT_NE(r.error().message().find("wrong key"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("bundle-integrity"), std::string::npos) << r.error().message();

  // And the writer refuses a key other than the one its header names.
  auto w = BundleWriter::create((dir_ / "k2.bundle").string(), header());
  ASSERT_TRUE(w.has_value());
  auto seg = formats::encode_bundle_segment(w->header(), 0, cards(1));
  ASSERT_TRUE(seg.has_value());
  ASSERT_TRUE(w->append(*seg).has_value());
  auto finished = w->finish(other);
  ASSERT_FALSE(finished.has_value());
  EXPECT_NE(finished.error().message().find("KCV"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "k2.bundle"));
}

TEST_F(BundleTest, AnUnfinishedWriterLeavesNothing) {
  const fs::path path = dir_ / "unfinished.bundle";
  {
    auto w = BundleWriter::create(path.string(), header());
    ASSERT_TRUE(w.has_value()) << w.error().message();
    auto seg = formats::encode_bundle_segment(w->header(), 0, cards(3));
    ASSERT_TRUE(seg.has_value());
    ASSERT_TRUE(w->append(*seg).has_value());
    EXPECT_TRUE(fs::exists(w->temp_path()));
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir_.path())) << "a temporary file was left behind";
}

TEST_F(BundleTest, ADuplicateCardIdIsRefusedAndNothingPublished) {
  const fs::path path = dir_ / "dup.bundle";
  auto all = cards(5);
  all[4].card_id = all[1].card_id;  // segment 1 repeats a card of segment 0
  auto r = write(path, all);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("'" + all[1].card_id + "' is in segment 0 and again in segment 1"),
            std::string::npos)
      << r.error().message();
  EXPECT_FALSE(fs::exists(path));
}

// Names in a directory, sorted.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// `n` cards whose ids differ in length, case and bytes above 0x7F ("C-3" is a prefix of
// "C-30"; "C-1\xC3\xA9" sorts after "C-10" because bytes compare unsigned), shuffled with
// a fixed seed: the writer receives them far from sorted.
std::vector<BundleCard> shuffled_cards(int n) {
  std::vector<BundleCard> out = cards(n);
  for (int i = 0; i < n; ++i) {
    const std::string number = std::to_string(i);
    std::string& id = out[static_cast<std::size_t>(i)].card_id;
    id = i % 3 == 0 ? "C-" + number : i % 3 == 1 ? "C-" + number + "\xC3\xA9" : "c-" + number;
  }
  std::mt19937 rng(20240611);
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

TEST_F(BundleTest, ASpilledIndexGivesTheSameBytes) {
  const auto all = shuffled_cards(3000);  // 1000 segments of 3
  auto segs = encode(all);
  ASSERT_TRUE(segs.has_value()) << segs.error().message();

  // The default run holds every entry: sorted in memory, as before runs existed.
  const fs::path reference = dir_ / "memory.bundle";
  std::size_t runs = 99;
  auto want = write_segments(reference, *segs, BundleWriterOptions{}, &runs);
  ASSERT_TRUE(want.has_value()) << want.error().message();
  EXPECT_EQ(runs, 0u);
  const Bytes want_bytes = file_bytes(reference);

  // 1: every entry its own run; 100: 30 runs; 1000: full runs only; 2999: one entry left.
  for (std::size_t run_entries : {std::size_t{1}, std::size_t{100}, std::size_t{1000}, std::size_t{2999}}) {
    SCOPED_TRACE("runs of " + std::to_string(run_entries));
    const fs::path path = dir_ / "spilled.bundle";
    BundleWriterOptions options;
    options.index_run_entries = run_entries;
    auto got = write_segments(path, *segs, options, &runs);
    ASSERT_TRUE(got.has_value()) << got.error().message();
    EXPECT_EQ(runs, (3000 + run_entries - 1) / run_entries);
    EXPECT_EQ(*got, *want);
    EXPECT_TRUE(file_bytes(path) == want_bytes) << "the spilled index gave other bytes";
  }

  // Read back: the reader checks the index order on open; every card is found through it.
  auto r = BundleReader::open((dir_ / "spilled.bundle").string(), key_);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->card_count(), 3000u);
  ASSERT_TRUE(r->verify_all().has_value());
  for (const BundleCard& c : all) {
    auto found = r->find_card(c.card_id);
    ASSERT_TRUE(found.has_value()) << found.error().message();
    ASSERT_TRUE(found->has_value()) << c.card_id;
    expect_same(**found, c);
  }
  auto missing = r->find_card("C-1");  // "C-1\xC3\xA9" is there, "C-1" is not
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(BundleTest, ADuplicateAcrossSpilledRunsIsRefusedAsInMemory) {
  auto all = cards(1000);
  all[950].card_id = all[10].card_id;  // segments 3 and 316: runs 0 and 9 of 100 entries
  auto segs = encode(all);
  ASSERT_TRUE(segs.has_value()) << segs.error().message();
  const fs::path path = dir_ / "dup.bundle";

  auto in_memory = write_segments(path, *segs, BundleWriterOptions{});
  ASSERT_FALSE(in_memory.has_value());
  EXPECT_NE(in_memory.error().message().find("'" + all[10].card_id +
                                             "' is in segment 3 and again in segment 316"),
            std::string::npos)
      << in_memory.error().message();

  BundleWriterOptions options;
  options.index_run_entries = 100;
  std::size_t runs = 0;
  auto spilled = write_segments(path, *segs, options, &runs);
  EXPECT_EQ(runs, 10u);
  ASSERT_FALSE(spilled.has_value());
  EXPECT_EQ(spilled.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(spilled.error().message(), in_memory.error().message());
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir_.path())) << "a temporary file was left behind";

  // With the wrong key too, the duplicate is what both report (it comes first in memory).
  SoftCmacKey other(0x50);
  auto wrong_key = write_segments(path, *segs, options, &runs, &other);
  ASSERT_FALSE(wrong_key.has_value());
  EXPECT_EQ(wrong_key.error().message(), in_memory.error().message());
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(BundleTest, SpilledRunsLeaveNoFileBehind) {
  auto segs = encode(cards(60));  // 20 segments
  ASSERT_TRUE(segs.has_value()) << segs.error().message();
  // O_TMPFILE, and the mkstemp + unlink way taken where a file system refuses it.
  for (bool o_tmpfile : {true, false}) {
    SCOPED_TRACE(o_tmpfile ? "O_TMPFILE" : "mkstemp + unlink");
    BundleWriterOptions options;
    options.index_run_entries = 10;
    options.run_file_o_tmpfile = o_tmpfile;
    const fs::path path = dir_ / "runs.bundle";
    {
      auto w = BundleWriter::create(path.string(), header(), options);
      ASSERT_TRUE(w.has_value()) << w.error().message();
      for (const auto& seg : *segs) ASSERT_TRUE(w->append(seg).has_value());
      EXPECT_EQ(w->index_runs_spilled(), 5u);
      // While runs exist, the directory holds the bundle's temporary file and nothing else.
      EXPECT_EQ(listing(dir_.path()),
                std::vector<std::string>{fs::path(w->temp_path()).filename().string()});
    }  // abandoned
    EXPECT_TRUE(listing(dir_.path()).empty()) << "a file was left behind by an abandoned writer";

    std::size_t runs = 0;
    auto done = write_segments(path, *segs, options, &runs);
    ASSERT_TRUE(done.has_value()) << done.error().message();
    EXPECT_EQ(runs, 6u);
    EXPECT_EQ(listing(dir_.path()), std::vector<std::string>{"runs.bundle"});
    ASSERT_TRUE(open_and_verify(path).has_value());
    fs::remove(path);
  }
}

TEST_F(BundleTest, AFailedSpillBreaksTheWriter) {
  auto segs = encode(cards(9));  // 3 segments
  ASSERT_TRUE(segs.has_value()) << segs.error().message();
  const fs::path path = dir_ / "nofd.bundle";
  BundleWriterOptions options;
  options.index_run_entries = 3;
  auto w = BundleWriter::create(path.string(), header(), options);
  ASSERT_TRUE(w.has_value()) << w.error().message();
  ASSERT_TRUE(w->append((*segs)[0]).has_value());  // 3 entries: the run is full, not spilled

  // No descriptor left: the run file cannot be opened when segment 1 needs a spill.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  Status spilled = w->append((*segs)[1]);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);

  ASSERT_FALSE(spilled.has_value());
  EXPECT_EQ(spilled.error().code(), ErrorCode::kIo) << spilled.error().message();
  EXPECT_NE(spilled.error().message().find(path.string() + ": "), std::string::npos)
      << spilled.error().message();
  EXPECT_NE(spilled.error().message().find("run file"), std::string::npos) << spilled.error().message();
  // Broken, as after any failed write.
  auto again = w->append((*segs)[2]);
  ASSERT_FALSE(again.has_value());
  EXPECT_NE(again.error().message().find("after a failed write"), std::string::npos);
  auto finished = w->finish(key_);
  ASSERT_FALSE(finished.has_value());
  EXPECT_NE(finished.error().message().find("after a failed write"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(BundleTest, SegmentsMustArriveInOrderAndFitTheHeader) {
  auto w = BundleWriter::create((dir_ / "o.bundle").string(), header());
  ASSERT_TRUE(w.has_value());
  auto seg1 = formats::encode_bundle_segment(w->header(), 1, cards(2));
  ASSERT_TRUE(seg1.has_value());
  auto appended = w->append(*seg1);
  ASSERT_FALSE(appended.has_value());
  EXPECT_NE(appended.error().message().find("segment 0 is next"), std::string::npos);

  // A segment whose struct disagrees with its bytes.
  auto seg0 = formats::encode_bundle_segment(w->header(), 0, cards(2));
  ASSERT_TRUE(seg0.has_value());
  auto lying = *seg0;
  lying.card_ids.pop_back();
  EXPECT_FALSE(w->append(lying).has_value());
  EXPECT_TRUE(w->append(*seg0).has_value());

  // Too many cards, or none.
  EXPECT_FALSE(formats::encode_bundle_segment(w->header(), 1, cards(4)).has_value());
  EXPECT_FALSE(formats::encode_bundle_segment(w->header(), 1, {}).has_value());
}

TEST_F(BundleTest, TheEncoderRefusesWhatDoesNotFit) {
  const BundleHeader h = header();
  auto refused = [&](BundleCard c, const std::string& what) {
    auto r = formats::encode_bundle_segment(h, 7, std::span(&c, 1));
    ASSERT_FALSE(r.has_value()) << what;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find("bundle segment 7"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  };
  BundleCard c = card(1);
  c.card_id = std::string(65, 'X');
  refused(c, "card id of 65 bytes");
  c = card(1);
  c.sessions.clear();
  refused(c, "0 sessions");
  c = card(1);
  c.sessions[0].apdus[0].command = Bytes(65545, 0);
  refused(c, "command has 65545 bytes");
  c = card(1);
  c.sessions[0].apdus[0].label = std::string(257, 'L');
  refused(c, "label has 257 bytes");
  c = card(1);
  c.sessions[0].scp = 1;
  refused(c, "SCP1");
  c = card(1);
  c.sessions[0].sd_aid = Bytes(17, 0xA0);
  refused(c, "SD AID has 17 bytes");

  // The largest APDU fits.
  c = card(1);
  c.sessions[0].apdus[0].command = Bytes(65544, 0x5C);
  auto big = formats::encode_bundle_segment(h, 0, std::span(&c, 1));
  ASSERT_TRUE(big.has_value()) << big.error().message();
  auto back = formats::decode_bundle_segment(h, big->bytes, 0, "big");
  ASSERT_TRUE(back.has_value()) << back.error().message();
  expect_same((*back)[0], c);
}

// A segment around a hand-made body: fixed fields as given, the body compressed.
Bytes segment_with_body(const Bytes& body, std::uint32_t cards_declared,
                        std::optional<std::uint32_t> body_length = std::nullopt) {
  auto frame = formats::zstd_compress(body, 3);
  EXPECT_TRUE(frame.has_value());
  formats::ByteWriter w;
  w.bytes(formats::kBundleSegmentMagic);
  w.u32(0);
  w.u32(cards_declared);
  w.u32(body_length.value_or(static_cast<std::uint32_t>(body.size())));
  w.u32(static_cast<std::uint32_t>(frame->size()));
  w.bytes(frame->reveal());
  return w.take();
}

// One card up to its first session's APDU count; `tail` follows.
Bytes body_prefix(std::uint16_t sessions, std::uint32_t apdus, const Bytes& tail) {
  formats::ByteWriter w;
  w.str("CARD-1");
  w.str("SE-1");
  w.u16(sessions);
  w.u8(3);
  w.u8(0x70);
  w.u8(3);
  w.u8(0x30);
  w.u8(0);  // kdd
  w.u8(0);  // aid
  w.u32(1);
  w.u8(0);  // host challenge
  w.u8(0);  // expected response
  w.u32(apdus);
  w.bytes(tail);
  return w.take();
}

TEST_F(BundleTest, HostileSegmentsFailCleanly) {
  const BundleHeader h = header();
  auto refused = [&](const Bytes& seg, const std::string& what, ErrorCode code = ErrorCode::kParse) {
    auto r = formats::decode_bundle_segment(h, seg, 0, "hostile: segment 0", 1000);
    ASSERT_FALSE(r.has_value()) << what;
    EXPECT_EQ(r.error().code(), code) << r.error().message();
    EXPECT_NE(r.error().message().find("hostile: segment 0"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("offset "), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  };
  // A valid segment to start from.
  auto good = formats::encode_bundle_segment(h, 0, cards(2));
  ASSERT_TRUE(good.has_value());
  ASSERT_TRUE(formats::decode_bundle_segment(h, good->bytes, 0, "ok").has_value());

  refused(Bytes{'P', 'F'}, "truncated");
  Bytes wrong_number = good->bytes;
  wrong_number[7] = 5;
  refused(wrong_number, "segment number 5", ErrorCode::kIntegrity);
  Bytes many_cards = good->bytes;
  formats::store_be(many_cards.data() + 8, 0xFFFFFFFF, 4);
  refused(many_cards, "4294967295 cards");
  // A 4 GiB body declared by a frame of a few dozen bytes: refused before allocating.
  Bytes huge_body = good->bytes;
  formats::store_be(huge_body.data() + 12, 0xFFFFFFF0, 4);
  refused(huge_body, "uncompressed length 4294967280 is impossible");
  Bytes frame_len = good->bytes;
  formats::store_be(frame_len.data() + 16, 0x7FFFFFFF, 4);
  refused(frame_len, "compressed length 2147483647");
  Bytes bad_frame = good->bytes;
  bad_frame[24] ^= 0xFF;
  bad_frame[25] ^= 0xFF;
  refused(bad_frame, "compressed body");  // offset of the frame named

  // Inside the body: counts and lengths larger than the bytes or the caps.
  refused(segment_with_body(body_prefix(0xFFFF, 0, {}), 1), "65535 sessions");
  refused(segment_with_body(body_prefix(0, 0, {}), 1), "0 sessions");
  refused(segment_with_body(body_prefix(1, 0xFFFFFFFF, {}), 1), "4294967295 APDUs");
  refused(segment_with_body(body_prefix(1, 1, Bytes{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 1),
          "APDU 0 of 4294967295 bytes");
  refused(segment_with_body(body_prefix(1, 1, Bytes{0x00, 0x00, 0x01, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}), 1),
          "APDU 0 is truncated (needs 256 bytes, 9 left)");
  refused(segment_with_body(body_prefix(1, 1, Bytes{0, 0, 0, 4, 0, 0, 0, 0}), 1),
          "more than the 8 bytes left can hold");
  formats::ByteWriter long_id;
  long_id.u16(0xFFFF);
  long_id.bytes(Bytes(10, 'A'));
  refused(segment_with_body(long_id.data(), 1), "card id is truncated");
  // The body declares a length the frame does not hold.
  const Bytes body = body_prefix(1, 0, {});
  refused(segment_with_body(body, 1, static_cast<std::uint32_t>(body.size() + 1)), "but the frame holds");
  refused(segment_with_body(body, 1, static_cast<std::uint32_t>(body.size() - 1)), "compressed body");
  // Trailing bytes after the declared cards.
  Bytes trailing = body;
  trailing.push_back(0);
  refused(segment_with_body(trailing, 1), "after the last card");
}

// A string too long for its u16 length is the writer's caller's bug: refused loudly, never
// written with a wrapped length.
TEST(ByteWriterTest, AStringLongerThanItsU16LengthThrowsInsteadOfWrapping) {
  formats::ByteWriter w;
  w.str(std::string(0xFFFF, 'a'));
  EXPECT_EQ(w.size(), 2u + 0xFFFF);
  EXPECT_THROW(w.str(std::string(0x10000, 'b')), std::logic_error);
  EXPECT_EQ(w.size(), 2u + 0xFFFF);  // nothing of it written
}

}  // namespace
}  // namespace persoflow::test
