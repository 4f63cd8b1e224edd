// The HSM and crypto floors (bench/hsm_floor.cpp) over a PKCS#11 call trace the fault shim
// records (PERSOFLOW_SHIM_TRACE, docs/fault-injection.md "Call trace"), on a fresh SoftHSM
// token: a small prep of acme-debit-scp03 runs through the shim with a trace; the trace
// holds every call the shim counted, no clear input and no key value; hsm_floor replays
// its work calls against the token and through OpenSSL, every call succeeding, and reports
// them. A trace naming a key the token does not have fails with the key's name; a call
// that failed in the trace is skipped, and an operation it left unfinished does not stop
// the replay.
#include "tests/integration/cli_prep_fixture.h"

#include <set>
#include <tuple>

namespace persoflow::test {
namespace {

// The trace's own classification, written again from docs/fault-injection.md "Call trace":
// setup functions, then key attribute reads before the first work call.
const std::set<std::string> kSetup = {
    "C_Initialize",       "C_Finalize",          "C_GetInfo",          "C_GetSlotList",
    "C_GetSlotInfo",      "C_GetTokenInfo",      "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken",        "C_InitPIN",           "C_SetPIN",           "C_OpenSession",
    "C_CloseSession",     "C_CloseAllSessions",  "C_GetSessionInfo",   "C_Login",
    "C_Logout",           "C_FindObjectsInit",   "C_FindObjects",      "C_FindObjectsFinal",
    "C_WaitForSlotEvent", "C_GetFunctionStatus", "C_CancelFunction"};

struct TraceSummary {
  std::vector<nlohmann::json> lines;
  std::map<std::string, std::uint64_t> by_function;  // every line
  std::map<std::string, std::uint64_t> work;         // work calls that succeeded
  std::uint64_t work_calls = 0;
  std::uint64_t failed_work = 0;
};

TraceSummary read_trace(const std::string& file) {
  TraceSummary t;
  std::istringstream in(read_file(file));
  bool working = false;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    t.lines.push_back(j);
    const std::string fn = j["fn"];
    ++t.by_function[fn];
    if (kSetup.contains(fn)) continue;
    const bool reads_key =
        (fn == "C_GetAttributeValue" || fn == "C_GetObjectSize") && j["object"].contains("object");
    if (!working && reads_key) continue;
    working = true;
    if (j["rv"] != 0) {
      ++t.failed_work;
      continue;
    }
    ++t.work[fn];
    ++t.work_calls;
  }
  return t;
}

class HsmFloorTest : public CliPrepTest {
 protected:
  // hsm_floor against this test's token (module, token and PIN from its environment).
  ProcessResult floor(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_HSM_FLOOR);
    return run_process(args, token_env_->env());
  }
};

