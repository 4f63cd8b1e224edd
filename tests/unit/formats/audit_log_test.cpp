#include "formats/audit_log.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.h"

namespace persoflow::formats {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;
using test::read_file;
using test::TempDir;
using test::write_file;

const std::string kZeros(64, '0');

AuditOrigin test_origin() { return AuditOrigin{"alice", "perso-host-1", 4242}; }

// SHA-256 straight through OpenSSL, lower-case hex: independent of persoflow's code.
std::string reference_sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr), 1);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kDigits[md[i] >> 4];
    out += kDigits[md[i] & 0x0F];
  }
  return out;
}

// The hash of docs/audit.md, computed from the bytes of a line: its final
// `,"hash":"<64 hex>"}` replaced by `}`.
std::string reference_line_hash(const std::string& line) {
  const std::size_t at = line.rfind(",\"hash\":\"");
  EXPECT_NE(at, std::string::npos) << line;
  EXPECT_EQ(line.size() - at, 9u + 64u + 2u) << line;
  return reference_sha256_hex(line.substr(0, at) + "}");
}

// A line with this content and a correct own hash (as a forger with write access would make it).
std::string forge_line(Json without_hash) {
  std::string text = without_hash.dump();
  const std::string hash = reference_sha256_hex(text);
  text.pop_back();
  return text + ",\"hash\":\"" + hash + "\"}";
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

AuditVerifyReport verify_text(const std::string& text) {
  AuditVerifyReport report;
  Status s = verify_audit_text(text, "mem", report);
  EXPECT_EQ(s.has_value(), report.intact());
  if (!s) {
    EXPECT_EQ(s.error().code(), ErrorCode::kIntegrity);
    EXPECT_THAT(s.error().message(),
                HasSubstr("audit log mem: line " + std::to_string(report.bad_line) + ": "));
  }
  return report;
}

class AuditLogTest : public ::testing::Test {
 protected:
  // A log of `n` entries, one "reveal" event each, all appended through AuditLog.
  std::string make_log(int n, const std::string& name = "audit.jsonl") {
    const std::string path = (dir_ / name).string();
    AuditLog log(path, test_origin());
    for (int i = 1; i <= n; ++i) {
      auto r = log.append(
          "reveal", Json{{"card_id", "C" + std::to_string(i)}, {"attributes", {"pan", "name"}}});
      EXPECT_TRUE(r.has_value()) << r.error().message();
      if (r) {
        EXPECT_EQ(r->seq, static_cast<std::uint64_t>(i));
      }
    }
    return path;
  }

  TempDir dir_{"persoflow-audit"};
};

// ---------------------------------------------------------------- writing

TEST_F(AuditLogTest, AChainOfManyEntriesVerifies) {
  const std::string path = make_log(300);
  AuditVerifyReport report;
  Status s = verify_audit_log(path, report);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_TRUE(report.intact());
  EXPECT_EQ(report.entries, 300u);
  EXPECT_EQ(report.last_seq, 300u);
  EXPECT_EQ(report.bad_line, 0u);
  const auto lines = split_lines(read_file(path));
  ASSERT_EQ(lines.size(), 300u);
  EXPECT_EQ(report.last_hash, Json::parse(lines.back())["hash"]);
}

TEST_F(AuditLogTest, EachLineHasTheMembersInOrderAndTheDocumentedHashChain) {
  const std::string path = make_log(5);
  const std::string text = read_file(path);
  ASSERT_EQ(text.back(), '\n');
  const std::regex time_re("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$");
  std::string prev = kZeros;
  std::uint64_t seq = 0;
  for (const std::string& line : split_lines(text)) {
    SCOPED_TRACE(line);
    EXPECT_EQ(line.find(' '), std::string::npos) << "no spaces outside strings";
    const Json j = Json::parse(line);
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"seq", "time", "event", "operator", "host", "pid",
                                              "details", "prev", "hash"}));
    EXPECT_EQ(j["seq"], ++seq);
    EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(), time_re)) << j["time"];
    EXPECT_EQ(j["event"], "reveal");
    EXPECT_EQ(j["operator"], "alice");
    EXPECT_EQ(j["host"], "perso-host-1");
    EXPECT_EQ(j["pid"], 4242);
    EXPECT_EQ(j["details"]["card_id"], "C" + std::to_string(seq));
    EXPECT_EQ(j["prev"], prev);
    // hash = SHA-256 of the line without its hash member, as written ...
    EXPECT_EQ(j["hash"], reference_line_hash(line));
    // ... which is also the object without "hash", serialized without spaces.
    Json without = j;
    without.erase("hash");
    EXPECT_EQ(j["hash"], reference_sha256_hex(without.dump()));
    prev = j["hash"].get<std::string>();
  }
}

