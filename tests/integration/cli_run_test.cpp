// `persoflow run` (import and prep in one streamed flow graph) through the real binary
// against a fresh SoftHSM token. Its outputs are compared byte for byte with what
// `import` then `prep` make from the same issuer file and an identical copy of the
// registry (same counters, same reservation id); every card is also checked by the
// tests' own verifier. Rejects of both halves in one report, reject limits, refusal to
// replace published outputs, and a run killed after its first reservation batch.
#include "tests/integration/cli_prep_fixture.h"

#include <openssl/sha.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace persoflow::test {
namespace {

std::string sha256_hex(const std::string& data) {
  ByteVec digest(SHA256_DIGEST_LENGTH);
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return hex_upper(digest);
}

class CliRunTest : public CliPrepTest {
 protected:
  ProcessResult run(const std::string& out_dir, std::vector<std::string> extra = {},
                    const std::string& in = "issuer.der", const std::string& registry = "registry.db") {
    std::vector<std::string> args = {"run",        "--profile", profile(),     "--in",    path(in),
                                     "--registry", path(registry), "--out-dir", path(out_dir)};
    args.insert(args.end(), extra.begin(), extra.end());
    return pf(args);
  }

  std::vector<formats::ReservationRecord> reservations(const std::string& registry = "registry.db") {
    auto reg = formats::SeRegistry::open(path(registry), false);
    EXPECT_TRUE(reg.has_value()) << reg.error().message();
    if (!reg) return {};
    auto list = reg->reservations();
    EXPECT_TRUE(list.has_value());
    return list ? *list : std::vector<formats::ReservationRecord>{};
  }

