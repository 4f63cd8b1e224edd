// `persoflow gen-issuer`, `import` and `inspect` through the real binary against a fresh
// SoftHSM token: issuer files made by the openssl CLI itself (CBC and GCM, streamed and
// definite-length) import, and what inspect --reveal shows equals the plain records;
// every kind of bad input is refused with its message and nothing is published.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/support/reference_crypto.h"
#include "tests/support/run_process.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {
namespace {

namespace fs = std::filesystem;

// The transport key's clear value: the XOR of the two ceremony components below, so
// that the openssl CLI can encrypt issuer files under the same key the HSM holds.
const std::string kComponent1 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
const std::string kComponent2 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A";

struct PlainCard {
  std::string id, pan, expiry, service_code, name, discretionary;
};

std::vector<PlainCard> parse_plain(const std::string& xml) {
  std::vector<PlainCard> cards;
  const std::regex re(
      "<card id=\"([^\"]+)\"><pan>([0-9]+)</pan><expiry>([0-9]+)</expiry><service-code>([0-9]+)</service-code>"
      "<name>([^<]+)</name><discretionary-data>([0-9]+)</discretionary-data>");
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), re); it != std::sregex_iterator(); ++it) {
    cards.push_back({(*it)[1], (*it)[2], (*it)[3], (*it)[4], (*it)[5], (*it)[6]});
  }
  return cards;
}

class CliImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* label : {"dkep-pan", "dkep-track", "dkep-general"}) {
      ASSERT_EQ(pf({"keys", "generate", "--label", label, "--type", "aes256", "--usage", "encrypt,decrypt"}).exit_code, 0);
    }
    ASSERT_EQ(pf({"keys", "generate", "--label", "dkep-secret", "--type", "aes256", "--usage",
                  "encrypt,decrypt,wrap,unwrap"}).exit_code, 0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "xof-integrity", "--type", "aes256", "--usage", "sign,verify"}).exit_code, 0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "pin-tk-acme", "--type", "aes128", "--usage", "wrap,unwrap"}).exit_code, 0);
    write_file(dir() / "c1", kComponent1 + "\n");
    write_file(dir() / "c2", kComponent2 + "\n");
    auto tk = pf({"keys", "import", "--label", "tk-acme-01", "--type", "aes256", "--usage", "wrap,unwrap",
                  "--component-file", (dir() / "c1").string(), "--component-file", (dir() / "c2").string()});
    ASSERT_EQ(tk.exit_code, 0) << tk.err;
    tk_hex_ = hex_upper(xor_bytes(hex_bytes(kComponent1), hex_bytes(kComponent2)));
  }

  ProcessResult pf(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    return run_process(args, token_.env());
  }
  ProcessResult openssl(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_OPENSSL_CLI);
    return run_process(args);
  }
  fs::path dir() const { return token_.dir().path(); }
  std::string profile(const std::string& name = "acme-import-xml.xml") const {
    return std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/" + name;
  }

  // gen-issuer with the plain records; returns the plain file's path.
  std::string generate(int cards, const std::string& name = "acme-import-xml.xml", int seed = 7) {
    const std::string plain = (dir() / ("plain-" + std::to_string(seed) + ".txt")).string();
    auto r = pf({"gen-issuer", "--profile", profile(name), "--cards", std::to_string(cards), "--out",
                 (dir() / "generated.der").string(), "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01",
                 "--plain", plain, "--seed", std::to_string(seed)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return plain;
  }

  std::string cms_encrypt(const std::string& plain, const std::vector<std::string>& mode, const std::string& out,
                          const std::string& key, const std::string& kek_id = "A1B2C3D4") {
    std::vector<std::string> args = {"cms", "-encrypt", "-binary", "-outform", "DER", "-secretkey", key,
                                     "-secretkeyid", kek_id, "-in", plain, "-out", (dir() / out).string()};
    args.insert(args.begin() + 3, mode.begin(), mode.end());
    auto r = openssl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return (dir() / out).string();
  }

  ProcessResult import(const std::string& in, const std::string& out, std::vector<std::string> extra = {},
                       const std::string& prof = "acme-import-xml.xml") {
    std::vector<std::string> args = {"import", "--profile", profile(prof), "--in", in, "--out", out};
    args.insert(args.end(), extra.begin(), extra.end());
    return pf(args);
  }

  // --reveal needs an audit log (docs/audit.md; tested in cli_audit_test.cpp).
  nlohmann::json reveal(const std::string& xof, const std::string& card) {
    auto r = pf({"inspect", xof, "--card", card, "--reveal", "--json", "--audit-log", (dir() / "audit.jsonl").string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["card"]["values"];
  }

  SoftHsmToken token_;
  std::string tk_hex_;
};

TEST_F(CliImportTest, OpensslCmsFilesImportAndRevealTheSameRecords) {
  const std::string plain = generate(300);
  const auto cards = parse_plain(read_file(plain));
  ASSERT_EQ(cards.size(), 300u);
  const std::vector<std::vector<std::string>> modes = {
      {"-aes-256-cbc"}, {"-aes-256-cbc", "-stream"}, {"-aes-128-cbc"}, {"-aes-256-gcm"}, {"-aes-256-gcm", "-stream"}};
  int n = 0;
  for (const auto& mode : modes) {
    SCOPED_TRACE(mode.front() + (mode.size() > 1 ? " -stream" : ""));
    const std::string in = cms_encrypt(plain, mode, "in" + std::to_string(n) + ".der", tk_hex_);
    const std::string xof = (dir() / ("out" + std::to_string(n++) + ".xof")).string();
    auto r = import(in, xof);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("imported 300 cards"), std::string::npos) << r.out;
    for (std::size_t i : {std::size_t{0}, std::size_t{149}, std::size_t{299}}) {
      const auto v = reveal(xof, cards[i].id);
      EXPECT_EQ(v["card_id"], cards[i].id);
      EXPECT_EQ(v["pan"], cards[i].pan);
      EXPECT_EQ(v["expiry"], cards[i].expiry);
      EXPECT_EQ(v["service_code"], cards[i].service_code);
      EXPECT_EQ(v["cardholder_name"], cards[i].name);
      EXPECT_EQ(v["discretionary_data"], cards[i].discretionary);
      EXPECT_NE(v["pin_block"].get<std::string>().find("wrapped"), std::string::npos);
    }
  }
  // The generator's own envelope (content key wrapped in the HSM) imports too.
  auto own = import((dir() / "generated.der").string(), (dir() / "own.xof").string());
  EXPECT_EQ(own.exit_code, 0) << own.err;
}

TEST_F(CliImportTest, ImportIsDeterministicAndPublishesARunReport) {
  const std::string plain = generate(120);
  const std::string in = cms_encrypt(plain, {"-aes-256-gcm"}, "in.der", tk_hex_);
  const std::string report = (dir() / "report.json").string();
  ASSERT_EQ(import(in, (dir() / "a.xof").string(), {"--report", report}).exit_code, 0);
  ASSERT_EQ(import(in, (dir() / "b.xof").string()).exit_code, 0);
  EXPECT_EQ(read_file(dir() / "a.xof"), read_file(dir() / "b.xof"));
  auto j = nlohmann::json::parse(read_file(report));
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["output"]["cards"], 120);
  {
    // The digest of the published XOF (the one prep's bundle header names).
    const std::string xof = read_file(dir() / "a.xof");
    ByteVec d(SHA256_DIGEST_LENGTH);
    SHA256(reinterpret_cast<const unsigned char*>(xof.data()), xof.size(), d.data());
    std::string got = j["output"]["sha256"].get<std::string>();
    std::transform(got.begin(), got.end(), got.begin(), ::toupper);
    EXPECT_EQ(got, hex_upper(d));
  }
  EXPECT_EQ(j["input"]["cipher"], "aes-256-gcm");
  EXPECT_EQ(j["input"]["kek_id"], "A1B2C3D4");
  // The same seed gives the same issuer file (content key and IV included).
  const std::string first = read_file(dir() / "generated.der");
  generate(120);
  EXPECT_EQ(read_file(dir() / "generated.der"), first);
}

TEST_F(CliImportTest, BadRecordsAreRejectedAloneAndReported) {
  const std::string plain = generate(50);
  std::string text = read_file(plain);
  auto cards = parse_plain(text);
  ASSERT_EQ(cards.size(), 50u);
  // Card 10: a Luhn-invalid PAN. Card 20: a malformed record (closing tag damaged).
  std::string bad_pan = cards[9].pan;
  bad_pan.back() = static_cast<char>('0' + (bad_pan.back() - '0' + 1) % 10);
  text.replace(text.find(cards[9].pan), cards[9].pan.size(), bad_pan);
  const std::string closing = "</pan>";
  const auto rec20 = text.find("id=\"" + cards[19].id + "\"");
  text.replace(text.find(closing, rec20), closing.size(), "</pam>");
  write_file(dir() / "edited.xml", text);
  const std::string in = cms_encrypt((dir() / "edited.xml").string(), {"-aes-256-cbc"}, "edited.der", tk_hex_);
  const std::string rejects = (dir() / "rejects.jsonl").string();
  const std::string xof = (dir() / "edited.xof").string();
  auto r = import(in, xof, {"--rejects", rejects});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("imported 48 cards (50 records, 2 rejected)"), std::string::npos) << r.out;

  std::vector<nlohmann::json> lines;
  std::istringstream in_lines(read_file(rejects));
  for (std::string line; std::getline(in_lines, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["record"], 10);
  EXPECT_EQ(lines[0]["card_id"], cards[9].id);
  EXPECT_EQ(lines[0]["field"], "pan");
  EXPECT_EQ(lines[0]["category"], "luhn");
  EXPECT_EQ(lines[0]["value"], bad_pan.substr(0, 6) + std::string(bad_pan.size() - 10, '*') + bad_pan.substr(bad_pan.size() - 4));
  EXPECT_EQ(lines[1]["record"], 20);
  EXPECT_EQ(lines[1]["category"], "malformed");
  EXPECT_EQ(lines[1]["offset"], static_cast<std::uint64_t>(text.rfind("<card", rec20)));
  const std::string report_text = read_file(rejects);
  EXPECT_EQ(report_text.find(bad_pan), std::string::npos);
  EXPECT_EQ(report_text.find(cards[19].pan), std::string::npos);

  // The rejected cards are not in the XOF; their neighbours are.
  EXPECT_EQ(pf({"inspect", xof, "--card", cards[9].id}).exit_code, 4);
  EXPECT_EQ(pf({"inspect", xof, "--card", cards[19].id}).exit_code, 4);
  EXPECT_EQ(reveal(xof, cards[10].id)["pan"], cards[10].pan);

  // Over the limit: nothing is published.
  fs::remove(xof);
  fs::remove(rejects);
  auto over = import(in, xof, {"--rejects", rejects, "--max-rejects", "1"});
  EXPECT_EQ(over.exit_code, 10) << over.err;
  EXPECT_NE(over.err.find("2 of 50 records rejected"), std::string::npos) << over.err;
  EXPECT_FALSE(fs::exists(xof));
  // The reject report is published even then: it says why the run failed.
  EXPECT_EQ(read_file(rejects), report_text);
  EXPECT_EQ(import(in, xof, {"--max-rejects", "5%"}).exit_code, 0);
  EXPECT_EQ(import(in, xof, {"--max-rejects", "3%"}).exit_code, 10);
  for (const char* bad : {"lots", "1e1", "-1", " 10", "0x10", "10.5", "101%", "%"}) {
    EXPECT_EQ(import(in, xof, {"--max-rejects", bad}).exit_code, 2) << bad;
  }
}

TEST_F(CliImportTest, ADuplicateCardIdIsRejectedAndTheFirstCardKept) {
  const std::string plain = generate(20);
  std::string text = read_file(plain);
  const auto cards = parse_plain(text);
  text.replace(text.find("id=\"" + cards[12].id + "\""), cards[12].id.size() + 5, "id=\"" + cards[4].id + "\"");
  write_file(dir() / "dup.xml", text);
  const std::string in = cms_encrypt((dir() / "dup.xml").string(), {"-aes-256-gcm"}, "dup.der", tk_hex_);
  const std::string xof = (dir() / "dup.xof").string();
  const std::string rejects = (dir() / "dup.jsonl").string();
  auto r = import(in, xof, {"--rejects", rejects});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("imported 19 cards (20 records, 1 rejected)"), std::string::npos) << r.out;
  auto line = nlohmann::json::parse(read_file(rejects));
  EXPECT_EQ(line["record"], 13);
  EXPECT_EQ(line["category"], "duplicate");
  EXPECT_EQ(line["card_id"], cards[4].id);
  EXPECT_EQ(reveal(xof, cards[4].id)["pan"], cards[4].pan);  // the first one stays
}

