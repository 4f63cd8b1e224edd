// `persoflow prep` end to end through the real binary against a fresh SoftHSM token:
// gen-issuer (with the matching registry CSV), import, registry import, prep. The bundle
// is then checked by the tests' own verifier (tests/support/reference_scp.h, OpenSSL
// only): card challenge, cryptograms, every C-MAC, the C-DECRYPTION of every command and
// the K-DEK-encrypted DGI, against static keys recomputed from the clear master value.
// Counter safety (never reused across runs, rejected cards, a killed run), per-card
// rejects and clean run errors are checked too.
#include "tests/integration/cli_prep_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace persoflow::test {
namespace {

TEST_F(CliPrepTest, EveryCardVerifiesIndependently) {
  const auto plain = setup_cards(40);
  ASSERT_EQ(plain.size(), 40u);
  auto r = prep("first.bundle", {"--report", path("report.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("prepared 40 of 40 cards"), std::string::npos) << r.out;
  const auto cards = read_bundle("first.bundle");
  ASSERT_EQ(cards.size(), 40u);
  for (const auto& card : cards) verify_card(card, plain.at(card.card_id));

  const auto report = nlohmann::json::parse(read_file(path("report.json")));
  EXPECT_EQ(report["output"]["cards"], 40);
  EXPECT_EQ(report["key_handling"]["mode"], "strict");
  EXPECT_GE(report["key_handling"]["host_exposures"].size(), 2u);
  EXPECT_EQ(report["reservation"]["counters_reserved"], 40);
}

TEST_F(CliPrepTest, ImportAndPrepAreRecordedInTheAuditLog) {
  setup_cards(6, "", /*import_xof=*/false);
  auto i = pf({"import", "--profile", profile(), "--in", path("issuer.der"), "--out", path("cards.xof"),
               "--audit-log", path("audit.jsonl")});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  auto p = prep("a.bundle", {"--audit-log", path("audit.jsonl"), "--run-id", "night-7"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  std::vector<nlohmann::json> e;
  std::istringstream in(read_file(path("audit.jsonl")));
  for (std::string line; std::getline(in, line);) e.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0]["event"], "run.start");
  EXPECT_EQ(e[0]["details"]["command"], "import");
  EXPECT_EQ(e[1]["event"], "run.end");
  EXPECT_EQ(e[1]["details"]["status"], "ok");
  EXPECT_EQ(e[1]["details"]["cards"], 6);
  const std::string xof_sha = e[1]["details"]["outputs"][0]["sha256"];
  EXPECT_EQ(e[2]["details"]["command"], "prep");
  EXPECT_EQ(e[2]["details"]["run_id"], "night-7");
  EXPECT_EQ(e[2]["details"]["input"]["sha256"], xof_sha) << "prep names the XOF import recorded";
  EXPECT_EQ(e[3]["event"], "counters.reserve");
  EXPECT_EQ(e[3]["details"]["counters"], 6);
  EXPECT_EQ(e[4]["event"], "run.end");
  EXPECT_EQ(e[4]["details"]["reservation"]["state"], "published");
  auto v = pf({"audit", "verify", path("audit.jsonl")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(CliPrepTest, CountersAreNeverReusedAndRerunsAreFresh) {
  setup_cards(12);
  ASSERT_EQ(prep("a.bundle").exit_code, 0);
  ASSERT_EQ(prep("b.bundle", {"--cards", "C00000000003,C00000000007"}).exit_code, 0);
  ASSERT_EQ(prep("c.bundle", {"--cards", "2-4"}).exit_code, 0);
  std::map<std::string, std::set<std::uint32_t>> used;
  std::size_t total = 0;
  for (const char* b : {"a.bundle", "b.bundle", "c.bundle"}) {
    for (const auto& card : read_bundle(b)) {
      for (const auto& s : card.sessions) {
        EXPECT_TRUE(used[card.se_id].insert(s.counter).second) << card.se_id << " counter " << s.counter << " twice";
        ++total;
      }
    }
  }
  EXPECT_EQ(total, 12u + 2u + 3u);
  EXPECT_EQ(used["SE0000000003"], (std::set<std::uint32_t>{1, 2, 3}));  // a, b, c
  EXPECT_EQ(used["SE0000000007"], (std::set<std::uint32_t>{1, 2}));
  // The registry agrees: the next counter is past every value used.
  auto show = pf({"registry", "show", "--db", path("registry.db"), "--se", "SE0000000003", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"next_counter\": 4"), std::string::npos) << show.out;
  // Same XOF, same cards, fresh counters: different bytes.
  EXPECT_NE(read_file(path("a.bundle")), read_file(path("b.bundle")));
}

TEST_F(CliPrepTest, UnknownSeAndExhaustedCounterRejectOnlyTheirCards) {
  // SE 5 is missing from the registry.
  setup_cards(10, "SE0000000005");
  auto r = prep("out.bundle", {"--rejects", path("rejects.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("prepared 9 of 10 cards (1 rejected)"), std::string::npos) << r.out;
  const std::string rejects = read_file(path("rejects.jsonl"));
  EXPECT_NE(rejects.find("SE0000000005"), std::string::npos) << rejects;
  EXPECT_NE(rejects.find("\"category\":\"registry\""), std::string::npos) << rejects;
  EXPECT_EQ(read_bundle("out.bundle").size(), 9u);
}

TEST_F(CliPrepTest, ExhaustedCounterIsRejectedWithItsReason) {
  setup_cards(4);
  // A second registry where SE 2 has one counter value left (next 1, max 1).
  std::string csv = read_file(path("registry.csv"));
  csv.replace(csv.find("se_id,msi,kdd,isd_aid,scp,i,kvn,next_counter,product"),
              std::string("se_id,msi,kdd,isd_aid,scp,i,kvn,next_counter,product").size(),
              "se_id,msi,kdd,isd_aid,scp,i,kvn,next_counter,product,max_counter");
  std::string out;
  std::istringstream lines(csv);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("SE", 0) == 0) line += line.rfind("SE0000000002,", 0) == 0 ? ",1" : ",16777215";
    out += line + "\n";
  }
  write_file(path("registry.csv"), out);
  ASSERT_EQ(pf({"registry", "import", "--db", path("registry2.db"), "--csv", path("registry.csv")}).exit_code, 0);
  auto first = pf({"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path("registry2.db"),
                   "--out", path("one.bundle")});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto second = pf({"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path("registry2.db"),
                    "--out", path("two.bundle"), "--rejects", path("rejects.jsonl")});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find("prepared 3 of 4 cards (1 rejected)"), std::string::npos) << second.out;
  EXPECT_NE(read_file(path("rejects.jsonl")).find("exhausted"), std::string::npos) << read_file(path("rejects.jsonl"));
}

TEST_F(CliPrepTest, MissingKeyIsACleanRunErrorAndNothingIsPublished) {
  setup_cards(3);
  std::string xml = read_file(profile());
  xml.replace(xml.find("pkcs11:object=kmc-scp03"), std::string("pkcs11:object=kmc-scp03").size(),
              "pkcs11:object=kmc-missing");
  write_file(path("bad-profile.xml"), xml);
  auto r = pf({"prep", "--profile", path("bad-profile.xml"), "--xof", path("cards.xof"), "--registry",
               path("registry.db"), "--out", path("never.bundle")});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("kmc-missing"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("master-key"), std::string::npos) << r.err;
  const std::size_t channel_line = static_cast<std::size_t>(std::count(
                                       xml.begin(), xml.begin() + static_cast<std::ptrdiff_t>(xml.find("<secure-channel")),
                                       '\n')) + 1;
  EXPECT_NE(r.err.find("bad-profile.xml:" + std::to_string(channel_line) + ": <secure-channel> master-key"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(path("never.bundle")));
  // No counter was reserved for a run that could not start.
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value()) << reg.error().message();
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
}

// A write that fails in the middle of the run (the bundle and the spool are written by
// prep's writer thread): here the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored so that
// write() fails with EFBIG), set above what the registry grows to and below what the
// bundle needs. An I/O error interrupts a run rather than failing it: the process must
// end (not hang with the pipeline waiting for the writer) with the error naming the write
// and the resume command, publish nothing, keep its reservation `reserved`; and once the
// limit is gone, `prep --resume` must finish it into the bundle of an uninterrupted prep.
TEST_F(CliPrepTest, AWriteFailingMidRunInterruptsItAndTheResumeFinishesIt) {
  setup_cards(3000);
  fs::copy_file(path("registry.db"), path("registry-ref.db"));
  auto ref = pf({"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path("registry-ref.db"),
                 "--out", path("ref.bundle")});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  // The registry (~430 KiB here) grows by ~100 KiB with the reservation's ranges; the
  // bundle of 3,000 acme cards, and its spool, are ~780 KiB each.
  const rlim_t limit = static_cast<rlim_t>(fs::file_size(path("registry.db")) + 160 * 1024);
  ASSERT_GT(fs::file_size(path("ref.bundle")), limit + 64 * 1024) << "the bundle must not fit under the limit";
  const std::string err_path = path("prep.err");
  const pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [k, v] : token_env_->env()) setenv(k.c_str(), v.c_str(), 1);
    signal(SIGXFSZ, SIG_IGN);
    const rlimit rl{limit, limit};
    setrlimit(RLIMIT_FSIZE, &rl);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (err >= 0) dup2(err, 2);
    if (devnull >= 0) dup2(devnull, 1);
    const std::string p = profile(), x = path("cards.xof"), g = path("registry.db"), o = path("big.bundle");
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "prep", "--profile", p.c_str(), "--xof", x.c_str(), "--registry",
          g.c_str(), "--out", o.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string err = read_file(err_path);
  ASSERT_TRUE(WIFEXITED(status)) << "the run died of a signal instead of ending: " << err;
  EXPECT_EQ(WEXITSTATUS(status), 3) << err;  // kIo: an input/output error
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_NE(err.find("big.bundle"), std::string::npos) << "the bundle's or the spool's write failed: " << err;
  EXPECT_NE(err.find("run interrupted, not failed"), std::string::npos) << err;
  EXPECT_NE(err.find("prep --resume " + path("big.bundle.run")), std::string::npos) << err;
  EXPECT_LT(fs::file_size(path("registry.db")), limit) << "the limit must leave the registry room";
  EXPECT_FALSE(fs::exists(path("big.bundle")));
  {
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    ASSERT_TRUE(reg.has_value()) << reg.error().message();
    auto list = reg->reservations();
    ASSERT_TRUE(list.has_value());
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ(list->front().state, formats::ReservationState::kReserved) << err;
    EXPECT_GT(list->front().counters, 0u) << "the failure came after counters were reserved";
  }

  auto resumed = pf({"prep", "--resume", path("big.bundle.run")});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(read_file(path("big.bundle")), read_file(path("ref.bundle")));
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().state, formats::ReservationState::kPublished);
}

// kill -9 after the reservation is committed, then rerun: no bundle from the killed run,
// its values burnt (never handed out again), the rerun's counters all fresh.
TEST_F(CliPrepTest, KilledRunBurnsItsCountersAndTheRerunUsesFreshOnes) {
  setup_cards(1500);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& [k, v] : token_env_->env()) setenv(k.c_str(), v.c_str(), 1);
    const std::string p = profile(), x = path("cards.xof"), g = path("registry.db"), o = path("killed.bundle");
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "prep", "--profile", p.c_str(), "--xof", x.c_str(), "--registry",
          g.c_str(), "--out", o.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until the reservation holds counters (prep opens it first, then reserves each
  // batch's counters in a transaction of its own), then kill.
  bool reserved = false;
  for (int i = 0; i < 3000 && !reserved; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    if (!reg) continue;
    auto list = reg->reservations();
    if (!list.has_value() || list->empty()) continue;
    auto ranges = reg->ranges_of(list->front().id);
    reserved = ranges.has_value() && !ranges->empty();
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(reserved) << "the prep run never reserved its counters";
  if (WIFEXITED(status)) GTEST_SKIP() << "the run finished before the kill";
  EXPECT_FALSE(fs::exists(path("killed.bundle")));

  auto rerun = prep("rerun.bundle");
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 2u);
  std::map<std::string, std::set<std::uint32_t>> killed;
  auto ranges = reg->ranges_of((*list)[0].id);
  ASSERT_TRUE(ranges.has_value());
  for (const auto& range : *ranges) {
    for (std::uint32_t c = range.first; c <= range.last; ++c) killed[range.se_id].insert(c);
  }
  const auto cards = read_bundle("rerun.bundle");
  ASSERT_EQ(cards.size(), 1500u);
  // The killed run reserved its first batches (1,024 cards, then up to 2,048 more: the
  // batches ramp up, kFirstReserveBatch) before the kill: those SEs start at 2, the others at 1.
  std::size_t advanced = 0;
  for (const auto& card : cards) {
    EXPECT_EQ(killed[card.se_id].count(card.sessions[0].counter), 0u) << card.se_id;
    const bool reserved_before = !killed[card.se_id].empty();
    EXPECT_EQ(card.sessions[0].counter, reserved_before ? 2u : 1u) << card.se_id;
    advanced += reserved_before ? 1 : 0;
  }
  EXPECT_GE(advanced, 1024u) << "the killed run had reserved its first batch";
}

}  // namespace
}  // namespace persoflow::test