TEST_F(HsmFloorTest, APrepTraceIsReplayedAgainstTheTokenAndThroughOpenSsl) {
  constexpr int kCards = 40;
  const auto plain = setup_cards(kCards);
  auto env = token_env_->env();
  env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
  env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
  env["PERSOFLOW_SHIM_COUNTS"] = path("counts.json");
  env["PERSOFLOW_SHIM_TRACE"] = path("prep.trace");
  // One XOF segment: prep prepares in this process (no worker processes, one trace file).
  auto prep =
      run_process({PERSOFLOW_CLI_PATH, "prep", "--profile", profile(), "--xof", path("cards.xof"),
                   "--registry", path("registry.db"), "--out", path("prep.bundle")},
                  env);
  ASSERT_EQ(prep.exit_code, 0) << prep.err;

  // Every call the shim counted is in the trace, numbered in order, each with its CK_RV.
  const TraceSummary t = read_trace(path("prep.trace"));
  const auto counts = nlohmann::json::parse(read_file(path("counts.json")));
  for (const auto& [fn, n] : counts.items()) {
    EXPECT_EQ(t.by_function.contains(fn) ? t.by_function.at(fn) : 0u, n.get<std::uint64_t>()) << fn;
  }
  ASSERT_FALSE(t.lines.empty());
  for (std::size_t i = 0; i < t.lines.size(); ++i) ASSERT_EQ(t.lines[i]["n"], i + 1);
  EXPECT_EQ(t.lines.front()["fn"], "C_Initialize");
  EXPECT_EQ(t.lines.back()["fn"], "C_Finalize");
  // The per-card work: kdf3 static keys (CMACs stored as session objects, destroyed after
  // the card), the host challenge and session keys (CMACs), the K-DEK-encrypted DGI.
  ASSERT_GE(t.work.count("C_Sign") ? t.work.at("C_Sign") : 0u, std::uint64_t{kCards} * 5);
  ASSERT_GE(t.work.count("C_CreateObject") ? t.work.at("C_CreateObject") : 0u,
            std::uint64_t{kCards});
  EXPECT_EQ(
      t.work.at("C_CreateObject") + (t.work.count("C_CopyObject") ? t.work.at("C_CopyObject") : 0u),
      t.work.at("C_DestroyObject"));
  EXPECT_EQ(t.failed_work, 0u);

  // Nothing secret: no input of an encryption, signature or digest, no key value; objects
  // a call made are named by that call, token keys by their identity.
  std::set<std::uint64_t> makers;
  std::set<std::uint64_t> identified;  // objects whose identity an earlier line gave
  bool identity_seen = false;
  for (const auto& j : t.lines) {
    const std::string fn = j["fn"];
    if (fn == "C_Encrypt" || fn == "C_Sign" || fn == "C_Digest" || fn == "C_EncryptUpdate" ||
        fn == "C_SignUpdate") {
      EXPECT_FALSE(j.contains("in")) << j.dump();
      EXPECT_TRUE(j.contains("in_len")) << j.dump();
    }
    if (j.contains("template")) {
      for (const auto& a : j["template"]) {
        if (a["type"] == 0x11) {  // CKA_VALUE: its length only
          EXPECT_FALSE(a.contains("hex") || a.contains("text") || a.contains("value")) << j.dump();
        }
      }
    }
    if (fn == "C_CreateObject" || fn == "C_CopyObject" || fn == "C_DeriveKey" ||
        fn == "C_UnwrapKey" || fn == "C_GenerateKey") {
      makers.insert(j["n"].get<std::uint64_t>());
    }
    std::vector<nlohmann::json> refs;
    for (const char* key : {"key", "object"}) {
      if (j.contains(key) && !j[key].is_null()) refs.push_back(j[key]);
    }
    if (j.contains("found")) refs.insert(refs.end(), j["found"].begin(), j["found"].end());
    for (const auto& r : refs) {
      if (r.contains("made_by")) {
        EXPECT_TRUE(makers.contains(r["made_by"].get<std::uint64_t>())) << j.dump();
      }
      if (!r.contains("object")) continue;
      if (r.contains("label")) {
        identity_seen = true;
        EXPECT_TRUE(identified.insert(r["object"].get<std::uint64_t>()).second)
            << "identity given twice: " << j.dump();
      }
      EXPECT_TRUE(identified.contains(r["object"].get<std::uint64_t>())) << j.dump();
    }
  }
  EXPECT_TRUE(identity_seen);
  const std::string text = read_file(path("prep.trace"));
  for (const auto& [id, card] : plain) {
    EXPECT_EQ(text.find(card.pan), std::string::npos) << "card " << id;
  }

  // The HSM floor: the work calls against the token, three times.
  auto hsm = floor({"--trace", path("prep.trace"), "--cards", std::to_string(kCards), "--repeat",
                    "3", "--json"});
  ASSERT_EQ(hsm.exit_code, 0) << hsm.err;
  const auto h = nlohmann::json::parse(hsm.out);
  EXPECT_EQ(h["mode"], "pkcs11");
  EXPECT_EQ(h["trace_calls"], t.lines.size());
  EXPECT_EQ(h["work_calls_per_repeat"], t.work_calls);
  EXPECT_EQ(h["skipped_failed"], 0);
  EXPECT_EQ(h["repeat"], 3);
  EXPECT_EQ(h["cards"], kCards);
  EXPECT_EQ(h["all_ok"], true);
  EXPECT_EQ(h["objects_left_per_repeat"], 0);
  EXPECT_EQ(h["template_attributes_left_out"], 0);
  EXPECT_GT(h["cards_per_second"].get<double>(), 0);
  EXPECT_GT(h["seconds"].get<double>(), 0);
  for (const auto& [fn, n] : t.work) {
    EXPECT_DOUBLE_EQ(h["by_function"][fn].get<double>(), static_cast<double>(n) / kCards) << fn;
  }

  // The crypto floor: the same calls as OpenSSL primitives (no HSM).
  auto ssl = floor({"--trace", path("prep.trace"), "--cards", std::to_string(kCards), "--repeat",
                    "3", "--openssl", "--json"});
  ASSERT_EQ(ssl.exit_code, 0) << ssl.err;
  const auto o = nlohmann::json::parse(ssl.out);
  EXPECT_EQ(o["mode"], "openssl");
  EXPECT_EQ(o["work_calls_per_repeat"], t.work_calls);
  EXPECT_EQ(o["all_ok"], true);
  EXPECT_GT(o["cards_per_second"].get<double>(), 0);
  // Object management has no primitive: the objects made and destroyed, at least.
  EXPECT_GE(o["no_crypto_calls_per_repeat"].get<std::uint64_t>(),
            t.work.at("C_CreateObject") + t.work.at("C_DestroyObject"));
  EXPECT_EQ(o["by_function"], h["by_function"]);
}