  // The issuer file again, from an edited copy of its plain records, through openssl cms.
  std::string reencrypt(const std::string& plain_text, const std::string& out) {
    encrypt_issuer_text(plain_text, out);
    return out;
  }
};

TEST_F(CliRunTest, OutputsEqualImportThenPrepAndEveryCardVerifies) {
  const auto plain = setup_cards(300);  // also imports cards.xof, as `persoflow import` does
  ASSERT_EQ(plain.size(), 300u);
  fs::copy_file(path("registry.db"), path("registry-b.db"));

  auto r = run("out", {"--run-id", "nightly-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("run: 300 records, 300 cards imported"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("300 prepared"), std::string::npos) << r.out;
  for (const char* f : {"issuer.xof", "issuer.bundle", "issuer.rejects.jsonl", "issuer.report.json"}) {
    EXPECT_TRUE(fs::exists(dir() / "out" / f)) << f;
  }
  // The XOF is the one `persoflow import` writes.
  EXPECT_EQ(read_file(path("out/issuer.xof")), read_file(path("cards.xof")));
  // prep over that XOF with an identical registry reserves the same counters under the
  // same reservation id: the bundle must come out byte for byte the same.
  auto p = pf({"prep", "--profile", profile(), "--xof", path("out/issuer.xof"), "--registry", path("registry-b.db"),
               "--out", path("prep.bundle")});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(read_file(path("out/issuer.bundle")), read_file(path("prep.bundle")));

  const auto cards = read_bundle(path("out/issuer.bundle"));
  ASSERT_EQ(cards.size(), 300u);
  std::set<std::string> seen;
  for (const auto& card : cards) {
    EXPECT_TRUE(seen.insert(card.card_id).second) << card.card_id << " twice";
    verify_card(card, plain.at(card.card_id));
  }

  const auto report = nlohmann::json::parse(read_file(path("out/issuer.report.json")));
  EXPECT_EQ(report["command"], "run");
  EXPECT_EQ(report["run_id"], "nightly-1");
  EXPECT_EQ(report["records"], 300);
  EXPECT_EQ(report["output"]["xof"]["cards"], 300);
  EXPECT_EQ(report["output"]["bundle"]["cards"], 300);
  EXPECT_EQ(report["output"]["bundle"]["apdus"], 300 * 8);
  EXPECT_EQ(report["reservation"]["counters_reserved"], 300);
  EXPECT_EQ(report["reservation"]["counters_burnt"], 0);
  EXPECT_GE(report["reservation"]["batches"], 1);
  EXPECT_EQ(report["key_handling"]["mode"], "strict");
  EXPECT_EQ(report["output"]["xof"]["sha256"], sha256_hex(read_file(path("out/issuer.xof"))));

  const auto list = reservations();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, formats::ReservationState::kPublished);
  EXPECT_EQ(list[0].run_id, "nightly-1");
  EXPECT_EQ(list[0].counters, 300u);
  EXPECT_EQ(list[0].output_digest, report["output"]["bundle"]["sha256"]);
}

TEST_F(CliRunTest, ImportAndRegistryRejectsGoToOneReportAndTheRestGoOn) {
  // SE 8 is missing from the registry; card 5's PAN fails its Luhn check.
  auto plain = setup_cards(20, "SE0000000008", /*import_xof=*/false);
  std::string text = read_file(path("plain.xml"));
  const PlainCard& c5 = plain.at("C00000000005");
  std::string bad_pan = c5.pan;
  bad_pan.back() = static_cast<char>('0' + (bad_pan.back() - '0' + 1) % 10);
  text.replace(text.find(c5.pan), c5.pan.size(), bad_pan);
  reencrypt(text, "edited.der");

  auto r = run("out", {"--name", "night"}, "edited.der");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("20 records, 19 cards imported"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("18 prepared"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(2 rejected: 1 import, 1 prep)"), std::string::npos) << r.out;

  std::vector<nlohmann::json> lines;
  std::istringstream in(read_file(path("out/night.rejects.jsonl")));
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["record"], 5);
  EXPECT_EQ(lines[0]["category"], "luhn");
  EXPECT_EQ(lines[1]["record"], 8);
  EXPECT_EQ(lines[1]["card_id"], "C00000000008");
  EXPECT_EQ(lines[1]["category"], "registry");
  EXPECT_NE(lines[1]["reason"].get<std::string>().find("unknown SE id 'SE0000000008'"), std::string::npos);
  EXPECT_EQ(read_file(path("out/night.rejects.jsonl")).find(bad_pan), std::string::npos);

  const auto cards = read_bundle(path("out/night.bundle"));
  ASSERT_EQ(cards.size(), 18u);
  for (const auto& card : cards) {
    EXPECT_NE(card.card_id, "C00000000005");
    EXPECT_NE(card.card_id, "C00000000008");
    verify_card(card, plain.at(card.card_id));
  }
  const auto report = nlohmann::json::parse(read_file(path("out/night.report.json")));
  EXPECT_EQ(report["rejects"]["import"], 1);
  EXPECT_EQ(report["rejects"]["prep"], 1);
  EXPECT_EQ(report["rejects"]["by_category"]["registry"], 1);
  // The XOF keeps the card whose SE is unknown: the import accepted it; only prep could not.
  EXPECT_EQ(report["output"]["xof"]["cards"], 19);
}

TEST_F(CliRunTest, RejectLimitPublishesOnlyTheRejectReportAndBurnsTheReservation) {
  setup_cards(10, "SE0000000003", /*import_xof=*/false);
  auto r = run("out", {"--max-rejects", "0"});
  EXPECT_EQ(r.exit_code, 10) << r.err;
  EXPECT_NE(r.err.find("neither XOF nor bundle was published"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("burnt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("out/issuer.xof")));
  EXPECT_FALSE(fs::exists(path("out/issuer.bundle")));
  EXPECT_FALSE(fs::exists(path("out/issuer.report.json")));
  EXPECT_NE(read_file(path("out/issuer.rejects.jsonl")).find("SE0000000003"), std::string::npos);
  const auto list = reservations();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, formats::ReservationState::kBurnt);
  EXPECT_EQ(list[0].counters, 9u);
  // Nothing else was left in the directory but the run directory, whose journal ends
  // with `failed` (a failed run is run again, not resumed) and whose spool is gone.
  std::set<std::string> entries;
  for (const auto& e : fs::directory_iterator(path("out"))) entries.insert(e.path().filename().string());
  EXPECT_EQ(entries, (std::set<std::string>{"issuer.rejects.jsonl", "issuer.run"}));
  std::set<std::string> run_dir;
  for (const auto& e : fs::directory_iterator(path("out/issuer.run"))) run_dir.insert(e.path().filename().string());
  EXPECT_EQ(run_dir, (std::set<std::string>{"journal"}));
  const std::string journal = read_file(path("out/issuer.run/journal"));
  EXPECT_NE(journal.find("\"record\":\"failed\""), std::string::npos) << journal;
  auto resume = pf({"run", "--resume", path("out/issuer.run")});
  EXPECT_EQ(resume.exit_code, 2) << resume.err;
  EXPECT_NE(resume.err.find("a failed run cannot be resumed"), std::string::npos) << resume.err;
}

TEST_F(CliRunTest, PublishedOutputsAreNeverReplacedAndNothingIsReserved) {
  setup_cards(5, "", /*import_xof=*/false);
  ASSERT_EQ(run("out").exit_code, 0);
  const std::string bundle = read_file(path("out/issuer.bundle"));
  auto again = run("out");
  EXPECT_EQ(again.exit_code, 8) << again.err;
  EXPECT_NE(again.err.find("issuer.xof already exists"), std::string::npos) << again.err;
  EXPECT_EQ(read_file(path("out/issuer.bundle")), bundle);
  EXPECT_EQ(reservations().size(), 1u);
  // Another name in the same directory is a fresh run with fresh counters.
  ASSERT_EQ(run("out", {"--name", "second"}).exit_code, 0);
  const auto first = read_bundle(path("out/issuer.bundle"));
  const auto second = read_bundle(path("out/second.bundle"));
  ASSERT_EQ(first.size(), 5u);
  ASSERT_EQ(second.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(first[i].card_id, second[i].card_id);
    EXPECT_EQ(second[i].sessions[0].counter, first[i].sessions[0].counter + 1);
  }
  auto bad_name = run("out", {"--name", "../escape"});
  EXPECT_EQ(bad_name.exit_code, 2) << bad_name.err;
}

// kill -9 once the first reservation batch is committed: nothing published, the
// reservation stays `reserved` with its batches, and a rerun uses only fresh values.
TEST_F(CliRunTest, KilledRunPublishesNothingAndItsCountersAreNeverReused) {
  setup_cards(3000, "", /*import_xof=*/false);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& [k, v] : token_env_->env()) setenv(k.c_str(), v.c_str(), 1);
    const std::string p = profile(), in = path("issuer.der"), g = path("registry.db"), o = path("killed");
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "run", "--profile", p.c_str(), "--in", in.c_str(), "--registry",
          g.c_str(), "--out-dir", o.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  bool reserved = false;
  for (int i = 0; i < 4000 && !reserved; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto reg = formats::SeRegistry::open(path("registry.db"), false);
    if (!reg) continue;
    auto list = reg->reservations();
    reserved = list.has_value() && !list->empty() && (*list)[0].counters > 0;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(reserved) << "the run never reserved a batch of counters";
  if (WIFEXITED(status)) GTEST_SKIP() << "the run finished before the kill";
  EXPECT_FALSE(fs::exists(path("killed/issuer.xof")));
  EXPECT_FALSE(fs::exists(path("killed/issuer.bundle")));

  auto rerun = run("rerun");
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].state, formats::ReservationState::kReserved);
  std::map<std::string, std::set<std::uint32_t>> killed;
  auto ranges = reg->ranges_of((*list)[0].id);
  ASSERT_TRUE(ranges.has_value());
  ASSERT_FALSE(ranges->empty());
  for (const auto& range : *ranges) {
    for (std::uint32_t c = range.first; c <= range.last; ++c) killed[range.se_id].insert(c);
  }
  const auto cards = read_bundle(path("rerun/issuer.bundle"));
  ASSERT_EQ(cards.size(), 3000u);
  std::size_t after_killed = 0;
  for (const auto& card : cards) {
    const auto it = killed.find(card.se_id);
    if (it == killed.end()) continue;
    ++after_killed;
    EXPECT_EQ(it->second.count(card.sessions[0].counter), 0u) << card.se_id;
  }
  EXPECT_GT(after_killed, 0u) << "the killed run's SEs were prepared again, on fresh counters";
}

std::vector<nlohmann::json> audit_entries(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST_F(CliRunTest, TheAuditLogRecordsStartReservationsAndEnd) {
  setup_cards(2500, "SE0000000004", /*import_xof=*/false);
  auto r = run("out", {"--run-id", "audited-1", "--audit-log", path("audit.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto entries = audit_entries(read_file(path("audit.jsonl")));
  ASSERT_GE(entries.size(), 4u);
  EXPECT_EQ(entries.front()["event"], "run.start");
  const auto& start = entries.front()["details"];
  EXPECT_EQ(start["command"], "run");
  EXPECT_EQ(start["run_id"], "audited-1");
  EXPECT_EQ(start["input"]["sha256"], sha256_hex(read_file(path("issuer.der"))));
  std::set<std::string> uris;
  for (const auto& k : start["keys"]) {
    uris.insert(k["uri"].get<std::string>());
    if (k["uri"] == "pkcs11:object=kmc-scp03") {
      // The KCV of the clear master, computed here: the audit names keys by URI and KCV.
      EXPECT_EQ(k["kcv"], hex_upper(ref_kcv(kmc_, true)));
    }
  }
  for (const char* u : {"pkcs11:object=tk-acme-01", "pkcs11:object=dkep-pan", "pkcs11:object=xof-integrity",
                        "pkcs11:object=kmc-scp03", "pkcs11:object=host-challenge"}) {
    EXPECT_EQ(uris.count(u), 1u) << u;
  }
  std::size_t reserved = 0, rejected = 0;
  for (std::size_t i = 1; i + 1 < entries.size(); ++i) {
    EXPECT_EQ(entries[i]["event"], "counters.reserve");
    EXPECT_EQ(entries[i]["details"]["batch"], i);
    reserved += entries[i]["details"]["counters"].get<std::size_t>();
    rejected += entries[i]["details"]["rejected"].get<std::size_t>();
  }
  EXPECT_EQ(reserved, 2499u);
  EXPECT_EQ(rejected, 1u);
  EXPECT_GE(entries.size(), 5u) << "2500 cards in XOF segments of 1024: three batches";
  const auto& end = entries.back();
  EXPECT_EQ(end["event"], "run.end");
  EXPECT_EQ(end["details"]["status"], "ok");
  EXPECT_EQ(end["details"]["outputs"][1]["sha256"], sha256_hex(read_file(path("out/issuer.bundle"))));
  EXPECT_EQ(end["details"]["reservation"]["state"], "published");
  // The chain verifies, and nothing sensitive is in it.
  auto v = pf({"audit", "verify", path("audit.jsonl")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // A failing run records its failure; a run whose audit log cannot be written never starts.
  auto failed = run("out2", {"--max-rejects", "0", "--audit-log", path("audit.jsonl")});
  EXPECT_EQ(failed.exit_code, 10) << failed.err;
  const auto after = audit_entries(read_file(path("audit.jsonl")));
  EXPECT_EQ(after.back()["event"], "run.end");
  EXPECT_EQ(after.back()["details"]["status"], "failed");
  EXPECT_NE(after.back()["details"]["error"].get<std::string>().find("--max-rejects"), std::string::npos);
  const std::size_t reservations_before = reservations().size();
  auto unrecorded = run("out3", {"--audit-log", path("no-such-dir/audit.jsonl")});
  EXPECT_NE(unrecorded.exit_code, 0);
  EXPECT_NE(unrecorded.err.find("audit log"), std::string::npos) << unrecorded.err;
  EXPECT_EQ(reservations().size(), reservations_before) << "nothing reserved for a run the audit log refused";
  EXPECT_FALSE(fs::exists(path("out3/issuer.xof")));
}

TEST_F(CliRunTest, HelpNamesEveryOption) {
  auto r = pf({"run", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* opt : {"--profile", "--in", "--registry", "--out-dir", "--name", "--max-rejects", "--run-id",
                          "--batch-records", "--zstd-level"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  }
}

}  // namespace
}  // namespace persoflow::test
