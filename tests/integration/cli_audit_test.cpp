// The audit trail through the real binary against a fresh SoftHSM token: `inspect
// --reveal` refuses to run without an audit log, records a "reveal" entry before any
// value is shown (and shows nothing when it cannot), and `audit verify` checks the chain.
// The issuer file comes from gen-issuer --tk-hex with the clear value of a TK imported
// from two component files, so no other tool is needed.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/support/reference_crypto.h"
#include "tests/support/run_process.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {
namespace {

namespace fs = std::filesystem;

const std::string kComponent1 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
const std::string kComponent2 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A";

struct PlainCard {
  std::string id, pan, name;
};

std::vector<PlainCard> parse_plain(const std::string& xml) {
  std::vector<PlainCard> cards;
  const std::regex re("<card id=\"([^\"]+)\"><pan>([0-9]+)</pan>.*?<name>([^<]+)</name>");
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), re); it != std::sregex_iterator();
       ++it) {
    cards.push_back({(*it)[1], (*it)[2], (*it)[3]});
  }
  return cards;
}

std::vector<nlohmann::json> jsonl(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

class CliAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* label : {"dkep-pan", "dkep-track", "dkep-general"}) {
      ASSERT_EQ(pf({"keys", "generate", "--label", label, "--type", "aes256", "--usage",
                    "encrypt,decrypt"})
                    .exit_code,
                0);
    }
    ASSERT_EQ(pf({"keys", "generate", "--label", "dkep-secret", "--type", "aes256", "--usage",
                  "encrypt,decrypt,wrap,unwrap"})
                  .exit_code,
              0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "xof-integrity", "--type", "aes256", "--usage",
                  "sign,verify"})
                  .exit_code,
              0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "pin-tk-acme", "--type", "aes128", "--usage",
                  "wrap,unwrap"})
                  .exit_code,
              0);
    write_file(dir() / "c1", kComponent1 + "\n");
    write_file(dir() / "c2", kComponent2 + "\n");
    auto tk = pf({"keys", "import", "--label", "tk-acme-01", "--type", "aes256", "--usage",
                  "wrap,unwrap", "--component-file", (dir() / "c1").string(), "--component-file",
                  (dir() / "c2").string()});
    ASSERT_EQ(tk.exit_code, 0) << tk.err;
    const std::string tk_hex = hex_upper(xor_bytes(hex_bytes(kComponent1), hex_bytes(kComponent2)));

    const std::string plain = (dir() / "plain.xml").string();
    auto gen = pf({"gen-issuer", "--profile", profile(), "--cards", "25", "--out",
                   (dir() / "issuer.der").string(), "--kek-id", "A1B2C3D4", "--tk-hex", tk_hex,
                   "--plain", plain, "--seed", "11"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    cards_ = parse_plain(read_file(plain));
    ASSERT_EQ(cards_.size(), 25u);
    xof_ = (dir() / "cards.xof").string();
    auto imp = pf(
        {"import", "--profile", profile(), "--in", (dir() / "issuer.der").string(), "--out", xof_});
    ASSERT_EQ(imp.exit_code, 0) << imp.err;
    log_ = (dir() / "audit.jsonl").string();
  }

  // The CLI with the token's environment, an operator name, and no audit log or
  // configuration file inherited from the environment the tests run in.
  ProcessResult pf(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    std::map<std::string, std::string> full = token_.env();
    full["PERSOFLOW_AUDIT_LOG"] = "";
    full["PERSOFLOW_CONFIG"] = "";
    full["PERSOFLOW_OPERATOR"] = "op.jane";
    for (auto& [k, v] : env) full[k] = v;
    return run_process(args, full);
  }
  fs::path dir() const { return token_.dir().path(); }
  static std::string profile() {
    return std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-import-xml.xml";
  }

  // No clear PAN or name of any card in `text`.
  void expect_no_card_values(const std::string& text) {
    for (const auto& c : cards_) {
      EXPECT_EQ(text.find(c.pan), std::string::npos) << "a clear PAN was printed";
      EXPECT_EQ(text.find(c.name), std::string::npos) << "a clear name was printed";
    }
  }

  SoftHsmToken token_;
  std::vector<PlainCard> cards_;
  std::string xof_;
  std::string log_;
};