TEST_F(AuditLogTest, AppendReturnsTheSeqAndHashItWrote) {
  const std::string path = (dir_ / "a.jsonl").string();
  AuditLog log(path, test_origin());
  auto first = log.append("reveal", Json::object());
  ASSERT_TRUE(first.has_value()) << first.error().message();
  auto second = log.append("key.generate", Json{{"uri", "pkcs11:object=k"}, {"kcv", "0A1B2C"}});
  ASSERT_TRUE(second.has_value()) << second.error().message();
  const auto lines = split_lines(read_file(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(first->seq, 1u);
  EXPECT_EQ(second->seq, 2u);
  EXPECT_EQ(Json::parse(lines[0])["hash"], first->hash);
  EXPECT_EQ(Json::parse(lines[1])["hash"], second->hash);
  EXPECT_EQ(Json::parse(lines[1])["prev"], first->hash);
  EXPECT_EQ(Json::parse(lines[1])["event"], "key.generate");
}

TEST_F(AuditLogTest, ANewLogIsCreatedWithMode0600) {
  const std::string path = make_log(1);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuditLogTest, DetailsWithInvalidUtf8AreWrittenReplacedAndStillVerify) {
  const std::string path = (dir_ / "u.jsonl").string();
  AuditLog log(path, test_origin());
  ASSERT_TRUE(log.append("reveal", Json{{"label", std::string("bad\xFF", 4)}}).has_value());
  const Json j = Json::parse(split_lines(read_file(path)).at(0));
  EXPECT_EQ(j["details"]["label"], "bad\xEF\xBF\xBD");
  AuditVerifyReport report;
  EXPECT_TRUE(verify_audit_log(path, report).has_value()) << report.reason;
}

TEST_F(AuditLogTest, BadEventNamesDetailsAndOversizedLinesAreRefusedAndNothingIsWritten) {
  const std::string path = (dir_ / "never.jsonl").string();
  AuditLog log(path, test_origin());
  for (const std::string& event :
       std::vector<std::string>{"", "Reveal", "re veal", "reveal\n", std::string(65, 'a')}) {
    auto r = log.append(event, Json::object());
    ASSERT_FALSE(r.has_value()) << event;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  for (const Json& details : {Json::array(), Json("text"), Json(nullptr), Json(3)}) {
    auto r = log.append("reveal", details);
    ASSERT_FALSE(r.has_value()) << details;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(fs::exists(path));
  ASSERT_TRUE(log.append("reveal", Json::object()).has_value());
  const std::string before = read_file(path);
  auto big = log.append("reveal", Json{{"blob", std::string(kAuditMaxLineBytes, 'x')}});
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(read_file(path), before);
}

TEST_F(AuditLogTest, AppendNeedsAnExistingDirectoryAndARegularFile) {
  AuditLog missing_dir((dir_ / "no-such-dir" / "a.jsonl").string(), test_origin());
  auto r = missing_dir.append("reveal", Json::object());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr("no-such-dir"));

  AuditLog dev_null("/dev/null", test_origin());
  auto n = dev_null.append("reveal", Json::object());
  ASSERT_FALSE(n.has_value()) << "an audit log that discards entries must be refused";
  EXPECT_EQ(n.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(n.error().message(), HasSubstr("not a regular file"));

  auto dir = AuditLog(dir_.path().string(), test_origin()).append("reveal", Json::object());
  ASSERT_FALSE(dir.has_value());
  EXPECT_EQ(dir.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(AuditLogTest, TheOperatorIsPersoflowOperatorElseTheLoginName) {
  ::setenv("PERSOFLOW_OPERATOR", "bob.smith", 1);
  EXPECT_EQ(AuditOrigin::of_this_process().operator_name, "bob.smith");
  ::setenv("PERSOFLOW_OPERATOR", "", 1);
  const AuditOrigin o = AuditOrigin::of_this_process();
  ::unsetenv("PERSOFLOW_OPERATOR");
  EXPECT_FALSE(o.operator_name.empty());
  EXPECT_NE(o.operator_name, "bob.smith");
  EXPECT_EQ(AuditOrigin::of_this_process().operator_name, o.operator_name);
  EXPECT_EQ(o.pid, ::getpid());
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(o.host, host);
}

// ---------------------------------------------------------------- concurrency

TEST_F(AuditLogTest, ConcurrentAppendsFromSeveralProcessesFormOneIntactChain) {
  const std::string path = (dir_ / "shared.jsonl").string();
  constexpr int kProcesses = 6;
  constexpr int kEach = 50;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      AuditLog log(path);  // this child's own pid in every entry
      int failures = 0;
      for (int i = 0; i < kEach; ++i) {
        if (!log.append("reveal", Json{{"child", p}, {"i", i}}).has_value()) ++failures;
      }
      ::_exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a child failed to append";
  }
  AuditVerifyReport report;
  Status s = verify_audit_log(path, report);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(report.entries, static_cast<std::uint64_t>(kProcesses * kEach));
  std::map<std::int64_t, int> per_pid;
  std::map<int, int> next_i;  // each child's entries appear in its own order
  std::uint64_t seq = 0;
  for (const auto& line : split_lines(read_file(path))) {
    const Json j = Json::parse(line);
    EXPECT_EQ(j["seq"], ++seq);
    ++per_pid[j["pid"].get<std::int64_t>()];
    const int child = j["details"]["child"];
    EXPECT_EQ(j["details"]["i"], next_i[child]++);
  }
  EXPECT_EQ(per_pid.size(), static_cast<std::size_t>(kProcesses));
  for (const auto& [pid, n] : per_pid) EXPECT_EQ(n, kEach) << "pid " << pid;
}

// ---------------------------------------------------------------- refusing a damaged tail

TEST_F(AuditLogTest, AppendRefusesADamagedTailAndLeavesTheFileAsItWas) {
  const std::string good = read_file(make_log(3));
  const auto lines = split_lines(good);
  std::string edited_last = lines[2];
  edited_last[edited_last.find("C3")] = 'D';
  const std::map<std::string, std::string> damaged = {
      {"truncated last line", good.substr(0, good.size() - 20)},
      {"last newline missing", good.substr(0, good.size() - 1)},
      {"last line edited", join_lines({lines[0], lines[1], edited_last})},
      {"garbage appended", good + "not json\n"},
      {"empty last line", good + "\n"},
      {"overlong last line", good + std::string(kAuditMaxLineBytes + 10, 'x') + "\n"},
  };
  for (const auto& [what, content] : damaged) {
    SCOPED_TRACE(what);
    const fs::path path = dir_ / "damaged.jsonl";
    write_file(path, content);
    auto r = AuditLog(path.string(), test_origin()).append("reveal", Json::object());
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kIntegrity);
    EXPECT_THAT(r.error().message(), HasSubstr(path.string()));
    EXPECT_THAT(r.error().message(), HasSubstr("nothing appended"));
    EXPECT_EQ(read_file(path), content);
  }
}

TEST_F(AuditLogTest, AppendChainsOntoLinesNearTheSizeLimit) {
  const std::string path = (dir_ / "long.jsonl").string();
  AuditLog log(path, test_origin());
  // Lines near the limit: the tail read must still find the newline before the last one.
  ASSERT_TRUE(
      log.append("reveal", Json{{"blob", std::string(kAuditMaxLineBytes - 400, 'y')}}).has_value());
  ASSERT_TRUE(
      log.append("reveal", Json{{"blob", std::string(kAuditMaxLineBytes - 400, 'z')}}).has_value());
  ASSERT_TRUE(log.append("reveal", Json::object()).has_value());
  AuditVerifyReport report;
  ASSERT_TRUE(verify_audit_log(path, report).has_value()) << report.reason;
  EXPECT_EQ(report.entries, 3u);
}

// ---------------------------------------------------------------- verification

TEST_F(AuditLogTest, AnEmptyLogIsIntactAndAMissingOneIsNotFound) {
  const auto empty = verify_text("");
  EXPECT_TRUE(empty.intact());
  EXPECT_EQ(empty.entries, 0u);
  EXPECT_EQ(empty.last_hash, kZeros);
  AuditVerifyReport report;
  Status s = verify_audit_log((dir_ / "absent.jsonl").string(), report);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  s = verify_audit_log(dir_.path().string(), report);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kIo);
}

TEST_F(AuditLogTest, EditingAnyByteOfAnyLineIsFoundAtThatLine) {
  const std::string good = read_file(make_log(4));
  ASSERT_TRUE(verify_text(good).intact());
  std::size_t line_no = 1;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (const char change : {'\x01', '\x20'}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ change);
      const auto report = verify_text(bad);
      ASSERT_FALSE(report.intact()) << "byte " << i << " ^ " << int{change} << " not detected";
      ASSERT_EQ(report.bad_line, line_no) << "byte " << i << ": " << report.reason;
      ASSERT_THAT(report.defect,
                  AnyOf(AuditDefect::kEdited, AuditDefect::kMalformed, AuditDefect::kTruncated))
          << report.reason;
    }
    if (good[i] == '\n') ++line_no;
  }
  EXPECT_EQ(line_no, 5u);
}

TEST_F(AuditLogTest, AnEditThatKeepsTheJsonValidIsReportedAsEdited) {
  const std::string path = make_log(3);
  std::string text = read_file(path);
  text[text.find("\"C2\"") + 2] = '9';  // card C2 -> C9 on line 2
  write_file(path, text);
  AuditVerifyReport report;
  Status s = verify_audit_log(path, report);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kIntegrity);
  EXPECT_EQ(report.bad_line, 2u);
  EXPECT_EQ(report.defect, AuditDefect::kEdited);
  EXPECT_EQ(report.entries, 1u);
  EXPECT_THAT(s.error().message(), HasSubstr(path + ": line 2: "));
  EXPECT_THAT(report.reason, HasSubstr("edited"));
}

