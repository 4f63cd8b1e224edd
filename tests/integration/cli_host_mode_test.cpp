// prep's `host` key-handling mode (docs/profile.md "Key handling") through the real binary
// and a fresh SoftHSM token: for every reference profile with <prep>, a prep in `host` mode
// and one in `strict` mode over the same XOF with identical registry copies write the same
// bundle (every segment, the index and the table byte for byte; the headers differ only in
// the profile digest, since the two profile files differ by their key-handling=), each
// counted through the PKCS#11 fault-injection shim (no fault rule): host mode costs a
// fraction of the calls per card. The run report says "host" and how each key was
// derived (and the audit log's run.start the mode); the masters stay sensitive and never
// extractable in the token; nothing the run writes holds a card's static or session keys,
// nor the master's CMAC subkey K1. Masters without the encrypt usage take the per-key
// fallback; transient HSM errors on a batch are retried into the same bytes.
#include "tests/integration/cli_prep_fixture.h"

#include <cstring>

namespace persoflow::test {
namespace {

// Issuer master keys and the other products' masters, from known components (the leak
// check and the verifier need their values); the same as cli_emv_test.cpp's.
const std::string kImkAc1 = "0123456789ABCDEFFEDCBA9876543210";
const std::string kImkAc2 = "00000000000000000000000000000000";
const std::string kImkSmi1 = "11111111111111112222222222222222";
const std::string kImkSmi2 = "0A0B0C0D0E0F10111213141516171819";
const std::string kImkSmc1 = "C1C1C1C1C1C1C1C1D2D2D2D2D2D2D2D2";
const std::string kImkSmc2 = "00112233445566778899AABBCCDDEEFF";
const std::string kKmc02a = "404142434445464748494A4B4C4D4E4F";
const std::string kKmc02b = "0102030405060708090A0B0C0D0E0F10";
const std::string kKmcSp1 = "5A5B5C5D5E5F60616263646566676869";
const std::string kKmcSp2 = "0102030405060708F1F2F3F4F5F6F7F8";
const std::string kHc1 = "F0E1D2C3B4A5968778695A4B3C2D1E0F";
const std::string kHc2 = "00000000000000000000000000000001";

struct Counts {
  std::map<std::string, std::uint64_t> by_function;
  std::uint64_t total = 0;
};

Counts read_counts(const std::string& file) {
  Counts c;
  const auto j = nlohmann::json::parse(read_file(file));
  for (const auto& [name, n] : j.items()) {
    c.by_function[name] = n.get<std::uint64_t>();
    c.total += n.get<std::uint64_t>();
  }
  return c;
}

// The bundle's parts: the header, everything between it and the footer, the footer.
struct BundleParts {
  formats::BundleHeader header;
  std::string body;
};

BundleParts split_bundle(const std::string& file) {
  BundleParts p;
  const std::string bytes = read_file(file);
  // "PFBUNDLE", the header's length (u32, big-endian), the header (docs/formats/bundle.md).
  const std::size_t magic = formats::kBundleMagic.size();
  EXPECT_GT(bytes.size(), magic + 4 + formats::kBundleFooterSize);
  if (bytes.size() <= magic + 4 + formats::kBundleFooterSize) return p;
  std::size_t length = 0;
  for (std::size_t i = 0; i < 4; ++i) length = (length << 8) | static_cast<std::uint8_t>(bytes[magic + i]);
  const std::size_t start = magic + 4 + length;
  const std::span<const std::uint8_t> head(reinterpret_cast<const std::uint8_t*>(bytes.data()), start);
  auto header = formats::parse_bundle_header(head, file);
  EXPECT_TRUE(header.has_value()) << header.error().message();
  if (!header) return p;
  p.header = *header;
  EXPECT_EQ(formats::serialize_bundle_header(*header).size(), start);
  EXPECT_GT(bytes.size(), start + formats::kBundleFooterSize);
  p.body = bytes.substr(start, bytes.size() - start - formats::kBundleFooterSize);
  return p;
}

class CliHostModeTest : public CliPrepTest {
 protected:
  // Not CliPrepTest::SetUp: the same keys, but the masters and the host-challenge key with
  // the encrypt usage the host mode batches with, and sign-only twins for the fallback.
  void SetUp() override {
    HsmTest::SetUp();
    for (const char* label : {"dkep-pan", "dkep-track", "dkep-general"}) {
      ASSERT_EQ(pf({"keys", "generate", "--label", label, "--type", "aes256", "--usage", "encrypt,decrypt"}).exit_code, 0);
    }
    ASSERT_EQ(pf({"keys", "generate", "--label", "dkep-secret", "--type", "aes256", "--usage",
                  "encrypt,decrypt,wrap,unwrap"}).exit_code, 0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "xof-integrity", "--type", "aes256", "--usage", "sign,verify"}).exit_code, 0);
    import_key("tk-acme-01", "aes256", "wrap,unwrap", kTk1, kTk2);
    import_key("pin-tk-acme", "aes128", "wrap,unwrap", kPinTk1, kPinTk2);
    import_key("host-challenge", "aes128", "sign,encrypt", kHc1, kHc2);
    import_key("kmc-scp03", "aes128", "sign,encrypt", kKmc1, kKmc2);
    import_key("kmc-sp", "aes128", "sign,encrypt", kKmcSp1, kKmcSp2);
    import_key("kmc-scp02", "des2", "derive,encrypt", kKmc02a, kKmc02b);
    import_key("imk-ac", "des2", "derive,encrypt", kImkAc1, kImkAc2);
    import_key("imk-smi", "des2", "derive,encrypt", kImkSmi1, kImkSmi2);
    import_key("imk-smc", "des2", "derive,encrypt", kImkSmc1, kImkSmc2);
    // The same values without encrypt: the host mode's per-key fallback.
    import_key("host-challenge-sign", "aes128", "sign", kHc1, kHc2);
    import_key("kmc-scp03-sign", "aes128", "sign", kKmc1, kKmc2);
    kmc_ = xor_bytes(hex_bytes(kKmc1), hex_bytes(kKmc2));
  }

