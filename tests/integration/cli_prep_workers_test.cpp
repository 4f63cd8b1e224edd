// `persoflow prep --workers N` (pipeline/prep_workers.h): the HSM-bound stage in worker
// processes, each with its own SoftHSM instance. Whatever the number of workers, and
// however often they are recycled, the bundle, the reject report and the run report are
// those of a prep in one process; a worker that dies or cannot start interrupts the run
// (nothing published, the reservation kept) and --resume finishes it.
#include <algorithm>

#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliPrepWorkersTest : public CliPrepTest {
 protected:
  // A copy of the demo profile with 300-card XOF segments (several segments per worker)
  // and 200-card bundle segments (boundaries that do not align).
  std::string profile() const override { return path("acme-small-segments.xml"); }

  void SetUp() override {
    CliPrepTest::SetUp();
    write_small_segments_profile(profile());
  }

  std::vector<std::string> prep_args(const std::string& registry, const std::string& out,
                                     const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a = {"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path(registry),
                                  "--out", path(out), "--rejects", path(out + ".rejects.jsonl"), "--report",
                                  path(out + ".report.json"), "--run-id", "night-9"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  nlohmann::json report(const std::string& file) { return nlohmann::json::parse(read_file(path(file))); }

  // A reference prep in this process (--workers 0) over a copy of the registry.
  void reference(const std::string& name) {
    fs::copy_file(path("registry.db"), path(name + ".db"));
    auto r = pf(prep_args(name + ".db", name + ".bundle", {"--workers", "0"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(report(name + ".bundle.report.json")["workers"]["processes"], 0);
  }

  void expect_same_outputs(const std::string& a, const std::string& b) {
    EXPECT_EQ(read_file(path(a + ".bundle")), read_file(path(b + ".bundle")));
    EXPECT_EQ(read_file(path(a + ".bundle.rejects.jsonl")), read_file(path(b + ".bundle.rejects.jsonl")));
    EXPECT_EQ(stable_report(a + ".bundle.report.json"), stable_report(b + ".bundle.report.json"));
  }
};

TEST_F(CliPrepWorkersTest, AnyNumberOfWorkersGivesTheBundleOfAPrepInOneProcess) {
  // One SE missing from the registry: its cards are rejected by the reservation.
  const auto plain = setup_cards(1700, "SE0000000007");
  reference("ref");
  ASSERT_GT(report("ref.bundle.report.json")["rejects"]["count"].get<int>(), 0);
  for (const std::string n : {"1", "2", "3"}) {
    SCOPED_TRACE(n + " workers");
    fs::copy_file(path("registry.db"), path("w" + n + ".db"));
    auto r = pf(prep_args("w" + n + ".db", "w" + n + ".bundle", {"--workers", n}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_outputs("ref", "w" + n);
    const auto j = report("w" + n + ".bundle.report.json");
    EXPECT_EQ(j["workers"]["processes"], std::stoi(n));
    EXPECT_EQ(j["workers"]["started"], std::stoi(n));
  }
  // One thread in this process: the same bundle again.
  fs::copy_file(path("registry.db"), path("t1.db"));
  auto t1 = pf(prep_args("t1.db", "t1.bundle", {"--workers", "0", "--threads", "1"}));
  ASSERT_EQ(t1.exit_code, 0) << t1.err;
  expect_same_outputs("ref", "t1");
  // The bundle verifies card by card against an independent computation.
  const auto cards = read_bundle("w2.bundle");
  ASSERT_FALSE(cards.empty());
  for (std::size_t i = 0; i < cards.size(); i += 97) verify_card(cards[i], plain.at(cards[i].card_id));
}

TEST_F(CliPrepWorkersTest, RecycledWorkersGiveTheSameBundle) {
  setup_cards(1500);
  reference("ref");
  // 300-card segments and a worker replaced once it prepared 500 cards: 1,500 cards over
  // two workers start at least 3 processes.
  auto r = pf(prep_args("registry.db", "rec.bundle", {"--workers", "2", "--worker-recycle-cards", "500"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs("ref", "rec");
  const auto j = report("rec.bundle.report.json");
  EXPECT_EQ(j["workers"]["processes"], 2);
  EXPECT_GE(j["workers"]["started"].get<int>(), 3);
  EXPECT_EQ(j["workers"]["recycle_cards"], 500);
}

TEST_F(CliPrepWorkersTest, CardsRejectedInAWorkerAreReportedAsInOneProcess) {
  setup_cards(700);
  // The 3-digit service code in one byte: the script of every card fails in the worker, and
  // every card is rejected alone, with its reason and burnt counter.
  std::string xml = read_file(profile());
  ASSERT_TRUE(replace_once(xml, "attribute=\"service_code\" encoding=\"numeric\" length=\"2\"",
                           "attribute=\"service_code\" encoding=\"numeric\" length=\"1\""));
  write_file(profile(), xml);
  fs::copy_file(path("registry.db"), path("ref.db"));
  auto ref = pf(prep_args("ref.db", "ref.bundle", {"--workers", "0"}));
  auto w = pf(prep_args("registry.db", "w.bundle", {"--workers", "2"}));
  EXPECT_EQ(w.exit_code, ref.exit_code) << w.err << "\n" << ref.err;
  ASSERT_TRUE(fs::exists(path("ref.bundle.rejects.jsonl"))) << ref.err;
  const std::string rejects = read_file(path("w.bundle.rejects.jsonl"));
  EXPECT_EQ(rejects, read_file(path("ref.bundle.rejects.jsonl")));
  EXPECT_EQ(static_cast<std::size_t>(std::count(rejects.begin(), rejects.end(), '\n')), 700u);
  EXPECT_NE(rejects.find("\"category\":\"prep\""), std::string::npos) << rejects.substr(0, 400);
  EXPECT_NE(rejects.find("more than fit 1 bytes (counter "), std::string::npos) << rejects.substr(0, 400);
  EXPECT_EQ(fs::exists(path("w.bundle")), fs::exists(path("ref.bundle")));
  if (fs::exists(path("ref.bundle"))) expect_same_outputs("ref", "w");
}

TEST_F(CliPrepWorkersTest, AWorkerThatDiesInterruptsTheRunAndResumeFinishesIt) {
  const auto plain = setup_cards(1500, "SE0000000003");
  reference("ref");
  // Each worker kills itself on its second segment: the run stops, names the worker and how
  // it ended, publishes nothing and keeps its reservation for --resume.
  const pid_t pid = spawn(prep_args("registry.db", "a.bundle", {"--workers", "2"}), {{"PERSOFLOW_TEST_WORKER_DIE_AT", "2"}});
  EXPECT_EQ(wait_for(pid), 6) << "an HSM-class error (exit 6)";
  EXPECT_FALSE(fs::exists(path("a.bundle"))) << "published although a worker died";
  const std::string journal = read_file(path("a.bundle.run/journal"));
  EXPECT_NE(journal.find("\"record\":\"interrupted\""), std::string::npos) << journal;
  EXPECT_NE(journal.find("was killed by signal 9 while preparing XOF segment"), std::string::npos) << journal;
  EXPECT_EQ(journal.find("\"record\":\"failed\""), std::string::npos);

  // Resumed with workers (each SE found again by its key, as a resume does): the bundle of
  // the uninterrupted prep.
  auto resumed = pf({"prep", "--resume", path("a.bundle.run"), "--workers", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_same_outputs("ref", "a");
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u) << "the resume reserved counters again";
  EXPECT_EQ((*list)[0].state, formats::ReservationState::kPublished);
}

TEST_F(CliPrepWorkersTest, AWorkerThatCannotStartIsNamedAndNothingIsPublished) {
  setup_cards(700);
  auto r = run_process({PERSOFLOW_CLI_PATH, "prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry",
                        path("registry.db"), "--out", path("a.bundle"), "--workers", "2"},
                       [&] {
                         auto env = token_env_->env();
                         env["PERSOFLOW_TEST_WORKER_TOKEN"] = "no-such-token";
                         return env;
                       }());
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("could not start"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no-such-token"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("run interrupted, not failed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.bundle")));
  // The cause fixed, --resume finishes it.
  auto resumed = pf({"prep", "--resume", path("a.bundle.run"), "--workers", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(fs::exists(path("a.bundle")));
}

TEST_F(CliPrepWorkersTest, WorkersOptionIsChecked) {
  setup_cards(10);
  for (const char* bad : {"-1", "x", "65", "2x"}) {
    auto r = prep("a.bundle", {"--workers", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--workers"), std::string::npos) << r.err;
  }
  auto r = prep("a.bundle", {"--threads", "-2"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  auto help = pf({"prep", "--help"});
  EXPECT_NE(help.out.find("--workers"), std::string::npos);
  EXPECT_NE(help.out.find("--threads"), std::string::npos);
  EXPECT_EQ(pf({"--help"}).out.find("prep-worker"), std::string::npos) << "the worker command is internal";
}

}  // namespace
}  // namespace persoflow::test
