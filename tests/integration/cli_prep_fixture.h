// The fixture of the prep and run CLI tests (cli_prep_test.cpp, cli_run_test.cpp): a
// fresh SoftHSM token with the acme-debit-scp03 keys, generated issuer files with their
// registry CSV, and verify_card(), which recomputes every byte of one card's session with
// the tests' own verifier (tests/support/reference_scp.h, OpenSSL only): card challenge,
// cryptograms, every C-MAC, the C-DECRYPTION of every command and the K-DEK-encrypted DGI,
// against static keys recomputed from the clear master value.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/hex.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "hsm/hsm_keys.h"
#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/reference_scp.h"
#include "tests/support/run_process.h"

namespace persoflow::test {

namespace fs = std::filesystem;

inline const std::string kTk1 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
inline const std::string kTk2 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A";
// The product's SCP03 master key (kdf3), from two known components: the verifier needs
// its clear value to recompute every card's static keys independently.
inline const std::string kKmc1 = "404142434445464748494A4B4C4D4E4F";
inline const std::string kPinTk1 = "2B7E151628AED2A6ABF7158809CF4F3C";
inline const std::string kPinTk2 = "000102030405060708090A0B0C0D0E0F";
inline const std::string kKmc2 = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";

struct PlainCard {
  std::string id, se_id, pan, expiry, service_code, name, discretionary;
};

inline std::map<std::string, PlainCard> parse_plain(const std::string& xml) {
  std::map<std::string, PlainCard> cards;
  const std::regex re(
      "<card id=\"([^\"]+)\"><se-id>([^<]+)</se-id><pan>([0-9]+)</pan><expiry>([0-9]+)</expiry>"
      "<service-code>([0-9]+)</service-code><name>([^<]+)</name><discretionary-data>([0-9]+)</discretionary-data>");
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), re); it != std::sregex_iterator(); ++it) {
    cards[(*it)[1]] = {(*it)[1], (*it)[2], (*it)[3], (*it)[4], (*it)[5], (*it)[6], (*it)[7]};
  }
  return cards;
}

inline ByteVec bcd(const std::string& digits, std::size_t n_bytes = 0) {
  std::string d = digits;
  if (n_bytes != 0) d.insert(0, 2 * n_bytes - d.size(), '0');
  if (d.size() % 2 != 0) d.push_back('F');
  return hex_bytes(d);
}

