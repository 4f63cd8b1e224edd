// `persoflow scp wrap` through the real binary: the published SCP03 (gp-reference.md §7.4,
// tests/vectors/scp03_sessions.vec) and SCP02 (§7.5, tests/vectors/scp02_sessions.vec)
// sessions reproduced byte for byte from a plain script on stdin, the --json shape, the
// offline pseudo-random expectation against the engine, errors, and that no key hex is
// ever printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <cctype>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "engine/hex.h"
#include "engine/scp02.h"
#include "engine/scp03.h"
#include "tests/support/run_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vector_file.h"

namespace persoflow::test {
namespace {

struct Line {
  std::string label;
  std::string hex;
};

std::vector<Line> parse_text(const std::string& out) {
  std::vector<Line> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    const auto sep = line.rfind(": ");
    if (sep == std::string::npos) {
      ADD_FAILURE() << "unexpected output line: " << line;
      continue;
    }
    lines.push_back({line.substr(0, sep), line.substr(sep + 2)});
  }
  return lines;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

Bytes hex(const std::string& s) {
  auto b = from_hex(s);
  EXPECT_TRUE(b.has_value()) << s;
  return b ? *b : Bytes{};
}

SecureBytes key(const std::string& s) {
  auto b = secure_from_hex(s);
  EXPECT_TRUE(b.has_value());
  return b ? std::move(b).value() : SecureBytes{};
}

// Every SCP session section: the session record and the command records after it.
struct Session {
  VectorRecord fields;
  std::vector<VectorRecord> commands;
};

std::vector<Session> scp03_sessions() {
  std::vector<Session> sessions;
  for (const VectorRecord& r : load_vectors("scp03_sessions.vec")) {
    if (r.has("KEnc")) {
      sessions.push_back({r, {}});
    } else {
      sessions.back().commands.push_back(r);
    }
  }
  return sessions;
}

std::vector<VectorRecord> scp02_traces() {
  std::vector<VectorRecord> traces;
  for (const VectorRecord& r : load_vectors("scp02_sessions.vec")) {
    if (r.section == "trace") traces.push_back(r);
  }
  return traces;
}

class CliScpWrapTest : public ::testing::Test {
 protected:
  // Writes the plain script to a temporary file and feeds that file on stdin.
  ProcessResult run(std::vector<std::string> args, const std::string& script) {
    write_file(dir_ / "script.apdu", script);
    args.insert(args.begin(), {PERSOFLOW_CLI_PATH, "scp", "wrap"});
    ProcessResult r = run_process(args, {}, read_file(dir_ / "script.apdu"));
    outputs_.push_back(r.out + "\n" + r.err);
    return r;
  }

  void forbid_in_output(const std::string& secret_hex) { secrets_.push_back(secret_hex); }

  void TearDown() override {
    for (const std::string& secret : secrets_) {
      for (const std::string& text : outputs_) {
        EXPECT_EQ(text.find(secret), std::string::npos) << "key hex printed";
        EXPECT_EQ(lower(text).find(lower(secret)), std::string::npos) << "key hex printed";
      }
    }
  }

  std::vector<std::string> scp03_args(const VectorRecord& s, bool card_challenge = true) {
    forbid_in_output(s.at("KEnc"));
    forbid_in_output(s.at("KMac"));
    forbid_in_output(s.at("KDek"));
    std::vector<std::string> a = {"--scp", "03", "--i", s.at("I"), "--level", s.at("SecurityLevel"),
                                  "--kvn", s.at("Kvn"), "--requested-kvn", s.at("RequestedKvn"),
                                  "--kdd", s.at("Kdd"), "--aid", s.at("Aid"),
                                  "--host-challenge", s.at("HostChallenge"),
                                  "--sequence-counter", s.at("SequenceCounter"),
                                  "--test-keys", s.at("KEnc") + ":" + s.at("KMac") + ":" + s.at("KDek")};
    if (card_challenge) {
      a.push_back("--card-challenge");
      a.push_back(s.at("CardChallenge"));
    }
    return a;
  }

