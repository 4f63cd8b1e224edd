// `persoflow import --resume` (docs/formats/journal.md): an import killed at any point is
// finished by --resume into the XOF, reject report and run report an uninterrupted import
// writes (byte for byte; the report but for its timings); no card lost or twice, no
// journaled segment encoded again. A deterministic crash, a random-kill harness (seeded;
// the seed is printed), and the refusals.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "formats/sha256_digest.h"
#include "formats/xof_reader.h"

#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliImportResumeTest : public CliPrepTest {
 protected:
  void SetUp() override {
    CliPrepTest::SetUp();
    // The demo profile with 100-card XOF segments: a few thousand cards make many segments.
    std::string xml = read_file(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-debit-scp03.xml");
    const std::string from = "<xof segment-cards=\"1024\"/>";
    const auto at = xml.find(from);
    ASSERT_NE(at, std::string::npos);
    xml.replace(at, from.size(), "<xof segment-cards=\"100\"/>");
    write_file(path("import-profile.xml"), xml);
  }
  std::string profile() const override { return path("import-profile.xml"); }

  // An issuer file of `cards` generated cards, with rejects spread over the segments: a
  // few PANs that fail their Luhn check and a record repeating an earlier card's id. The
  // ids of the cards the XOF must hold, each once.
  std::set<std::string> make_issuer_file(int cards) {
    auto g = pf({"gen-issuer", "--profile", profile(), "--cards", std::to_string(cards), "--out", path("gen.der"),
                 "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--plain", path("plain.xml"), "--seed",
                 "11"});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    std::string xml = read_file(path("plain.xml"));
    std::vector<std::string> order;
    for (std::size_t p = xml.find("<card id=\""); p != std::string::npos; p = xml.find("<card id=\"", p + 1)) {
      const std::size_t q = xml.find('"', p + 10);
      order.push_back(xml.substr(p + 10, q - p - 10));
    }
    EXPECT_EQ(order.size(), static_cast<std::size_t>(cards));
    std::set<std::string> good(order.begin(), order.end());
    auto element = [&](const std::string& id) {
      const std::size_t p = xml.find("<card id=\"" + id + "\"");
      return std::pair{p, xml.find("</card>", p) + 7 - p};
    };
    for (int k : {50, 399, 400, 401, 777, cards - 1}) {
      const auto [p, n] = element(order[static_cast<std::size_t>(k)]);
      const std::size_t end = xml.find("</pan>", p);
      xml[end - 1] = xml[end - 1] == '0' ? '1' : '0';  // one digit off: the Luhn check fails
      good.erase(order[static_cast<std::size_t>(k)]);
    }
    {
      const auto [p, n] = element(order[10]);
      const std::string copy = xml.substr(p, n);
      const auto [q, m] = element(order[250]);
      xml.insert(q + m, copy);  // record 252 repeats card 11's id
    }
    write_file(path("issuer.xml"), xml);
    encrypt_issuer_file();
    return good;
  }

  // issuer.xml, encrypted under the TK with openssl cms, into issuer.der.
  void encrypt_issuer_file() {
    const ByteVec tk = xor_bytes(hex_bytes(kTk1), hex_bytes(kTk2));
    std::string tk_hex;
    for (auto b : tk) {
      char buf[3];
      std::snprintf(buf, sizeof buf, "%02X", b);
      tk_hex += buf;
    }
    auto e = run_process({PERSOFLOW_OPENSSL_CLI, "cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER", "-secretkey",
                          tk_hex, "-secretkeyid", "A1B2C3D4", "-in", path("issuer.xml"), "-out", path("issuer.der")},
                         {});
    EXPECT_EQ(e.exit_code, 0) << e.err;
  }

  std::vector<std::string> import_args(const std::string& out) {
    return {"import", "--profile", profile(), "--in", path("issuer.der"), "--out", path(out),
            "--rejects", path(out + ".rejects.jsonl"), "--report", path(out + ".report.json")};
  }

  // The report without what differs between two runs of the same work (time, paths).
  nlohmann::json stable_report(const std::string& file) {
    auto j = nlohmann::json::parse(read_file(path(file)));
    for (const char* k : {"seconds", "cards_per_second"}) j.erase(k);
    j["output"].erase("path");
    j["rejects"].erase("path");
    return j;
  }

  // Every card of `want` is in the XOF once, no other card; the reject report names each
  // rejected record once.
  void expect_cards_once(const std::string& xof, const std::set<std::string>& want, std::size_t rejects = 7) {
    auto info = keys_->find("pkcs11:object=xof-integrity");
    ASSERT_TRUE(info.has_value());
    hsm::HsmMacKey integrity(*keys_, *info);
    auto reader = formats::XofReader::open(path(xof), integrity);
    ASSERT_TRUE(reader.has_value()) << reader.error().message();
    std::multiset<std::string> ids;
    for (std::size_t i = 0; i < reader->segment_count(); ++i) {
      auto seg = reader->read_segment(i);
      ASSERT_TRUE(seg.has_value()) << seg.error().message();
      ids.insert(seg->card_ids.begin(), seg->card_ids.end());
    }
    for (const auto& id : want) EXPECT_EQ(ids.count(id), 1u) << "card lost or twice: " << id;
    EXPECT_EQ(ids.size(), want.size());
    std::istringstream lines(read_file(path(xof + ".rejects.jsonl")));
    std::set<std::uint64_t> records;
    std::size_t n = 0;
    for (std::string line; std::getline(lines, line); ++n) {
      records.insert(nlohmann::json::parse(line)["record"].get<std::uint64_t>());
    }
    EXPECT_EQ(records.size(), n) << "a record rejected twice";
    EXPECT_EQ(n, rejects);
  }

  static std::size_t journal_records(const fs::path& run_dir, const std::string& kind) {
    std::ifstream in(run_dir / "journal");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("\"record\":\"" + kind + "\"") != std::string::npos;
    return n;
  }
};

