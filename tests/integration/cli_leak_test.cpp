// No leaks (domain invariant 2: no clear sensitive data on disk or in logs), end to end.
//
// The whole demo runs through the real binary on a fresh SoftHSM token with known test
// values: key ceremony (components from files), gen-issuer, import with a reject report,
// registry import, prep with a reject report, run into an out-dir, inspect of the XOFs
// (--card, with and without --profile, text and JSON) and of the bundles (--card, apdu and
// json), registry show / reservations, and an audited inspect --reveal. Then every file
// those commands wrote is searched, byte for byte, for every known sensitive value in its
// clear, hex and BCD forms, and the test expects zero hits.
//
// What is scanned: the whole temporary directory of the test's SoftHSM token. It holds
// the SoftHSM configuration and token directory (key objects), every output (issuer
// files, XOFs, bundles, reject and run reports, registry CSV and SQLite database with any
// journal, the audit log), TMPDIR / SQLITE_TMPDIR of every persoflow process, and the
// standard output and standard error of every command, saved to logs/. File names are
// searched too.
//
// What is not scanned, by design, and lives in a second temporary directory: the inputs
// the test itself writes, which hold clear values by definition (the key component files
// of the ceremony, the edited plain records), and `gen-issuer --plain`'s clear records
// (docs/architecture.md: "`gen-issuer --plain` writes clear test records by design").
// The standard output of `inspect --reveal` is the one product output that shows clear
// values by design (an explicit, audited operator request): it is checked in memory to
// contain them (which proves the searched forms are the values the product carries) and
// never written to disk; its standard error and the audit log are scanned.
//
// Not searched, and why: keys generated inside the HSM (the DKeps, the XOF integrity key,
// the host challenge key) and the issuer file's content-encryption key (random, chosen by
// openssl cms) have values the test cannot know; the run's bundle spool (O_TMPFILE, no
// name) and the unlinked temporary files of atomic publication are gone when the commands
// end (what they held is what was published, and that is scanned). Card ids, SE ids,
// MSIs, KDDs, counters and KCVs are identifiers, clear by design. Values searched, per
// card and per key, are listed in needles_for() and add_card_keys().
//
// A positive control plants known values into scanned files and checks that the scanner
// reports them, so a scan that finds nothing has been shown able to find something.
#include "tests/integration/cli_prep_fixture.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <iostream>
#include <unordered_map>

namespace persoflow::test {
namespace {

// Key components of this test's ceremony: random-looking values of their own (not the
// other CLI tests' sequential or repeated-byte constants, which could match structured
// bytes by chance), each searched in every form below.
const std::string kTkC1 = "89F0BADAD8C728565F68AD5ECB68FF14C6AF9140546989E33330E275FB1194C6";
const std::string kTkC2 = "C429C2629C3B0F471D3315AA5A90D889FC7DDC82EAB5AD36D3AF81083D5AE10E";
const std::string kKmcC1 = "AEC0F25FBEF4BD2164661655FBB1FD89";
const std::string kKmcC2 = "9DE59962D1068294D72F88F8843444CC";
// The issuer's PIN transport key (the profile's field key of pin_block), imported from
// known components rather than generated, so that the test can unwrap each record's
// PIN block and search for the clear PIN block too.
const std::string kPinTkC1 = "ED73518DA8E053393D3582426C6763D8";
const std::string kPinTkC2 = "1201A733114177933E5E62D1306C6DC2";

constexpr int kCards = 24;
// Records edited into rejects (1-based card numbers, as in the card ids).
constexpr int kLuhnCard = 5;        // PAN's last digit changed: `luhn`
constexpr int kPinCard = 7;         // wrapped PIN block damaged: `field-encryption`
constexpr int kBadNameCard = 11;    // a '*' in the name: `invalid`
constexpr int kBadExpiryCard = 13;  // month 13: `invalid` (the reason may quote the month)
constexpr int kNoSeCard = 8;        // its SE left out of the registry: prep's `registry`

// Shorter byte patterns are not searched: below 6 bytes a chance match in the ciphertext,
// compressed data and random hex text a run writes becomes likely enough to make the test
// flaky, and such a short pattern (a 4-digit expiry, a 4-digit PIN, a
// 3-digit service code) means nothing on its own. Short values are searched instead in
// the contexts where a leak of them would show (a TLV or DGI with its tag, an XML or JSON
// member with its name), which are long enough.
constexpr std::size_t kMinPattern = 6;

std::string to_str(const ByteVec& b) { return std::string(b.begin(), b.end()); }
ByteVec to_bytes(const std::string& s) { return ByteVec(s.begin(), s.end()); }
std::string hex_lower(const ByteVec& b) {
  std::string s = hex_upper(b);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string padded(const char* prefix, std::size_t width, int n) {
  std::string v = std::to_string(n);
  v.insert(0, width - v.size(), '0');
  v.insert(0, prefix);
  return v;
}
std::string card_id(int n) { return padded("C", 11, n); }
std::string se_id(int n) { return padded("SE", 10, n); }

// RFC 5649 unwrap with OpenSSL (not persoflow's code): the clear PIN block of a record.
ByteVec kwp_unwrap(const ByteVec& kek, const ByteVec& wrapped) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  ByteVec out(wrapped.size() + 16);
  int n = 0, m = 0;
  const bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_wrap_pad(), nullptr, kek.data(), nullptr) == 1 &&
                  EVP_DecryptUpdate(ctx, out.data(), &n, wrapped.data(), static_cast<int>(wrapped.size())) == 1 &&
                  EVP_DecryptFinal_ex(ctx, out.data() + n, &m) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return {};
  out.resize(static_cast<std::size_t>(n + m));
  return out;
}

// One card as the issuer file carries it (after the test's edits).
struct KnownCard {
  int number = 0;
  std::string id, se, pan, expiry, name, discretionary, pin_wrapped_hex;
  ByteVec pin_clear;
  std::string original_pan, original_name, original_pin_wrapped_hex;  // before an edit
};

std::string element(const std::string& line, const std::string& tag) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const auto a = line.find(open);
  const auto b = line.find(close, a == std::string::npos ? 0 : a);
  if (a == std::string::npos || b == std::string::npos) return {};
  return line.substr(a + open.size(), b - a - open.size());
}
void set_element(std::string& line, const std::string& tag, const std::string& value) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const auto a = line.find(open);
  const auto b = line.find(close, a);
  line.replace(a + open.size(), b - a - open.size(), value);
}

