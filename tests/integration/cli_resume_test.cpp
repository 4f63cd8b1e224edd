// `persoflow prep --resume` (docs/formats/journal.md): a prep killed at any point is
// finished by --resume with the reservation it made, into a bundle byte-identical to an
// uninterrupted prep's over an identical registry; no card lost or twice, no counter value
// reserved twice, nothing published before the run completes. A deterministic crash, a
// random-kill harness (seeded; the seed is printed), and the refusals.
#include <fcntl.h>

#include <algorithm>
#include <random>
#include <span>

#include "formats/sha256_digest.h"

#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliResumeTest : public CliPrepTest {
 protected:
  std::vector<std::string> prep_args(const std::string& registry, const std::string& out) {
    return {"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path(registry),
            "--out", path(out), "--rejects", path(out + ".rejects.jsonl"), "--report", path(out + ".report.json"),
            "--run-id", "night-7"};
  }
  // The same with one reservation batch per XOF segment (the profile's are 1024 cards).
  std::vector<std::string> batched_args(const std::string& registry, const std::string& out) {
    auto args = prep_args(registry, out);
    args.insert(args.end(), {"--reserve-batch", "1"});
    return args;
  }
  // The batches of reservation 1's counter ranges, sorted.
  std::vector<std::int64_t> range_batches(const std::string& registry) {
    auto reg = formats::SeRegistry::open(path(registry), false);
    EXPECT_TRUE(reg.has_value());
    if (!reg) return {};
    auto ranges = reg->ranges_of(1);
    EXPECT_TRUE(ranges.has_value());
    std::vector<std::int64_t> out;
    for (const auto& r : *ranges) out.push_back(r.batch);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Every SE's counter values: in exactly one reservation range each, never two.
  void expect_no_counter_in_two_reservations(const std::string& registry) {
    auto reg = formats::SeRegistry::open(path(registry), false);
    ASSERT_TRUE(reg.has_value()) << reg.error().message();
    auto list = reg->reservations();
    ASSERT_TRUE(list.has_value());
    std::map<std::string, std::set<std::uint32_t>> used;
    for (const auto& r : *list) {
      auto ranges = reg->ranges_of(r.id);
      ASSERT_TRUE(ranges.has_value());
      for (const auto& range : *ranges) {
        for (std::uint32_t c = range.first; c <= range.last; ++c) {
          EXPECT_TRUE(used[range.se_id].insert(c).second)
              << "counter " << c << " of SE " << range.se_id << " in two reservations";
        }
      }
    }
  }

  // The bundle holds every selected card exactly once, each with a counter of reservation
  // 1's range for its SE, no counter twice per SE.
  void expect_cards_once(const std::string& bundle, const std::map<std::string, PlainCard>& plain,
                         const std::string& registry) {
    const auto cards = read_bundle(bundle);
    std::set<std::string> ids;
    for (const auto& c : cards) EXPECT_TRUE(ids.insert(c.card_id).second) << "card twice: " << c.card_id;
    EXPECT_EQ(cards.size(), plain.size());
    for (const auto& [id, p] : plain) EXPECT_EQ(ids.count(id), 1u) << "card lost: " << id;
    auto reg = formats::SeRegistry::open(path(registry), false);
    ASSERT_TRUE(reg.has_value());
    auto ranges = reg->ranges_of(1);
    ASSERT_TRUE(ranges.has_value());
    std::map<std::string, formats::CounterRange> by_se;
    for (const auto& r : *ranges) by_se[r.se_id] = r;
    std::map<std::string, std::set<std::uint32_t>> seen;
    for (const auto& c : cards) {
      ASSERT_EQ(c.sessions.size(), 1u);
      const auto it = by_se.find(c.se_id);
      ASSERT_NE(it, by_se.end()) << c.se_id;
      EXPECT_GE(c.sessions[0].counter, it->second.first);
      EXPECT_LE(c.sessions[0].counter, it->second.last);
      EXPECT_TRUE(seen[c.se_id].insert(c.sessions[0].counter).second) << "counter used twice: " << c.se_id;
    }
  }

  void expect_one_published_reservation(const std::string& registry, const std::string& bundle) {
    auto reg = formats::SeRegistry::open(path(registry), false);
    ASSERT_TRUE(reg.has_value());
    auto list = reg->reservations();
    ASSERT_TRUE(list.has_value());
    ASSERT_EQ(list->size(), 1u) << "a resume reserved counters again";
    EXPECT_EQ((*list)[0].id, 1);
    EXPECT_EQ((*list)[0].state, formats::ReservationState::kPublished);
    const std::string bytes = read_file(path(bundle));
    auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    ASSERT_TRUE(digest.has_value());
    std::string want = to_hex(Bytes(digest->begin(), digest->end()));
    std::string got = (*list)[0].output_digest;
    for (auto* s : {&want, &got}) std::transform(s->begin(), s->end(), s->begin(), ::toupper);
    EXPECT_EQ(got, want);
  }

  static std::size_t journal_records(const fs::path& run_dir, const std::string& kind) {
    std::ifstream in(run_dir / "journal");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("\"record\":\"" + kind + "\"") != std::string::npos;
    return n;
  }
};

