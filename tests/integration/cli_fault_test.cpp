// HSM faults during prep, injected by the PKCS#11 fault-injection shim wrapping the real
// SoftHSM module (tests/support/pkcs11_fault_shim.cpp, docs/fault-injection.md):
// transient errors are retried card by card and the bundle is byte-identical to an
// undisturbed run with the same counters; persistent errors stop the run cleanly, naming
// the operation, with nothing published and the reservation burnt.
#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliFaultTest : public CliPrepTest {
 protected:
  // persoflow through the shim, with `faults` (PERSOFLOW_SHIM_FAULTS syntax).
  ProcessResult pf_faulty(std::vector<std::string> args, const std::string& faults) {
    auto env = token_env_->env();
    env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
    env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
    env["PERSOFLOW_SHIM_FAULTS"] = faults;
    env["PERSOFLOW_SHIM_COUNTS"] = path("counts.json");
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    return run_process(args, env);
  }
  std::vector<std::string> prep_args(const std::string& registry, const std::string& out) {
    return {"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry", path(registry), "--out",
            path(out), "--report", path(out + ".json")};
  }
  formats::ReservationState last_state(const std::string& registry) {
    auto reg = formats::SeRegistry::open(path(registry), false);
    EXPECT_TRUE(reg.has_value());
    auto list = reg->reservations();
    EXPECT_TRUE(list.has_value() && !list->empty());
    return list && !list->empty() ? list->back().state : formats::ReservationState::kReserved;
  }
};