TEST_F(CliAuditTest, RevealWithoutAnAuditLogIsRefusedAndShowsNothing) {
  auto r = pf({"inspect", xof_, "--card", cards_[3].id, "--reveal"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("must be recorded in an audit log, but none is configured"),
            std::string::npos)
      << r.err;
  for (const char* how : {"--audit-log FILE", "PERSOFLOW_AUDIT_LOG", "[audit]"}) {
    EXPECT_NE(r.err.find(how), std::string::npos) << "the message says how: " << how << "\n"
                                                  << r.err;
  }
  expect_no_card_values(r.out + r.err);
  // With --json too.
  auto j = pf({"inspect", xof_, "--card", cards_[3].id, "--reveal", "--json"});
  EXPECT_EQ(j.exit_code, 2);
  EXPECT_EQ(j.out, "");
  // Without --reveal no audit log is needed, and none is written.
  auto masked = pf({"inspect", xof_, "--card", cards_[3].id, "--audit-log", log_});
  EXPECT_EQ(masked.exit_code, 0) << masked.err;
  expect_no_card_values(masked.out + masked.err);
  EXPECT_FALSE(fs::exists(log_));
}

TEST_F(CliAuditTest, RevealRecordsTheCardInTheAuditLogThenShowsIt) {
  const PlainCard& card = cards_[7];
  auto r = pf({"inspect", xof_, "--card", card.id, "--reveal", "--json", "--audit-log", log_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto shown = nlohmann::json::parse(r.out);
  EXPECT_EQ(shown["card"]["values"]["pan"], card.pan);
  EXPECT_NE(r.err.find("(audit log " + log_ + ", entry 1)"), std::string::npos) << r.err;

  const auto entries = jsonl(read_file(log_));
  ASSERT_EQ(entries.size(), 1u);
  const auto& e = entries[0];
  EXPECT_EQ(e["seq"], 1);
  EXPECT_EQ(e["event"], "reveal");
  EXPECT_EQ(e["operator"], "op.jane");
  EXPECT_EQ(e["prev"], std::string(64, '0'));
  EXPECT_EQ(e["details"]["card_id"], card.id);
  EXPECT_EQ(e["details"]["xof"], fs::absolute(xof_).lexically_normal().string());
  EXPECT_EQ(e["details"]["xof_file_id"], shown["file_id"]);
  EXPECT_EQ(e["details"]["profile_id"], shown["profile"]["id"]);
  const auto names = e["details"]["attributes"];
  EXPECT_NE(std::find(names.begin(), names.end(), "pan"), names.end()) << names;
  EXPECT_NE(std::find(names.begin(), names.end(), "cardholder_name"), names.end()) << names;
  EXPECT_EQ(std::find(names.begin(), names.end(), "pin_block"), names.end())
      << "wrapped values are never shown";
  expect_no_card_values(read_file(log_));

  // The environment variable and the configuration file name the log too; one chain.
  auto by_env =
      pf({"inspect", xof_, "--card", cards_[8].id, "--reveal"}, {{"PERSOFLOW_AUDIT_LOG", log_}});
  ASSERT_EQ(by_env.exit_code, 0) << by_env.err;
  EXPECT_NE(by_env.out.find(cards_[8].pan), std::string::npos);
  write_file(dir() / "pf.conf", "[audit]\nlog = " + log_ + "\n");
  auto by_conf = pf({"--config", (dir() / "pf.conf").string(), "inspect", xof_, "--card",
                     cards_[9].id, "--reveal"});
  ASSERT_EQ(by_conf.exit_code, 0) << by_conf.err;
  const auto all = jsonl(read_file(log_));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1]["details"]["card_id"], cards_[8].id);
  EXPECT_EQ(all[2]["details"]["card_id"], cards_[9].id);
  EXPECT_EQ(all[2]["prev"], all[1]["hash"]);

  auto verify = pf({"audit", "verify", log_});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.out.find("audit log " + log_ + ": 3 entries, chain intact"), std::string::npos)
      << verify.out;
  EXPECT_NE(verify.out.find(all[2]["hash"].get<std::string>()), std::string::npos)
      << "prints the last hash";
  auto verify_json = pf({"audit", "verify", log_, "--json"});
  EXPECT_EQ(verify_json.exit_code, 0);
  const auto vj = nlohmann::json::parse(verify_json.out);
  EXPECT_EQ(vj["intact"], true);
  EXPECT_EQ(vj["entries"], 3);
  EXPECT_EQ(vj["last_hash"], all[2]["hash"]);
}