TEST_F(AuditLogTest, ARemovedLineIsFoundAtThePlaceItWasRemovedFrom) {
  const auto lines = split_lines(read_file(make_log(6)));
  for (std::size_t k = 0; k + 1 < lines.size(); ++k) {
    auto cut = lines;
    cut.erase(cut.begin() + static_cast<std::ptrdiff_t>(k));
    const auto report = verify_text(join_lines(cut));
    EXPECT_EQ(report.bad_line, k + 1) << "removed line " << k + 1;
    EXPECT_EQ(report.defect, AuditDefect::kRemoved) << report.reason;
    EXPECT_EQ(report.entries, k);
  }
  // Two lines at once are named as a range.
  auto cut = lines;
  cut.erase(cut.begin() + 2, cut.begin() + 4);
  const auto report = verify_text(join_lines(cut));
  EXPECT_EQ(report.bad_line, 3u);
  EXPECT_THAT(report.reason, HasSubstr("entries 3 to 4 are missing"));
}

TEST_F(AuditLogTest, RemovingTheNewestLinesIsOnlySeenAgainstALastHashKeptElsewhere) {
  const std::string text = read_file(make_log(6));
  const auto full = verify_text(text);
  auto lines = split_lines(text);
  lines.pop_back();
  lines.pop_back();
  const auto shortened = verify_text(join_lines(lines));
  // The documented limit: the chain alone cannot tell.
  EXPECT_TRUE(shortened.intact());
  EXPECT_EQ(shortened.entries, 4u);
  // The anchor that catches it: the last seq and hash shipped elsewhere.
  EXPECT_LT(shortened.last_seq, full.last_seq);
  EXPECT_NE(shortened.last_hash, full.last_hash);
}