TEST_F(CliFaultTest, TransientErrorsAreRetriedAndTheBundleIsTheSame) {
  const auto plain = setup_cards(60);
  fs::copy_file(path("registry.db"), path("registry-b.db"));
  // Two device errors on C_Sign while cards are being prepared (kdf3, host challenges and
  // session keys are C_Sign calls: several per card).
  auto faulty = pf_faulty(prep_args("registry.db", "faulty.bundle"),
                          "C_Sign:150:CKR_DEVICE_ERROR,C_Sign:300:CKR_SESSION_HANDLE_INVALID");
  ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
  const auto counts = nlohmann::json::parse(read_file(path("counts.json")));
  ASSERT_GE(counts["C_Sign"].get<int>(), 300) << "the faults were reached";
  const auto report = nlohmann::json::parse(read_file(path("faulty.bundle.json")));
  EXPECT_EQ(report["hsm_retries"], 2);
  // The same cards and counters without faults: the same bytes.
  auto clean = pf(prep_args("registry-b.db", "clean.bundle"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(read_file(path("faulty.bundle")), read_file(path("clean.bundle")));
  const auto cards = read_bundle("faulty.bundle");
  ASSERT_EQ(cards.size(), 60u);
  for (const auto& card : cards) verify_card(card, plain.at(card.card_id));
}

TEST_F(CliFaultTest, AnErrorThatPersistsStopsTheRunCleanly) {
  setup_cards(60);
  auto r = pf_faulty(prep_args("registry.db", "never.bundle"), "C_Sign:150+:CKR_DEVICE_ERROR");
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("C_Sign returned CKR_DEVICE_ERROR"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("still failing after 3 attempts"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("burnt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("never.bundle")));
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kBurnt);
}

TEST_F(CliFaultTest, APersistentErrorIsNotRetried) {
  setup_cards(60);
  auto r = pf_faulty(prep_args("registry.db", "never.bundle"), "C_Sign:150:CKR_TOKEN_NOT_PRESENT");
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("C_Sign returned CKR_TOKEN_NOT_PRESENT"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("attempts"), std::string::npos) << r.err;
  // The failing operation and its key are named.
  EXPECT_NE(r.err.find("card C"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("never.bundle")));
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kBurnt);
}

// Import: a transient error while moving a PIN block key-to-key (C_WrapKey, once per card)
// is retried and the XOF is the one an undisturbed import writes; a persistent one stops
// the import with nothing published.
TEST_F(CliFaultTest, ImportRetriesTransientErrorsAndStopsOnPersistentOnes) {
  setup_cards(200, "", /*import_xof=*/false);
  auto import_args = [&](const std::string& out) {
    return std::vector<std::string>{"import", "--profile", profile(), "--in", path("issuer.der"), "--out", path(out)};
  };
  auto faulty = pf_faulty(import_args("faulty.xof"), "C_WrapKey:50:CKR_DEVICE_ERROR,C_WrapKey:120:CKR_SESSION_CLOSED");
  ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
  const auto counts = nlohmann::json::parse(read_file(path("counts.json")));
  EXPECT_EQ(counts["C_WrapKey"].get<int>(), 202) << "200 cards and the two retried ones";
  auto clean = pf(import_args("clean.xof"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(read_file(path("faulty.xof")), read_file(path("clean.xof")));

  auto persistent = pf_faulty(import_args("never.xof"), "C_WrapKey:50+:CKR_DEVICE_ERROR");
  EXPECT_EQ(persistent.exit_code, 6) << persistent.err;
  EXPECT_NE(persistent.err.find("C_WrapKey returned CKR_DEVICE_ERROR"), std::string::npos) << persistent.err;
  EXPECT_FALSE(fs::exists(path("never.xof")));
}

// A lost login in the middle of a prep: the module drops every session (as a device reset
// would), the token logs in again once, the KeyStore's keys get their new handles, the
// cards in flight are prepared again, and the bundle is byte-identical to an undisturbed
// run with the same counters. The same drop with the PIN locked on the new login stops the
// run with exit 5, naming the operation and the login, with nothing published.
TEST_F(CliFaultTest, ALostLoginIsRestoredAndTheBundleIsTheSame) {
  const auto plain = setup_cards(60);
  fs::copy_file(path("registry.db"), path("registry-b.db"));
  fs::copy_file(path("registry.db"), path("registry-c.db"));
  auto faulty = pf_faulty(prep_args("registry.db", "faulty.bundle"), "C_Sign:150:drop-sessions");
  ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
  const auto counts = nlohmann::json::parse(read_file(path("counts.json")));
  ASSERT_GE(counts["C_Sign"].get<int>(), 150) << "the drop was reached";
  EXPECT_EQ(counts["C_Login"].get<int>(), 2) << "the first login and one after the drop";
  EXPECT_EQ(counts["C_Logout"].get<int>(), 0);
  const auto report = nlohmann::json::parse(read_file(path("faulty.bundle.json")));
  EXPECT_GE(report["hsm_retries"].get<int>(), 1);
  auto clean = pf(prep_args("registry-b.db", "clean.bundle"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(read_file(path("faulty.bundle")), read_file(path("clean.bundle")));
  const auto cards = read_bundle("faulty.bundle");
  ASSERT_EQ(cards.size(), 60u);
  for (const auto& card : cards) verify_card(card, plain.at(card.card_id));

  auto locked = pf_faulty(prep_args("registry-c.db", "never.bundle"), "C_Sign:150:drop-sessions,C_Login:2:CKR_PIN_LOCKED");
  EXPECT_EQ(locked.exit_code, 5) << locked.err;
  EXPECT_NE(locked.err.find("logging in again to token '"), std::string::npos) << locked.err;
  EXPECT_NE(locked.err.find("C_Login returned CKR_PIN_LOCKED"), std::string::npos) << locked.err;
  EXPECT_EQ(locked.err.find("attempts"), std::string::npos) << "a PIN error is not retried: " << locked.err;
  const auto locked_counts = nlohmann::json::parse(read_file(path("counts.json")));
  EXPECT_EQ(locked_counts["C_Login"].get<int>(), 2) << "the failed new login is never tried again";
  EXPECT_FALSE(fs::exists(path("never.bundle")));
  EXPECT_EQ(last_state("registry-c.db"), formats::ReservationState::kBurnt);
}

}  // namespace
}  // namespace persoflow::test