TEST_F(CliAuditTest, AuditVerifyNamesTheEditedLine) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(pf({"inspect", xof_, "--card", cards_[static_cast<std::size_t>(i)].id, "--reveal",
                  "--audit-log", log_})
                  .exit_code,
              0);
  }
  ASSERT_EQ(pf({"audit", "verify", log_}).exit_code, 0);
  std::string text = read_file(log_);
  const auto at = text.find(cards_[1].id);  // on line 2
  ASSERT_NE(at, std::string::npos);
  text[at + cards_[1].id.size() - 1] = text[at + cards_[1].id.size() - 1] == '9' ? '8' : '9';
  write_file(log_, text);

  auto r = pf({"audit", "verify", log_});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("audit log " + log_ + ": line 2: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("edited"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(line 1 verifies)"), std::string::npos) << r.err;
  auto j = pf({"audit", "verify", log_, "--json"});
  EXPECT_EQ(j.exit_code, 7);
  const auto vj = nlohmann::json::parse(j.out);
  EXPECT_EQ(vj["intact"], false);
  EXPECT_EQ(vj["bad_line"], 2);
  EXPECT_EQ(vj["defect"], "edited");
  EXPECT_EQ(vj["entries"], 1);

  // The damaged log also stops further reveals only if its tail is damaged: here line 2
  // is, so the chain can still grow (verify keeps naming line 2) ...
  EXPECT_EQ(
      pf({"inspect", xof_, "--card", cards_[4].id, "--reveal", "--audit-log", log_}).exit_code, 0);
  EXPECT_EQ(pf({"audit", "verify", log_}).exit_code, 7);
  // ... whereas a cut last line refuses every reveal (exit 7) and prints no value.
  text = read_file(log_);
  write_file(log_, text.substr(0, text.size() - 10));
  auto refused = pf({"inspect", xof_, "--card", cards_[5].id, "--reveal", "--audit-log", log_});
  EXPECT_EQ(refused.exit_code, 7) << refused.err;
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("not revealing card '" + cards_[5].id + "'"), std::string::npos)
      << refused.err;
  expect_no_card_values(refused.out + refused.err);
  EXPECT_EQ(read_file(log_), text.substr(0, text.size() - 10));
  auto truncated = pf({"audit", "verify", log_});
  EXPECT_EQ(truncated.exit_code, 7);
  EXPECT_NE(truncated.err.find("line 2: "), std::string::npos)
      << "the first bad line: " << truncated.err;
}

TEST_F(CliAuditTest, NoRevealWhenTheAuditLogCannotBeWritten) {
  const std::string nowhere = (dir() / "no-such-dir" / "audit.jsonl").string();
  auto r = pf({"inspect", xof_, "--card", cards_[2].id, "--reveal", "--audit-log", nowhere});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("not revealing card"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(nowhere), std::string::npos) << r.err;
  expect_no_card_values(r.out + r.err);
  auto empty = pf({"inspect", xof_, "--card", cards_[2].id, "--reveal", "--audit-log", ""});
  EXPECT_EQ(empty.exit_code, 2) << empty.err;
  EXPECT_EQ(empty.out, "");
}

TEST_F(CliAuditTest, AuditVerifyOfAMissingFileIsNotFoundAndHelpExists) {
  auto missing = pf({"audit", "verify", (dir() / "absent.jsonl").string()});
  EXPECT_EQ(missing.exit_code, 4) << missing.err;
  EXPECT_NE(missing.err.find("audit log not found"), std::string::npos) << missing.err;
  write_file(dir() / "empty.jsonl", "");
  auto empty = pf({"audit", "verify", (dir() / "empty.jsonl").string()});
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_NE(empty.out.find("0 entries, chain intact"), std::string::npos) << empty.out;

  auto help = pf({"audit", "verify", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* w : {"file", "--json", "Exit 0"})
    EXPECT_NE(help.out.find(w), std::string::npos) << w;
  auto group = pf({"audit", "--help"});
  EXPECT_EQ(group.exit_code, 0);
  EXPECT_NE(group.out.find("verify"), std::string::npos);
  EXPECT_EQ(pf({"audit"}).exit_code, 2);
  auto top = pf({"--help"});
  EXPECT_NE(top.out.find("--audit-log"), std::string::npos);
  EXPECT_NE(top.out.find("audit"), std::string::npos);
}

}  // namespace
}  // namespace persoflow::test