inline ByteVec tlv(const std::string& tag_hex, const ByteVec& value) {
  ByteVec out = hex_bytes(tag_hex);
  if (value.size() > 127) out.push_back(0x81);
  out.push_back(static_cast<std::uint8_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
  return out;
}

// The verifier's input for one bundle session: its channel parameters as the bundle
// records them (the verifier recomputes everything else from the keys).
inline RefSessionInput ref_input_of(const formats::BundleSession& s) {
  RefSessionInput in;
  in.scp = s.scp;
  in.i = s.i;
  in.level = s.level;
  in.kvn = s.kvn;
  in.kdd = s.kdd;
  in.aid = s.sd_aid;
  in.counter = s.counter;
  in.host_challenge = s.host_challenge;
  return in;
}

class CliPrepTest : public HsmTest {
 protected:
  void SetUp() override {
    HsmTest::SetUp();
    for (const char* label : {"dkep-pan", "dkep-track", "dkep-general"}) {
      ASSERT_EQ(pf({"keys", "generate", "--label", label, "--type", "aes256", "--usage", "encrypt,decrypt"}).exit_code, 0);
    }
    ASSERT_EQ(pf({"keys", "generate", "--label", "dkep-secret", "--type", "aes256", "--usage",
                  "encrypt,decrypt,wrap,unwrap"}).exit_code, 0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "xof-integrity", "--type", "aes256", "--usage", "sign,verify"}).exit_code, 0);
    ASSERT_EQ(pf({"keys", "generate", "--label", "host-challenge", "--type", "aes128", "--usage", "sign"}).exit_code, 0);
    import_key("tk-acme-01", "aes256", "wrap,unwrap", kTk1, kTk2);
    import_key("kmc-scp03", "aes128", "sign", kKmc1, kKmc2);
    // The issuer's PIN transport key, known too: the verifier unwraps the issuer's PIN blocks.
    import_key("pin-tk-acme", "aes128", "wrap,unwrap", kPinTk1, kPinTk2);
    kmc_ = xor_bytes(hex_bytes(kKmc1), hex_bytes(kKmc2));
  }

  void import_key(const std::string& label, const std::string& type, const std::string& usage, const std::string& c1,
                  const std::string& c2) {
    write_file(dir() / (label + ".c1"), c1 + "\n");
    write_file(dir() / (label + ".c2"), c2 + "\n");
    auto r = pf({"keys", "import", "--label", label, "--type", type, "--usage", usage, "--component-file",
                 (dir() / (label + ".c1")).string(), "--component-file", (dir() / (label + ".c2")).string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  ProcessResult pf(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    return run_process(args, token_env_->env());
  }
  // Starts `persoflow ARGS` as a child process with the token's environment (plus
  // `extra`), its output discarded: the crash and random-kill tests kill it.
  pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& extra = {}) {
    snapshot_token_files();
    std::vector<std::string> argv = {PERSOFLOW_CLI_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    const pid_t pid = fork();
    if (pid == 0) {
      for (const auto& [k, v] : token_env_->env()) setenv(k.c_str(), v.c_str(), 1);
      for (const auto& [k, v] : extra) setenv(k.c_str(), v.c_str(), 1);
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
      }
      std::vector<char*> c;
      for (auto& a : argv) c.push_back(a.data());
      c.push_back(nullptr);
      execv(c[0], c.data());
      _exit(127);
    }
    return pid;
  }
  // Waits for `pid`; 128 + signal when it was killed.
  //
  // SoftHSM 2.6.1 rewrites its token file (`token.object`: label, PIN blobs, flags) in
  // place at every successful C_Login (Token::loginUser sets the token flags), so a
  // SIGKILL in that instant leaves it empty and the token gone for every later process
  // ("tokens present: none"). Reproduced: 1 in ~120 `keys list` killed 2-30 ms after
  // start. That is the module's durability, not persoflow's (which writes no token
  // object during a run), and the random-kill tests kill at any instant: a token file a
  // kill emptied is put back as it was when the process was spawned, and said so.
  int wait_for(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) restore_emptied_token_files();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void snapshot_token_files() {
    for (const auto& e : fs::recursive_directory_iterator(dir() / "tokens")) {
      if (e.path().filename() == "token.object" && fs::file_size(e.path()) > 0) {
        token_files_[e.path().string()] = read_file(e.path().string());
      }
    }
  }

  void restore_emptied_token_files() {
    for (const auto& [file, bytes] : token_files_) {
      std::error_code ec;
      if (fs::exists(file, ec) && fs::file_size(file, ec) == 0) {
        write_file(file, bytes);
        std::printf("[ token    ] %s: emptied by a SIGKILL during SoftHSM's C_Login rewrite; restored\n", file.c_str());
      }
    }
  }
  std::map<std::string, std::string> token_files_;

  // A prep run report without what differs between two runs of the same work: time,
  // paths, retries, and the worker processes (a resume gives its remaining segments its own).
  nlohmann::json stable_report(const std::string& file) {
    auto j = nlohmann::json::parse(read_file(path(file)));
    for (const char* k : {"seconds", "cards_per_second", "hsm_retries", "workers"}) j.erase(k);
    j["input"].erase("registry");
    j["output"].erase("path");
    j["rejects"].erase("path");
    return j;
  }

  fs::path dir() const { return token_env_->dir().path(); }
  std::string path(const std::string& name) const { return (dir() / name).string(); }
  virtual std::string profile() const { return std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-debit-scp03.xml"; }

  // A hidden worker command (`persoflow import-worker|prep-worker --fd 3`) on one end of a
  // socketpair, driven by the test as its parent would drive it (pipeline/worker_process.h).
  struct WorkerWire {
    pid_t pid = -1;
    int fd = -1;
  };
  WorkerWire start_worker(const char* command) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    const pid_t pid = fork();
    if (pid == 0) {
      for (const auto& [k, v] : token_env_->env()) setenv(k.c_str(), v.c_str(), 1);
      ::close(sv[0]);  // the parent's end: the worker must see it close
      ::dup2(sv[1], 3);
      ::execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, command, "--fd", "3", static_cast<char*>(nullptr));
      _exit(127);
    }
    ::close(sv[1]);
    return WorkerWire{pid, sv[0]};
  }
  // One frame: u32 length (of the type and payload), u8 type, payload.
  static void send_frame(const WorkerWire& w, char type, const std::string& payload) {
    std::string f(4, '\0');
    const std::uint32_t n = static_cast<std::uint32_t>(payload.size() + 1);
    for (int i = 0; i < 4; ++i) f[static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
    f += type;
    f += payload;
    ASSERT_EQ(::write(w.fd, f.data(), f.size()), static_cast<ssize_t>(f.size()));
  }
  // The next frame's type and payload ('?' when the stream ended).
  static std::pair<char, std::string> receive_frame(const WorkerWire& w) {
    unsigned char head[5];
    std::size_t got = 0;
    while (got < 5) {
      const ssize_t r = ::read(w.fd, head + got, 5 - got);
      if (r <= 0) return {'?', ""};
      got += static_cast<std::size_t>(r);
    }
    const std::uint32_t n = (std::uint32_t{head[0]} << 24) | (std::uint32_t{head[1]} << 16) |
                            (std::uint32_t{head[2]} << 8) | head[3];
    std::string payload(n - 1, '\0');
    got = 0;
    while (got < payload.size()) {
      const ssize_t r = ::read(w.fd, payload.data() + got, payload.size() - got);
      if (r <= 0) return {'?', ""};
      got += static_cast<std::size_t>(r);
    }
    return {static_cast<char>(head[4]), payload};
  }
  // Closes the parent's end; the worker's exit status.
  static int stop_worker(const WorkerWire& w) {
    ::close(w.fd);
    int status = 0;
    EXPECT_EQ(::waitpid(w.pid, &status, 0), w.pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  static bool replace_once(std::string& s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    if (at == std::string::npos) return false;
    s.replace(at, from.size(), to);
    return true;
  }

  // The demo profile with 300-card XOF segments (several segments per worker process; its
  // 200-card bundle segments then do not align with them), written to `to`.
  void write_small_segments_profile(const std::string& to) {
    std::string xml = read_file(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/acme-debit-scp03.xml");
    ASSERT_TRUE(replace_once(xml, "<xof segment-cards=\"1024\"/>", "<xof segment-cards=\"300\"/>"))
        << "the demo profile's <xof> changed";
    write_file(to, xml);
  }

  // Issuer records (edited plain text) encrypted under the TK with openssl cms
  // (AuthEnvelopedData, AES-256-GCM) into `out`.
  void encrypt_issuer_text(const std::string& plain_text, const std::string& out) {
    write_file(dir() / "edited.xml", plain_text);
    const std::string tk = hex_upper(xor_bytes(hex_bytes(kTk1), hex_bytes(kTk2)));
    auto r = run_process({PERSOFLOW_OPENSSL_CLI, "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
                          "-secretkey", tk, "-secretkeyid", "A1B2C3D4", "-in", path("edited.xml"), "-out", path(out)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }

  // Issuer file, XOF (unless `import_xof` is false) and registry for `cards` generated
  // cards; returns the plain cards.
  std::map<std::string, PlainCard> setup_cards(int cards, const std::string& drop_se = "", bool import_xof = true) {
    auto g = pf({"gen-issuer", "--profile", profile(), "--cards", std::to_string(cards), "--out", path("issuer.der"),
                 "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--plain", path("plain.xml"), "--seed",
                 "11", "--registry-csv", path("registry.csv")});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    if (import_xof) {
      auto i = pf({"import", "--profile", profile(), "--in", path("issuer.der"), "--out", path("cards.xof")});
      EXPECT_EQ(i.exit_code, 0) << i.err;
    }
    if (!drop_se.empty()) {
      std::istringstream lines(read_file(path("registry.csv")));
      std::string csv;
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind(drop_se + ",", 0) != 0) csv += line + "\n";
      }
      write_file(path("registry.csv"), csv);
    }
    auto r = pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return parse_plain(read_file(path("plain.xml")));
  }

  ProcessResult prep(const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"prep", "--profile", profile(), "--xof", path("cards.xof"), "--registry",
                                     path("registry.db"), "--out", path(out)};
    args.insert(args.end(), extra.begin(), extra.end());
    return pf(args);
  }

  // `name` relative to the test directory, or an absolute path.
  std::vector<formats::BundleCard> read_bundle(const std::string& name) {
    auto info = keys_->find("pkcs11:object=xof-integrity");
    EXPECT_TRUE(info.has_value()) << info.error().message();
    hsm::HsmMacKey integrity(*keys_, *info);
    auto reader = formats::BundleReader::open(name.front() == '/' ? name : path(name), integrity);
    EXPECT_TRUE(reader.has_value()) << reader.error().message();
    std::vector<formats::BundleCard> cards;
    if (!reader) return cards;
    EXPECT_TRUE(reader->verify_all());
    for (std::size_t s = 0; s < reader->segment_count(); ++s) {
      auto seg = reader->read_segment(s);
      EXPECT_TRUE(seg.has_value()) << seg.error().message();
      if (seg) cards.insert(cards.end(), seg->begin(), seg->end());
    }
    return cards;
  }

  // Every byte of one card's session, recomputed independently.
  void verify_card(const formats::BundleCard& card, const PlainCard& plain) {
    SCOPED_TRACE("card " + card.card_id);
    ASSERT_EQ(card.sessions.size(), 1u);
    const formats::BundleSession& s = card.sessions[0];
    EXPECT_EQ(card.se_id, plain.se_id);
    const RefStaticKeys keys = ref_diversify("kdf3", kmc_, s.kdd, RefMasterType::kAes);
    const RefSessionInput in = ref_input_of(s);
    EXPECT_EQ(s.scp, 3);
    EXPECT_EQ(s.i, 0x70);
    EXPECT_EQ(s.level, 0x03);
    EXPECT_EQ(hex_upper(s.expected_response), hex_upper(ref_expected_response(keys, in)));
    ASSERT_GE(s.apdus.size(), 4u);
    EXPECT_EQ(hex_upper(s.apdus[0].command), "00A4040008" + hex_upper(s.sd_aid) + "00");  // clear SELECT ISD
    std::vector<RefApdu> apdus;
    for (std::size_t k = 1; k < s.apdus.size(); ++k) apdus.push_back({s.apdus[k].command});
    const RefVerified v = ref_verify_session(keys, in, s.expected_response, apdus);
    ASSERT_TRUE(v.ok) << v.failure;

    // What the SE executes: INSTALL [for personalization], three STORE DATA blocks (an
    // encrypted DGI travels in a command of its own, P1 b7-b6 = 11), SET STATUS; the DGIs
    // carry the card's own values.
    ASSERT_EQ(v.plain_commands.size(), 5u);
    const std::string install = hex_upper(v.plain_commands[0]);
    EXPECT_EQ(install.rfind("80E62000", 0), 0u) << install;
    EXPECT_NE(install.find("07A0000000041010"), std::string::npos) << install;
    auto data_of = [](const ByteVec& c) { return ByteVec(c.begin() + 5, c.begin() + 5 + c[4]); };
    for (int k = 1; k <= 3; ++k) {
      const ByteVec& sd = v.plain_commands[static_cast<std::size_t>(k)];
      ASSERT_GE(sd.size(), 5u);
      EXPECT_EQ(hex_upper(ByteVec(sd.begin(), sd.begin() + 2)), "80E2");
      EXPECT_EQ(sd[3], k - 1);  // block number
      EXPECT_EQ(sd[2] & 0x80, k == 3 ? 0x80 : 0x00);  // last block
      EXPECT_EQ(sd[2] & 0x60, k == 2 ? 0x60 : 0x00);  // encrypted data
    }
    ByteVec record = tlv("5A", bcd(plain.pan));
    const ByteVec expiry = tlv("5F24", bcd(plain.expiry + "31"));
    record.insert(record.end(), expiry.begin(), expiry.end());
    const ByteVec name = tlv("5F20", ByteVec(plain.name.begin(), plain.name.end()));
    record.insert(record.end(), name.begin(), name.end());
    const ByteVec sc = tlv("5F30", bcd(plain.service_code, 2));
    record.insert(record.end(), sc.begin(), sc.end());
    ByteVec dgi0101 = hex_bytes("0101");
    const ByteVec templ = tlv("70", record);
    dgi0101.push_back(static_cast<std::uint8_t>(templ.size()));
    dgi0101.insert(dgi0101.end(), templ.begin(), templ.end());
    EXPECT_EQ(hex_upper(data_of(v.plain_commands[1])), hex_upper(dgi0101));
    // DGI 8020: the discretionary data, n format on 4 bytes, encrypted under K-DEK.
    const ByteVec d8020 = data_of(v.plain_commands[2]);
    ASSERT_GE(d8020.size(), 3u);
    EXPECT_EQ(hex_upper(ByteVec(d8020.begin(), d8020.begin() + 2)), "8020");
    ASSERT_EQ(d8020[2], d8020.size() - 3);
    const ByteVec ct(d8020.begin() + 3, d8020.end());
    const ByteVec clear = ref_decrypt_sensitive(keys, in, ct);
    const ByteVec want = bcd(plain.discretionary, 4);
    ASSERT_GE(clear.size(), want.size());
    EXPECT_EQ(hex_upper(ByteVec(clear.begin(), clear.begin() + 4)), hex_upper(want));
    EXPECT_EQ(hex_upper(ct).find(hex_upper(want)), std::string::npos);  // not sent in clear
    EXPECT_EQ(hex_upper(data_of(v.plain_commands[3])), "91020A" "A5088801025F2D02656E");
    EXPECT_EQ(hex_upper(v.plain_commands[4]).rfind("80F0400F07A0000000041010", 0), 0u) << hex_upper(v.plain_commands[4]);
  }

  ByteVec kmc_;
};

}  // namespace persoflow::test