// ---------------------------------------------------------------------------------------
// The scanner: every needle is a byte pattern of at least kMinPattern bytes with what it
// is ("card C00000000003 PAN BCD (tag 5A): raw bytes"; the same bytes reached from two
// values keep both names), indexed by its first 4 bytes so that each file is read once
// whatever the number of needles.

struct Hit {
  std::string file;
  std::size_t offset = 0;
  std::string what;
  std::string context;  // printable rendering of the bytes around the hit
};

class Needles {
 public:
  void add(const std::string& bytes, const std::string& what) {
    if (bytes.size() < kMinPattern) {
      ADD_FAILURE() << "needle shorter than " << kMinPattern << " bytes: " << what;
      return;
    }
    auto [it, fresh] = by_bytes_.emplace(bytes, what);
    if (!fresh && it->second.find(what) == std::string::npos) it->second += " = " + what;
  }
  // Text: its ASCII bytes, and the hex text of those bytes, upper and lower case.
  void add_text(const std::string& text, const std::string& what) {
    add(text, what + ": ASCII");
    add(hex_upper(to_bytes(text)), what + ": hex of ASCII (upper)");
    add(hex_lower(to_bytes(text)), what + ": hex of ASCII (lower)");
  }
  // Binary: raw bytes when long enough, and hex text upper and lower case.
  void add_binary(const ByteVec& b, const std::string& what) {
    if (b.size() >= kMinPattern) add(to_str(b), what + ": raw bytes");
    add(hex_upper(b), what + ": hex (upper)");
    add(hex_lower(b), what + ": hex (lower)");
  }
  std::size_t size() const { return by_bytes_.size(); }
  const std::map<std::string, std::string>& all() const { return by_bytes_; }

 private:
  std::map<std::string, std::string> by_bytes_;
};

