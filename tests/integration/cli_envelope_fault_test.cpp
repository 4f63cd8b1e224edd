// HSM faults while `import` and `run` decrypt the issuer file's envelope, injected by the
// PKCS#11 fault-injection shim wrapping the real SoftHSM module (docs/fault-injection.md).
// The content key is a session object: a drop of every session (the module's login lost)
// kills it. EnvelopeSource unwraps it again and hsm::StreamDecryptor decrypts the failed
// chunk again from that chunk's own IV (CBC) or counter block (CTR, for AES-GCM), so the
// XOF (and run's bundle) must be byte-identical to an undisturbed import of the same file;
// a persistent error, or a retry bound reached, must stop cleanly naming the file, the
// content offset, the call and the transport key, with nothing published.
//
// The files are small (200 cards, about 54 KB), so PERSOFLOW_TEST_DECRYPT_CHUNK makes the
// decryption take 4 KiB calls: 14 chunks, and a fault can land in the middle of the stream.
#include "tests/integration/cli_prep_fixture.h"

namespace persoflow::test {
namespace {

constexpr int kCards = 200;
constexpr int kChunk = 4096;
const std::string kChunkText = std::to_string(kChunk);
const std::string kTransportKey = "pkcs11:object=tk-acme-01";

class CliEnvelopeFaultTest : public CliPrepTest {
 protected:
  // An issuer file of kCards generated cards, with the fixture's keys (seed fixed: the same
  // content key and IV each time).
  void make_issuer(const std::string& name, const std::string& cipher) {
    auto g = pf({"gen-issuer", "--profile", profile(), "--cards", std::to_string(kCards), "--out", path(name),
                 "--kek-id", "A1B2C3D4", "--tk", kTransportKey, "--content-cipher", cipher, "--seed", "11",
                 "--plain", path("plain.xml"), "--registry-csv", path("registry.csv")});
    ASSERT_EQ(g.exit_code, 0) << g.err;
  }

  // persoflow through the shim, with `faults` (PERSOFLOW_SHIM_FAULTS syntax), in 4 KiB chunks.
  ProcessResult pf_faulty(std::vector<std::string> args, const std::string& faults) {
    auto env = token_env_->env();
    env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
    env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
    env["PERSOFLOW_SHIM_FAULTS"] = faults;
    env["PERSOFLOW_SHIM_COUNTS"] = path("counts.json");
    env["PERSOFLOW_TEST_DECRYPT_CHUNK"] = kChunkText;
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    return run_process(args, env);
  }
  nlohmann::json counts() { return nlohmann::json::parse(read_file(path("counts.json"))); }

  std::vector<std::string> import_args(const std::string& in, const std::string& out) {
    return {"import", "--profile", profile(), "--in", path(in), "--out", path(out), "--report", path(out + ".json")};
  }

  // The undisturbed XOF of `in`: straight to SoftHSM, in the production's 64 KiB chunks (the
  // XOF does not depend on the chunk size), and the calls an undisturbed import through the
  // shim makes in 4 KiB chunks. Returns the XOF's bytes.
  std::string undisturbed(const std::string& in, nlohmann::json& clean_counts) {
    auto direct = pf(import_args(in, "clean-" + in + ".xof"));
    EXPECT_EQ(direct.exit_code, 0) << direct.err;
    auto shimmed = pf_faulty(import_args(in, "shimmed-" + in + ".xof"), "");
    EXPECT_EQ(shimmed.exit_code, 0) << shimmed.err;
    clean_counts = counts();
    const std::string xof = read_file(path("clean-" + in + ".xof"));
    EXPECT_TRUE(read_file(path("shimmed-" + in + ".xof")) == xof) << "4 KiB chunks give another XOF";
    // Several chunks, each one C_DecryptInit + C_Decrypt, and the content key unwrapped once
    // (the other C_UnwrapKey calls are the PIN blocks' key-to-key moves, one per card).
    EXPECT_GE(clean_counts["C_Decrypt"].get<int>(), 12) << "too few chunks for a fault in the middle";
    EXPECT_EQ(clean_counts["C_DecryptInit"], clean_counts["C_Decrypt"]);
    EXPECT_EQ(clean_counts["C_DecryptUpdate"], 0) << "StreamDecryptor makes single-part calls";
    EXPECT_EQ(clean_counts["C_UnwrapKey"], kCards + 1);
    EXPECT_EQ(clean_counts["C_Login"], 1);
    return xof;
  }

