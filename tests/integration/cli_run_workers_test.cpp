// `persoflow run --workers N` (docs/cli.md#workers): the field-encrypted values translated
// in import worker processes, and each XOF segment's cards prepared in prep worker
// processes that decrypt the segment as sealed for the XOF being written (no XOF is
// published yet for them to read). Whatever the number of workers, and however often they
// are recycled, the XOF, the bundle, the reject report and the run report (but for its
// workers) are those of a run in one process; a worker that dies interrupts the run and
// --resume finishes it.
#include <algorithm>

#include "formats/sha256_digest.h"
#include "formats/xof_format.h"
#include "formats/xof_reader.h"
#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliRunWorkersTest : public CliPrepTest {
 protected:
  // The demo profile with 300-card XOF segments (several segments per worker) and
  // 200-card bundle segments (boundaries that do not align).
  std::string profile() const override { return path("acme-small-segments.xml"); }

  void SetUp() override {
    CliPrepTest::SetUp();
    write_small_segments_profile(profile());
  }

  // `cards` cards of which SE 7 is not in the registry (a registry reject), record 5's PAN
  // fails its Luhn check (an import reject) and record 600's PIN block no longer unwraps
  // (one byte of its RFC 5649 wrapping changed: a field-encryption reject, found by
  // whichever process translates it), in issuer.der through openssl cms.
  std::map<std::string, PlainCard> make_cards(int cards) {
    auto plain = setup_cards(cards, "SE0000000007", /*import_xof=*/false);
    std::string xml = read_file(path("plain.xml"));
    auto nth_card = [&](int k) {
      std::size_t p = 0;
      for (int i = 0; i < k; ++i) p = xml.find("<card id=\"", p + 1);
      return p;
    };
    const std::size_t pan_end = xml.find("</pan>", nth_card(5));
    xml[pan_end - 1] = xml[pan_end - 1] == '0' ? '1' : '0';
    const std::size_t pin = xml.find("<pin-block>", nth_card(600)) + 11 + 20;
    xml[pin] = xml[pin] == '0' ? '1' : '0';
    encrypt_issuer_text(xml, "issuer.der");
    return plain;
  }

  std::vector<std::string> run_args(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> a = {"run",         "--profile", profile(),         "--in",     path("issuer.der"),
                                  "--registry",  path(name + ".db"), "--out-dir", path(name), "--name",
                                  "night",       "--run-id",  "night-9"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // A run over a fresh copy of the registry (the same reservation id and counters each time).
  ProcessResult run_copy(const std::string& name, const std::vector<std::string>& extra) {
    fs::copy_file(path("registry.db"), path(name + ".db"));
    return pf(run_args(name, extra));
  }

  nlohmann::json report(const std::string& name) { return nlohmann::json::parse(read_file(path(name + "/night.report.json"))); }

  void expect_same_outputs(const std::string& a, const std::string& b) {
    for (const char* f : {"/night.xof", "/night.bundle", "/night.rejects.jsonl"}) {
      EXPECT_EQ(read_file(path(a + f)), read_file(path(b + f))) << f;
    }
    auto stable = [&](const std::string& name) {
      auto j = report(name);
      for (const char* k : {"seconds", "cards_per_second", "workers", "run_dir", "resumed"}) j.erase(k);
      j["input"].erase("registry");
      j["output"]["xof"].erase("path");
      j["output"]["bundle"].erase("path");
      j["rejects"].erase("path");
      return j;
    };
    EXPECT_EQ(stable(a), stable(b));
  }
};

TEST_F(CliRunWorkersTest, AnyNumberOfWorkersGivesTheOutputsOfARunInOneProcess) {
  const auto plain = make_cards(1500);
  auto ref = run_copy("ref", {"--workers", "0"});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const auto r0 = report("ref");
  EXPECT_EQ(r0["workers"]["import"]["processes"], 0);
  EXPECT_EQ(r0["workers"]["prep"]["processes"], 0);
  EXPECT_TRUE(r0["workers"]["recycle_cards"].is_null());
  // One reject of each kind, each alone: the rest went on.
  EXPECT_EQ(r0["rejects"]["by_category"]["luhn"], 1);
  EXPECT_EQ(r0["rejects"]["by_category"]["field-encryption"], 1);
  EXPECT_GE(r0["rejects"]["by_category"]["registry"].get<int>(), 1);
  const int prepared = r0["output"]["bundle"]["cards"].get<int>();
  EXPECT_EQ(prepared + r0["rejects"]["count"].get<int>(), 1500);

  for (const std::string n : {"1", "2"}) {
    SCOPED_TRACE(n + " workers");
    auto r = run_copy("w" + n, {"--workers", n});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_outputs("ref", "w" + n);
    const auto j = report("w" + n);
    EXPECT_EQ(j["workers"]["import"]["processes"], std::stoi(n));
    EXPECT_EQ(j["workers"]["import"]["started"], std::stoi(n));
    EXPECT_EQ(j["workers"]["prep"]["processes"], std::stoi(n));
    EXPECT_EQ(j["workers"]["prep"]["started"], std::stoi(n));
  }
  // Workers replaced every 400 cards: 1,500 cards over two import and two prep workers
  // start at least 3 of each.
  auto rec = run_copy("rec", {"--workers", "2", "--worker-recycle-cards", "400"});
  ASSERT_EQ(rec.exit_code, 0) << rec.err;
  expect_same_outputs("ref", "rec");
  const auto j = report("rec");
  EXPECT_GE(j["workers"]["import"]["started"].get<int>(), 3);
  EXPECT_GE(j["workers"]["prep"]["started"].get<int>(), 3);
  EXPECT_EQ(j["workers"]["recycle_cards"], 400);
  // The bundle verifies card by card against an independent computation.
  const auto cards = read_bundle(path("w2/night.bundle"));
  ASSERT_EQ(cards.size(), static_cast<std::size_t>(prepared));
  for (std::size_t i = 0; i < cards.size(); i += 61) verify_card(cards[i], plain.at(cards[i].card_id));
}

TEST_F(CliRunWorkersTest, CardsRejectedInAPrepWorkerAreReportedAsInOneProcess) {
  make_cards(700);
  // The 3-digit service code in one byte: every card's script fails in its prep worker, and
  // each card is rejected alone, with its record, byte offset, reason and burnt counter.
  std::string xml = read_file(profile());
  ASSERT_TRUE(replace_once(xml, "attribute=\"service_code\" encoding=\"numeric\" length=\"2\"",
                           "attribute=\"service_code\" encoding=\"numeric\" length=\"1\""));
  write_file(profile(), xml);
  auto ref = run_copy("ref", {"--workers", "0"});
  auto w = run_copy("w", {"--workers", "2"});
  EXPECT_EQ(w.exit_code, ref.exit_code) << w.err << "\n" << ref.err;
  const std::string rejects = read_file(path("w/night.rejects.jsonl"));
  EXPECT_EQ(rejects, read_file(path("ref/night.rejects.jsonl")));
  EXPECT_EQ(static_cast<std::size_t>(std::count(rejects.begin(), rejects.end(), '\n')), 700u);
  EXPECT_NE(rejects.find("more than fit 1 bytes (counter "), std::string::npos) << rejects.substr(0, 400);
  EXPECT_NE(rejects.find("\"offset\":"), std::string::npos) << rejects.substr(0, 400);
  EXPECT_EQ(fs::exists(path("w/night.bundle")), fs::exists(path("ref/night.bundle")));
  if (fs::exists(path("ref/night.bundle"))) expect_same_outputs("ref", "w");
}

TEST_F(CliRunWorkersTest, AWorkerThatDiesInterruptsTheRunAndResumeFinishesIt) {
  make_cards(1500);
  ASSERT_EQ(run_copy("ref", {"--workers", "0"}).exit_code, 0);
  // Each worker kills itself on its second piece of work: the run stops, names the worker
  // and how it ended, publishes nothing and keeps its reservation for --resume.
  fs::copy_file(path("registry.db"), path("a.db"));
  const pid_t pid = spawn(run_args("a", {"--workers", "2", "--batch-records", "64"}),
                          {{"PERSOFLOW_TEST_WORKER_DIE_AT", "2"}});
  EXPECT_EQ(wait_for(pid), 6) << "an HSM-class error (exit 6)";
  EXPECT_FALSE(fs::exists(path("a/night.xof"))) << "published although a worker died";
  EXPECT_FALSE(fs::exists(path("a/night.bundle"))) << "published although a worker died";
  const std::string journal = read_file(path("a/night.run/journal"));
  EXPECT_NE(journal.find("\"record\":\"interrupted\""), std::string::npos) << journal;
  EXPECT_NE(journal.find("worker (pid "), std::string::npos) << journal;
  EXPECT_NE(journal.find("was killed by signal 9 while"), std::string::npos) << journal;
  EXPECT_EQ(journal.find("\"record\":\"failed\""), std::string::npos);

  auto resumed = pf({"run", "--resume", path("a/night.run"), "--workers", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_same_outputs("ref", "a");
  EXPECT_EQ(report("a")["resumed"], true);
  auto reg = formats::SeRegistry::open(path("a.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u) << "the resume reserved counters again";
  EXPECT_EQ((*list)[0].state, formats::ReservationState::kPublished);
}

// A prep worker as `run` drives it (the XOF's header in its init, each segment as sealed
// after the work's JSON) fed garbage: a frame too short for its JSON length, a JSON length
// running past the frame, bytes that are not a segment, and a real segment with one byte
// changed. Each is answered with an error naming the frame or the segment and the byte
// offset or the reason, never a value; the worker ends cleanly when its parent closes.
TEST_F(CliRunWorkersTest, APrepWorkerFedGarbageSegmentsAnswersWithAnError) {
  const auto plain = setup_cards(20);  // cards.xof: one segment
  auto info = keys_->find("pkcs11:object=xof-integrity");
  ASSERT_TRUE(info.has_value());
  hsm::HsmMacKey integrity(*keys_, *info);
  auto reader = formats::XofReader::open(path("cards.xof"), integrity);
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  auto segment = reader->read_segment(0);
  ASSERT_TRUE(segment.has_value()) << segment.error().message();
  const std::string profile_bytes = read_file(profile());
  auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(profile_bytes.data()), profile_bytes.size()));
  ASSERT_TRUE(digest.has_value());
  formats::BundleHeader transport;
  transport.xof_sha256.assign(32, 0);
  transport.profile_sha256.assign(digest->begin(), digest->end());
  transport.profile_id = "acme-debit-scp03";
  transport.product = "acme-debit";
  transport.segment_cards = formats::kBundleMaxSegmentCards;
  transport.zstd_level = 1;
  transport.integrity_key_uri = "pkcs11:object=xof-integrity";
  transport.integrity_kcv.assign(3, 0);

  const WorkerWire w = start_worker("prep-worker");
  send_frame(w, 'I', nlohmann::json{{"profile", profile()},
                                    {"profile_sha256", to_hex(Bytes(digest->begin(), digest->end()))},
                                    {"xof", path("being-written.xof")},
                                    {"xof_header", to_hex(formats::serialize_xof_header(reader->header()))},
                                    {"registry", path("registry.db")},
                                    {"lookup_kind", "se_id"},
                                    {"bundle_header", to_hex(formats::serialize_bundle_header(transport))}}
                         .dump());
  auto ready = receive_frame(w);
  ASSERT_EQ(ready.first, 'R') << ready.second;
  const std::string json = nlohmann::json{{"seq", 1}, {"segment", 0}, {"cards", {{0, 1, 0, 1, "SE0000000001"}}}}.dump();
  auto work = [&](const std::string& sealed) {
    std::string f(4, '\0');
    for (int i = 0; i < 4; ++i) f[static_cast<std::size_t>(i)] = static_cast<char>(json.size() >> (24 - 8 * i));
    return f + json + sealed;
  };
  auto expect_error = [&](const std::string& frame, const std::string& want) {
    send_frame(w, 'W', frame);
    const auto [type, text] = receive_frame(w);
    EXPECT_EQ(type, 'E') << text;
    EXPECT_NE(text.find(want), std::string::npos) << text;
    for (const auto& [id, card] : plain) EXPECT_EQ(text.find(card.pan), std::string::npos) << text;
  };
  expect_error(std::string("\0\0", 2), "a work frame: offset 0: its JSON length is truncated");
  expect_error(std::string("\0\0\x03\xE8{}", 6), "a work frame: offset 4: its JSON is truncated");
  expect_error(work("not a segment"), path("being-written.xof") + ": segment 0: offset ");
  // One byte of the first AES-GCM block changed: its tag no longer verifies.
  ASSERT_FALSE(segment->blocks.empty());
  std::string sealed(segment->bytes.begin(), segment->bytes.end());
  const std::size_t at = segment->blocks[0].offset + segment->blocks[0].length / 2;
  sealed[at] = static_cast<char>(sealed[at] ^ 0x01);
  expect_error(work(sealed), path("being-written.xof") + ": segment 0");
  // The same segment intact: its one card prepared.
  send_frame(w, 'W', work(std::string(segment->bytes.begin(), segment->bytes.end())));
  const auto [type, text] = receive_frame(w);
  EXPECT_EQ(type, 'D') << text;
  EXPECT_EQ(stop_worker(w), 0);
}

TEST_F(CliRunWorkersTest, WorkersOptionIsChecked) {
  setup_cards(10, "", /*import_xof=*/false);
  for (const char* bad : {"-1", "x", "65", "2x"}) {
    auto r = pf(run_args("bad", {"--workers", bad}));
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--workers"), std::string::npos) << r.err;
  }
  auto help = pf({"run", "--help"});
  EXPECT_NE(help.out.find("--workers"), std::string::npos);
  EXPECT_NE(help.out.find("--worker-recycle-cards"), std::string::npos);
}

}  // namespace
}  // namespace persoflow::test