  TempDir dir_{"persoflow-scpwrap"};
  std::vector<std::string> outputs_;
  std::vector<std::string> secrets_;
};

// A command with no published trace, for the sessions of §7.4 that only authenticate.
constexpr const char* kFillerCommand = "80CA006600";

void expect_scp03_session(const Session& s, const ProcessResult& r) {
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = parse_text(r.out);
  const std::size_t n = std::max<std::size_t>(s.commands.size(), 1);
  ASSERT_EQ(lines.size(), 3 + n) << r.out;
  EXPECT_EQ(lines[0].label, "INITIALIZE UPDATE");
  EXPECT_EQ(lines[0].hex, s.fields.at("InitUpdate"));
  EXPECT_EQ(lines[1].label, "EXPECTED RESPONSE");
  EXPECT_EQ(lines[1].hex, s.fields.at("InitUpdateResponse"));
  EXPECT_EQ(lines[2].label, "EXTERNAL AUTHENTICATE");
  EXPECT_EQ(lines[2].hex, s.fields.at("ExtAuth"));
  for (std::size_t k = 0; k < s.commands.size(); ++k) {
    EXPECT_EQ(lines[3 + k].hex, s.commands[k].at("Wrapped")) << "command " << k + 1;
    EXPECT_EQ(lines[3 + k].label.rfind("COMMAND " + std::to_string(k + 1) + " ", 0), 0u)
        << lines[3 + k].label;
  }
}

std::string scp03_script(const Session& s) {
  std::string script = "# plain commands of " + s.fields.section + "\n\n";
  for (const VectorRecord& c : s.commands) script += c.at("Plain") + "   # counter " + c.at("Counter") + "\n";
  if (s.commands.empty()) script += std::string(kFillerCommand) + "\n";
  return script;
}

TEST_F(CliScpWrapTest, Scp03KaohSessionsWithTracedCardChallenge) {
  const auto sessions = scp03_sessions();
  ASSERT_EQ(sessions.size(), 5u);
  for (const Session& s : sessions) {
    SCOPED_TRACE(s.fields.section);
    expect_scp03_session(s, run(scp03_args(s.fields), scp03_script(s)));
  }
}

// The traced card challenges are the pseudo-random ones (gp-reference §7.4.1): without
// --card-challenge the command must compute the same session offline.
TEST_F(CliScpWrapTest, Scp03KaohSessionsFromPseudoRandomChallenge) {
  for (const Session& s : scp03_sessions()) {
    SCOPED_TRACE(s.fields.section);
    expect_scp03_session(s, run(scp03_args(s.fields, false), scp03_script(s)));
  }
}

TEST_F(CliScpWrapTest, Scp02KaohAndPySimSessions) {
  const auto traces = scp02_traces();
  ASSERT_EQ(traces.size(), 3u);
  for (const VectorRecord& t : traces) {
    SCOPED_TRACE(t.at("Name"));
    const std::string response = t.at("InitUpdateResponse");
    // KDD (10) || KVN || 02 || seq (2) || card challenge (6) || card cryptogram (8)
    const std::string kdd = response.substr(0, 20);
    const std::string kvn = response.substr(20, 2);
    const std::string seq = response.substr(24, 4);
    const std::string card_challenge = response.substr(28, 12);
    Bytes hc = hex(t.at("HostChallenge"));

    // The plain commands; the two LOAD commands of install_mac_enc are only published
    // encrypted (PlainPrefix<n>): recover them with the engine, check the prefix.
    StaticKeySet keys{key(t.at("KEnc")), key(t.at("KMac")), key(t.at("KDek"))};
    auto parsed = Scp02InitUpdateResponse::parse(hex(response));
    ASSERT_TRUE(parsed.has_value());
    Scp02Params params;
    params.i = static_cast<std::uint8_t>(hex(t.at("I"))[0]);
    params.security_level = static_cast<std::uint8_t>(hex(t.at("SecurityLevel"))[0]);
    auto reference = Scp02Session::open(keys, params, hc, *parsed);
    ASSERT_TRUE(reference.has_value()) << reference.error().message();

    std::string script = "# " + t.at("Name") + "\n";
    std::vector<std::string> wrapped;
    for (int n = 1; t.has("Wrapped" + std::to_string(n)); ++n) {
      const std::string w = t.at("Wrapped" + std::to_string(n));
      wrapped.push_back(w);
      if (t.has("Command" + std::to_string(n))) {
        script += t.at("Command" + std::to_string(n)) + "\n";
        continue;
      }
      auto wrapped_apdu = CommandApdu::parse(hex(w));
      ASSERT_TRUE(wrapped_apdu.has_value());
      auto plain_data = reference->decrypt_command_data(*wrapped_apdu);
      ASSERT_TRUE(plain_data.has_value()) << plain_data.error().message();
      const Bytes data(plain_data->reveal().begin(), plain_data->reveal().end());
      const std::string prefix = t.at("PlainPrefix" + std::to_string(n));
      ASSERT_EQ(to_hex(data).substr(0, prefix.size()), prefix);
      auto plain = CommandApdu::create(static_cast<std::uint8_t>(wrapped_apdu->cla() & ~0x04),
                                       wrapped_apdu->ins(), wrapped_apdu->p1(), wrapped_apdu->p2(),
                                       data, wrapped_apdu->le());
      ASSERT_TRUE(plain.has_value());
      script += "  " + plain->to_hex() + "  # LOAD, recovered from the trace\n";
    }

    forbid_in_output(t.at("KEnc"));
    forbid_in_output(t.at("KMac"));
    forbid_in_output(t.at("KDek"));
    // The AID is not used with --card-challenge (i = 15 has no pseudo-random challenge).
    const ProcessResult r = run(
        {"--scp", "02", "--i", t.at("I"), "--level", t.at("SecurityLevel"), "--kvn", kvn,
         "--requested-kvn", t.at("KeyVersion"), "--kdd", kdd, "--aid", "A000000151000000",
         "--host-challenge", t.at("HostChallenge"), "--sequence-counter", seq, "--card-challenge",
         card_challenge, "--test-keys", t.at("KEnc") + ":" + t.at("KMac") + ":" + t.at("KDek")},
        script);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto lines = parse_text(r.out);
    ASSERT_EQ(lines.size(), 3 + wrapped.size()) << r.out;
    EXPECT_EQ(lines[0].hex, t.at("InitUpdateCommand"));
    EXPECT_EQ(lines[1].hex, response);
    EXPECT_EQ(lines[2].hex, t.at("ExtAuthCommand"));
    for (std::size_t k = 0; k < wrapped.size(); ++k) {
      EXPECT_EQ(lines[3 + k].hex, wrapped[k]) << "command " << k + 1;
    }
  }
}

TEST_F(CliScpWrapTest, JsonOutput) {
  const Session s = scp03_sessions()[3];  // get_status_enc_mac: four commands
  ASSERT_EQ(s.fields.section, "get_status_enc_mac");
  auto args = scp03_args(s.fields);
  args.push_back("--json");
  const ProcessResult r = run(args, scp03_script(s));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j.at("initialize_update").get<std::string>(), s.fields.at("InitUpdate"));
  EXPECT_EQ(j.at("expected_response").get<std::string>(), s.fields.at("InitUpdateResponse"));
  EXPECT_EQ(j.at("external_authenticate").get<std::string>(), s.fields.at("ExtAuth"));
  ASSERT_TRUE(j.at("commands").is_array());
  ASSERT_EQ(j.at("commands").size(), s.commands.size());
  for (std::size_t k = 0; k < s.commands.size(); ++k) {
    EXPECT_EQ(j.at("commands")[k].get<std::string>(), s.commands[k].at("Wrapped"));
  }
}

// i = 70 with no --card-challenge: the expected response is the engine's offline one.
TEST_F(CliScpWrapTest, Scp03PseudoRandomMatchesEngineExpectation) {
  const VectorRecord f = scp03_sessions()[0].fields;
  const std::string hc = "0102030405060708";
  auto args = scp03_args(f, false);
  for (std::size_t k = 0; k + 1 < args.size(); ++k) {
    if (args[k] == "--sequence-counter") args[k + 1] = "000001";
    if (args[k] == "--host-challenge") args[k + 1] = hc;
    if (args[k] == "--kdd") args[k + 1] = "00112233445566778899";
  }
  const ProcessResult r = run(args, "80F24002024F0000\n80CA006600\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = parse_text(r.out);
  ASSERT_EQ(lines.size(), 5u);
  auto expected = scp03_expected_init_update_response(
      key(f.at("KEnc")), key(f.at("KMac")), hex("00112233445566778899"), 0x30, 0x70, 1,
      hex(f.at("Aid")), hex(hc));
  ASSERT_TRUE(expected.has_value()) << expected.error().message();
  EXPECT_EQ(lines[1].hex, to_hex(expected->to_bytes()));
  EXPECT_EQ(lines[0].hex, "8050000008" + hc + "00");
}

// S16 (i = 71, --s16): 16-byte challenges; the expected response is the engine's, and the
// EXTERNAL AUTHENTICATE carries a 16-byte cryptogram and a 16-byte C-MAC.
TEST_F(CliScpWrapTest, Scp03S16PseudoRandom) {
  const VectorRecord f = scp03_sessions()[0].fields;
  const std::string hc = "000102030405060708090A0B0C0D0E0F";
  auto args = scp03_args(f, false);
  for (std::size_t k = 0; k + 1 < args.size(); ++k) {
    if (args[k] == "--i") args[k + 1] = "71";
    if (args[k] == "--host-challenge") args[k + 1] = hc;
  }
  ProcessResult r = run(args, "80F24002024F0000\n");
  EXPECT_EQ(r.exit_code, 2) << "i = 71 without --s16";
  EXPECT_NE(r.err.find("--s16"), std::string::npos) << r.err;
  args.push_back("--s16");
  r = run(args, "80F24002024F0000\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = parse_text(r.out);
  ASSERT_EQ(lines.size(), 4u);
  auto expected = scp03_expected_init_update_response(key(f.at("KEnc")), key(f.at("KMac")), hex(f.at("Kdd")),
                                                      0x30, 0x71, 0x15, hex(f.at("Aid")), hex(hc));
  ASSERT_TRUE(expected.has_value()) << expected.error().message();
  EXPECT_EQ(lines[1].hex, to_hex(expected->to_bytes()));
  EXPECT_EQ(lines[2].hex.size(), 2 * (5 + 16 + 16));
  EXPECT_EQ(lines[0].hex, "8050000010" + hc + "00");
}

// SCP02 i = 55 without --card-challenge: the engine's offline expectation too.
TEST_F(CliScpWrapTest, Scp02PseudoRandomMatchesEngineExpectation) {
  const std::string k = "404142434445464748494A4B4C4D4E4F";
  forbid_in_output(k);
  const ProcessResult r = run({"--scp", "02", "--i", "55", "--level", "03", "--kvn", "01", "--kdd",
                               "000074746E6E6E626262", "--aid", "A000000151000000", "--host-challenge",
                               "1122334455667788", "--sequence-counter", "000A", "--test-keys",
                               k + ":" + k + ":" + k},
                              "80F22002024F0000\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = parse_text(r.out);
  ASSERT_EQ(lines.size(), 4u);
  StaticKeySet keys{key(k), key(k), key(k)};
  auto expected = scp02_expected_init_update_response(keys, hex("000074746E6E6E626262"), 0x01, 0x000A,
                                                      hex("1122334455667788"), hex("A000000151000000"));
  ASSERT_TRUE(expected.has_value()) << expected.error().message();
  EXPECT_EQ(lines[1].hex, to_hex(expected->to_bytes()));
}

TEST_F(CliScpWrapTest, ScriptErrorsNameTheLine) {
  const VectorRecord f = scp03_sessions()[0].fields;
  ProcessResult r = run(scp03_args(f), "# comment\n80CA006600\n80CA00ZZ\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("script line 3: invalid hex"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  r = run(scp03_args(f), "80CA006600\n\n  80E400800A4F08  # Lc says 10 bytes\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("script line 3: malformed APDU"), std::string::npos) << r.err;

  r = run(scp03_args(f), "80CA0066\n800102\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("script line 2: malformed APDU"), std::string::npos) << r.err;

  r = run(scp03_args(f), "# nothing but comments\n\n   \n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("script: no command APDU"), std::string::npos) << r.err;

  r = run(scp03_args(f), "");
  EXPECT_EQ(r.exit_code, 3);

  // A command with secure messaging already set cannot be wrapped.
  r = run(scp03_args(f), "80CA006600\n84CA006600\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("script line 2: cannot wrap"), std::string::npos) << r.err;
}

TEST_F(CliScpWrapTest, OptionErrors) {
  const VectorRecord f = scp03_sessions()[0].fields;
  const std::string script = "80CA006600\n";
  auto with = [&](const std::string& option, const std::string& value) {
    auto a = scp03_args(f);
    for (std::size_t k = 0; k + 1 < a.size(); ++k) {
      if (a[k] == option) a[k + 1] = value;
    }
    return a;
  };
  auto without = [&](const std::string& option) {
    auto a = scp03_args(f);
    for (std::size_t k = 0; k + 1 < a.size(); ++k) {
      if (a[k] == option) {
        a.erase(a.begin() + static_cast<std::ptrdiff_t>(k), a.begin() + static_cast<std::ptrdiff_t>(k) + 2);
        break;
      }
    }
    return a;
  };

  ProcessResult r = run(without("--kdd"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--kdd"), std::string::npos) << r.err;

  r = run(with("--kdd", "0000"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--kdd: expected 10 bytes"), std::string::npos) << r.err;

  r = run(with("--host-challenge", "B2BDE1A2DC66"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host-challenge"), std::string::npos) << r.err;

  r = run(with("--card-challenge", "C40932"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--card-challenge"), std::string::npos) << r.err;

  r = run(with("--sequence-counter", "0015"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--sequence-counter"), std::string::npos) << r.err;

  r = run(with("--i", "7"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--i"), std::string::npos) << r.err;

  r = run(with("--level", "02"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--level"), std::string::npos) << r.err;

  r = run(with("--scp", "01"), script);
  EXPECT_EQ(r.exit_code, 2);

  // Wrong key length, named; the keys themselves are never quoted.
  r = run(with("--test-keys", f.at("KEnc").substr(2) + ":" + f.at("KMac") + ":" + f.at("KDek")), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--test-keys ENC"), std::string::npos) << r.err;
  r = run(with("--test-keys", f.at("KEnc") + ":" + f.at("KMac") + ":" + f.at("KDek") + "00"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--test-keys DEK"), std::string::npos) << r.err;
  r = run(with("--test-keys", f.at("KEnc") + ":" + f.at("KMac") + "ZZ:" + f.at("KDek")), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--test-keys MAC"), std::string::npos) << r.err;
  r = run(with("--test-keys", f.at("KEnc") + ":" + f.at("KMac")), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--test-keys"), std::string::npos) << r.err;

  // No challenge to compute for i = 00: --card-challenge is required.
  {
    auto a = without("--card-challenge");
    for (std::size_t k = 0; k + 1 < a.size(); ++k) {
      if (a[k] == "--i") a[k + 1] = "00";
    }
    r = run(a, script);
  }
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--card-challenge is required"), std::string::npos) << r.err;

  // No keys at all.
  r = run(without("--test-keys"), script);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--test-keys"), std::string::npos) << r.err;
}

// HSM keys go three together and need an HSM; the HSM path itself is covered against a
// SoftHSM token in hsm_card_keys_test (same output as --test-keys).
TEST_F(CliScpWrapTest, HsmKeysNeedAllThreeAndAToken) {
  const VectorRecord f = scp03_sessions()[0].fields;
  auto a = scp03_args(f);
  for (std::size_t k = 0; k + 1 < a.size(); ++k) {
    if (a[k] == "--test-keys") {
      a.erase(a.begin() + static_cast<std::ptrdiff_t>(k), a.begin() + static_cast<std::ptrdiff_t>(k) + 2);
      break;
    }
  }
  auto partial = a;
  partial.insert(partial.end(), {"--key-enc", "pkcs11:object=k-enc", "--key-dek", "pkcs11:object=k-dek"});
  ProcessResult r = run(partial, "80CA006600\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("go together"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  a.insert(a.end(), {"--key-enc", "pkcs11:object=k-enc", "--key-mac", "pkcs11:object=k-mac",
                     "--key-dek", "pkcs11:object=k-dek", "--token", ""});
  r = run(a, "80CA006600\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.out.empty());

  // Clear keys and HSM keys together: a usage error.
  auto both = scp03_args(f);
  both.insert(both.end(), {"--key-enc", "pkcs11:object=k-enc"});
  r = run(both, "80CA006600\n");
  EXPECT_EQ(r.exit_code, 2);
}

// ---- Golden transcripts (tests/vectors/scp_wrap_golden) ----------------------------------

std::string read_golden(const std::string& name) {
  std::ifstream in(std::string(PERSOFLOW_TEST_VECTORS_DIR) + "/scp_wrap_golden/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> golden_args(const std::string& name) {
  std::vector<std::string> args;
  std::istringstream in(read_golden(name + ".args"));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) args.push_back(line);
  }
  return args;
}

// The full --json output, byte for byte, for each golden; the published part of the S8
// and SCP02 goldens is also compared with the vector files.
TEST_F(CliScpWrapTest, GoldenTranscriptsByteForByte) {
  std::map<std::string, nlohmann::json> outputs;
  for (const std::string name : {"scp03_s8", "scp03_s16", "scp02"}) {
    SCOPED_TRACE(name);
    const ProcessResult r = run(golden_args(name), read_golden(name + ".script"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, read_golden(name + ".out"));
    outputs[name] = nlohmann::json::parse(r.out);
  }
  const Session s8 = scp03_sessions()[3];
  ASSERT_EQ(s8.fields.section, "get_status_enc_mac");
  const auto& j8 = outputs["scp03_s8"];
  EXPECT_EQ(j8.at("expected_response").get<std::string>(), s8.fields.at("InitUpdateResponse"));
  EXPECT_EQ(j8.at("external_authenticate").get<std::string>(), s8.fields.at("ExtAuth"));
  ASSERT_EQ(j8.at("commands").size(), 4u + 2u + 1u);  // 4 published, the INSTALL in 2 segments, 1 more
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(j8.at("commands")[k].get<std::string>(), s8.commands[k].at("Wrapped"));
  EXPECT_EQ(j8.at("commands")[4].get<std::string>().substr(0, 10), "84E68C00FF");
  EXPECT_EQ(j8.at("commands")[5].get<std::string>().substr(0, 8), "84E60C00");

  const auto traces = scp02_traces();
  const VectorRecord& pysim = traces.at(2);
  ASSERT_EQ(pysim.at("Name"), "pySim SCP02_Test");
  const auto& j2 = outputs["scp02"];
  EXPECT_EQ(j2.at("initialize_update").get<std::string>(), pysim.at("InitUpdateCommand"));
  EXPECT_EQ(j2.at("expected_response").get<std::string>(), pysim.at("InitUpdateResponse"));
  EXPECT_EQ(j2.at("external_authenticate").get<std::string>(), pysim.at("ExtAuthCommand"));
  ASSERT_EQ(j2.at("commands").size(), 4u + 2u + 1u);
  for (int k = 1; k <= 4; ++k) {
    EXPECT_EQ(j2.at("commands")[static_cast<std::size_t>(k - 1)].get<std::string>(), pysim.at("Wrapped" + std::to_string(k)));
  }
}

// OpenSSL only (EVP_MAC CMAC, EVP AES), no persoflow code: the S16 golden's handshake and
// first command recomputed from the static keys.
Bytes ossl_cmac(const Bytes& k, const Bytes& data) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char cipher[] = "AES-128-CBC";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0), OSSL_PARAM_construct_end()};
  Bytes out(16);
  std::size_t len = 0;
  const bool ok = EVP_MAC_init(ctx, k.data(), k.size(), params) == 1 &&
                  EVP_MAC_update(ctx, data.data(), data.size()) == 1 && EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  EXPECT_TRUE(ok && len == 16);
  return out;
}

Bytes ossl_aes_cbc(const Bytes& k, const Bytes& iv, const Bytes& data) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(data.size() + 16);
  int len = 0, fin = 0;
  const bool ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), nullptr, k.data(), iv.data()) == 1 &&
                  EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
                  EVP_EncryptUpdate(ctx, out.data(), &len, data.data(), static_cast<int>(data.size())) == 1 &&
                  EVP_EncryptFinal_ex(ctx, out.data() + len, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_TRUE(ok);
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// SP 800-108 block 1 for L = 128: 00 x 11 || constant || 00 || 0080 || 01 || context.
Bytes kdf128(const Bytes& k, std::uint8_t constant, const Bytes& context) {
  Bytes input(11, 0x00);
  input.insert(input.end(), {constant, 0x00, 0x00, 0x80, 0x01});
  input.insert(input.end(), context.begin(), context.end());
  return ossl_cmac(k, input);
}

TEST_F(CliScpWrapTest, GoldenS16RecomputedWithOpenSsl) {
  const auto args = golden_args("scp03_s16");
  auto arg = [&](const std::string& option) {
    const auto it = std::find(args.begin(), args.end(), option);
    EXPECT_NE(it, args.end()) << option;
    return it != args.end() ? *(it + 1) : std::string();
  };
  const std::string keys = arg("--test-keys");
  const Bytes k_enc = hex(keys.substr(0, 32)), k_mac = hex(keys.substr(33, 32));
  const Bytes hc = hex(arg("--host-challenge")), seq = hex(arg("--sequence-counter"));
  const Bytes aid = hex(arg("--aid")), kdd = hex(arg("--kdd"));
  ASSERT_EQ(arg("--i"), "71");
  ASSERT_EQ(arg("--level"), "03");

  const Bytes cc = kdf128(k_enc, 0x02, cat({seq, aid}));
  const Bytes s_enc = kdf128(k_enc, 0x04, cat({hc, cc}));
  const Bytes s_mac = kdf128(k_mac, 0x06, cat({hc, cc}));
  const Bytes card_cryptogram = kdf128(s_mac, 0x00, cat({hc, cc}));
  const Bytes host_cryptogram = kdf128(s_mac, 0x01, cat({hc, cc}));
  const Bytes response = cat({kdd, hex("300371"), cc, card_cryptogram, seq});
  const Bytes ext_header = hex("8482030020");
  const Bytes ext_mac = ossl_cmac(s_mac, cat({Bytes(16, 0x00), ext_header, host_cryptogram}));
  // First command: 80 F2 40 02 02 4F00 00, counter 1, S16 C-MAC of 16 bytes.
  const Bytes icv = ossl_aes_cbc(s_enc, Bytes(16, 0x00), cat({Bytes(15, 0x00), Bytes{0x01}}));
  const Bytes cipher = ossl_aes_cbc(s_enc, icv, hex("4F008000000000000000000000000000"));  // pad80
  const Bytes header = hex("84F2400220");
  const Bytes first_mac = ossl_cmac(s_mac, cat({ext_mac, header, cipher}));

  const auto j = nlohmann::json::parse(read_golden("scp03_s16.out"));
  EXPECT_EQ(j.at("expected_response").get<std::string>(), to_hex(response));
  EXPECT_EQ(j.at("external_authenticate").get<std::string>(), to_hex(cat({ext_header, host_cryptogram, ext_mac})));
  EXPECT_EQ(j.at("commands")[0].get<std::string>(), to_hex(cat({header, cipher, first_mac, Bytes{0x00}})));
}

TEST_F(CliScpWrapTest, HelpListsEveryOption) {
  const ProcessResult r = run({"--help"}, "");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* option : {"--scp", "--i", "--level", "--kvn", "--requested-kvn", "--kdd", "--aid",
                             "--host-challenge", "--sequence-counter", "--card-challenge", "--s16",
                             "--test-keys", "--key-enc", "--key-mac", "--key-dek", "--json"}) {
    EXPECT_NE(r.out.find(option), std::string::npos) << option;
  }
}

}  // namespace
}  // namespace persoflow::test