class HsmFloorHandTraceTest : public HsmTest {
 protected:
  std::string path(const std::string& name) const {
    return (token_env_->dir().path() / name).string();
  }
  ProcessResult floor(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_HSM_FLOOR);
    return run_process(args, token_env_->env());
  }
  // A trace as the shim writes it: a CMAC key named by its label, one CMAC whose C_Sign
  // failed (so its operation stays unfinished in the replay), then one that succeeded.
  void write_trace(const std::string& name, const std::string& label) {
    const std::string cmac = R"("mech":{"type":4234,"name":"CKM_AES_CMAC"})";
    const std::vector<std::string> lines = {
        R"({"n":1,"fn":"C_Initialize","rv":0})",
        R"({"n":2,"fn":"C_OpenSession","rv":0,"slot":0,"flags":6,"s":0})",
        R"({"n":3,"fn":"C_Login","rv":0,"s":0,"user":1})",
        R"({"n":4,"fn":"C_SignInit","rv":0,"s":0,)" + cmac +
            R"(,"key":{"object":0,"class":4,"key_type":31,"label":")" + label +
            R"(","token":true,"value_len":16}})",
        R"({"n":5,"fn":"C_Sign","rv":48,"s":0,"in_len":16,"out_null":false,"out_len":16})",
        R"({"n":6,"fn":"C_SignInit","rv":0,"s":0,)" + cmac + R"(,"key":{"object":0}})",
        R"({"n":7,"fn":"C_Sign","rv":0,"s":0,"in_len":33,"out_null":false,"out_len":16})",
        R"({"n":8,"fn":"C_Finalize","rv":0})",
    };
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    write_file(path(name), text);
  }
};

TEST_F(HsmFloorHandTraceTest, AFailedCallIsSkippedAndItsUnfinishedOperationDoesNotStopTheReplay) {
  auto gen = run_process({PERSOFLOW_CLI_PATH, "keys", "generate", "--label", "kmc-floor", "--type",
                          "aes128", "--usage", "sign"},
                         token_env_->env());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  write_trace("ok.trace", "kmc-floor");
  auto r = floor({"--trace", path("ok.trace"), "--cards", "1", "--repeat", "3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["work_calls_per_repeat"], 3);
  EXPECT_EQ(j["skipped_failed"], 1);
  EXPECT_EQ(j["sessions"], 2);  // the second C_SignInit moves to a session of its own
  EXPECT_EQ(j["token_keys"], 1);
  EXPECT_EQ(j["all_ok"], true);
  auto ssl =
      floor({"--trace", path("ok.trace"), "--cards", "1", "--repeat", "3", "--openssl", "--json"});
  ASSERT_EQ(ssl.exit_code, 0) << ssl.err;
  EXPECT_EQ(nlohmann::json::parse(ssl.out)["work_calls_per_repeat"], 3);
}

TEST_F(HsmFloorHandTraceTest, AKeyTheTokenDoesNotHaveIsNamed) {
  write_trace("missing.trace", "kmc-missing");
  auto r = floor({"--trace", path("missing.trace"), "--cards", "1", "--repeat", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("hsm_floor: error: " + path("missing.trace") +
                       ": call #4 (C_SignInit): key 'kmc-missing'"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("is not on token '" + token_env_->label() + "'"), std::string::npos)
      << r.err;
}

// Garbage in a trace is refused before any replay, naming the file, the line and why.
TEST_F(HsmFloorHandTraceTest, AMalformedTraceIsRefusedWithItsLine) {
  write_trace("ok.trace", "kmc-floor");
  const std::string good = read_file(path("ok.trace"));
  // A torn last line (a process killed while the shim wrote it), and a line that is JSON
  // but not a call.
  for (const auto& [name, text, line] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"torn.trace", good + R"({"n":9,"fn":"C_Sig)" + "\n", "line 9: not a trace line"},
           {"other.trace", R"({"hello":"world"})" "\n" + good, "line 1: not a trace line"},
           {"twice.trace", good + good, "line 9: call number 1 appears twice"}}) {
    write_file(path(name), text);
    auto r = floor({"--trace", path(name), "--cards", "1", "--repeat", "1"});
    EXPECT_EQ(r.exit_code, 1) << name;
    EXPECT_TRUE(r.out.empty()) << name << ": " << r.out;
    EXPECT_NE(r.err.find(path(name) + ": " + line), std::string::npos) << name << ": " << r.err;
  }
  auto missing = floor({"--trace", path("none.trace"), "--cards", "1"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find(path("none.trace") + ": cannot open the trace"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace persoflow::test