  // Imports `in` with `faults`: exit 0 and the undisturbed XOF. Returns the call counts.
  nlohmann::json expect_same_xof(const std::string& in, const std::string& faults, const std::string& clean_xof,
                                 const std::string& envelope_kind) {
    SCOPED_TRACE(in + " with " + faults);
    const std::string out = "faulty-" + std::to_string(++runs_) + ".xof";
    auto r = pf_faulty(import_args(in, out), faults);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(read_file(path(out)) == clean_xof) << "the XOF differs from the undisturbed import's";
    const auto report = nlohmann::json::parse(read_file(path(out + ".json")));
    EXPECT_EQ(report["input"]["envelope"], envelope_kind);
    EXPECT_EQ(report["output"]["cards"], kCards);
    return counts();
  }

  // `in` imported with `faults` must stop: exit `exit_code`, nothing published. Returns stderr.
  std::string expect_stop(const std::string& in, const std::string& faults, int exit_code = 6) {
    SCOPED_TRACE(in + " with " + faults);
    const std::string out = "never-" + std::to_string(++runs_) + ".xof";
    auto r = pf_faulty(import_args(in, out), faults);
    EXPECT_EQ(r.exit_code, exit_code) << r.err;
    EXPECT_FALSE(fs::exists(path(out))) << "an XOF was published";
    EXPECT_FALSE(fs::exists(path(out + ".json"))) << "a run report was written";
    // No temporary XOF left either; the run directory (out.run) keeps its journal, which
    // records the failure (docs/formats/journal.md).
    for (const auto& entry : fs::directory_iterator(dir())) {
      const std::string name = entry.path().filename().string();
      if (name == out + ".run") continue;
      EXPECT_EQ(name.find(out), std::string::npos) << "left behind: " << entry.path();
    }
    // The file and the transport key are named, whatever failed.
    EXPECT_NE(r.err.find(path(in)), std::string::npos) << r.err;
    return r.err;
  }