std::uint32_t prefix4(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string render_context(const std::string& data, std::size_t at, std::size_t len) {
  const std::size_t from = at >= 16 ? at - 16 : 0;
  const std::size_t to = std::min(data.size(), at + len + 16);
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (i == at) out += "[[";
    if (std::isprint(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
    if (i + 1 == at + len) out += "]]";
  }
  return out;
}

std::vector<Hit> scan(const fs::path& root, const Needles& needles, std::size_t* files_scanned,
                      std::uintmax_t* bytes_scanned) {
  using Entry = std::pair<const std::string, std::string>;  // bytes, what
  std::unordered_map<std::uint32_t, std::vector<const Entry*>> index;
  for (const auto& entry : needles.all()) index[prefix4(entry.first.data())].push_back(&entry);
  std::vector<Hit> hits;
  auto search = [&](const std::string& data, const std::string& label) {
    if (data.size() < 4) return;
    for (std::size_t i = 0; i + 4 <= data.size(); ++i) {
      const auto it = index.find(prefix4(data.data() + i));
      if (it == index.end()) continue;
      for (const auto* n : it->second) {
        if (data.compare(i, n->first.size(), n->first) == 0) {
          hits.push_back({label, i, n->second, render_context(data, i, n->first.size())});
        }
      }
    }
  };
  *files_scanned = 0;
  *bytes_scanned = 0;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), root).string();
    search(rel, "(file name) " + rel);
    if (!it->is_regular_file() || it->is_symlink()) continue;
    const std::string data = read_file(it->path());
    search(data, rel);
    ++*files_scanned;
    *bytes_scanned += data.size();
  }
  return hits;
}

std::string describe(const std::vector<Hit>& hits) {
  std::ostringstream s;
  std::size_t shown = 0;
  for (const auto& h : hits) {
    if (++shown > 60) {
      s << "  ... and " << hits.size() - 60 << " more\n";
      break;
    }
    s << "  " << h.file << " @" << h.offset << ": " << h.what << "\n      " << h.context << "\n";
  }
  return s.str();
}

// ---------------------------------------------------------------------------------------

class CliLeakTest : public CliPrepTest {
 protected:
  // Not CliPrepTest::SetUp: the same keys, but the transport key, the master key and the
  // PIN transport key come from this test's known components (in inputs_, not scanned).
  void SetUp() override {
    HsmTest::SetUp();
    inputs_ = std::make_unique<TempDir>("persoflow-leak-inputs");
    fs::create_directories(root() / "work");
    fs::create_directories(root() / "logs");
    fs::create_directories(root() / "tmp");
    for (const char* label : {"dkep-pan", "dkep-track", "dkep-general"}) {
      ASSERT_EQ(cmd("keys-generate-" + std::string(label),
                    {"keys", "generate", "--label", label, "--type", "aes256", "--usage", "encrypt,decrypt"})
                    .exit_code,
                0);
    }
    ASSERT_EQ(cmd("keys-generate-dkep-secret", {"keys", "generate", "--label", "dkep-secret", "--type", "aes256",
                                                "--usage", "encrypt,decrypt,wrap,unwrap"})
                  .exit_code,
              0);
    ASSERT_EQ(cmd("keys-generate-xof-integrity",
                  {"keys", "generate", "--label", "xof-integrity", "--type", "aes256", "--usage", "sign,verify"})
                  .exit_code,
              0);
    ASSERT_EQ(cmd("keys-generate-host-challenge",
                  {"keys", "generate", "--label", "host-challenge", "--type", "aes128", "--usage", "sign"})
                  .exit_code,
              0);
    ceremony("tk-acme-01", "aes256", "wrap,unwrap", kTkC1, kTkC2);
    ceremony("kmc-scp03", "aes128", "sign", kKmcC1, kKmcC2);
    ceremony("pin-tk-acme", "aes128", "wrap,unwrap", kPinTkC1, kPinTkC2);
    kmc_ = xor_bytes(hex_bytes(kKmcC1), hex_bytes(kKmcC2));
    ASSERT_EQ(cmd("keys-list", {"keys", "list"}).exit_code, 0);
    ASSERT_EQ(cmd("keys-list-json", {"keys", "list", "--json"}).exit_code, 0);
  }

  void TearDown() override {
    CliPrepTest::TearDown();
    inputs_.reset();
  }

