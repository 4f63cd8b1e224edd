// The PKCS#11 fault-injection shim (tests/support/pkcs11_fault_shim.cpp,
// docs/fault-injection.md) in front of a real SoftHSM token: persoflow's hsm layer works
// through it unchanged; chosen calls fail exactly when the rules say; drop-sessions ends
// the real sessions; the counts file; pkcs11-tool through the shim; bad configurations.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hsm/ck_rv.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_store.h"
#include "hsm/module.h"
#include "hsm/token.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/run_process.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {
namespace {

// RFC 4493 section 4, example 2: AES-128 key, 16-byte message, its CMAC.
const ByteVec kCmacKey = hex_bytes("2B7E151628AED2A6ABF7158809CF4F3C");
const ByteVec kCmacMessage = hex_bytes("6BC1BEE22E409F96E93D7E117393172A");
const ByteVec kCmacTag = hex_bytes("070A16B46B4D4144F79BDD9DD04A287C");

SecureBytes secret_of(const std::string& s) {
  return SecureBytes(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

// The shim's variables, unset before each test (each test is its own process).
void clear_shim_env() {
  for (const char* v : {"PERSOFLOW_SHIM_MODULE", "PERSOFLOW_SHIM_FAULTS", "PERSOFLOW_SHIM_COUNTS",
                        "PERSOFLOW_SHIM_VERBOSE"}) {
    unsetenv(v);
  }
}

// {"C_Sign": n, ...} as written by the shim: name -> count.
std::map<std::string, unsigned long long> parse_counts(const std::string& json) {
  std::map<std::string, unsigned long long> out;
  static const std::regex entry("\"(C_[A-Za-z]+)\": ([0-9]+)");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), entry);
       it != std::sregex_iterator(); ++it) {
    out[(*it)[1].str()] = std::stoull((*it)[2].str());
  }
  return out;
}

// A fresh SoftHSM token, opened through the shim by persoflow's hsm layer.
class FaultShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clear_shim_env();
    token_env_ = std::make_unique<SoftHsmToken>("fault-shim");
    setenv("PERSOFLOW_SHIM_MODULE", token_env_->module().c_str(), 1);
  }
  void TearDown() override {
    close();
    token_env_.reset();
    clear_shim_env();
  }

  // Loads the shim with these fault rules, logs in, and (unless told not to) creates the
  // RFC 4493 key, which also draws its id with C_GenerateRandom.
  void open(const std::string& faults = "", bool create_key = true) {
    setenv("PERSOFLOW_SHIM_FAULTS", faults.c_str(), 1);
    auto module = hsm::Module::load(PERSOFLOW_FAULT_SHIM);
    ASSERT_TRUE(module.has_value()) << module.error().message();
    module_ = *module;
    auto token = hsm::Token::open(module_, token_env_->label(), secret_of(token_env_->pin()),
                                  hsm::TokenOptions{4});
    ASSERT_TRUE(token.has_value()) << token.error().message();
    token_ = *token;
    keys_ = std::make_unique<hsm::KeyStore>(token_);
    if (!create_key) return;
    auto key = keys_->create_from_value(
        hsm::KeySpec{"cmac", KeyType::kAes128, KeyUsage{.encrypt = true, .sign = true},
                     std::nullopt},
        SecureBytes(std::span<const std::uint8_t>(kCmacKey)));
    ASSERT_TRUE(key.has_value()) << key.error().message();
    mac_key_ = std::make_unique<hsm::HsmMacKey>(*keys_, *key);
  }
  // Releases everything; the module's destruction calls C_Finalize.
  void close() {
    mac_key_.reset();
    keys_.reset();
    token_.reset();
    module_.reset();
  }

  Result<Bytes> mac() { return mac_key_->mac(kCmacMessage); }

  // The call failed in `function` with `rv`, as the hsm layer reports it.
  static void expect_hsm_error(const Error& e, const std::string& function, CK_RV rv,
                               const std::string& rv_name) {
    EXPECT_EQ(e.code(), ErrorCode::kHsm) << e.message();
    EXPECT_EQ(e.function(), function) << e.message();
    ASSERT_TRUE(e.ck_rv().has_value()) << e.message();
    EXPECT_EQ(*e.ck_rv(), static_cast<unsigned long>(rv)) << e.message();
    EXPECT_NE(e.message().find(function + " returned " + rv_name), std::string::npos)
        << e.message();
  }

  std::unique_ptr<SoftHsmToken> token_env_;
  std::shared_ptr<hsm::Module> module_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::KeyStore> keys_;
  std::unique_ptr<hsm::HsmMacKey> mac_key_;
};

