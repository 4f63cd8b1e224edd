// HSM faults during prep, injected by the PKCS#11 fault-injection shim wrapping the real
// SoftHSM module (tests/support/pkcs11_fault_shim.cpp, docs/fault-injection.md):
// transient errors are retried card by card and the bundle is byte-identical to an
// undisturbed run with the same counters; persistent errors stop the run cleanly, naming
// the operation, with nothing published; the run is interrupted, not failed: its
// reservation stays `reserved` and --resume, once the HSM is fine again, publishes what an
// undisturbed run would have.
#include <sstream>

#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

class CliFaultTest : public CliPrepTest {
 protected:
  // persoflow through the shim, with `faults` (PERSOFLOW_SHIM_FAULTS syntax).
  // With `trace`, the shim also writes its call trace there.
  ProcessResult pf_faulty(std::vector<std::string> args, const std::string& faults, const std::string& trace = "") {
    auto env = token_env_->env();
    env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
    env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
    env["PERSOFLOW_SHIM_FAULTS"] = faults;
    env["PERSOFLOW_SHIM_COUNTS"] = path("counts.json");
    if (!trace.empty()) env["PERSOFLOW_SHIM_TRACE"] = trace;
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

TEST_F(CliFaultTest, AnErrorThatPersistsStopsTheRunCleanlyAndResumeFinishesIt) {
  const auto plain = setup_cards(60);
  fs::copy_file(path("registry.db"), path("registry-b.db"));
  auto r = pf_faulty(prep_args("registry.db", "a.bundle"), "C_Sign:150+:CKR_DEVICE_ERROR");
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("C_Sign returned CKR_DEVICE_ERROR"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("still failing after 3 attempts"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("run interrupted, not failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("persoflow prep --resume "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("burnt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a.bundle")));
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kReserved);
  // The HSM is fine again: the resume publishes what an undisturbed prep publishes with
  // the same counters, and reserves nothing more.
  auto resumed = pf({"prep", "--resume", path("a.bundle.run")});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  ASSERT_EQ(pf(prep_args("registry-b.db", "clean.bundle")).exit_code, 0);
  EXPECT_EQ(read_file(path("a.bundle")), read_file(path("clean.bundle")));
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kPublished);
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  EXPECT_EQ(reg->reservations()->size(), 1u);
  for (const auto& card : read_bundle("a.bundle")) verify_card(card, plain.at(card.card_id));
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
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kReserved);
}

// A data error still ends the run: --max-rejects burns the reservation and --resume
// refuses the failed run.
TEST_F(CliFaultTest, ADataErrorStillEndsTheRun) {
  setup_cards(20, "SE0000000003");
  auto r = pf_faulty([&] {
    auto a = prep_args("registry.db", "never.bundle");
    a.insert(a.end(), {"--max-rejects", "0"});
    return a;
  }(), "");
  EXPECT_EQ(r.exit_code, 10) << r.err;
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kBurnt);
  auto resumed = pf({"prep", "--resume", path("never.bundle.run")});
  EXPECT_EQ(resumed.exit_code, 2) << resumed.err;
  EXPECT_NE(resumed.err.find("failed"), std::string::npos) << resumed.err;
}

// `run` through the same persistent error: interrupted; the resume's outputs are an
// undisturbed run's.
TEST_F(CliFaultTest, APersistentErrorInterruptsARunAndResumeFinishesIt) {
  setup_cards(300, "", /*import_xof=*/false);
  fs::copy_file(path("registry.db"), path("registry-b.db"));
  auto run_args = [&](const std::string& registry, const std::string& out) {
    return std::vector<std::string>{"run", "--profile", profile(), "--in", path("issuer.der"), "--registry",
                                    path(registry), "--out-dir", path(out), "--run-id", "n-1", "--batch-records",
                                    "32"};
  };
  auto r = pf_faulty(run_args("registry.db", "a"), "C_Sign:400+:CKR_DEVICE_ERROR");
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("persoflow run --resume "), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("a/issuer.xof")));
  EXPECT_FALSE(fs::exists(path("a/issuer.bundle")));
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kReserved);
  auto resumed = pf({"run", "--resume", path("a/issuer.run")});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  ASSERT_EQ(pf(run_args("registry-b.db", "b")).exit_code, 0);
  for (const char* f : {"issuer.xof", "issuer.bundle", "issuer.rejects.jsonl"}) {
    EXPECT_TRUE(read_file(path(std::string("a/") + f)) == read_file(path(std::string("b/") + f))) << f << " differs";
  }
  EXPECT_EQ(last_state("registry.db"), formats::ReservationState::kPublished);
}