  void ceremony(const std::string& label, const std::string& type, const std::string& usage, const std::string& c1,
                const std::string& c2) {
    write_file(*inputs_ / (label + ".c1"), c1 + "\n");
    write_file(*inputs_ / (label + ".c2"), c2 + "\n");
    auto r = cmd("keys-import-" + label, {"keys", "import", "--label", label, "--type", type, "--usage", usage,
                                          "--component-file", (*inputs_ / (label + ".c1")).string(),
                                          "--component-file", (*inputs_ / (label + ".c2")).string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // The scanned directory: the token's own temporary directory (SoftHSM configuration and
  // token objects), with work/, logs/ and tmp/ made by the test.
  fs::path root() const { return token_env_->dir().path(); }
  std::string work(const std::string& name) const { return (root() / "work" / name).string(); }
  std::string input(const std::string& name) const { return (*inputs_ / name).string(); }

  // Runs persoflow with TMPDIR inside the scanned directory and saves its standard
  // output and standard error under logs/ (scanned). `keep_stdout_off_disk`: the one
  // output that is clear by design (inspect --reveal), checked in memory only.
  ProcessResult cmd(const std::string& label, std::vector<std::string> args, bool keep_stdout_off_disk = false) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    auto env = token_env_->env();
    env["TMPDIR"] = (root() / "tmp").string();
    env["SQLITE_TMPDIR"] = (root() / "tmp").string();
    auto r = run_process(args, env);
    const std::string n = std::to_string(++commands_);
    const fs::path base = root() / "logs" / (std::string(n.size() < 2 ? "0" : "") + n + "-" + label);
    if (!keep_stdout_off_disk) write_file(base.string() + ".out", r.out);
    write_file(base.string() + ".err", r.err);
    return r;
  }

  // gen-issuer, then the plain records edited (8-digit discretionary data, four rejects)
  // and encrypted again with the openssl CLI under the transport key (as cli_run_test).
  std::map<std::string, KnownCard> make_issuer_file() {
    auto g = cmd("gen-issuer", {"gen-issuer", "--profile", profile(), "--cards", std::to_string(kCards), "--out",
                                work("generated.der"), "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01",
                                "--plain", input("plain.xml"), "--seed", "29", "--registry-csv",
                                work("registry.csv")});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    const ByteVec pin_tk = xor_bytes(hex_bytes(kPinTkC1), hex_bytes(kPinTkC2));
    std::map<std::string, KnownCard> cards;
    std::istringstream in(read_file(input("plain.xml")));
    std::string edited;
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("<card id=\"");
      if (at == std::string::npos) {
        edited += line + "\n";
        continue;
      }
      KnownCard c;
      c.id = line.substr(at + 10, line.find('"', at + 10) - at - 10);
      c.number = std::stoi(c.id.substr(1));
      c.se = element(line, "se-id");
      c.pan = c.original_pan = element(line, "pan");
      c.expiry = element(line, "expiry");
      c.name = c.original_name = element(line, "name");
      c.pin_wrapped_hex = c.original_pin_wrapped_hex = element(line, "pin-block");
      c.pin_clear = kwp_unwrap(pin_tk, hex_bytes(c.pin_wrapped_hex));
      // The generated discretionary data has 6 digits; 8 (the profile's maximum, exactly
      // the 4 bytes of DGI 8020) make its ASCII form long enough to search in the random
      // hex text the run prints (APDUs, digests: about 2*10^4 hex characters): with 24
      // values, 6 digits would match by chance about once in 35 runs (x 16^-6), 8 digits
      // about once in 10^4 (x 16^-8). Distinct per card, no visible pattern.
      std::uint64_t x = 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(c.number + 101);
      x ^= x >> 29;
      c.discretionary = std::to_string(10000000 + x % 90000000);
      set_element(line, "discretionary-data", c.discretionary);
      if (c.number == kLuhnCard) {
        c.pan.back() = static_cast<char>('0' + (c.pan.back() - '0' + 1) % 10);
        set_element(line, "pan", c.pan);
      }
      if (c.number == kPinCard) {
        std::string& h = c.pin_wrapped_hex;
        h[10] = h[10] == 'A' ? 'B' : 'A';
        set_element(line, "pin-block", h);
      }
      if (c.number == kBadNameCard) {
        std::replace(c.name.begin(), c.name.end(), '/', '*');
        set_element(line, "name", c.name);
      }
      if (c.number == kBadExpiryCard) {
        c.expiry = c.expiry.substr(0, 2) + "13";
        set_element(line, "expiry", c.expiry);
      }
      edited += line + "\n";
      cards[c.id] = c;
    }
    EXPECT_EQ(cards.size(), static_cast<std::size_t>(kCards));
    write_file(*inputs_ / "edited.xml", edited);
    const std::string tk = hex_upper(xor_bytes(hex_bytes(kTkC1), hex_bytes(kTkC2)));
    auto r = run_process({PERSOFLOW_OPENSSL_CLI, "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
                          "-secretkey", tk, "-secretkeyid", "A1B2C3D4", "-in", input("edited.xml"), "-out",
                          work("issuer.der")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // SE of card kNoSeCard out of the registry: prep rejects it.
    std::istringstream csv_in(read_file(work("registry.csv")));
    std::string csv;
    for (std::string line; std::getline(csv_in, line);) {
      if (line.rfind(se_id(kNoSeCard) + ",", 0) != 0) csv += line + "\n";
    }
    write_file(work("registry.csv"), csv);
    return cards;
  }

  // Every form of every known value. Card ids and SE ids are not sensitive (they are in
  // the clear by design: the XOF index, the bundle, the registry, reject reports) and are
  // not searched; nor is the service code (reveal="clear", and 3 digits).
  Needles needles_for(const std::map<std::string, KnownCard>& cards) {
    Needles n;
    for (const auto& [id, c] : cards) {
      const std::string w = "card " + id + " ";
      for (const std::string* pan : {&c.pan, &c.original_pan}) {
        if (pan == &c.original_pan && c.original_pan == c.pan) continue;
        const std::string what = w + (pan == &c.pan ? "PAN" : "original PAN");
        // ASCII digits; for an even number of digits this is also the hex text of the BCD
        // bytes (upper = lower case).
        n.add_text(*pan, what);
        n.add_binary(bcd(*pan), what + " BCD (tag 5A)");
        std::string grouped;
        for (std::size_t i = 0; i < pan->size(); ++i) {
          if (i > 0 && i % 4 == 0) grouped.push_back(' ');
          grouped.push_back((*pan)[i]);
        }
        n.add(grouped, what + ": digits grouped by 4");
        // The masked form (first 6, last 4: "476173******1234") is not a full PAN and is
        // shown by inspect --profile and by `luhn` rejects by design; it is not searched.
      }
      for (const std::string* name : {&c.name, &c.original_name}) {
        if (name == &c.original_name && c.original_name == c.name) continue;
        const std::string what = w + (name == &c.name ? "cardholder name" : "original cardholder name");
        n.add_text(*name, what);  // every generated name has 7+ characters ("ROSSI/MIA")
        std::string escaped = *name;
        if (const auto s = escaped.find('/'); s != std::string::npos) escaped.replace(s, 1, "\\/");
        if (escaped != *name) n.add(escaped, what + ": JSON-escaped '/'");
      }
      // Discretionary data, 8 digits: ASCII (= hex text of its n-format BCD, 4 bytes);
      // the 4 raw BCD bytes alone are too short (kMinPattern), so the DGI 8020 that
      // carries them (id, length, value: 7 bytes) is searched raw and as hex.
      n.add_text(c.discretionary, w + "discretionary data");
      ByteVec dgi = hex_bytes("802004");
      const ByteVec dd = bcd(c.discretionary, 4);
      dgi.insert(dgi.end(), dd.begin(), dd.end());
      n.add_binary(dgi, w + "discretionary data as clear DGI 8020 (n4 BCD)");
      // Expiry YYMM: 4 ASCII digits or 2-3 BCD bytes are too short alone (kMinPattern):
      // searched as the clear TLV 5F24 (YYMMDD, the profile's suffix 31) and as the
      // record, JSON and inspect text members that would carry it.
      n.add_binary(tlv("5F24", bcd(c.expiry + "31")), w + "expiry as clear TLV 5F24");
      n.add("<expiry>" + c.expiry + "</expiry>", w + "expiry: XML element");
      n.add("\"expiry\":\"" + c.expiry + "\"", w + "expiry: JSON member");
      n.add("\"expiry\": \"" + c.expiry + "\"", w + "expiry: JSON member (indented)");
      n.add("expiry = " + c.expiry, w + "expiry: inspect text line");
      // PIN block, as the issuer file gives it (hex text of the blob wrapped under the PIN
      // transport key, and that blob's 16 raw bytes); and the clear ISO 9564 format 2
      // block inside (8 bytes: 2, length, PIN digits, F padding) raw and as hex. The PIN
      // digits alone (4) are too short (kMinPattern); the clear block contains them.
      for (const std::string* pin : {&c.pin_wrapped_hex, &c.original_pin_wrapped_hex}) {
        if (pin == &c.original_pin_wrapped_hex && c.original_pin_wrapped_hex == c.pin_wrapped_hex) continue;
        const std::string what = w + (pin == &c.pin_wrapped_hex ? "PIN block" : "original PIN block");
        n.add(*pin, what + ": hex as given (upper)");
        n.add_binary(hex_bytes(*pin), what + " (wrapped)");
      }
      n.add_binary(c.pin_clear, w + "clear PIN block");
    }
    auto key = [&n](const std::string& what, const ByteVec& k) { n.add_binary(k, what); };
    key("TK component 1", hex_bytes(kTkC1));
    key("TK component 2", hex_bytes(kTkC2));
    key("TK (combined)", xor_bytes(hex_bytes(kTkC1), hex_bytes(kTkC2)));
    key("KMC component 1", hex_bytes(kKmcC1));
    key("KMC component 2", hex_bytes(kKmcC2));
    key("KMC (combined)", xor_bytes(hex_bytes(kKmcC1), hex_bytes(kKmcC2)));
    key("PIN TK component 1", hex_bytes(kPinTkC1));
    key("PIN TK component 2", hex_bytes(kPinTkC2));
    key("PIN TK (combined)", xor_bytes(hex_bytes(kPinTkC1), hex_bytes(kPinTkC2)));
    return n;
  }

  // The card static keys (kdf3 from the KMC) and the SCP03 session keys of every session
  // in a bundle: host exposures by design (docs/cli.md, key_handling), never on disk.
  void add_card_keys(Needles& n, const std::vector<formats::BundleCard>& bundle, const std::string& which) {
    for (const auto& card : bundle) {
      for (const auto& s : card.sessions) {
        const RefStaticKeys keys = ref_diversify("kdf3", kmc_, s.kdd, RefMasterType::kAes);
        RefSessionInput in;
        in.scp = 3;
        in.i = s.i;
        in.level = s.level;
        in.kvn = s.kvn;
        in.kdd = s.kdd;
        in.aid = s.sd_aid;
        in.counter = s.counter;
        in.host_challenge = s.host_challenge;
        const RefSessionKeys sk = ref_session_keys(keys, in);
        const std::string w = "card " + card.card_id + " (" + which + ") ";
        n.add_binary(keys.enc, w + "static K-ENC");
        n.add_binary(keys.mac, w + "static K-MAC");
        n.add_binary(keys.dek, w + "static K-DEK");
        n.add_binary(sk.s_enc, w + "session S-ENC");
        n.add_binary(sk.s_mac, w + "session S-MAC");
        n.add_binary(sk.s_rmac, w + "session S-RMAC");
      }
    }
  }

  std::unique_ptr<TempDir> inputs_;
  int commands_ = 0;
};

TEST_F(CliLeakTest, NoKnownValueInAnyFileTheDemoWrites) {
  const auto cards = make_issuer_file();
  ASSERT_EQ(cards.size(), static_cast<std::size_t>(kCards));
  for (const auto& [id, c] : cards) {
    // The PIN blocks unwrapped under the known PIN transport key: the searched clear
    // values are the real ones.
    ASSERT_EQ(c.pin_clear.size(), 8u) << id;
    EXPECT_EQ(hex_upper(c.pin_clear).substr(0, 2), "24") << id;
    EXPECT_EQ(hex_upper(c.pin_clear).substr(6), "FFFFFFFFFF") << id;
  }

  // import, with a reject report: four rejects (luhn, field-encryption, two invalid).
  auto imp = cmd("import", {"import", "--profile", profile(), "--in", work("issuer.der"), "--out", work("cards.xof"),
                            "--rejects", work("import.rejects.jsonl"), "--report", work("import.report.json")});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_NE(imp.out.find("imported 20 cards (24 records, 4 rejected)"), std::string::npos) << imp.out;
  {
    std::set<std::string> categories;
    std::istringstream in(read_file(work("import.rejects.jsonl")));
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      categories.insert(j["card_id"].get<std::string>() + " " + j["category"].get<std::string>());
    }
    EXPECT_EQ(categories, (std::set<std::string>{card_id(kLuhnCard) + " luhn", card_id(kPinCard) + " field-encryption",
                                                 card_id(kBadNameCard) + " invalid",
                                                 card_id(kBadExpiryCard) + " invalid"}));
  }

  auto reg = cmd("registry-import", {"registry", "import", "--db", work("registry.db"), "--csv", work("registry.csv")});
  ASSERT_EQ(reg.exit_code, 0) << reg.err;

  // prep, with a reject report: the card whose SE is not in the registry.
  auto prep = cmd("prep", {"prep", "--profile", profile(), "--xof", work("cards.xof"), "--registry",
                           work("registry.db"), "--out", work("cards.bundle"), "--rejects", work("prep.rejects.jsonl"),
                           "--report", work("prep.report.json"), "--run-id", "leak-prep"});
  ASSERT_EQ(prep.exit_code, 0) << prep.err;
  EXPECT_NE(prep.out.find("prepared 19 of 20 cards (1 rejected)"), std::string::npos) << prep.out;
  EXPECT_NE(read_file(work("prep.rejects.jsonl")).find("registry"), std::string::npos);

  // run: both halves again into an out-dir, all four outputs.
  auto run = cmd("run", {"run", "--profile", profile(), "--in", work("issuer.der"), "--registry", work("registry.db"),
                         "--out-dir", work("run"), "--name", "night", "--run-id", "leak-run"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("19 prepared"), std::string::npos) << run.out;
  for (const char* f : {"night.xof", "night.bundle", "night.rejects.jsonl", "night.report.json"}) {
    EXPECT_TRUE(fs::exists(work("run") + "/" + f)) << f;
  }

  // inspect: the XOFs, and one card (hidden, then as the profile's reveal rules allow).
  const std::string c1 = card_id(1), c2 = card_id(2), c3 = card_id(3);
  for (const auto& [label, xof] : {std::pair<std::string, std::string>{"xof", work("cards.xof")},
                                   {"run-xof", work("run/night.xof")}}) {
    ASSERT_EQ(cmd("inspect-" + label, {"inspect", xof}).exit_code, 0);
    ASSERT_EQ(cmd("inspect-" + label + "-json", {"inspect", xof, "--json"}).exit_code, 0);
    ASSERT_EQ(cmd("inspect-" + label + "-card", {"inspect", xof, "--card", c1}).exit_code, 0);
    auto masked = cmd("inspect-" + label + "-card-profile", {"inspect", xof, "--card", c2, "--profile", profile()});
    ASSERT_EQ(masked.exit_code, 0) << masked.err;
    // The masked PAN (6/4) is shown by design: not a full PAN, not searched.
    const std::string& pan2 = cards.at(c2).pan;
    EXPECT_NE(masked.out.find(pan2.substr(0, 6) + "******" + pan2.substr(12)), std::string::npos) << masked.out;
    ASSERT_EQ(cmd("inspect-" + label + "-card-profile-json",
                  {"inspect", xof, "--card", c3, "--profile", profile(), "--json"})
                  .exit_code,
              0);
  }
  // A rejected card is not in the XOF: the error must not quote its values either.
  EXPECT_EQ(cmd("inspect-xof-rejected-card", {"inspect", work("cards.xof"), "--card", card_id(kLuhnCard)}).exit_code,
            4);

  // inspect: the bundles, and one card's script as APDUs and as JSON.
  for (const auto& [label, bundle] : {std::pair<std::string, std::string>{"bundle", work("cards.bundle")},
                                      {"run-bundle", work("run/night.bundle")}}) {
    ASSERT_EQ(cmd("inspect-" + label, {"inspect", bundle}).exit_code, 0);
    ASSERT_EQ(cmd("inspect-" + label + "-json", {"inspect", bundle, "--json"}).exit_code, 0);
    for (const std::string& id : {c1, c2}) {
      ASSERT_EQ(cmd("inspect-" + label + "-card-apdu", {"inspect", bundle, "--card", id, "--format", "apdu"}).exit_code,
                0);
      ASSERT_EQ(cmd("inspect-" + label + "-card-json", {"inspect", bundle, "--card", id, "--format", "json"}).exit_code,
                0);
    }
  }

  // registry show / reservations.
  ASSERT_EQ(cmd("registry-show", {"registry", "show", "--db", work("registry.db"), "--se", se_id(1)}).exit_code, 0);
  ASSERT_EQ(cmd("registry-show-json", {"registry", "show", "--db", work("registry.db"), "--se", se_id(2), "--json"})
                .exit_code,
            0);
  ASSERT_EQ(cmd("registry-reservations", {"registry", "reservations", "--db", work("registry.db")}).exit_code, 0);
  ASSERT_EQ(cmd("registry-reservations-json", {"registry", "reservations", "--db", work("registry.db"), "--json"})
                .exit_code,
            0);

  // inspect --reveal: audited; its standard output is the one clear output by design and
  // stays in memory. It must show this card's values in the forms searched below.
  const KnownCard& k4 = cards.at(card_id(4));
  auto reveal = cmd("inspect-reveal",
                    {"--audit-log", work("audit.log"), "inspect", work("cards.xof"), "--card", k4.id, "--reveal"},
                    /*keep_stdout_off_disk=*/true);
  ASSERT_EQ(reveal.exit_code, 0) << reveal.err;
  for (const std::string& v : {k4.pan, k4.name, k4.discretionary, k4.expiry}) {
    EXPECT_NE(reveal.out.find(v), std::string::npos) << "inspect --reveal does not show a value of " << k4.id;
  }
  EXPECT_TRUE(fs::exists(work("audit.log")));
  ASSERT_EQ(cmd("audit-verify", {"audit", "verify", work("audit.log")}).exit_code, 0);

  // The bundles carry the searched values (checked by the independent verifier, which
  // decrypts every C-DEC command and the K-DEK DGI), so the forms searched are the
  // product's real encodings: BCD PAN in 5A, 5F24 YYMM31, ASCII name, DGI 8020 n4.
  const auto prep_bundle = read_bundle(work("cards.bundle"));
  const auto run_bundle = read_bundle(work("run/night.bundle"));
  ASSERT_EQ(prep_bundle.size(), 19u);
  ASSERT_EQ(run_bundle.size(), 19u);
  for (const auto* bundle : {&prep_bundle, &run_bundle}) {
    for (const auto& card : *bundle) {
      const KnownCard& k = cards.at(card.card_id);
      verify_card(card, PlainCard{k.id, k.se, k.pan, k.expiry, "201", k.name, k.discretionary});
    }
  }

  Needles needles = needles_for(cards);
  add_card_keys(needles, prep_bundle, "prep");
  add_card_keys(needles, run_bundle, "run");
  EXPECT_GT(needles.size(), 1000u);

  // The product wrote nothing into the inputs directory but the --plain file (and no
  // leftover temporary file of it).
  std::set<std::string> input_files;
  for (const auto& e : fs::directory_iterator(inputs_->path())) input_files.insert(e.path().filename().string());
  EXPECT_EQ(input_files, (std::set<std::string>{"edited.xml", "kmc-scp03.c1", "kmc-scp03.c2", "pin-tk-acme.c1",
                                                "pin-tk-acme.c2", "plain.xml", "tk-acme-01.c1", "tk-acme-01.c2"}));

  std::size_t files = 0;
  std::uintmax_t bytes = 0;
  const auto hits = scan(root(), needles, &files, &bytes);
  // Sanity: the scan covered the token objects, every output and every log.
  EXPECT_GT(files, 60u);
  for (const std::string f : {"softhsm2.conf", "work/cards.xof", "work/cards.bundle", "work/import.rejects.jsonl",
                              "work/import.report.json", "work/prep.rejects.jsonl", "work/prep.report.json",
                              "work/registry.db", "work/audit.log", "work/run/night.xof", "work/run/night.bundle",
                              "work/run/night.rejects.jsonl", "work/run/night.report.json"}) {
    EXPECT_TRUE(fs::is_regular_file(root() / f)) << f;
  }
  std::size_t token_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(root() / "tokens")) token_files += e.is_regular_file() ? 1 : 0;
  EXPECT_GT(token_files, 10u) << "the SoftHSM token objects are scanned";
  std::cout << "[ leak scan ] " << commands_ << " commands, " << needles.size() << " patterns, " << files
            << " files, " << bytes << " bytes scanned, " << hits.size() << " hit(s)\n";
  EXPECT_TRUE(hits.empty()) << hits.size() << " known sensitive value(s) found in " << files << " files (" << bytes
                            << " bytes) under " << root() << ":\n"
                            << describe(hits);

  // Positive control: known values planted into scanned files are found, in the forms
  // and files where they were planted.
  const KnownCard& k9 = cards.at(card_id(9));
  std::string blob(4096, '\0');
  for (std::size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>((i * 131 + 7) & 0xFF);
  const ByteVec pan_bcd = bcd(k9.pan);
  blob.replace(1000, pan_bcd.size(), to_str(pan_bcd));
  write_file(root() / "tokens" / "planted.bin", blob);
  write_file(root() / "logs" / "planted.log", "note: " + hex_lower(to_bytes(k9.name)) + "\n");
  const auto control = scan(root(), needles, &files, &bytes);
  auto found = [&control](const std::string& file, std::size_t offset, const std::string& what) {
    return std::any_of(control.begin(), control.end(), [&](const Hit& h) {
      return h.file == file && h.offset == offset && h.what.find(what) != std::string::npos;
    });
  };
  EXPECT_TRUE(found("tokens/planted.bin", 1000, "card " + k9.id + " PAN BCD (tag 5A): raw bytes")) << describe(control);
  EXPECT_TRUE(found("logs/planted.log", 6, "card " + k9.id + " cardholder name: hex of ASCII (lower)"))
      << describe(control);
  EXPECT_EQ(control.size(), hits.size() + 2) << describe(control);
  fs::remove(root() / "tokens" / "planted.bin");
  fs::remove(root() / "logs" / "planted.log");
}

}  // namespace
}  // namespace persoflow::test