  int runs_ = 0;
};

// (1) A drop of every session in the middle of the content: the token logs in again, the
// content key is unwrapped again, the chunk decrypted again; the XOF is the undisturbed one.
// CBC (EnvelopedData) and AES-GCM (AuthEnvelopedData: AES-CTR in the HSM, GHASH in the host:
// a chunk fed twice to GHASH would fail the tag, one skipped would too).
TEST_F(CliEnvelopeFaultTest, ADropInTheMiddleOfTheDecryptionIsRecovered) {
  ASSERT_NO_FATAL_FAILURE(make_issuer("cbc.der", "aes-256-cbc"));
  ASSERT_NO_FATAL_FAILURE(make_issuer("gcm.der", "aes-256-gcm"));
  for (const auto& [in, kind] : {std::pair<std::string, std::string>{"cbc.der", "EnvelopedData"},
                                 std::pair<std::string, std::string>{"gcm.der", "AuthEnvelopedData"}}) {
    nlohmann::json clean;
    const std::string xof = undisturbed(in, clean);
    const int chunks = clean["C_Decrypt"].get<int>();

    auto c = expect_same_xof(in, "C_Decrypt:6:drop-sessions", xof, kind);
    EXPECT_EQ(c["C_Login"], 2) << "the first login and one after the drop";
    EXPECT_EQ(c["C_Logout"], 0);
    EXPECT_EQ(c["C_Decrypt"], chunks + 1) << "only the dropped chunk decrypted again";
    EXPECT_EQ(c["C_UnwrapKey"], kCards + 2) << "the content key unwrapped once more";

    // The drop on the chunk's C_DecryptInit, and on the last chunk (CBC: the padded one).
    c = expect_same_xof(in, "C_DecryptInit:9:drop-sessions", xof, kind);
    EXPECT_EQ(c["C_Login"], 2);
    EXPECT_EQ(c["C_DecryptInit"], chunks + 1);
    c = expect_same_xof(in, "C_Decrypt:" + std::to_string(chunks) + ":drop-sessions", xof, kind);
    EXPECT_EQ(c["C_Login"], 2);
    EXPECT_EQ(c["C_Decrypt"], chunks + 1);

    // Two drops in one file, in different chunks.
    c = expect_same_xof(in, "C_Decrypt:3:drop-sessions,C_Decrypt:11:drop-sessions", xof, kind);
    EXPECT_EQ(c["C_Login"], 3);
    EXPECT_EQ(c["C_Decrypt"], chunks + 2);
  }
}

// (1, open) The content key's unwrap in open() meets the drop, or a device error: tried
// again, as are GCM's H and tag mask made with the key.
TEST_F(CliEnvelopeFaultTest, TheContentKeyUnwrapIsRetried) {
  ASSERT_NO_FATAL_FAILURE(make_issuer("gcm.der", "aes-256-gcm"));
  nlohmann::json clean;
  const std::string xof = undisturbed("gcm.der", clean);
  // The content key is the import's first C_UnwrapKey (the PIN blocks come later).
  auto c = expect_same_xof("gcm.der", "C_UnwrapKey:1:drop-sessions", xof, "AuthEnvelopedData");
  EXPECT_EQ(c["C_Login"], 2);
  EXPECT_EQ(c["C_UnwrapKey"], kCards + 2) << "the failed unwrap and the one after it";
  c = expect_same_xof("gcm.der", "C_UnwrapKey:1:CKR_DEVICE_ERROR", xof, "AuthEnvelopedData");
  EXPECT_EQ(c["C_Login"], 1);
  EXPECT_EQ(c["C_UnwrapKey"], kCards + 2);
  // H and E(K, J0) are the last two C_Encrypt calls (AES-ECB, one block each) before the
  // first C_Decrypt; the ones before them are the keys' check values. Counted by an import
  // stopped at its first C_Decrypt.
  auto r = pf_faulty(import_args("gcm.der", "stopped.xof"), "C_Decrypt:1:CKR_TOKEN_NOT_PRESENT");
  ASSERT_EQ(r.exit_code, 6) << r.err;
  const int h_call = counts()["C_Encrypt"].get<int>() - 1;
  ASSERT_GE(h_call, 1);
  for (int call : {h_call, h_call + 1}) {
    c = expect_same_xof("gcm.der", "C_Encrypt:" + std::to_string(call) + ":drop-sessions", xof, "AuthEnvelopedData");
    EXPECT_EQ(c["C_Login"], 2);
    EXPECT_EQ(c["C_UnwrapKey"], kCards + 2) << "the key made again, then H and the mask with it";
  }
}

// (2) A transient error on one call, the login intact: the chunk is decrypted again (with
// the key made again) and the XOF is the same; no new login.
TEST_F(CliEnvelopeFaultTest, ATransientErrorOnOneCallGivesTheSameXof) {
  ASSERT_NO_FATAL_FAILURE(make_issuer("cbc.der", "aes-128-cbc"));
  ASSERT_NO_FATAL_FAILURE(make_issuer("gcm.der", "aes-128-gcm"));
  for (const auto& [in, kind] : {std::pair<std::string, std::string>{"cbc.der", "EnvelopedData"},
                                 std::pair<std::string, std::string>{"gcm.der", "AuthEnvelopedData"}}) {
    nlohmann::json clean;
    const std::string xof = undisturbed(in, clean);
    const int chunks = clean["C_Decrypt"].get<int>();
    auto c = expect_same_xof(in, "C_Decrypt:5:CKR_DEVICE_ERROR", xof, kind);
    EXPECT_EQ(c["C_Login"], 1);
    EXPECT_EQ(c["C_Decrypt"], chunks + 1);
    c = expect_same_xof(in, "C_DecryptInit:4:CKR_SESSION_CLOSED,C_Decrypt:8:CKR_DEVICE_MEMORY", xof, kind);
    EXPECT_EQ(c["C_Login"], 1);
    EXPECT_EQ(c["C_DecryptInit"], chunks + 2);
    // The same chunk failing twice, then succeeding: within its 3 attempts.
    c = expect_same_xof(in, "C_Decrypt:7:CKR_DEVICE_ERROR,C_Decrypt:8:CKR_SESSION_HANDLE_INVALID", xof, kind);
    EXPECT_EQ(c["C_Decrypt"], chunks + 2);
  }
}

// (3) Errors that do not go away stop the import cleanly, naming the file, the content
// offset, the call and the transport key; nothing is published.
TEST_F(CliEnvelopeFaultTest, PersistentErrorsAndExhaustedBoundsStopCleanly) {
  ASSERT_NO_FATAL_FAILURE(make_issuer("cbc.der", "aes-256-cbc"));
  nlohmann::json clean;
  (void)undisturbed("cbc.der", clean);
  const std::string at_chunk_5 = "decrypting the issuer file's content at byte " + std::to_string(4 * kChunk) +
                                 " (" + kChunkText + " bytes) with the content key unwrapped under '" +
                                 kTransportKey + "'";

  // Every decryption call failing from the 5th chunk on: three attempts, then the stop.
  std::string err = expect_stop("cbc.der", "C_Decrypt:5+:CKR_DEVICE_ERROR");
  EXPECT_NE(err.find(at_chunk_5 + ": C_Decrypt returned CKR_DEVICE_ERROR; still failing after 3 attempts"),
            std::string::npos)
      << err;
  EXPECT_EQ(counts()["C_Decrypt"], 7) << "4 chunks, then the 5th three times";

  // A drop on every decryption call: each attempt logs in again and fails again.
  err = expect_stop("cbc.der", "C_Decrypt:5+:drop-sessions");
  EXPECT_NE(err.find(at_chunk_5 + ": C_Decrypt returned CKR_SESSION_HANDLE_INVALID; still failing after 3 attempts"),
            std::string::npos)
      << err;
  EXPECT_EQ(counts()["C_Login"], 4);

  // A persistent value: not retried.
  err = expect_stop("cbc.der", "C_Decrypt:5:CKR_TOKEN_NOT_PRESENT");
  EXPECT_NE(err.find(at_chunk_5 + ": C_Decrypt returned CKR_TOKEN_NOT_PRESENT"), std::string::npos) << err;
  EXPECT_EQ(err.find("attempts"), std::string::npos) << err;
  EXPECT_EQ(counts()["C_Decrypt"], 5);

  // A drop, and the PIN locked on the new login: never retried (exit 5).
  err = expect_stop("cbc.der", "C_Decrypt:5:drop-sessions,C_Login:2:CKR_PIN_LOCKED", 5);
  EXPECT_NE(err.find(at_chunk_5 + ": C_Decrypt returned CKR_SESSION_HANDLE_INVALID; then logging in again to token '"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("C_Login returned CKR_PIN_LOCKED"), std::string::npos) << err;
  EXPECT_EQ(counts()["C_Login"], 2);
  EXPECT_EQ(counts()["C_Decrypt"], 5);

  // The key cannot be made again after a drop: the unwrap's persistent error, after the
  // chunk's, stops the import.
  err = expect_stop("cbc.der", "C_Decrypt:5:drop-sessions,C_UnwrapKey:2:CKR_TOKEN_NOT_PRESENT");
  EXPECT_NE(err.find(at_chunk_5 + ": making the content key again: unwrapping the content-encryption key under "
                                  "'tk-acme-01': C_UnwrapKey returned CKR_TOKEN_NOT_PRESENT"),
            std::string::npos)
      << err;

  // The bound per file: chunks 2 to 10 each fail once (every one within its own 3
  // attempts), the 9th retry is one too many.
  std::string every_other;
  for (int call = 2; call <= 18; call += 2) {
    every_other += (every_other.empty() ? "" : ",") + std::string("C_Decrypt:") + std::to_string(call) +
                   ":CKR_DEVICE_ERROR";
  }
  err = expect_stop("cbc.der", every_other);
  EXPECT_NE(err.find("decrypting the issuer file's content at byte " + std::to_string(9 * kChunk) + " (" +
                     kChunkText + " bytes) with the content key unwrapped under '" + kTransportKey +
                     "': C_Decrypt returned CKR_DEVICE_ERROR; the decryption has already been retried 8 times, "
                     "the most one file may be"),
            std::string::npos)
      << err;
  EXPECT_EQ(counts()["C_Decrypt"], 18);
  // ... while 8 such faults are recovered.
  every_other = every_other.substr(0, every_other.rfind(','));
  (void)expect_same_xof("cbc.der", every_other, read_file(path("clean-cbc.der.xof")), "EnvelopedData");

  // The content key's unwrap in open(), failing every time.
  err = expect_stop("cbc.der", "C_UnwrapKey:1+:CKR_DEVICE_ERROR");
  EXPECT_NE(err.find("unwrapping the content-encryption key under 'tk-acme-01': C_UnwrapKey returned "
                     "CKR_DEVICE_ERROR; still failing after 3 attempts"),
            std::string::npos)
      << err;
  EXPECT_EQ(counts()["C_UnwrapKey"], 3);
  EXPECT_EQ(counts()["C_Decrypt"], 0);
}

// (4) `persoflow run`: the same drop in the middle of the decryption; the XOF and the
// bundle are those of an undisturbed run over an identical registry (same counters, same
// reservation id), and every card verifies.
TEST_F(CliEnvelopeFaultTest, RunRecoversFromADropDuringTheDecryption) {
  ASSERT_NO_FATAL_FAILURE(make_issuer("cbc.der", "aes-256-cbc"));
  ASSERT_NO_FATAL_FAILURE(make_issuer("gcm.der", "aes-256-gcm"));
  const auto plain = parse_plain(read_file(path("plain.xml")));
  ASSERT_EQ(plain.size(), static_cast<std::size_t>(kCards));
  auto reg = pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")});
  ASSERT_EQ(reg.exit_code, 0) << reg.err;
  for (const char* copy : {"reg-cbc-clean.db", "reg-cbc-drop.db", "reg-gcm-clean.db", "reg-gcm-drop.db"}) {
    fs::copy_file(path("registry.db"), path(copy));
  }
  auto run_args = [&](const std::string& in, const std::string& registry, const std::string& out_dir) {
    return std::vector<std::string>{"run",        "--profile",    profile(),     "--in",     path(in),
                                    "--registry", path(registry), "--out-dir",   path(out_dir), "--run-id",
                                    "nightly-7"};
  };
  for (const std::string& cipher : {std::string("cbc"), std::string("gcm")}) {
    SCOPED_TRACE(cipher);
    const std::string in = cipher + ".der";
    auto clean = pf(run_args(in, "reg-" + cipher + "-clean.db", "clean-" + cipher));
    ASSERT_EQ(clean.exit_code, 0) << clean.err;
    auto faulty = pf_faulty(run_args(in, "reg-" + cipher + "-drop.db", "drop-" + cipher), "C_Decrypt:6:drop-sessions");
    ASSERT_EQ(faulty.exit_code, 0) << faulty.err;
    const auto c = counts();
    EXPECT_GE(c["C_Decrypt"].get<int>(), 13) << "the drop was in the middle of the content";
    EXPECT_EQ(c["C_Login"], 2) << "the first login and one after the drop";
    for (const std::string& name : {cipher + ".xof", cipher + ".bundle"}) {
      EXPECT_TRUE(read_file(path("drop-" + cipher + "/" + name)) == read_file(path("clean-" + cipher + "/" + name)))
          << name << " differs from the undisturbed run's";
    }
    const auto report = nlohmann::json::parse(read_file(path("drop-" + cipher + "/" + cipher + ".report.json")));
    EXPECT_EQ(report["output"]["xof"]["cards"], kCards);
    EXPECT_EQ(report["output"]["bundle"]["cards"], kCards);
    const auto cards = read_bundle(path("drop-" + cipher + "/" + cipher + ".bundle"));
    ASSERT_EQ(cards.size(), static_cast<std::size_t>(kCards));
    for (const auto& card : cards) verify_card(card, plain.at(card.card_id));
  }
}

}  // namespace
}  // namespace persoflow::test