TEST_F(FaultShimTest, HsmLayerWorksUnchangedWithoutFaults) {
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_EQ(module_->path(), PERSOFLOW_FAULT_SHIM);
  auto tokens = module_->tokens();
  ASSERT_TRUE(tokens.has_value()) << tokens.error().message();
  bool listed = false;
  for (const auto& t : *tokens) listed = listed || (t.label == "fault-shim" && t.initialized);
  EXPECT_TRUE(listed);

  // A fresh key store (empty cache) finds the key by URI and computes its KCV.
  hsm::KeyStore fresh(token_);
  auto found = fresh.find("pkcs11:token=fault-shim;object=cmac;type=secret-key");
  ASSERT_TRUE(found.has_value()) << found.error().message();
  auto kcv = fresh.kcv(*found);
  ASSERT_TRUE(kcv.has_value()) << kcv.error().message();
  EXPECT_EQ(*kcv, reference_kcv("aes128", kCmacKey));

  for (int i = 0; i < 3; ++i) {
    auto tag = mac();
    ASSERT_TRUE(tag.has_value()) << tag.error().message();
    EXPECT_EQ(*tag, kCmacTag);
  }
  EXPECT_EQ(token_->sessions().discarded_sessions(), 0u);
}

TEST_F(FaultShimTest, NthSignFailsOnceWithTheChosenError) {
  // HsmMacKey::mac is C_SignInit + C_Sign (CKM_AES_CMAC): one C_Sign per MAC.
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:3:CKR_DEVICE_ERROR"));
  for (int call = 1; call <= 5; ++call) {
    SCOPED_TRACE("C_Sign call " + std::to_string(call));
    auto tag = mac();
    if (call == 3) {
      ASSERT_FALSE(tag.has_value());
      expect_hsm_error(tag.error(), "C_Sign", CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR");
      EXPECT_EQ(tag.error().message(), "AES-CMAC under 'cmac': C_Sign returned CKR_DEVICE_ERROR");
    } else {
      ASSERT_TRUE(tag.has_value()) << tag.error().message();
      EXPECT_EQ(*tag, kCmacTag);
    }
  }
  // CKR_DEVICE_ERROR breaks a session: the pool closed that one and opened another.
  EXPECT_EQ(token_->sessions().discarded_sessions(), 1u);
}

TEST_F(FaultShimTest, NonBreakingErrorEndsTheOperationAndKeepsTheSession) {
  // C_Sign is forwarded before its result is replaced, so SoftHSM ends the signing
  // operation as PKCS#11 requires; the session goes back to the pool and its next
  // C_SignInit succeeds instead of answering CKR_OPERATION_ACTIVE.
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:CKR_GENERAL_ERROR"));
  ASSERT_TRUE(mac().has_value());
  auto failed = mac();
  ASSERT_FALSE(failed.has_value());
  expect_hsm_error(failed.error(), "C_Sign", CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR");
  EXPECT_EQ(token_->sessions().discarded_sessions(), 0u);
  auto again = mac();
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_EQ(*again, kCmacTag);
  EXPECT_EQ(token_->sessions().open_sessions(), 1u);
}

TEST_F(FaultShimTest, FaultOnAnInitCallIsNotForwarded) {
  // C_SignInit is not forwarded when it fails: no operation is left active.
  ASSERT_NO_FATAL_FAILURE(open("C_SignInit:1:CKR_KEY_HANDLE_INVALID"));
  auto failed = mac();
  ASSERT_FALSE(failed.has_value());
  expect_hsm_error(failed.error(), "C_SignInit", CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID");
  EXPECT_EQ(token_->sessions().discarded_sessions(), 0u);
  auto again = mac();
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_EQ(*again, kCmacTag);
}

TEST_F(FaultShimTest, InitializeFaultFailsTheFirstLoadOnly) {
  // Counting goes on across a failed C_Initialize (until a C_Finalize), so a retried
  // initialization is call 2. The shim is kept loaded between the two attempts.
  void* keep = dlopen(PERSOFLOW_FAULT_SHIM, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(keep, nullptr) << dlerror();
  setenv("PERSOFLOW_SHIM_FAULTS", "C_Initialize:1:CKR_DEVICE_ERROR", 1);
  auto failed = hsm::Module::load(PERSOFLOW_FAULT_SHIM);
  ASSERT_FALSE(failed.has_value());
  expect_hsm_error(failed.error(), "C_Initialize", CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR");
  ASSERT_NO_FATAL_FAILURE(open("C_Initialize:1:CKR_DEVICE_ERROR"));
  ASSERT_TRUE(mac().has_value());
  close();
  dlclose(keep);
}

TEST_F(FaultShimTest, PlusFormKeepsFailingAndHexValuesWork) {
  // Spaces around rules are ignored; 0x30 is CKR_DEVICE_ERROR.
  ASSERT_NO_FATAL_FAILURE(open(" C_Sign:2+:CKR_TOKEN_NOT_PRESENT , C_Encrypt:2:0x30 "));
  auto first = mac();
  ASSERT_TRUE(first.has_value()) << first.error().message();
  for (int call = 2; call <= 5; ++call) {
    SCOPED_TRACE("C_Sign call " + std::to_string(call));
    auto tag = mac();
    ASSERT_FALSE(tag.has_value());
    expect_hsm_error(tag.error(), "C_Sign", CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT");
  }
  // The KCV is C_EncryptInit + C_Encrypt: the first one passes, the second fails.
  auto key = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(key.has_value()) << key.error().message();
  ASSERT_TRUE(keys_->kcv(*key).has_value());
  auto kcv = keys_->kcv(*key);
  ASSERT_FALSE(kcv.has_value());
  expect_hsm_error(kcv.error(), "C_Encrypt", CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR");
  EXPECT_TRUE(keys_->kcv(*key).has_value());
}

TEST_F(FaultShimTest, DropSessionsEndsOldSessionsAndNewOnesWork) {
  ASSERT_NO_FATAL_FAILURE(open("C_GenerateRandom:2:drop-sessions", /*create_key=*/false));
  CK_FUNCTION_LIST* api = module_->api();
  CK_SESSION_HANDLE old_session = CK_INVALID_HANDLE;
  ASSERT_EQ(api->C_OpenSession(token_->description().slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                               nullptr, nullptr, &old_session),
            static_cast<CK_RV>(CKR_OK));
  CK_BYTE buf[8];
  EXPECT_EQ(api->C_GenerateRandom(old_session, buf, sizeof buf), static_cast<CK_RV>(CKR_OK));
  // The 2nd call closes every real session of the slot and fails.
  EXPECT_EQ(api->C_GenerateRandom(old_session, buf, sizeof buf),
            static_cast<CK_RV>(CKR_SESSION_HANDLE_INVALID));
  // From now on the real module itself refuses the old handles, the token's login
  // session included.
  EXPECT_EQ(api->C_GenerateRandom(old_session, buf, sizeof buf),
            static_cast<CK_RV>(CKR_SESSION_HANDLE_INVALID));
  CK_SESSION_INFO info{};
  EXPECT_EQ(api->C_GetSessionInfo(old_session, &info),
            static_cast<CK_RV>(CKR_SESSION_HANDLE_INVALID));
  EXPECT_EQ(api->C_GetSessionInfo(token_->object_session().handle(), &info),
            static_cast<CK_RV>(CKR_SESSION_HANDLE_INVALID));
  // A new session works; like after a device reset, it is no longer logged in.
  CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
  ASSERT_EQ(api->C_OpenSession(token_->description().slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                               nullptr, nullptr, &fresh),
            static_cast<CK_RV>(CKR_OK));
  EXPECT_EQ(api->C_GenerateRandom(fresh, buf, sizeof buf), static_cast<CK_RV>(CKR_OK));
  ASSERT_EQ(api->C_GetSessionInfo(fresh, &info), static_cast<CK_RV>(CKR_OK));
  EXPECT_EQ(info.state, static_cast<CK_STATE>(CKS_RW_PUBLIC_SESSION));
  EXPECT_EQ(api->C_CloseSession(fresh), static_cast<CK_RV>(CKR_OK));
}

TEST_F(FaultShimTest, HsmLayerRecoversFromDroppedSessions) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:drop-sessions"));
  ASSERT_TRUE(mac().has_value());
  auto dropped = mac();
  ASSERT_FALSE(dropped.has_value());
  expect_hsm_error(dropped.error(), "C_Sign", CKR_SESSION_HANDLE_INVALID,
                   "CKR_SESSION_HANDLE_INVALID");
  EXPECT_TRUE(hsm::rv_is_transient(*dropped.error().ck_rv())) << "callers retry it";
  // The failed call found the token's login session gone too, so the token logged in
  // again on a new one and the key store found 'cmac' again under its new handle
  // (SoftHSM renumbers private objects after a new login): the same HsmMacKey works on.
  // The details (outputs, bounds, PIN errors): hsm_recovery_test.cpp.
  EXPECT_EQ(token_->relogins(), 1u);
  for (int i = 0; i < 2; ++i) {
    auto after = mac();
    ASSERT_TRUE(after.has_value()) << after.error().message();
    EXPECT_EQ(*after, kCmacTag);
  }
  EXPECT_EQ(token_->sessions().discarded_sessions(), 1u);  // the one that met the drop
  EXPECT_EQ(token_->relogins(), 1u);
}

TEST_F(FaultShimTest, ConcurrentCallsFailExactlyTheChosenOne) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:37:CKR_DEVICE_ERROR"));
  std::atomic<int> failures{0}, successes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto tag = mac();
        if (!tag.has_value()) {
          ++failures;
          EXPECT_EQ(tag.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_DEVICE_ERROR));
        } else if (*tag == kCmacTag) {
          ++successes;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 1);
  EXPECT_EQ(successes.load(), 99);
}

TEST_F(FaultShimTest, CountsFileHasTheCallCounts) {
  const auto pattern = (token_env_->dir() / "counts-%p.json").string();
  const auto path = token_env_->dir() / ("counts-" + std::to_string(getpid()) + ".json");
  setenv("PERSOFLOW_SHIM_COUNTS", pattern.c_str(), 1);
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:CKR_DEVICE_ERROR"));
  for (int i = 0; i < 5; ++i) (void)mac();
  EXPECT_FALSE(std::filesystem::exists(path)) << "written before C_Finalize";
  close();  // C_Finalize writes the file
  ASSERT_TRUE(std::filesystem::exists(path));
  const std::string json = read_file(path);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.substr(json.size() - 2), "}\n");
  auto counts = parse_counts(json);
  EXPECT_EQ(counts.size(), 67u) << "every function of CK_FUNCTION_LIST but C_GetFunctionList";
  EXPECT_EQ(counts.count("C_GetFunctionList"), 0u);
  EXPECT_EQ(counts["C_Initialize"], 1u);
  EXPECT_EQ(counts["C_Finalize"], 1u);
  EXPECT_EQ(counts["C_Login"], 1u);
  EXPECT_EQ(counts["C_CreateObject"], 1u);
  EXPECT_EQ(counts["C_SignInit"], 5u);
  EXPECT_EQ(counts["C_Sign"], 5u);  // the faulted call counts too
  EXPECT_EQ(counts["C_Verify"], 0u);
  // The login session, the pool's session, and the one replacing it after the device
  // error; all three closed by the end.
  EXPECT_EQ(counts["C_OpenSession"], 3u);
  EXPECT_EQ(counts["C_CloseSession"], 3u);
  EXPECT_EQ(counts["C_Logout"], 0u);
}

TEST_F(FaultShimTest, Pkcs11ToolListsTheTokenThroughTheShim) {
  const auto counts = token_env_->dir() / "pkcs11-tool-counts.json";
  auto r = run_process({PERSOFLOW_PKCS11_TOOL, "--module", PERSOFLOW_FAULT_SHIM, "-L"},
                       {{"SOFTHSM2_CONF", token_env_->conf_path()},
                        {"PERSOFLOW_SHIM_MODULE", token_env_->module()},
                        {"PERSOFLOW_SHIM_COUNTS", counts.string()}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("token label        : fault-shim"), std::string::npos) << r.out;
  ASSERT_TRUE(std::filesystem::exists(counts));
  auto c = parse_counts(read_file(counts));
  EXPECT_EQ(c["C_Initialize"], 1u);
  EXPECT_GE(c["C_GetSlotList"], 1u);
  EXPECT_GE(c["C_GetTokenInfo"], 1u);
}

TEST_F(FaultShimTest, Pkcs11ToolSeesAnInjectedError) {
  auto r = run_process({PERSOFLOW_PKCS11_TOOL, "--module", PERSOFLOW_FAULT_SHIM, "-L"},
                       {{"SOFTHSM2_CONF", token_env_->conf_path()},
                        {"PERSOFLOW_SHIM_MODULE", token_env_->module()},
                        {"PERSOFLOW_SHIM_FAULTS", "C_GetSlotList:1:CKR_DEVICE_ERROR"},
                        {"PERSOFLOW_SHIM_VERBOSE", "1"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("C_GetSlotList(NULL) failed: rv = CKR_DEVICE_ERROR"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("persoflow-fault-shim: C_GetSlotList call 1: rule "
                       "'C_GetSlotList:1:CKR_DEVICE_ERROR' fires\n"),
            std::string::npos)
      << r.err;
}

TEST_F(FaultShimTest, CliReportsAnInjectedHsmError) {
  auto env = token_env_->env();
  env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
  env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
  env["PERSOFLOW_SHIM_FAULTS"] = "C_GenerateKey:1:CKR_DEVICE_ERROR";
  const std::vector<std::string> generate = {
      PERSOFLOW_CLI_PATH, "keys", "generate", "--label", "k1", "--type", "aes128"};
  auto failed = run_process(generate, env);
  EXPECT_EQ(failed.exit_code, 6) << failed.out << failed.err;
  EXPECT_NE(failed.err.find("persoflow: error: "), std::string::npos) << failed.err;
  EXPECT_NE(failed.err.find("C_GenerateKey returned CKR_DEVICE_ERROR"), std::string::npos)
      << failed.err;
  // Each process counts from its own C_Initialize: without the rule it works.
  env.erase("PERSOFLOW_SHIM_FAULTS");
  auto ok = run_process(generate, env);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
}

// Bad configurations: C_Initialize returns CKR_GENERAL_ERROR and prints one line that
// names the variable and the problem.
class FaultShimConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clear_shim_env();
    token_env_ = std::make_unique<SoftHsmToken>("fault-shim");
  }
  void TearDown() override { clear_shim_env(); }

  // Loads the shim (it must fail in C_Initialize); returns what it printed on stderr.
  std::string load_fails() {
    ::testing::internal::CaptureStderr();
    auto module = hsm::Module::load(PERSOFLOW_FAULT_SHIM);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_FALSE(module.has_value());
    if (!module.has_value()) {
      EXPECT_EQ(module.error().code(), ErrorCode::kHsm);
      EXPECT_EQ(module.error().function(), "C_Initialize");
      EXPECT_EQ(module.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_GENERAL_ERROR));
    }
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.rfind("persoflow-fault-shim: ", 0), 0u) << err;
    return err;
  }

  std::unique_ptr<SoftHsmToken> token_env_;
};

TEST_F(FaultShimConfigTest, BadFaultRulesFailInitialization) {
  setenv("PERSOFLOW_SHIM_MODULE", token_env_->module().c_str(), 1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"C_Sgn:5:CKR_DEVICE_ERROR",
       "rule 'C_Sgn:5:CKR_DEVICE_ERROR': unknown PKCS#11 function 'C_Sgn'"},
      {"C_Sign:0:CKR_DEVICE_ERROR", "call number '0' is not N or N+"},
      {"C_Sign:five:CKR_DEVICE_ERROR", "call number 'five' is not N or N+"},
      {"C_Sign:5++:CKR_DEVICE_ERROR", "call number '5++' is not N or N+"},
      {"C_Sign:5:CKR_DEVICE_EROR", "unknown action 'CKR_DEVICE_EROR'"},
      {"C_Sign:5:0x0", "unknown action '0x0'"},
      {"C_Sign:5:0xZZ", "unknown action '0xZZ'"},
      {"C_Sign:5", "rule 'C_Sign:5' is not FUNCTION:N[+]:ACTION"},
      {"C_Sign:5:CKR_DEVICE_ERROR:x", "is not FUNCTION:N[+]:ACTION"},
      {"C_Sign:5:CKR_DEVICE_ERROR,,C_Encrypt:1:CKR_DEVICE_ERROR", "rule 2 is empty"},
      {"C_GetFunctionList:1:CKR_DEVICE_ERROR", "C_GetFunctionList cannot be faulted"},
      {"C_Finalize:1:drop-sessions", "drop-sessions needs an initialized module"},
  };
  for (const auto& [faults, expected] : cases) {
    SCOPED_TRACE(faults);
    setenv("PERSOFLOW_SHIM_FAULTS", faults.c_str(), 1);
    const std::string err = load_fails();
    EXPECT_NE(err.find("PERSOFLOW_SHIM_FAULTS: "), std::string::npos) << err;
    EXPECT_NE(err.find(expected), std::string::npos) << err;
  }
  // The same rules, fixed, initialize.
  setenv("PERSOFLOW_SHIM_FAULTS", "C_Sign:5+:CKR_DEVICE_ERROR,C_Encrypt:1:0x30", 1);
  auto module = hsm::Module::load(PERSOFLOW_FAULT_SHIM);
  ASSERT_TRUE(module.has_value()) << module.error().message();
  unsetenv("PERSOFLOW_SHIM_FAULTS");
}

TEST_F(FaultShimConfigTest, BadModuleFailsInitialization) {
  std::string err = load_fails();  // not set
  EXPECT_NE(err.find("PERSOFLOW_SHIM_MODULE: not set"), std::string::npos) << err;

  setenv("PERSOFLOW_SHIM_MODULE", "/nonexistent/libreal.so", 1);
  err = load_fails();
  EXPECT_NE(err.find("PERSOFLOW_SHIM_MODULE: cannot load '/nonexistent/libreal.so': "),
            std::string::npos)
      << err;

  setenv("PERSOFLOW_SHIM_MODULE", PERSOFLOW_FAULT_SHIM, 1);
  err = load_fails();
  EXPECT_NE(err.find("is this shim itself"), std::string::npos) << err;

  setenv("PERSOFLOW_SHIM_MODULE", token_env_->module().c_str(), 1);
  setenv("PERSOFLOW_SHIM_VERBOSE", "yes", 1);
  err = load_fails();
  EXPECT_NE(err.find("PERSOFLOW_SHIM_VERBOSE: 'yes' is not 0 or 1"), std::string::npos) << err;
}

TEST_F(FaultShimConfigTest, Pkcs11ToolShowsTheConfigurationError) {
  auto r = run_process({PERSOFLOW_PKCS11_TOOL, "--module", PERSOFLOW_FAULT_SHIM, "-L"},
                       {{"SOFTHSM2_CONF", token_env_->conf_path()},
                        {"PERSOFLOW_SHIM_MODULE", token_env_->module()},
                        {"PERSOFLOW_SHIM_FAULTS", "C_Sign:5:CKR_NOPE"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(
      r.err.find(
          "persoflow-fault-shim: PERSOFLOW_SHIM_FAULTS: rule 'C_Sign:5:CKR_NOPE': unknown action "
          "'CKR_NOPE'"),
      std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace persoflow::test