TEST_F(AuditLogTest, SwappedLinesAreFoundAsReordered) {
  const auto lines = split_lines(read_file(make_log(6)));
  for (std::size_t k = 0; k + 1 < lines.size(); ++k) {
    auto swapped = lines;
    std::swap(swapped[k], swapped[k + 1]);
    const auto report = verify_text(join_lines(swapped));
    EXPECT_EQ(report.bad_line, k + 1) << "swapped lines " << k + 1 << " and " << k + 2;
    EXPECT_EQ(report.defect, AuditDefect::kReordered) << report.reason;
    EXPECT_THAT(report.reason, HasSubstr("is at line " + std::to_string(k + 2)));
  }
  // A line moved far down.
  auto moved = lines;
  std::rotate(moved.begin() + 1, moved.begin() + 2, moved.end());  // line 2 moved to the end
  const auto report = verify_text(join_lines(moved));
  EXPECT_EQ(report.bad_line, 2u);
  EXPECT_EQ(report.defect, AuditDefect::kReordered);
}

TEST_F(AuditLogTest, AForgedLineWithItsOwnHashButAWrongPrevIsFoundAsInserted) {
  const auto lines = split_lines(read_file(make_log(5)));
  for (std::size_t k = 0; k < lines.size(); ++k) {
    // A forged entry at position k+1 taking seq k+1, with a self-consistent hash.
    Json forged = Json::parse(lines[k]);
    forged.erase("hash");
    forged["details"] = Json{{"card_id", "FORGED"}};
    forged["prev"] = Json::parse(lines[(k + 2) % lines.size()])["hash"];  // some other line's hash
    auto inserted = lines;
    inserted.insert(inserted.begin() + static_cast<std::ptrdiff_t>(k), forge_line(forged));
    const auto report = verify_text(join_lines(inserted));
    EXPECT_EQ(report.bad_line, k + 1) << "inserted at line " << k + 1;
    EXPECT_EQ(report.defect, AuditDefect::kInserted) << report.reason;
  }
}