TEST_F(CliImportTest, WrongKeysAndDamagedEnvelopesPublishNothing) {
  const std::string plain = generate(40);
  const std::string xof = (dir() / "never.xof").string();
  const std::string rejects = (dir() / "never.jsonl").string();
  auto expect_refused = [&](const std::string& in, int code, const std::string& message) {
    auto r = import(in, xof, {"--rejects", rejects});
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(in), std::string::npos) << "the message names the file: " << r.err;
    EXPECT_FALSE(fs::exists(xof));
    EXPECT_FALSE(fs::exists(rejects));
    for (const auto& e : fs::directory_iterator(dir())) {
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    }
  };
  std::string other_tk = tk_hex_;
  other_tk[0] = other_tk[0] == '0' ? '1' : '0';
  expect_refused(cms_encrypt(plain, {"-aes-256-cbc"}, "wrongtk.der", other_tk), 7, "does not unwrap");
  expect_refused(cms_encrypt(plain, {"-aes-256-cbc"}, "wrongid.der", tk_hex_, "0BADBEEF"), 4, "kekid");

  const std::string gcm = cms_encrypt(plain, {"-aes-256-gcm"}, "gcm.der", tk_hex_);
  const std::string bytes = read_file(gcm);
  auto flipped = [&](std::size_t at, const std::string& name) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x01);
    write_file(dir() / name, b);
    return (dir() / name).string();
  };
  expect_refused(flipped(bytes.size() / 2, "ct.der"), 7, "authentication tag does not verify");
  expect_refused(flipped(bytes.size() - 1, "tag.der"), 7, "authentication tag does not verify");
  expect_refused(flipped(6, "oid.der"), 3, "CMS");
  write_file(dir() / "short.der", bytes.substr(0, bytes.size() / 2));
  expect_refused((dir() / "short.der").string(), 3, "truncated");
  write_file(dir() / "empty.der", "");
  expect_refused((dir() / "empty.der").string(), 3, "CMS");
  auto missing = import((dir() / "absent.der").string(), xof);
  EXPECT_EQ(missing.exit_code, 4);
}