// `import --workers N` (pipeline/import_workers.h): the field-encrypted values (the PIN
// blocks) translated in worker processes give the XOF, the reject report and the report
// (but for its workers) of an import in one process, recycled or not; a value that does
// not unwrap is rejected alone, as in one process.
class CliImportWorkersTest : public CliImportResumeTest {
 protected:
  // make_issuer_file's cards, and the PIN block of record 600 no longer unwrapping (one
  // byte of its RFC 5649 wrapping changed): 8 rejects.
  std::set<std::string> make_issuer_file_with_bad_pin(int cards) {
    auto good = make_issuer_file(cards);
    std::string xml = read_file(path("issuer.xml"));
    std::size_t p = 0;
    for (int k = 0; k < 600; ++k) p = xml.find("<card id=\"", p + 1);
    const std::size_t q = xml.find('"', p + 10);
    good.erase(xml.substr(p + 10, q - p - 10));
    const std::size_t pin = xml.find("<pin-block>", p) + 11 + 20;
    xml[pin] = xml[pin] == '0' ? '1' : '0';
    write_file(path("issuer.xml"), xml);
    encrypt_issuer_file();
    return good;
  }
  nlohmann::json report(const std::string& file) { return nlohmann::json::parse(read_file(path(file))); }
  nlohmann::json stable_without_workers(const std::string& file) {
    auto j = stable_report(file);
    j.erase("workers");
    return j;
  }
  void expect_same_outputs(const std::string& a, const std::string& b) {
    EXPECT_EQ(read_file(path(a)), read_file(path(b)));
    EXPECT_EQ(read_file(path(a + ".rejects.jsonl")), read_file(path(b + ".rejects.jsonl")));
    EXPECT_EQ(stable_without_workers(a + ".report.json"), stable_without_workers(b + ".report.json"));
  }
  std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& extra) {
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

TEST_F(CliImportWorkersTest, AnyNumberOfWorkersGivesTheXofOfAnImportInOneProcess) {
  const auto good = make_issuer_file_with_bad_pin(1200);
  auto ref = pf(with(import_args("ref.xof"), {"--workers", "0"}));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(report("ref.xof.report.json")["workers"]["processes"], 0);
  const std::string rejects = read_file(path("ref.xof.rejects.jsonl"));
  EXPECT_NE(rejects.find("\"field\":\"pin_block\",\"category\":\"field-encryption\",\"reason\":\"the "
                         "field-encrypted value does not unwrap under its field key\""),
            std::string::npos)
      << rejects;
  expect_cards_once("ref.xof", good, 8);
  for (const std::string n : {"1", "2"}) {
    SCOPED_TRACE(n + " workers");
    auto r = pf(with(import_args("w" + n + ".xof"), {"--workers", n}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_outputs("ref.xof", "w" + n + ".xof");
    EXPECT_EQ(report("w" + n + ".xof.report.json")["workers"]["processes"], std::stoi(n));
    EXPECT_EQ(report("w" + n + ".xof.report.json")["workers"]["started"], std::stoi(n));
  }
  // Batches of 64 records and a worker replaced after 100 cards: 1,200 cards start at
  // least 10 processes.
  auto r = pf(with(import_args("rec.xof"), {"--workers", "2", "--worker-recycle-cards", "100", "--batch-records", "64"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs("ref.xof", "rec.xof");
  const auto j = report("rec.xof.report.json");
  EXPECT_EQ(j["workers"]["processes"], 2);
  EXPECT_GE(j["workers"]["started"].get<int>(), 10);
  EXPECT_EQ(j["workers"]["recycle_cards"], 100);
}

TEST_F(CliImportWorkersTest, AWorkerThatDiesInterruptsTheImportAndResumeFinishesIt) {
  make_issuer_file_with_bad_pin(1200);
  auto ref = pf(with(import_args("ref.xof"), {"--workers", "0"}));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  // Each worker kills itself on its 3rd batch: the run stops, names the worker and how it
  // ended, publishes nothing and stays resumable.
  const pid_t pid = spawn(with(import_args("a.xof"), {"--workers", "2", "--batch-records", "64"}),
                          {{"PERSOFLOW_TEST_WORKER_DIE_AT", "3"}});
  EXPECT_EQ(wait_for(pid), 6) << "an HSM-class error (exit 6)";
  EXPECT_FALSE(fs::exists(path("a.xof"))) << "published although a worker died";
  const std::string journal = read_file(path("a.xof.run/journal"));
  EXPECT_NE(journal.find("\"record\":\"interrupted\""), std::string::npos) << journal;
  EXPECT_NE(journal.find("import worker (pid "), std::string::npos) << journal;
  EXPECT_NE(journal.find("was killed by signal 9 while translating"), std::string::npos) << journal;
  EXPECT_EQ(journal.find("\"record\":\"failed\""), std::string::npos);
  auto resumed = pf({"import", "--resume", path("a.xof.run"), "--workers", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_same_outputs("ref.xof", "a.xof");
}

// A card is rejected for the first of its problems in attribute order, whichever process
// translated its values: with the PIN block moved before the PAN, a record whose PIN block
// does not unwrap and whose PAN fails its Luhn check is a field-encryption reject, one
// whose PIN block is fine a Luhn reject (the translation is done before that is known).
TEST_F(CliImportWorkersTest, FirstProblemInAttributeOrderWinsWithOrWithoutWorkers) {
  std::string xml = read_file(profile());
  const auto begin = xml.find("    <attribute name=\"pin_block\"");
  ASSERT_NE(begin, std::string::npos);
  const auto end = xml.find("/>\n", begin) + 3;
  const std::string pin = xml.substr(begin, end - begin);
  xml.erase(begin, end - begin);
  const auto pan = xml.find("    <attribute name=\"pan\"");
  ASSERT_NE(pan, std::string::npos);
  xml.insert(pan, pin);
  write_file(profile(), xml);
  make_issuer_file(1200);  // the PANs of records 51, 401, 402, 403, 779 and 1201 fail Luhn
  std::string issuer = read_file(path("issuer.xml"));
  std::size_t p = 0;
  for (int k = 0; k < 401; ++k) p = issuer.find("<card id=\"", p + 1);  // record 401's card
  const std::size_t at = issuer.find("<pin-block>", p) + 11 + 20;
  issuer[at] = issuer[at] == '0' ? '1' : '0';
  write_file(path("issuer.xml"), issuer);
  encrypt_issuer_file();
  for (const std::string n : {"0", "2"}) {
    auto r = pf(with(import_args("w" + n + ".xof"), {"--workers", n}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  expect_same_outputs("w0.xof", "w2.xof");
  std::map<std::uint64_t, std::string> category;
  std::istringstream lines(read_file(path("w0.xof.rejects.jsonl")));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    const std::string field = j["field"].is_string() ? j["field"].get<std::string>() : "";
    category[j["record"].get<std::uint64_t>()] = field + "/" + j["category"].get<std::string>();
  }
  EXPECT_EQ(category[51], "pan/luhn");
  EXPECT_EQ(category[401], "pin_block/field-encryption");
  EXPECT_EQ(category[402], "pan/luhn");
}

// A worker recycled after the persoflow executable was replaced or removed (a package
// upgraded during a night's run) is started from the running image (/proc/self/exe), so
// the run finishes, with the parent's own version in every worker.
TEST_F(CliImportWorkersTest, WorkersOutliveTheExecutableFile) {
  make_issuer_file(1200);
  auto ref = pf(with(import_args("ref.xof"), {"--workers", "0"}));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::string copy = path("persoflow-copy");
  fs::copy_file(PERSOFLOW_CLI_PATH, copy);
  fs::permissions(copy, fs::perms::owner_all);
  ProcessResult r;
  std::thread run([&] {
    r = run_process(with({copy}, with(import_args("a.xof"), {"--workers", "2", "--worker-recycle-cards", "100",
                                                             "--batch-records", "64"})),
                    token_env_->env());
  });
  // The journal exists before the first worker starts: every worker, and each of the
  // 8 or more recycled ones, starts after the file is gone.
  for (int i = 0; i < 2000 && !fs::exists(path("a.xof.run/journal")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  fs::remove(copy);
  run.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs("ref.xof", "a.xof");
  EXPECT_GE(report("a.xof.report.json")["workers"]["started"].get<int>(), 10);
}

// A worker started after the profile file was edited (a recycled one, or any started
// after the edit) refuses it instead of translating under the edited profile's keys: the
// run stops, naming the file and both digests, and nothing is published.
TEST_F(CliImportWorkersTest, AWorkerRefusesAProfileEditedDuringTheRun) {
  make_issuer_file(1200);
  ProcessResult r;
  std::thread run([&] {
    r = run_process(with({PERSOFLOW_CLI_PATH}, with(import_args("a.xof"), {"--workers", "2", "--worker-recycle-cards",
                                                                          "100", "--batch-records", "64"})),
                    token_env_->env());
  });
  for (int i = 0; i < 2000 && !fs::exists(path("a.xof.run/journal")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    std::ofstream edit(profile(), std::ios::app);
    edit << "<!-- edited during the run -->\n";
  }
  run.join();
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("the profile changed since the run started"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(profile()), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.xof")));
}

// The worker's side of the wire fed garbage: a truncated work frame and one with trailing
// bytes are each answered with an error naming what is wrong (never a crash, never a
// value), and the worker still ends cleanly when its parent closes the socket.
TEST_F(CliImportWorkersTest, AnImportWorkerAnswersGarbageWithAnError) {
  const WorkerWire w = start_worker("import-worker");
  auto send = [&](char type, const std::string& payload) { send_frame(w, type, payload); };
  auto receive = [&] { return receive_frame(w); };
  const std::string bytes = read_file(profile());
  auto digest = formats::sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  ASSERT_TRUE(digest.has_value());
  send('I', nlohmann::json{{"profile", profile()}, {"profile_sha256", to_hex(Bytes(digest->begin(), digest->end()))}}.dump());
  auto ready = receive();
  ASSERT_EQ(ready.first, 'R') << ready.second;
  // seq 0, 1 card, 1 value, attribute 7, length 40: but only 3 bytes of it.
  send('W', std::string("\0\0\0\0\0\0\0\1\0\0\0\1\0\7\0\0\0\x28" "abc", 21));
  auto truncated = receive();
  EXPECT_EQ(truncated.first, 'E');
  EXPECT_NE(truncated.second.find("a work frame: offset 18: a value is truncated (needs 40 bytes, 3 left)"),
            std::string::npos)
      << truncated.second;
  // No value at all, and 2 bytes more.
  send('W', std::string("\0\0\0\1\0\0\0\0\0\0\0\0zz", 14));
  auto trailing = receive();
  EXPECT_EQ(trailing.first, 'E');
  EXPECT_NE(trailing.second.find("trailing bytes in a work frame"), std::string::npos) << trailing.second;
  EXPECT_EQ(stop_worker(w), 0);
}

TEST_F(CliImportWorkersTest, AWorkerThatCannotStartIsNamedAndTheOptionIsChecked) {
  make_issuer_file(800);
  auto r = run_process(with({PERSOFLOW_CLI_PATH}, with(import_args("a.xof"), {"--workers", "2"})), [&] {
    auto env = token_env_->env();
    env["PERSOFLOW_TEST_WORKER_TOKEN"] = "no-such-token";
    return env;
  }());
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("import worker (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("could not start"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no-such-token"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.xof")));
  for (const char* bad : {"-1", "x", "65"}) {
    auto b = pf(with(import_args("b.xof"), {"--workers", bad}));
    EXPECT_EQ(b.exit_code, 2) << bad << ": " << b.err;
    EXPECT_NE(b.err.find("--workers"), std::string::npos) << b.err;
  }
  EXPECT_NE(pf({"import", "--help"}).out.find("--worker-recycle-cards"), std::string::npos);
  EXPECT_EQ(pf({"--help"}).out.find("import-worker"), std::string::npos) << "the worker command is internal";
}

// An import killed after its 3rd journaled segment, and its resume killed after the 7th,
// is finished by a second resume into the outputs of an uninterrupted import; each
// segment is journaled (encoded) once over the three processes.
TEST_F(CliImportResumeTest, CrashAfterSegmentsResumesByteIdentical) {
  const auto good = make_issuer_file(1200);
  auto ref = pf(import_args("ref.xof"));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::size_t segments = journal_records(path("ref.xof.run"), "segment");
  EXPECT_EQ(segments, 12u);

  EXPECT_EQ(wait_for(spawn(import_args("a.xof"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "3"}})), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(path("a.xof"))) << "published before the run completed";
  EXPECT_EQ(journal_records(path("a.xof.run"), "segment"), 3u);
  EXPECT_EQ(wait_for(spawn({"import", "--resume", path("a.xof.run")}, {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "7"}})),
            128 + SIGKILL);
  EXPECT_FALSE(fs::exists(path("a.xof")));
  EXPECT_EQ(journal_records(path("a.xof.run"), "segment"), 7u);

  auto r = pf({"import", "--resume", path("a.xof.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("imported 1194 cards (1201 records, 7 rejected)"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(path("a.xof")), read_file(path("ref.xof")));
  EXPECT_EQ(read_file(path("a.xof.rejects.jsonl")), read_file(path("ref.xof.rejects.jsonl")));
  EXPECT_EQ(stable_report("a.xof.report.json"), stable_report("ref.xof.report.json"));
  expect_cards_once("a.xof", good);
  EXPECT_EQ(journal_records(path("a.xof.run"), "segment"), segments);
  EXPECT_EQ(journal_records(path("a.xof.run"), "complete"), 1u);
  EXPECT_EQ(journal_records(path("a.xof.run"), "finished"), 1u);
  EXPECT_FALSE(fs::exists(path("a.xof.run/xof.spool")));
}

// The harness: import killed (SIGKILL) after a random delay, its resumes killed too at
// random, until a resume finishes; each time the outputs are the uninterrupted run's, no
// card lost or twice, and nothing partial was ever published. Bounded in iterations and
// time; PERSOFLOW_RESUME_SEED replays a failure.
TEST_F(CliImportResumeTest, RandomKillsNeverLoseOrDuplicate) {
  const auto good = make_issuer_file(3000);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(pf(import_args("ref.xof")).exit_code, 0);
  const auto ref_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  const std::string reference = read_file(path("ref.xof"));
  const std::string ref_rejects = read_file(path("ref.xof.rejects.jsonl"));
  const auto ref_report = stable_report("ref.xof.report.json");

  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("PERSOFLOW_RESUME_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("import random-kill harness: seed %llu (replay with PERSOFLOW_RESUME_SEED=%llu), reference %lld ms\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<long long>(ref_ms));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<long long> delay(0, std::max<long long>(ref_ms * 11 / 10, 50));

  constexpr int kMaxIterations = 12;
  constexpr auto kBudget = std::chrono::seconds(20);
  const auto start = std::chrono::steady_clock::now();
  int iterations = 0, killed_runs = 0, killed_resumes = 0, mid_run = 0;
  for (int it = 0; it < kMaxIterations && (it < 3 || std::chrono::steady_clock::now() - start < kBudget); ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it) + ", seed " + std::to_string(seed));
    const std::string out = "it-" + std::to_string(it) + ".xof";
    auto check_published = [&] {
      if (fs::exists(path(out))) {
        EXPECT_EQ(read_file(path(out)), reference) << "a partial XOF was published";
      }
    };
    const pid_t pid = spawn(import_args(out));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    kill(pid, SIGKILL);
    killed_runs += wait_for(pid) == 128 + SIGKILL;
    check_published();

    int status = -1;
    for (int attempt = 0; attempt < 4 && status != 0; ++attempt) {
      const bool kill_this = attempt < 3 && (rng() % 3 == 0);
      // Resumes that take segments from the spool and seal the rest (the case that matters).
      const std::size_t journaled = journal_records(path(out + ".run"), "segment");
      mid_run += journaled > 0 && journal_records(path(out + ".run"), "complete") == 0;
      const pid_t rp = spawn({"import", "--resume", path(out + ".run")});
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
        // Killed before its journal had a record: nothing to resume, a new import starts.
        status = pf(import_args(out)).exit_code;
        break;
      }
      // It had finished before the kill (exited, or killed after its last record).
      if (status == 8 && journal_records(path(out + ".run"), "finished") == 1) status = 0;
    }
    ASSERT_EQ(status, 0);
    EXPECT_EQ(read_file(path(out)), reference) << "the resumed XOF differs from the uninterrupted one";
    EXPECT_EQ(read_file(path(out + ".rejects.jsonl")), ref_rejects);
    EXPECT_EQ(stable_report(out + ".report.json"), ref_report);
    expect_cards_once(out, good);
    ++iterations;
    if (HasFailure()) break;
  }
  std::printf("import random-kill harness: %d iterations (%d runs and %d resumes killed; %d resumes from the middle "
              "of a run) in %lld s, seed %llu\n",
              iterations, killed_runs, killed_resumes, mid_run,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()),
              static_cast<unsigned long long>(seed));
  EXPECT_GE(iterations, 3);
}

// What import --resume refuses, with its message and exit code.
TEST_F(CliImportResumeTest, RefusesWhatCannotBeResumed) {
  make_issuer_file(1000);
  auto r = pf({"import", "--resume", path("nowhere.run")});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("nowhere.run: no such run directory"), std::string::npos) << r.err;
  r = pf({"import", "--resume", path("a.xof.run"), "--out", path("x.xof")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume takes every import option from the run's journal"), std::string::npos) << r.err;

  EXPECT_EQ(wait_for(spawn(import_args("a.xof"), {{"PERSOFLOW_TEST_CRASH_AFTER_SEGMENT", "1"}})), 128 + SIGKILL);
  // A fresh import into the same run directory would lose the killed run: 8.
  r = pf(import_args("a.xof"));
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("which did not finish: resume it (persoflow import --resume"), std::string::npos) << r.err;

  // A changed issuer file: 7, and the run stays resumable.
  const std::string issuer = read_file(path("issuer.der"));
  write_file(path("issuer.der"), issuer + "x");
  r = pf({"import", "--resume", path("a.xof.run")});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find("the issuer file changed since import run"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.xof")));
  write_file(path("issuer.der"), issuer);
  r = pf({"import", "--resume", path("a.xof.run")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(pf(import_args("ref.xof")).exit_code, 0);
  EXPECT_EQ(read_file(path("a.xof")), read_file(path("ref.xof")));

  // A finished run: 8.
  r = pf({"import", "--resume", path("a.xof.run")});
  EXPECT_EQ(r.exit_code, 8);
  EXPECT_NE(r.err.find("already finished"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing to resume"), std::string::npos) << r.err;
  // A finished run's directory is reused by a new import.
  r = pf(import_args("a.xof"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(path("a.xof")), read_file(path("ref.xof")));
}

}  // namespace
}  // namespace persoflow::test