// `run`: a transient error in its import half (moving a PIN block key-to-key; prep makes
// no C_WrapKey call in this profile) is retried and counted in the run report, and the
// outputs are an undisturbed run's.
TEST_F(CliFaultTest, ARunCountsItsImportRetries) {
  setup_cards(100, "", /*import_xof=*/false);
  fs::copy_file(path("registry.db"), path("registry-b.db"));
  auto run_args = [&](const std::string& registry, const std::string& out) {
    return std::vector<std::string>{"run", "--profile", profile(), "--in", path("issuer.der"), "--registry",
                                    path(registry), "--out-dir", path(out), "--run-id", "n-1"};
  };
  auto faulty = pf_faulty(run_args("registry.db", "a"), "C_WrapKey:40:CKR_DEVICE_ERROR");
  ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(path("a/issuer.report.json")))["hsm_retries"], 1);
  auto clean = pf(run_args("registry-b.db", "b"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(path("b/issuer.report.json")))["hsm_retries"], 0);
  for (const char* f : {"issuer.xof", "issuer.bundle"}) {
    EXPECT_TRUE(read_file(path(std::string("a/") + f)) == read_file(path(std::string("b/") + f))) << f << " differs";
  }
}

// Import: a transient error while moving a PIN block key-to-key (C_WrapKey, once per card)
// is retried and the XOF is the one an undisturbed import writes; a persistent one stops
// the import with nothing published.
TEST_F(CliFaultTest, ImportRetriesTransientErrorsAndStopsOnPersistentOnes) {
  setup_cards(200, "", /*import_xof=*/false);
  auto import_args = [&](const std::string& out) {
    return std::vector<std::string>{"import", "--profile", profile(), "--in", path("issuer.der"), "--out", path(out),
                                    "--report", path(out + ".json")};
  };
  auto faulty = pf_faulty(import_args("faulty.xof"), "C_WrapKey:50:CKR_DEVICE_ERROR,C_WrapKey:120:CKR_SESSION_CLOSED");
  ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
  const auto counts = nlohmann::json::parse(read_file(path("counts.json")));
  EXPECT_EQ(counts["C_WrapKey"].get<int>(), 202) << "200 cards and the two retried ones";
  EXPECT_EQ(nlohmann::json::parse(read_file(path("faulty.xof.json")))["hsm_retries"], 2);
  auto clean = pf(import_args("clean.xof"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(read_file(path("faulty.xof")), read_file(path("clean.xof")));
  EXPECT_EQ(nlohmann::json::parse(read_file(path("clean.xof.json")))["hsm_retries"], 0);

  // The same faults in an import worker: retried there, and counted in the parent's report.
  auto in_worker = import_args("worker.xof");
  in_worker.insert(in_worker.end(), {"--workers", "1"});
  auto worker = pf_faulty(in_worker, "C_WrapKey:50:CKR_DEVICE_ERROR,C_WrapKey:120:CKR_SESSION_CLOSED");
  ASSERT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(read_file(path("worker.xof")), read_file(path("clean.xof")));
  const auto worker_report = nlohmann::json::parse(read_file(path("worker.xof.json")));
  EXPECT_EQ(worker_report["workers"]["processes"], 1);
  EXPECT_EQ(worker_report["hsm_retries"], 2);

  // Sealing a segment (C_EncryptInit with CKM_AES_GCM; the envelope's chunks use
  // CKM_AES_CTR, key check values CKM_AES_ECB): the last one of an undisturbed import,
  // found in its call trace, fails once with a device error; it is sealed again, counted.
  auto traced = pf_faulty(import_args("traced.xof"), "", path("import.trace"));
  ASSERT_EQ(traced.exit_code, 0) << traced.err;
  int encrypt_inits = 0;
  int last_seal = 0;  // its number among the C_EncryptInit calls, from 1
  {
    std::istringstream trace(read_file(path("import.trace")));
    for (std::string line; std::getline(trace, line);) {
      const auto call = nlohmann::json::parse(line);
      if (call["fn"] != "C_EncryptInit") continue;
      ++encrypt_inits;
      if (call["mech"]["name"] == "CKM_AES_GCM") last_seal = encrypt_inits;
    }
  }
  ASSERT_GT(last_seal, 0) << "no segment sealed in the HSM";
  auto sealed = pf_faulty(import_args("sealed.xof"), "C_EncryptInit:" + std::to_string(last_seal) + ":CKR_DEVICE_ERROR");
  ASSERT_EQ(sealed.exit_code, 0) << sealed.err;
  EXPECT_EQ(read_file(path("sealed.xof")), read_file(path("clean.xof")));
  EXPECT_EQ(nlohmann::json::parse(read_file(path("sealed.xof.json")))["hsm_retries"], 1);

  auto persistent = pf_faulty(import_args("later.xof"), "C_WrapKey:50+:CKR_DEVICE_ERROR");
  EXPECT_EQ(persistent.exit_code, 6) << persistent.err;
  EXPECT_NE(persistent.err.find("C_WrapKey returned CKR_DEVICE_ERROR"), std::string::npos) << persistent.err;
  EXPECT_NE(persistent.err.find("persoflow import --resume "), std::string::npos) << persistent.err;
  EXPECT_EQ(persistent.err.find("reservation"), std::string::npos) << "import reserves nothing: " << persistent.err;
  EXPECT_FALSE(fs::exists(path("later.xof")));
  // Interrupted, not failed: the resume writes the XOF an undisturbed import writes.
  auto resumed = pf({"import", "--resume", path("later.xof.run")});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(read_file(path("later.xof")), read_file(path("clean.xof")));
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
  EXPECT_EQ(last_state("registry-c.db"), formats::ReservationState::kReserved);
}

}  // namespace
}  // namespace persoflow::test