TEST_F(AuditLogTest, AForgedLineWithTheRightPrevIsFoundAtTheLineAfterIt) {
  const auto lines = split_lines(read_file(make_log(5)));
  // Between lines 2 and 3: seq 3, prev = hash of line 2. Alone it is perfect; line 4
  // (the real seq 3) then goes back in sequence and does not chain to it.
  Json forged = Json::parse(lines[2]);
  forged.erase("hash");
  forged["details"] = Json{{"card_id", "FORGED"}};
  auto inserted = lines;
  inserted.insert(inserted.begin() + 2, forge_line(forged));
  const auto report = verify_text(join_lines(inserted));
  EXPECT_EQ(report.bad_line, 4u);
  EXPECT_EQ(report.defect, AuditDefect::kInserted) << report.reason;
  EXPECT_THAT(report.reason, HasSubstr("seq 3 where 4 was expected"));
}

TEST_F(AuditLogTest, ATruncatedFinalLineIsFound) {
  const std::string text = read_file(make_log(4));
  for (const std::size_t cut :
       {std::size_t{1}, std::size_t{2}, std::size_t{40}, std::size_t{100}}) {
    const auto report = verify_text(text.substr(0, text.size() - cut));
    EXPECT_EQ(report.bad_line, 4u) << "cut " << cut;
    EXPECT_EQ(report.defect, AuditDefect::kTruncated) << report.reason;
    EXPECT_EQ(report.entries, 3u);
  }
}

TEST_F(AuditLogTest, LinesWithMissingExtraOrMistypedMembersAreMalformedEvenWithAFreshHash) {
  const auto lines = split_lines(read_file(make_log(2)));
  Json base = Json::parse(lines[1]);
  base.erase("hash");
  auto expect_malformed = [&](Json changed, const std::string& reason) {
    const auto report = verify_text(join_lines({lines[0], forge_line(std::move(changed))}));
    EXPECT_EQ(report.bad_line, 2u);
    EXPECT_EQ(report.defect, AuditDefect::kMalformed) << report.reason;
    EXPECT_THAT(report.reason, HasSubstr(reason));
  };
  Json no_host = base;
  no_host.erase("host");
  expect_malformed(no_host, "member 'host' missing");
  Json extra = base;
  extra["comment"] = "x";  // after "prev", before the hash
  expect_malformed(extra, "member 'hash' missing or out of order");
  Json seq_text = base;
  seq_text["seq"] = "2";
  expect_malformed(seq_text, "member 'seq' is not a whole number");
  Json upper = base;
  upper["prev"] = Json::parse(lines[0])["hash"].get<std::string>();
  for (auto& c : upper["prev"].get_ref<std::string&>()) c = static_cast<char>(std::toupper(c));
  expect_malformed(upper, "member 'prev' is not 64 lower-case hex digits");
  Json bad_time = base;
  bad_time["time"] = "2026-11-22 03:04:05";
  expect_malformed(bad_time, "member 'time'");
  // A hash member written with a space is not how persoflow writes it.
  const auto spaced = verify_text(join_lines(
      {lines[0], std::regex_replace(lines[1], std::regex(",\"hash\":"), ",\"hash\": ")}));
  EXPECT_EQ(spaced.bad_line, 2u);
  EXPECT_EQ(spaced.defect, AuditDefect::kMalformed);
}

TEST_F(AuditLogTest, TheFirstLineMustStartTheChain) {
  const auto lines = split_lines(read_file(make_log(3)));
  Json first = Json::parse(lines[0]);
  first.erase("hash");
  first["prev"] = Json::parse(lines[2])["hash"];
  const auto report = verify_text(join_lines({forge_line(first)}));
  EXPECT_EQ(report.bad_line, 1u);
  EXPECT_EQ(report.defect, AuditDefect::kInserted);
  EXPECT_THAT(report.reason, HasSubstr("not 64 zeros"));
}

}  // namespace
}  // namespace persoflow::formats