// A prep killed right after its 2nd journaled segment resumes into the bundle, reject
// report and run report an uninterrupted prep makes over an identical registry.
TEST_F(CliResumeTest, CrashAfterSecondSegmentResumesByteIdentical) {
  const auto plain = setup_cards(1500);
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);

  const pid_t pid = spawn(prep_args("registry.db", "a.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "2"}});
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(path("a.bundle"))) << "published before the run completed";
  EXPECT_EQ(journal_records(path("a.bundle.run"), "segment"), 2u);
  EXPECT_EQ(journal_records(path("a.bundle.run"), "reserved"), 1u);

  auto r = pf({"prep", "--resume", path("a.bundle.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("prepared 1500 of 1500 cards"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("ref.bundle")));
  EXPECT_EQ(read_file(path("a.bundle.rejects.jsonl")), read_file(path("ref.bundle.rejects.jsonl")));
  EXPECT_EQ(stable_report("a.bundle.report.json"), stable_report("ref.bundle.report.json"));
  expect_one_published_reservation("registry.db", "a.bundle");
  expect_cards_once("a.bundle", plain, "registry.db");
  expect_no_counter_in_two_reservations("registry.db");
  // Segments 3.. were prepared by the resume: the journal holds every one of them once.
  EXPECT_EQ(journal_records(path("a.bundle.run"), "segment"), 6u);
  EXPECT_EQ(journal_records(path("a.bundle.run"), "finished"), 1u);
  EXPECT_FALSE(fs::exists(path("a.bundle.run/bundle.spool")));
}

// The counters reserved one batch at a time (one XOF segment each here) give the bundle,
// reject report and run report of one reservation transaction: what a card gets does not
// depend on where the batches end. The registry holds one batch of ranges per batch.
TEST_F(CliResumeTest, BatchedReservationGivesTheSameOutputs) {
  const auto plain = setup_cards(2500, "SE0000001100");  // a card of the 2nd XOF segment is rejected
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);
  auto r = pf(batched_args("registry.db", "a.bundle"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("ref.bundle")));
  const std::string rejects = read_file(path("a.bundle.rejects.jsonl"));
  EXPECT_NE(rejects.find("unknown SE id 'SE0000001100'"), std::string::npos) << rejects;
  EXPECT_EQ(rejects, read_file(path("ref.bundle.rejects.jsonl")));
  EXPECT_EQ(stable_report("a.bundle.report.json"), stable_report("ref.bundle.report.json"));
  EXPECT_EQ(journal_records(path("a.bundle.run"), "batch"), 3u);
  // The default (16,384) ramps up from 1,024 cards (kFirstReserveBatch): the first XOF
  // segment's 1,024 cards, then the rest, which is less than the 2,048 the 2nd batch may hold.
  EXPECT_EQ(journal_records(path("ref.bundle.run"), "batch"), 2u);
  const auto ref_batches = range_batches("registry-ref.db");
  ASSERT_EQ(ref_batches.size(), 2499u);
  EXPECT_EQ(std::count(ref_batches.begin(), ref_batches.end(), 1), 1024);
  EXPECT_EQ(std::count(ref_batches.begin(), ref_batches.end(), 2), 1475);
  const auto batches = range_batches("registry.db");
  ASSERT_EQ(batches.size(), 2499u);
  EXPECT_EQ(batches.front(), 1);
  EXPECT_EQ(batches.back(), 3);
  EXPECT_EQ(std::count(batches.begin(), batches.end(), 2), 1023);
  expect_one_published_reservation("registry.db", "a.bundle");
  expect_no_counter_in_two_reservations("registry.db");
}

// Killed right after the registry committed its 2nd batch, before the journal recorded
// it: the resume takes that batch's counters back from their ranges instead of reserving
// again, and finishes into the uninterrupted prep's outputs.
TEST_F(CliResumeTest, CrashAfterSecondReservationBatchTakesItBack) {
  const auto plain = setup_cards(2500);
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);
  EXPECT_EQ(wait_for(spawn(batched_args("registry.db", "a.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_RESERVE", "2"}})),
            128 + SIGKILL);
  EXPECT_FALSE(fs::exists(path("a.bundle")));
  EXPECT_EQ(journal_records(path("a.bundle.run"), "batch"), 1u);
  auto batches = range_batches("registry.db");
  EXPECT_EQ(std::count(batches.begin(), batches.end(), 2), 1024) << "the 2nd batch was not committed";

  auto r = pf({"prep", "--resume", path("a.bundle.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("ref.bundle")));
  EXPECT_EQ(read_file(path("a.bundle.rejects.jsonl")), read_file(path("ref.bundle.rejects.jsonl")));
  EXPECT_EQ(stable_report("a.bundle.report.json"), stable_report("ref.bundle.report.json"));
  batches = range_batches("registry.db");
  ASSERT_EQ(batches.size(), 2500u);
  EXPECT_EQ(batches.back(), 3) << "a batch was reserved again";
  expect_one_published_reservation("registry.db", "a.bundle");
  expect_cards_once("a.bundle", plain, "registry.db");
  expect_no_counter_in_two_reservations("registry.db");
  EXPECT_EQ(journal_records(path("a.bundle.run"), "batch"), 3u);
}

// A resume over a registry whose counter ranges disagree with the journaled batches (here
// one range row deleted: another copy of the registry than the run's) is refused with
// exit 7 naming the batch, and neither burns the reservation nor ends the run: resumed
// over the right registry, it finishes into the uninterrupted prep's outputs.
TEST_F(CliResumeTest, JournalRegistryMismatchIsRefusedAndStaysResumable) {
  setup_cards(2500);
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);
  // Killed right after its 1st batch record: batch 0 is journaled, none of its cards is
  // prepared yet, so the resume takes it back from the registry's ranges.
  EXPECT_EQ(wait_for(spawn(batched_args("registry.db", "a.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_BATCH_RECORD", "1"}})),
            128 + SIGKILL);
  EXPECT_EQ(journal_records(path("a.bundle.run"), "batch"), 1u);
  EXPECT_EQ(journal_records(path("a.bundle.run"), "segment"), 0u);
  fs::copy_file(path("registry.db"), path("registry-right.db"));
  auto sql = run_process({PERSOFLOW_SQLITE3_CLI, path("registry.db"),
                          "DELETE FROM counter_range WHERE batch = 1 AND se_row = (SELECT MAX(se_row) FROM counter_range WHERE batch = 1);"});
  ASSERT_EQ(sql.exit_code, 0) << sql.err;
  ASSERT_EQ(range_batches("registry.db").size(), 1023u);

  auto r = pf({"prep", "--resume", path("a.bundle.run")});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("journal: journaled reservation batch 0: SE registry"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("reservation 1 holds no counter for SE 'SE0000001024'"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("burnt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.bundle")));
  EXPECT_EQ(journal_records(path("a.bundle.run"), "failed"), 0u);
  {
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    ASSERT_TRUE(reg.has_value());
    auto list = reg->reservations();
    ASSERT_TRUE(list.has_value());
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].state, formats::ReservationState::kReserved);
  }

  fs::remove(path("registry.db"));
  fs::copy_file(path("registry-right.db"), path("registry.db"));
  r = pf({"prep", "--resume", path("a.bundle.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("ref.bundle")));
  EXPECT_EQ(read_file(path("a.bundle.rejects.jsonl")), read_file(path("ref.bundle.rejects.jsonl")));
  expect_one_published_reservation("registry.db", "a.bundle");
  expect_no_counter_in_two_reservations("registry.db");
}

// A torn last record (a power cut while appending it) is ignored: the resume carries on
// from the record before it.
TEST_F(CliResumeTest, TornLastRecordIsIgnored) {
  setup_cards(600);
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);
  EXPECT_EQ(wait_for(spawn(prep_args("registry.db", "a.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})),
            128 + SIGKILL);
  {
    std::ofstream j(path("a.bundle.run/journal"), std::ios::app | std::ios::binary);
    j << "212 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef {\"record\":\"segm";
  }
  auto r = pf({"prep", "--resume", path("a.bundle.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("ref.bundle")));
  expect_one_published_reservation("registry.db", "a.bundle");
}

// The harness: prep over a generated XOF (one reservation batch per XOF segment; the
// reference is one transaction) killed (SIGKILL) after a random delay, its
// resumes killed too at random, until a resume finishes; each time the three properties
// and the byte-identity. Bounded in iterations and time; the seed replays a failure
// (PERSOFLOW_RESUME_SEED).
TEST_F(CliResumeTest, RandomKillsNeverLoseDuplicateOrReuse) {
  const auto plain = setup_cards(3000);
  fs::copy_file(path("registry.db"), path("pristine.db"));
  fs::copy_file(path("pristine.db"), path("registry-ref.db"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(pf(prep_args("registry-ref.db", "ref.bundle")).exit_code, 0);
  const auto ref_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  const std::string reference = read_file(path("ref.bundle"));
  const std::string ref_rejects = read_file(path("ref.bundle.rejects.jsonl"));
  const auto ref_report = stable_report("ref.bundle.report.json");

  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("PERSOFLOW_RESUME_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("random-kill harness: seed %llu (replay with PERSOFLOW_RESUME_SEED=%llu), reference prep %lld ms\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), static_cast<long long>(ref_ms));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<long long> delay(0, std::max<long long>(ref_ms * 11 / 10, 50));

  constexpr int kMaxIterations = 12;
  constexpr auto kBudget = std::chrono::seconds(35);
  const auto start = std::chrono::steady_clock::now();
  int iterations = 0;
  int killed_runs = 0, killed_resumes = 0;
  for (int it = 0; it < kMaxIterations && (it < 3 || std::chrono::steady_clock::now() - start < kBudget); ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it) + ", seed " + std::to_string(seed));
    const std::string reg = "reg-" + std::to_string(it) + ".db";
    const std::string out = "it-" + std::to_string(it) + ".bundle";
    fs::copy_file(path("pristine.db"), path(reg));
    // After any kill: nothing published, or the complete bundle (killed after publishing).
    auto check_published = [&] {
      if (fs::exists(path(out))) {
        EXPECT_EQ(read_file(path(out)), reference) << "a partial bundle was published";
      }
    };

    const pid_t pid = spawn(batched_args(reg, out));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    kill(pid, SIGKILL);
    const int first = wait_for(pid);
    killed_runs += first == 128 + SIGKILL;
    check_published();

    int status = -1;
    for (int attempt = 0; attempt < 4 && status != 0; ++attempt) {
      const bool kill_this = attempt < 3 && (rng() % 3 == 0);
      const pid_t rp = spawn({"prep", "--resume", path(out + ".run")});
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
        // Killed before its journal had a record: nothing was reserved; a new prep starts.
        auto regdb = formats::SeRegistry::open(path(reg), false);
        ASSERT_TRUE(regdb.has_value());
        auto list = regdb->reservations();
        ASSERT_TRUE(list.has_value());
        EXPECT_TRUE(list->empty()) << "a reservation without a journal to resume it";
        status = pf(batched_args(reg, out)).exit_code;
        break;
      }
      // It had finished before the kill (exited, or killed after its last record).
      if (status == 8 && journal_records(path(out + ".run"), "finished") == 1) status = 0;
    }
    ASSERT_EQ(status, 0);
    EXPECT_EQ(read_file(path(out)), reference) << "the resumed bundle differs from the uninterrupted one";
    EXPECT_EQ(read_file(path(out + ".rejects.jsonl")), ref_rejects);
    EXPECT_EQ(stable_report(out + ".report.json"), ref_report);
    expect_one_published_reservation(reg, out);
    expect_cards_once(out, plain, reg);
    expect_no_counter_in_two_reservations(reg);
    ++iterations;
    if (HasFailure()) break;
  }
  std::printf("random-kill harness: %d iterations (%d runs and %d resumes killed) in %lld s, seed %llu\n", iterations,
              killed_runs, killed_resumes,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()),
              static_cast<unsigned long long>(seed));
  EXPECT_GE(iterations, 3);
}

// What --resume refuses, with its message and exit code.
TEST_F(CliResumeTest, RefusesWhatCannotBeResumed) {
  setup_cards(600);
  // A missing run directory: 4.
  auto r = pf({"prep", "--resume", path("nowhere.run")});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("nowhere.run: no such run directory"), std::string::npos) << r.err;
  // --resume with other prep options: 2.
  r = pf({"prep", "--resume", path("a.bundle.run"), "--out", path("x.bundle")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume takes every prep option from the run's journal"), std::string::npos) << r.err;

  const std::string xof = read_file(path("cards.xof"));
  EXPECT_EQ(wait_for(spawn(prep_args("registry.db", "a.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})),
            128 + SIGKILL);
  // A fresh prep into the same run directory would lose the killed run: 8.
  r = pf(prep_args("registry.db", "a.bundle"));
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("which did not finish: resume it"), std::string::npos) << r.err;

  // A changed XOF: 7, and the run stays resumable.
  write_file(path("cards.xof"), xof + "x");
  r = pf({"prep", "--resume", path("a.bundle.run")});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find("the XOF changed since run 'night-7' started"), std::string::npos) << r.err;
  write_file(path("cards.xof"), xof);

  // A burnt reservation: 2.
  {
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    ASSERT_TRUE(reg.has_value());
    ASSERT_TRUE(reg->mark_burnt(1).has_value());
  }
  r = pf({"prep", "--resume", path("a.bundle.run")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("reservation 1 of run 'night-7' is burnt: the run cannot be resumed"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(path("a.bundle")));

  // A journal of an earlier format (one reservation transaction per run): 2, named.
  {
    const std::string journal = read_file(path("a.bundle.run/journal"));
    const std::size_t first_end = journal.find('\n');
    const std::size_t json_at = journal.find('{');
    std::string payload = journal.substr(json_at, first_end - json_at);
    const std::string two = "\"format\":2";
    ASSERT_NE(payload.find(two), std::string::npos) << payload;
    payload.replace(payload.find(two), two.size(), "\"format\":1");
    auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
    ASSERT_TRUE(digest.has_value());
    const std::string hex = to_hex(Bytes(digest->begin(), digest->end()));
    fs::create_directories(path("old.run"));
    write_file(path("old.run/journal"),
               std::to_string(payload.size()) + " " + hex + " " + payload + journal.substr(first_end));
    r = pf({"prep", "--resume", path("old.run")});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("was journaled in format 1 by an earlier persoflow"), std::string::npos) << r.err;
  }

  // A batch record whose registry rejects are malformed (its checksum intact): 7, named,
  // and nothing published.
  {
    fs::remove_all(path("bad.run"));
    fs::remove_all(path("c.bundle.run"));
    EXPECT_EQ(wait_for(spawn(batched_args("registry.db", "c.bundle"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})),
              128 + SIGKILL);
    std::istringstream lines(read_file(path("c.bundle.run/journal")));
    std::string rewritten;
    bool changed = false;
    for (std::string line; std::getline(lines, line);) {
      const std::size_t json_at = line.find('{');
      std::string payload = line.substr(json_at);
      const std::string empty = "\"rejects\":[]";
      if (!changed && payload.find("\"record\":\"batch\"") != std::string::npos && payload.find(empty) != std::string::npos) {
        payload.replace(payload.find(empty), empty.size(), "\"rejects\":[[\"x\"]]");
        changed = true;
      }
      auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
      ASSERT_TRUE(digest.has_value());
      rewritten += std::to_string(payload.size()) + " " + to_hex(Bytes(digest->begin(), digest->end())) + " " + payload + "\n";
    }
    ASSERT_TRUE(changed);
    write_file(path("c.bundle.run/journal"), rewritten);
    r = pf({"prep", "--resume", path("c.bundle.run")});
    EXPECT_EQ(r.exit_code, 7) << r.err;
    EXPECT_NE(r.err.find("batch record 0 is malformed"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("c.bundle")));
  }

  // A finished run: 8.
  ASSERT_EQ(pf(prep_args("registry.db", "b.bundle")).exit_code, 0);
  r = pf({"prep", "--resume", path("b.bundle.run")});
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("already finished"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing to resume"), std::string::npos) << r.err;

}

}  // namespace
}  // namespace persoflow::test