TEST_F(CliImportTest, FixedWidthRecordsImportToo) {
  const std::string plain = generate(30, "acme-import-fixed.xml");
  const std::string in = cms_encrypt(plain, {"-aes-256-cbc", "-stream"}, "fixed.der", tk_hex_);
  const std::string xof = (dir() / "fixed.xof").string();
  auto r = import(in, xof, {}, "acme-import-fixed.xml");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("imported 30 cards"), std::string::npos) << r.out;
  auto summary = pf({"inspect", xof, "--json"});
  ASSERT_EQ(summary.exit_code, 0) << summary.err;
  EXPECT_EQ(nlohmann::json::parse(summary.out)["records"], 30);
}

TEST_F(CliImportTest, NoClearCardholderValueReachesAnyOutput) {
  const std::string plain = generate(60);
  const auto cards = parse_plain(read_file(plain));
  const std::string in = cms_encrypt(plain, {"-aes-256-gcm"}, "in.der", tk_hex_);
  const std::string xof = (dir() / "clean.xof").string();
  auto r = import(in, xof, {"--rejects", (dir() / "r.jsonl").string(), "--report", (dir() / "report.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto inspect = pf({"inspect", xof, "--json"});
  const std::string outputs = read_file(xof) + read_file(dir() / "r.jsonl") + read_file(dir() / "report.json") +
                              r.out + r.err + inspect.out + inspect.err;
  for (const auto& c : cards) {
    for (const std::string& secret : {c.pan, c.name, c.pan.substr(4, 10)}) {
      EXPECT_EQ(outputs.find(secret), std::string::npos) << "clear value found";
      EXPECT_EQ(outputs.find(hex_upper(ByteVec(secret.begin(), secret.end()))), std::string::npos) << "hex found";
    }
  }
  // Card ids are allowed in clear (they are the index).
  EXPECT_NE(read_file(xof).find(cards[0].id), std::string::npos);
}

TEST_F(CliImportTest, ProgressLineOnATerminalOnly) {
  const std::string plain = generate(400);
  const std::string in = cms_encrypt(plain, {"-aes-256-cbc"}, "p.der", tk_hex_);
  // Not a terminal (a pipe, as in cron or CI): no progress line at all.
  auto piped = import(in, (dir() / "p1.xof").string());
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err.find("cards/s"), std::string::npos) << piped.err;
  EXPECT_EQ(piped.err.find('\r'), std::string::npos);
  // A terminal: the line appears on stderr.
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& [k, v] : token_.env()) setenv(k.c_str(), v.c_str(), 1);
    const std::string prof = profile(), out = (dir() / "p2.xof").string();
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "import", "--profile", prof.c_str(), "--in", in.c_str(), "--out",
          out.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string screen;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;
    screen.append(buf, static_cast<std::size_t>(n));
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << screen;
  EXPECT_NE(screen.find("import: "), std::string::npos) << screen;
  EXPECT_NE(screen.find("cards/s"), std::string::npos) << screen;
  EXPECT_EQ(read_file(dir() / "p1.xof"), read_file(dir() / "p2.xof"));
}

TEST_F(CliImportTest, HelpOfTheImportCommands) {
  for (const auto& [cmd, words] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"import", {"--profile", "--in", "--out", "--rejects", "--report", "--max-rejects"}},
           {"gen-issuer", {"--profile", "--cards", "--out", "--kek-id", "--tk", "--tk-hex", "--content-cipher",
                           "--plain", "--seed"}},
           {"inspect", {"--json", "--card", "--reveal", "--profile"}}}) {
    auto r = pf({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0);
    for (const auto& w : words) EXPECT_NE(r.out.find(w), std::string::npos) << cmd << " lacks " << w;
  }
}

}  // namespace
}  // namespace persoflow::test
