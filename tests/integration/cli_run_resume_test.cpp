// `persoflow run --resume` (docs/formats/journal.md): a run (import and prep in one flow
// graph) killed at any point is finished by --resume with the reservation it made, into
// an XOF, a bundle, a reject report and a run report byte-identical to an uninterrupted
// run's over an identical registry; no card lost or twice, no counter value reserved
// twice, nothing partial published. Deterministic crashes (after a journal record; after
// a registry commit that no record names yet), a random-kill harness (seeded; the seed is
// printed), and the refusals.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <span>

#include "formats/sha256_digest.h"

#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliRunResumeTest : public CliPrepTest {
 protected:
  std::string profile() const override { return (dir() / "acme-small.xml").string(); }

  // 2000 cards with rejects of both halves: SE 7 is not in the registry (its cards are
  // registry rejects) and two records fail validation (import rejects), one of them
  // near the end of the file. Small batches and segments so a run journals many batches.
  std::map<std::string, PlainCard> setup(int cards = 2000) {
    // The demo profile with smaller segments (XOF 150 cards, bundle 100): many journaled
    // batches, and segment boundaries that do not fall on batch boundaries.
    std::string xml = read_file(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-debit-scp03.xml");
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"<xof segment-cards=\"1024\"/>", "<xof segment-cards=\"150\"/>"},
                                   {"<bundle segment-cards=\"256\"/>", "<bundle segment-cards=\"100\"/>"}}) {
      const auto at = xml.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) xml.replace(at, from.size(), to);
    }
    write_file(dir() / "acme-small.xml", xml);
    auto plain = setup_cards(cards, "SE0000000007", /*import_xof=*/false);
    std::string text = read_file(path("plain.xml"));
    for (const char* id : {"C00000000005", "C00000001990"}) {
      const auto it = plain.find(id);
      if (it == plain.end()) continue;
      std::string bad = it->second.pan;
      bad.back() = static_cast<char>('0' + (bad.back() - '0' + 1) % 10);
      text.replace(text.find(it->second.pan), it->second.pan.size(), bad);
      plain.erase(it);
    }
    encrypt_issuer_text(text, "issuer.der");
    fs::copy_file(path("registry.db"), path("pristine.db"));
    return plain;
  }

  std::vector<std::string> run_args(const std::string& registry, const std::string& out_dir) {
    return {"run", "--profile", profile(), "--in", path("issuer.der"), "--registry", path(registry), "--out-dir",
            path(out_dir), "--name", "night", "--run-id", "night-9", "--batch-records", "64"};
  }

  // The reference: an uninterrupted run over a fresh copy of the registry.
  void reference() {
    fs::copy_file(path("pristine.db"), path("registry-ref.db"));
    auto r = pf(run_args("registry-ref.db", "ref"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  nlohmann::json stable_report(const std::string& out_dir) {
    auto j = nlohmann::json::parse(read_file(path(out_dir + "/night.report.json")));
    for (const char* k : {"seconds", "cards_per_second", "hsm_retries", "run_dir", "resumed"}) j.erase(k);
    j["input"].erase("registry");
    j["output"]["xof"].erase("path");
    j["output"]["bundle"].erase("path");
    j["rejects"].erase("path");
    return j;
  }

  // SHA-256 and size of a file (readable in a failure, unlike the bytes).
  std::string digest_of(const std::string& name) {
    const std::string bytes = read_file(path(name));
    auto d = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    return d ? to_hex(Bytes(d->begin(), d->end())) + " (" + std::to_string(bytes.size()) + " bytes)" : "?";
  }

  // Every output equal to the reference's.
  void expect_same_as_reference(const std::string& out_dir) {
    for (const char* f : {"night.xof", "night.bundle", "night.rejects.jsonl"}) {
      EXPECT_EQ(digest_of(out_dir + "/" + f), digest_of(std::string("ref/") + f)) << f << " differs";
    }
    EXPECT_EQ(stable_report(out_dir), stable_report("ref"));
  }

  // One reservation, published under the bundle's digest; no SE counter value in two
  // ranges; the bundle holds every card the reference does, once, each with a counter of
  // its SE's ranges.
  void expect_counters_and_cards(const std::string& registry, const std::string& out_dir,
                                 const std::map<std::string, PlainCard>& plain) {
    auto reg = formats::SeRegistry::open(path(registry), false);
    ASSERT_TRUE(reg.has_value()) << reg.error().message();
    auto list = reg->reservations();
    ASSERT_TRUE(list.has_value());
    ASSERT_EQ(list->size(), 1u) << "a resume reserved counters again";
    EXPECT_EQ((*list)[0].state, formats::ReservationState::kPublished);
    const std::string bytes = read_file(path(out_dir + "/night.bundle"));
    auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    ASSERT_TRUE(digest.has_value());
    std::string want = to_hex(Bytes(digest->begin(), digest->end()));
    std::string got = (*list)[0].output_digest;
    for (auto* s : {&want, &got}) std::transform(s->begin(), s->end(), s->begin(), ::toupper);
    EXPECT_EQ(got, want);

    auto ranges = reg->ranges_of((*list)[0].id);
    ASSERT_TRUE(ranges.has_value());
    std::map<std::string, std::set<std::uint32_t>> reserved;
    for (const auto& r : *ranges) {
      for (std::uint32_t c = r.first; c <= r.last; ++c) {
        EXPECT_TRUE(reserved[r.se_id].insert(c).second) << "counter " << c << " of SE " << r.se_id << " reserved twice";
      }
    }
    const auto cards = read_bundle(path(out_dir + "/night.bundle"));
    std::set<std::string> ids;
    std::map<std::string, std::set<std::uint32_t>> used;
    for (const auto& c : cards) {
      EXPECT_TRUE(ids.insert(c.card_id).second) << "card twice: " << c.card_id;
      ASSERT_EQ(c.sessions.size(), 1u);
      EXPECT_EQ(reserved[c.se_id].count(c.sessions[0].counter), 1u) << c.card_id << ": counter outside its ranges";
      EXPECT_TRUE(used[c.se_id].insert(c.sessions[0].counter).second) << "counter used twice: " << c.se_id;
    }
    std::size_t expected = 0;
    for (const auto& [id, p] : plain) {
      if (p.se_id == "SE0000000007") continue;  // registry rejects
      ++expected;
      EXPECT_EQ(ids.count(id), 1u) << "card lost: " << id;
    }
    EXPECT_EQ(cards.size(), expected);
  }

  static std::size_t journal_records(const fs::path& run_dir, const std::string& kind) {
    std::ifstream in(run_dir / "journal");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("\"record\":\"" + kind + "\"") != std::string::npos;
    return n;
  }
};

// Killed right after its 3rd batch record: the resume reads the issuer file again,
// skips the journaled records and writes what the uninterrupted run wrote.
TEST_F(CliRunResumeTest, CrashAfterABatchRecordResumesByteIdentical) {
  const auto plain = setup();
  reference();
  fs::copy_file(path("pristine.db"), path("registry.db"), fs::copy_options::overwrite_existing);
  EXPECT_EQ(wait_for(spawn(run_args("registry.db", "out"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "3"}})),
            128 + SIGKILL);
  EXPECT_FALSE(fs::exists(path("out/night.xof"))) << "published before the run completed";
  EXPECT_FALSE(fs::exists(path("out/night.bundle"))) << "published before the run completed";
  EXPECT_EQ(journal_records(path("out/night.run"), "batch"), 3u);

  auto r = pf({"run", "--resume", path("out/night.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_as_reference("out");
  expect_counters_and_cards("registry.db", "out", plain);
  EXPECT_EQ(journal_records(path("out/night.run"), "finished"), 1u);
  EXPECT_FALSE(fs::exists(path("out/night.run/run.spool")));
  const auto report = nlohmann::json::parse(read_file(path("out/night.report.json")));
  EXPECT_EQ(report["resumed"], true);
  EXPECT_GT(report["rejects"]["import"], 0);
  EXPECT_GT(report["rejects"]["prep"], 0);
}

// Killed right after the registry committed its 2nd counter batch, before the journal
// names it: the resume takes that batch back from the registry's ranges.
TEST_F(CliRunResumeTest, ABatchCommittedButNotJournaledIsTakenBackNotReservedAgain) {
  const auto plain = setup();
  reference();
  fs::copy_file(path("pristine.db"), path("registry.db"), fs::copy_options::overwrite_existing);
  EXPECT_EQ(wait_for(spawn(run_args("registry.db", "out"), {{"PERSOFLOW_TEST_CRASH_AFTER_RESERVE", "2"}})),
            128 + SIGKILL);
  {
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    ASSERT_TRUE(reg.has_value());
    auto ranges = reg->ranges_of(1);
    ASSERT_TRUE(ranges.has_value());
    std::int64_t last = 0;
    for (const auto& range : *ranges) last = std::max(last, range.batch);
    ASSERT_EQ(last, 2) << "the crash point is after the 2nd committed batch";
  }
  EXPECT_LT(journal_records(path("out/night.run"), "batch"), 2u);
  auto r = pf({"run", "--resume", path("out/night.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_as_reference("out");
  expect_counters_and_cards("registry.db", "out", plain);
}

// A torn last record (a power cut while appending it) is ignored.
TEST_F(CliRunResumeTest, TornLastRecordIsIgnored) {
  const auto plain = setup();
  reference();
  fs::copy_file(path("pristine.db"), path("registry.db"), fs::copy_options::overwrite_existing);
  EXPECT_EQ(wait_for(spawn(run_args("registry.db", "out"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "2"}})),
            128 + SIGKILL);
  {
    std::ofstream j(path("out/night.run/journal"), std::ios::app | std::ios::binary);
    j << "300 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef {\"record\":\"batch\",\"se";
  }
  auto r = pf({"run", "--resume", path("out/night.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_as_reference("out");
  expect_counters_and_cards("registry.db", "out", plain);
}

// A batch record that is intact (framing and digest right) but not a batch the run could
// have written is damage, not a torn tail: exit 7, naming the journal; nothing published.
TEST_F(CliRunResumeTest, AMalformedBatchRecordIsRefused) {
  setup(600);
  EXPECT_EQ(wait_for(spawn(run_args("registry.db", "out"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})),
            128 + SIGKILL);
  const std::string payload = R"({"record":"batch","seq":7,"xof":[{"number":"x"}]})";
  auto d = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
  ASSERT_TRUE(d.has_value());
  {
    std::ofstream j(path("out/night.run/journal"), std::ios::app | std::ios::binary);
    j << payload.size() << ' ' << to_hex(Bytes(d->begin(), d->end())) << ' ' << payload << '\n';
  }
  auto r = pf({"run", "--resume", path("out/night.run")});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("night.run/journal: a malformed batch record"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("out/night.xof")));
  EXPECT_FALSE(fs::exists(path("out/night.bundle")));
}

// The harness: a run killed (SIGKILL) after a random delay, its resumes killed too at
// random, until one finishes; each time the outputs equal the reference's, one
// reservation, every card once, no counter twice. Bounded in iterations and time; the
// seed replays a failure (PERSOFLOW_RESUME_SEED).
TEST_F(CliRunResumeTest, RandomKillsNeverLoseDuplicateOrReuse) {
  const auto plain = setup();
  const auto t0 = std::chrono::steady_clock::now();
  reference();
  const auto ref_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();

  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("PERSOFLOW_RESUME_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("random-kill harness (run): seed %llu (replay with PERSOFLOW_RESUME_SEED=%llu), reference run %lld ms\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<long long>(ref_ms));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<long long> delay(0, std::max<long long>(ref_ms * 11 / 10, 50));

  constexpr int kMaxIterations = 10;
  constexpr auto kBudget = std::chrono::seconds(35);
  const auto start = std::chrono::steady_clock::now();
  int iterations = 0, killed_runs = 0, killed_resumes = 0;
  for (int it = 0; it < kMaxIterations && (it < 3 || std::chrono::steady_clock::now() - start < kBudget); ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it) + ", seed " + std::to_string(seed));
    const std::string reg = "reg-" + std::to_string(it) + ".db";
    const std::string out = "it-" + std::to_string(it);
    fs::copy_file(path("pristine.db"), path(reg));
    // After any kill: nothing published, or the complete output (killed after publishing).
    auto check_published = [&] {
      for (const char* f : {"night.xof", "night.bundle"}) {
        if (fs::exists(path(out + "/" + f))) {
          EXPECT_EQ(digest_of(out + "/" + f), digest_of(std::string("ref/") + f)) << "a partial " << f << " was published";
        }
      }
    };

    const pid_t pid = spawn(run_args(reg, out));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    kill(pid, SIGKILL);
    killed_runs += wait_for(pid) == 128 + SIGKILL;
    check_published();

    int status = -1;
    for (int attempt = 0; attempt < 4 && status != 0; ++attempt) {
      const bool kill_this = attempt < 3 && (rng() % 3 == 0);
      const pid_t rp = spawn({"run", "--resume", path(out + "/night.run")});
      if (kill_this) {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
        kill(rp, SIGKILL);
      }
      status = wait_for(rp);
      if (status == 128 + SIGKILL) {
        ++killed_resumes;
        check_published();
        continue;
      }
      if (status == 4) {
        // Killed before its journal had a record: nothing was reserved; a new run starts.
        auto regdb = formats::SeRegistry::open(path(reg), false);
        ASSERT_TRUE(regdb.has_value());
        auto list = regdb->reservations();
        ASSERT_TRUE(list.has_value());
        EXPECT_TRUE(list->empty()) << "a reservation without a journal to resume it";
        fs::remove_all(path(out));
        status = pf(run_args(reg, out)).exit_code;
        break;
      }
      // It had finished before the kill (exited, or killed after its last record).
      if (status == 8 && journal_records(path(out + "/night.run"), "finished") == 1) status = 0;
    }
    ASSERT_EQ(status, 0);
    expect_same_as_reference(out);
    expect_counters_and_cards(reg, out, plain);
    ++iterations;
    if (HasFailure()) break;
  }
  std::printf("random-kill harness (run): %d iterations (%d runs and %d resumes killed) in %lld s, seed %llu\n",
              iterations, killed_runs, killed_resumes,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()),
              static_cast<unsigned long long>(seed));
  EXPECT_GE(iterations, 3);
}

// What --resume refuses, with its message and exit code.
TEST_F(CliRunResumeTest, RefusesWhatCannotBeResumed) {
  setup(600);
  auto r = pf({"run", "--resume", path("nowhere.run")});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("nowhere.run: no such run directory"), std::string::npos) << r.err;
  r = pf({"run", "--resume", path("out/night.run"), "--out-dir", path("x")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume takes every run option from the run's journal"), std::string::npos) << r.err;
  r = pf({"run", "--profile", profile(), "--in", path("issuer.der"), "--registry", path("registry.db")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out-dir is required (or --resume DIR)"), std::string::npos) << r.err;

  EXPECT_EQ(wait_for(spawn(run_args("registry.db", "out"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})),
            128 + SIGKILL);
  // A fresh run into the same run directory would lose the killed run: 8.
  r = pf(run_args("registry.db", "out"));
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("which did not finish: resume it"), std::string::npos) << r.err;

  // A changed issuer file: 7, and the run stays resumable.
  const std::string issuer = read_file(path("issuer.der"));
  write_file(path("issuer.der"), issuer + "x");
  r = pf({"run", "--resume", path("out/night.run")});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find("the issuer file changed since run 'night-9' started"), std::string::npos) << r.err;
  write_file(path("issuer.der"), issuer);

  r = pf({"run", "--resume", path("out/night.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A finished run: 8.
  r = pf({"run", "--resume", path("out/night.run")});
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("already finished"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace persoflow::test