  std::string profile() const override { return base_profile_; }

  // `name` from config/profiles/ with its XOF segments made 128 cards (several batches
  // per run) and `edits` applied; written into the test directory.
  std::string variant(const std::string& name, const std::string& out,
                      const std::vector<std::pair<std::string, std::string>>& edits) {
    std::string xml = read_file(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/" + name);
    std::vector<std::pair<std::string, std::string>> all = {{"<xof segment-cards=\"1024\"/>", "<xof segment-cards=\"128\"/>"}};
    all.insert(all.end(), edits.begin(), edits.end());
    for (const auto& [from, to] : all) {
      const std::size_t at = xml.find(from);
      EXPECT_NE(at, std::string::npos) << name << ": " << from;
      if (at != std::string::npos) xml.replace(at, from.size(), to);
    }
    write_file(dir() / out, xml);
    return path(out);
  }

  // persoflow prep through the fault shim (no rule), counting every PKCS#11 call.
  // `faults`: PERSOFLOW_SHIM_FAULTS rules (docs/fault-injection.md), none by default.
  ProcessResult counted_prep(const std::string& profile_path, const std::string& registry, const std::string& out,
                             std::vector<std::string> extra = {}, const std::string& faults = "") {
    auto env = token_env_->env();
    env["PERSOFLOW_PKCS11_MODULE"] = PERSOFLOW_FAULT_SHIM;
    env["PERSOFLOW_SHIM_MODULE"] = token_env_->module();
    if (!faults.empty()) env["PERSOFLOW_SHIM_FAULTS"] = faults;
    env["PERSOFLOW_SHIM_COUNTS"] = path(out + ".counts.json");
    std::vector<std::string> args = {PERSOFLOW_CLI_PATH, "prep", "--profile", profile_path, "--xof", path("cards.xof"),
                                     "--registry", path(registry), "--out", path(out), "--report", path(out + ".json")};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_process(args, env);
  }

  struct PairResult {
    double strict_calls_per_card = 0;
    double host_calls_per_card = 0;
    std::map<std::string, double> host_per_card_by_function;  // (N cards - 1 card) / (N - 1), non-zero ones
    nlohmann::json host_report;
  };

  // gen-issuer, registry (four identical copies), import; then strict and host preps of
  // every card and of card 1 alone, each mode on its own registry copies, through the
  // shim. Checks that the two bundles are the same; returns the calls per card (N cards
  // minus one card, over N - 1: the run's fixed cost cancels out).
  PairResult prep_both_ways(const std::string& name, int cards, const std::string& host_profile,
                            const std::vector<std::string>& host_extra = {}) {
    PairResult r;
    auto g = pf({"gen-issuer", "--profile", base_profile_, "--cards", std::to_string(cards), "--out", path("issuer.der"),
                 "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--plain", path("plain.xml"), "--seed",
                 "7", "--registry-csv", path("registry.csv")});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    auto reg = pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")});
    EXPECT_EQ(reg.exit_code, 0) << reg.err;
    for (const char* copy : {"registry-host.db", "registry-1s.db", "registry-1h.db"}) {
      fs::copy_file(path("registry.db"), path(copy));
    }
    auto i = pf({"import", "--profile", base_profile_, "--in", path("issuer.der"), "--out", path("cards.xof")});
    EXPECT_EQ(i.exit_code, 0) << i.err;

    auto s = counted_prep(base_profile_, "registry.db", "strict.bundle");
    EXPECT_EQ(s.exit_code, 0) << name << ": " << s.err;
    auto h = counted_prep(host_profile, "registry-host.db", "host.bundle", host_extra);
    EXPECT_EQ(h.exit_code, 0) << name << ": " << h.err;
    if (s.exit_code != 0 || h.exit_code != 0) return r;

    // The same bundle: the same cards, sessions and APDUs in the same compressed bytes.
    const BundleParts a = split_bundle(path("strict.bundle"));
    const BundleParts b = split_bundle(path("host.bundle"));
    EXPECT_EQ(a.body.size(), b.body.size()) << name;
    EXPECT_TRUE(a.body == b.body) << name << ": the host-mode bundle differs from the strict one";
    EXPECT_EQ(a.header.xof_sha256, b.header.xof_sha256);
    EXPECT_EQ(a.header.reservation_id, b.header.reservation_id);
    EXPECT_EQ(a.header.profile_id, b.header.profile_id);
    EXPECT_EQ(a.header.product, b.header.product);
    EXPECT_EQ(a.header.segment_cards, b.header.segment_cards);
    EXPECT_EQ(a.header.integrity_kcv, b.header.integrity_kcv);
    // ... the profile digest is each file's own.
    EXPECT_NE(a.header.profile_sha256, b.header.profile_sha256);
    const auto strict_cards = read_bundle(path("strict.bundle"));
    const auto host_cards = read_bundle(path("host.bundle"));
    EXPECT_EQ(strict_cards.size(), static_cast<std::size_t>(cards)) << name;
    EXPECT_EQ(host_cards.size(), strict_cards.size()) << name;
    const auto strict_report = nlohmann::json::parse(read_file(path("strict.bundle.json")));
    r.host_report = nlohmann::json::parse(read_file(path("host.bundle.json")));
    EXPECT_EQ(strict_report["key_handling"]["mode"], "strict");
    EXPECT_EQ(r.host_report["key_handling"]["mode"], "host");
    EXPECT_EQ(r.host_report["output"]["cards"], cards);
    EXPECT_EQ(r.host_report["rejects"]["count"], 0);
    EXPECT_EQ(r.host_report["output"]["apdus"], strict_report["output"]["apdus"]);

    auto s1 = counted_prep(base_profile_, "registry-1s.db", "strict-1.bundle", {"--cards", "1-1"});
    EXPECT_EQ(s1.exit_code, 0) << s1.err;
    auto h1 = counted_prep(host_profile, "registry-1h.db", "host-1.bundle", {"--cards", "1-1"});
    EXPECT_EQ(h1.exit_code, 0) << h1.err;
    const Counts sn = read_counts(path("strict.bundle.counts.json"));
    const Counts hn = read_counts(path("host.bundle.counts.json"));
    const Counts s1c = read_counts(path("strict-1.bundle.counts.json"));
    const Counts h1c = read_counts(path("host-1.bundle.counts.json"));
    r.strict_calls_per_card = static_cast<double>(sn.total - s1c.total) / (cards - 1);
    r.host_calls_per_card = static_cast<double>(hn.total - h1c.total) / (cards - 1);
    for (const auto& [f, count] : hn.by_function) {
      // Signed: a one-card batch may use calls a large one does not (C_Sign for a single
      // multi-block host challenge).
      const double d = (static_cast<double>(count) - static_cast<double>(h1c.by_function.at(f))) / (cards - 1);
      if (d != 0) r.host_per_card_by_function[f] = d;
    }
    std::cout << "[ calls    ] " << name << ": " << cards << " cards, PKCS#11 calls per card: strict "
              << r.strict_calls_per_card << ", host " << r.host_calls_per_card << "\n";
    return r;
  }

  std::string base_profile_;
};

TEST_F(CliHostModeTest, AcmeBundleIsTheStrictOneWithAQuarterOfTheCallsAndNoKeyOnDisk) {
  base_profile_ = variant("acme-debit-scp03.xml", "acme.xml", {});
  const std::string host = variant("acme-debit-scp03.xml", "acme-host.xml",
                                   {{"key-handling=\"strict\"", "key-handling=\"host\""}});
  const int n = 300;
  const PairResult r = prep_both_ways("acme-debit-scp03", n, host, {"--audit-log", path("audit.jsonl")});
  if (HasFatalFailure()) return;
  // Measured: strict 22.05 calls per card; host 0.154 (per 128-card XOF segment: kdf3 one
  // C_EncryptInit/C_Encrypt, host challenges three, the segment's decryption, read twice, as
  // in strict mode).
  EXPECT_GE(r.strict_calls_per_card, 20.0);
  EXPECT_LE(r.host_calls_per_card, r.strict_calls_per_card / 4);
  EXPECT_LE(r.host_calls_per_card, 0.25);
  // No per-card signing, derivation or object in host mode: none of these grows with the
  // cards (at most a call per batch: well under one per ten cards).
  for (const char* f : {"C_Sign", "C_SignInit", "C_CreateObject", "C_DeriveKey", "C_DestroyObject", "C_WrapKey",
                        "C_UnwrapKey"}) {
    const auto it = r.host_per_card_by_function.find(f);
    EXPECT_LT(it == r.host_per_card_by_function.end() ? 0.0 : it->second, 0.1) << f << " grows with the cards";
  }

  // The report: mode, what is in host memory, how the HSM computed each kind of key.
  const auto& kh = r.host_report["key_handling"];
  std::set<std::string> whats;
  for (const auto& e : kh["host_exposures"]) whats.insert(e["what"].get<std::string>());
  EXPECT_EQ(whats.count("card static keys K-ENC, K-MAC, K-DEK (kdf3)"), 1u) << kh.dump(2);
  EXPECT_EQ(whats.count("SCP03 session keys S-ENC, S-MAC, S-RMAC"), 1u) << kh.dump(2);
  EXPECT_EQ(whats.count("CMAC subkeys K1, K2 of pkcs11:object=kmc-scp03"), 1u) << kh.dump(2);
  EXPECT_EQ(kh["never_on_host"], nlohmann::json::array({"pkcs11:object=kmc-scp03", "pkcs11:object=host-challenge"}));
  ASSERT_EQ(kh["hsm_derivation"].size(), 2u) << kh.dump(2);
  EXPECT_EQ(kh["hsm_derivation"][0]["what"], "card static keys");
  EXPECT_EQ(kh["hsm_derivation"][0]["batched"], true);
  EXPECT_EQ(kh["hsm_derivation"][1]["what"], "host challenges");
  EXPECT_EQ(kh["hsm_derivation"][1]["batched"], true);

  // Every card verifies independently (the clear master recomputes its keys).
  const auto plain = parse_plain(read_file(path("plain.xml")));
  const auto cards = read_bundle(path("host.bundle"));
  ASSERT_EQ(cards.size(), static_cast<std::size_t>(n));
  for (std::size_t c = 0; c < cards.size(); c += 7) verify_card(cards[c], plain.at(cards[c].card_id));

  // The master keys are still sensitive and never extractable: their values cannot be read.
  for (const char* uri : {"pkcs11:object=kmc-scp03", "pkcs11:object=host-challenge", "pkcs11:object=kmc-sp",
                          "pkcs11:object=kmc-scp02", "pkcs11:object=imk-ac", "pkcs11:object=imk-smi",
                          "pkcs11:object=imk-smc"}) {
    SCOPED_TRACE(uri);
    auto info = keys_->find(uri);
    ASSERT_TRUE(info.has_value()) << info.error().message();
    EXPECT_TRUE(info->sensitive);
    EXPECT_FALSE(info->extractable);
    auto s = token_->sessions().lease();
    ASSERT_TRUE(s.has_value());
    std::vector<std::uint8_t> v(64);
    CK_ATTRIBUTE a{CKA_VALUE, v.data(), static_cast<CK_ULONG>(v.size())};
    EXPECT_EQ(s->api()->C_GetAttributeValue(s->handle(), info->handle, &a, 1), static_cast<CK_RV>(CKR_ATTRIBUTE_SENSITIVE));
  }

  // Nothing the host run wrote holds a card's static keys, its session keys or the
  // master's CMAC subkey K1: raw, or as hex in either case.
  std::vector<ByteVec> secrets;
  for (const auto& card : cards) {
    const formats::BundleSession& s = card.sessions[0];
    const RefStaticKeys keys = ref_diversify("kdf3", kmc_, s.kdd, RefMasterType::kAes);
    const RefSessionKeys sk = ref_session_keys(keys, ref_input_of(s));
    for (const ByteVec* k : {&keys.enc, &keys.mac, &keys.dek, &sk.s_enc, &sk.s_mac}) secrets.push_back(*k);
  }
  {
    const ByteVec l = ref_ecb(RefCipher::kAes, true, kmc_, ByteVec(16, 0));
    ByteVec k1(16);
    for (std::size_t i = 0; i < 16; ++i) k1[i] = static_cast<std::uint8_t>((l[i] << 1) | (i + 1 < 16 ? l[i + 1] >> 7 : 0));
    if ((l[0] & 0x80) != 0) k1[15] ^= 0x87;
    secrets.push_back(k1);
  }
  // A control file holding one card's K-MAC in lower-case hex: the scan must find it
  // (a scan that finds nothing anywhere proves nothing).
  {
    std::string hex = hex_upper(secrets[1]);
    for (char& ch : hex) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    write_file(dir() / "leak-control.txt", "x" + hex + "x");
  }
  std::size_t files = 0;
  std::set<std::string> leaking;
  for (const auto& entry : fs::recursive_directory_iterator(dir())) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    // The host runs' outputs: bundle, report, counts, journal and spool; the audit log.
    const std::string parent = entry.path().parent_path().filename().string();
    if (name.rfind("host.bundle", 0) != 0 && name.rfind("host-1.bundle", 0) != 0 && parent.rfind("host", 0) != 0 &&
        name != "audit.jsonl" && name != "leak-control.txt") {
      continue;
    }
    ++files;
    const std::string content = read_file(entry.path());
    std::string lower = content;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (const ByteVec& k : secrets) {
      std::string hex = hex_upper(k);
      const bool raw = content.find(std::string(k.begin(), k.end())) != std::string::npos;
      const bool upper = content.find(hex) != std::string::npos;
      for (char& ch : hex) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (raw || upper || lower.find(hex) != std::string::npos) leaking.insert(name);
    }
  }
  EXPECT_EQ(leaking, std::set<std::string>{"leak-control.txt"}) << "files holding a card key or K1";
  EXPECT_GE(files, 5u) << "the leak check looked at too few files";

  // The audit log's run.start names the mode.
  std::istringstream lines(read_file(path("audit.jsonl")));
  int starts = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto e = nlohmann::json::parse(line);
    if (e["event"] != "run.start") continue;
    ++starts;
    EXPECT_EQ(e["details"]["key_handling"], "host") << line;
  }
  EXPECT_EQ(starts, 1);
}

// A master and host-challenge key without the encrypt usage: the per-key fallback (C_Sign),
// the same bundle, and the report says it was not batched.
// `run` (import + prep streamed) prepares each pipeline batch as one host-mode batch: its
// bundle is the strict run's, card for card and byte for byte (the profile digest aside).
TEST_F(CliHostModeTest, RunInHostModeGivesTheStrictRunsBundle) {
  base_profile_ = variant("acme-debit-scp03.xml", "acme.xml", {});
  const std::string host = variant("acme-debit-scp03.xml", "acme-host.xml",
                                   {{"key-handling=\"strict\"", "key-handling=\"host\""}});
  auto g = pf({"gen-issuer", "--profile", base_profile_, "--cards", "300", "--out", path("issuer.der"), "--kek-id",
               "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--seed", "5", "--registry-csv", path("registry.csv")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ASSERT_EQ(pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")}).exit_code, 0);
  fs::copy_file(path("registry.db"), path("registry-host.db"));
  auto s = pf({"run", "--profile", base_profile_, "--in", path("issuer.der"), "--registry", path("registry.db"),
               "--out-dir", path("strict"), "--name", "cards"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto h = pf({"run", "--profile", host, "--in", path("issuer.der"), "--registry", path("registry-host.db"),
               "--out-dir", path("host"), "--name", "cards"});
  ASSERT_EQ(h.exit_code, 0) << h.err;
  const BundleParts a = split_bundle(path("strict/cards.bundle"));
  const BundleParts b = split_bundle(path("host/cards.bundle"));
  EXPECT_FALSE(a.body.empty());
  EXPECT_TRUE(a.body == b.body) << "the host-mode run's bundle differs from the strict run's";
  EXPECT_EQ(a.header.reservation_id, b.header.reservation_id);
  EXPECT_NE(a.header.profile_sha256, b.header.profile_sha256);
  EXPECT_EQ(read_bundle(path("host/cards.bundle")).size(), 300u);
  const auto report = nlohmann::json::parse(read_file(path("host/cards.report.json")));
  EXPECT_EQ(report["key_handling"]["mode"], "host");
  EXPECT_TRUE(report["key_handling"].contains("hsm_derivation"));
  EXPECT_EQ(nlohmann::json::parse(read_file(path("strict/cards.report.json")))["key_handling"]["mode"], "strict");
}

TEST_F(CliHostModeTest, MastersWithoutEncryptFallBackToOneCallPerKey) {
  base_profile_ = variant("acme-debit-scp03.xml", "acme.xml",
                          {{"pkcs11:object=kmc-scp03", "pkcs11:object=kmc-scp03-sign"},
                           {"pkcs11:object=host-challenge", "pkcs11:object=host-challenge-sign"}});
  const std::string host = variant("acme-debit-scp03.xml", "acme-host.xml",
                                   {{"pkcs11:object=kmc-scp03", "pkcs11:object=kmc-scp03-sign"},
                                    {"pkcs11:object=host-challenge", "pkcs11:object=host-challenge-sign"},
                                    {"key-handling=\"strict\"", "key-handling=\"host\""}});
  const PairResult r = prep_both_ways("acme-debit-scp03 (sign-only masters)", 40, host);
  if (HasFatalFailure()) return;
  // Three kdf3 C_Sign and one host challenge C_Sign per card, each with its C_SignInit.
  EXPECT_NEAR(r.host_calls_per_card, 8.0, 0.5);
  EXPECT_LT(r.host_calls_per_card, r.strict_calls_per_card);
  const auto& d = r.host_report["key_handling"]["hsm_derivation"];
  ASSERT_EQ(d.size(), 2u);
  for (const auto& e : d) {
    EXPECT_EQ(e["batched"], false) << e.dump();
    EXPECT_NE(e["method"].get<std::string>().find("lacks the encrypt usage"), std::string::npos) << e.dump();
  }
  for (const auto& e : r.host_report["key_handling"]["host_exposures"]) {
    EXPECT_EQ(e["what"].get<std::string>().find("CMAC subkeys"), std::string::npos) << "no subkeys without batching";
  }
}

// The EMV CPS card (ICC master keys derived for the host and encrypted under K-DEK there,
// their KCVs, the PIN block unwrapped for the host), the same card under SCP02 (EMV CPS
// diversification, the via="host" DGIs) and the TSM onboarding profile (three channels,
// PUT KEY of the SP's key set): the host bundle is the strict one.
TEST_F(CliHostModeTest, EmvScp02AndTsmProfilesGiveTheStrictBundles) {
  struct Case {
    const char* profile;
    int cards;
    double max_host_calls;  // measured, with margin
  };
  // Measured: emv-payment-scp03 strict 38 / host 3.10 (the PIN block: C_UnwrapKey,
  // C_GetAttributeValue, C_DestroyObject per card); emv-payment-scp02 32 / 3.10; tsm 60 / 3.05.
  for (const Case& c : {Case{"emv-payment-scp03.xml", 40, 3.3}, Case{"emv-payment-scp02.xml", 40, 3.3},
                        Case{"tsm-sp-onboarding.xml", 40, 3.3}}) {
    SCOPED_TRACE(c.profile);
    for (const char* f : {"strict.bundle", "host.bundle", "strict-1.bundle", "host-1.bundle", "cards.xof",
                          "registry.db", "registry-host.db", "registry-1s.db", "registry-1h.db"}) {
      fs::remove(path(f));
      fs::remove_all(path(std::string(f) + ".run"));
    }
    base_profile_ = variant(c.profile, "base.xml", {});
    const std::string host = variant(c.profile, "host.xml", {{"key-handling=\"strict\"", "key-handling=\"host\""}});
    const PairResult r = prep_both_ways(c.profile, c.cards, host);
    if (HasFatalFailure()) return;
    EXPECT_LE(r.host_calls_per_card, c.max_host_calls);
    EXPECT_LE(r.host_calls_per_card, r.strict_calls_per_card / 8);
    for (const auto& e : r.host_report["key_handling"]["hsm_derivation"]) EXPECT_EQ(e["batched"], true) << e.dump();
    std::set<std::string> whats;
    for (const auto& e : r.host_report["key_handling"]["host_exposures"]) whats.insert(e["what"].get<std::string>());
    if (std::string(c.profile) != "tsm-sp-onboarding.xml") {
      EXPECT_EQ(whats.count("DGI 8000: ICC master keys MK-AC, MK-SMI, MK-SMC"), 1u);
    } else {
      EXPECT_EQ(whats.count("key set 'sp' (KVN 31) static keys K-ENC, K-MAC, K-DEK (kdf3), loaded by PUT KEY"), 1u);
    }
    EXPECT_EQ(whats.count("DGI 8010: attribute 'pin_block'"), 1u);
  }
}

// Transient HSM errors on the batched C_Encrypt calls: the batch's HSM part is computed
// again (hsm_retries counts its cards) and the bundle is still the strict one.
TEST_F(CliHostModeTest, TransientErrorsOnABatchAreRetriedWithTheSameBytes) {
  base_profile_ = variant("acme-debit-scp03.xml", "acme.xml", {});
  const std::string host = variant("acme-debit-scp03.xml", "acme-host.xml",
                                   {{"key-handling=\"strict\"", "key-handling=\"host\""}});
  auto g = pf({"gen-issuer", "--profile", base_profile_, "--cards", "300", "--out", path("issuer.der"), "--kek-id",
               "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--seed", "3", "--registry-csv", path("registry.csv")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ASSERT_EQ(pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")}).exit_code, 0);
  fs::copy_file(path("registry.db"), path("registry-host.db"));
  ASSERT_EQ(pf({"import", "--profile", base_profile_, "--in", path("issuer.der"), "--out", path("cards.xof")}).exit_code, 0);
  // Each 128-card batch makes four C_Encrypt calls (kdf3, three host-challenge layers),
  // after those of the run's start (KCVs, the CMAC subkeys): counted on a clean run first.
  fs::copy_file(path("registry.db"), path("registry-clean.db"));
  ASSERT_EQ(counted_prep(host, "registry-clean.db", "clean.bundle").exit_code, 0);
  const int clean = nlohmann::json::parse(read_file(path("clean.bundle.counts.json")))["C_Encrypt"].get<int>();
  const int start = clean - 3 * 4;
  ASSERT_GT(start, 0);
  auto h = counted_prep(host, "registry-host.db", "host.bundle", {},
                        "C_Encrypt:" + std::to_string(start + 2) + ":CKR_DEVICE_ERROR,C_Encrypt:" +
                            std::to_string(start + 8) + ":CKR_SESSION_HANDLE_INVALID");
  ASSERT_EQ(h.exit_code, 0) << h.err;
  const auto counts = nlohmann::json::parse(read_file(path("host.bundle.counts.json")));
  EXPECT_GE(counts["C_Encrypt"].get<int>(), clean + 1) << "the faults were reached, and calls repeated";
  const auto report = nlohmann::json::parse(read_file(path("host.bundle.json")));
  EXPECT_GE(report["hsm_retries"].get<int>(), 2 * 44) << "two batches prepared again";
  auto s = pf({"prep", "--profile", base_profile_, "--xof", path("cards.xof"), "--registry", path("registry.db"),
               "--out", path("strict.bundle")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const BundleParts a = split_bundle(path("strict.bundle"));
  const BundleParts b = split_bundle(path("host.bundle"));
  EXPECT_TRUE(a.body == b.body) << "the retried host-mode bundle differs from the strict one";
  // A persistent error stops the run, naming the batched call.
  fs::copy_file(path("registry.db"), path("registry-stop.db"));
  auto stop = counted_prep(host, "registry-stop.db", "stop.bundle", {},
                           "C_Encrypt:" + std::to_string(start + 1) + "+:CKR_DEVICE_ERROR");
  EXPECT_EQ(stop.exit_code, 6) << stop.err;
  EXPECT_NE(stop.err.find("still failing after 3 attempts"), std::string::npos) << stop.err;
  EXPECT_NE(stop.err.find("C_Encrypt returned CKR_DEVICE_ERROR"), std::string::npos) << stop.err;
  EXPECT_FALSE(fs::exists(path("stop.bundle")));
}

// A host-mode profile needs a diversification scheme: stored static keys never leave the HSM.
TEST_F(CliHostModeTest, HostModeWithStoredStaticKeysIsAProfileError) {
  std::string xml = read_file(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-debit-scp03.xml");
  auto replace = [&](const std::string& from, const std::string& to) {
    const std::size_t at = xml.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    xml.replace(at, from.size(), to);
  };
  replace("key-handling=\"strict\"", "key-handling=\"host\"");
  replace("diversification=\"kdf3\"\n                    master-key=\"pkcs11:object=kmc-scp03\"",
          "diversification=\"none\"\n                    enc-key=\"pkcs11:object=a\" mac-key=\"pkcs11:object=b\" "
          "dek-key=\"pkcs11:object=c\"");
  write_file(dir() / "none.xml", xml);
  auto r = pf({"prep", "--profile", path("none.xml"), "--xof", path("missing.xof"), "--registry", path("r.db"), "--out",
               path("o.bundle")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("none.xml:47: <prep>: key-handling=\"host\" needs a diversification scheme"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace persoflow::test
