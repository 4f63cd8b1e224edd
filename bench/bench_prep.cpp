// Microbenchmarks of prep, through the real code paths of engine/ and formats/:
//   - wrapping one command in an offline SCP03 / SCP02 session (engine/offline_session.h),
//     by security level and, for SCP03, S8 and S16 (BM_Scp03_WrapApdu itself, level 33
//     through Scp03Session, is in bench_engine.cpp);
//   - opening one card's offline session, and one card's script built from a <prep>
//     (engine/card_script.h), alone and with the bundle entry assembled as prep does;
//   - a bundle segment of 256 cards encoded (zstd 1, 3, 9) and appended to a bundle file;
//   - zstd alone over the same uncompressed segment body;
//   - an XOF segment of the profile's 1024 cards sealed and opened with AES-GCM in a real
//     SoftHSM token (key_ops.h: keys never live in software outside known-answer tests);
//   - key-handling="host": the kdf3 keys of a 1024-card batch computed by SoftHSM batched
//     (one C_Encrypt) and key by key (C_Sign), and the SE registry read per card (get_row).
// Two scripts: "demo", the <prep> of config/profiles/acme-debit-scp03.xml (3 commands,
// under 100 bytes of DGIs), and "cps", an EMV CPS-sized script built here (records,
// certificates, ICC keys and CRT components encrypted, about 1.1 KB of DGIs), for a card
// of realistic size. Card static keys: diversified per card (SCP03 kdf3, SCP02 EMV CPS)
// from the public GlobalPlatform test key 404142...4F, held as ClearCardKeys.
// Names BM_<Area>_<Op>; items are APDUs or cards as each says; bytes as noted.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/profile_parser.h"
#include "engine/card_keys.h"
#include "engine/card_script.h"
#include "engine/gp_commands.h"
#include "engine/key_diversification.h"
#include "engine/offline_session.h"
#include "engine/profile.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"
#include "formats/zstd_codec.h"
#include "hsm/host_key_derivation.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_store.h"

namespace persoflow {
namespace {

// ---- setup helpers (never timed) ----------------------------------------------------

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_prep: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().message());
  return std::move(r).value();
}

Bytes hex(const std::string& text) { return must(from_hex(text), "hex " + text); }

SecureBytes text_bytes(const std::string& s) {
  return SecureBytes(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

// Deterministic test data (splitmix64): the same cards on every run.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  Bytes bytes(std::size_t n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<std::uint8_t>(next());
    return b;
  }
  std::string digits(std::size_t n) {
    std::string d;
    for (std::size_t k = 0; k < n; ++k) d += static_cast<char>('0' + next() % 10);
    return d;
  }

 private:
  std::uint64_t s_;
};

std::string with_luhn(const std::string& body) {
  int sum = 0;
  bool twice = true;  // the digit left of the check digit is doubled
  for (auto it = body.rbegin(); it != body.rend(); ++it, twice = !twice) {
    int d = *it - '0';
    if (twice && (d *= 2) > 9) d -= 9;
    sum += d;
  }
  return body + static_cast<char>('0' + (10 - sum % 10) % 10);
}

std::string profile_path() {
  if (const char* p = std::getenv("PERSOFLOW_BENCH_PROFILE")) return p;
  return (std::filesystem::path(__FILE__).parent_path().parent_path() /
          "config/profiles/acme-debit-scp03.xml")
      .string();
}

const Bytes kIsdAid = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
// The GlobalPlatform test key (public), as the master key of the diversification.
const Bytes kGpTestKey = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                          0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};

// ---- the EMV CPS-sized script ---------------------------------------------------------

ValueSpec constant(const std::string& h) {
  ValueSpec v;
  v.constant = hex(h);
  return v;
}
ValueSpec attribute(const std::string& name, ValueEncoding enc, std::size_t length = 0) {
  ValueSpec v;
  v.attribute = name;
  v.encoding = enc;
  v.length = length;
  return v;
}
DgiSpec tlv_dgi(DgiId id, std::vector<TlvSpec> tlvs) {
  DgiSpec d;
  d.id = id;
  d.template_tag = 0x70;
  d.tlvs = std::move(tlvs);
  return d;
}
DgiSpec value_dgi(DgiId id, ValueSpec v, bool encrypted) {
  DgiSpec d;
  d.id = id;
  d.value = std::move(v);
  d.encrypted = encrypted;
  return d;
}

// A contact debit application of typical size (EMV CPS DGIs): two record DGIs, the issuer
// public key certificate (1408-bit issuer key, per issuer), the ICC public key certificate
// (per card), the ICC's 3 DES keys, PIN and 1024-bit CRT components encrypted for the SE.
// Per-card values come from the attributes the bench's cards carry (icc_*).
PrepSpec cps_prep(const PrepSpec& demo) {
  PrepSpec p = demo;
  p.script.clear();
  const Bytes app_aid = hex("A0000000041010");
  CommandSpec install;
  install.kind = CommandKind::kInstallForPersonalization;
  install.aid = app_aid;
  p.script.push_back(install);

  ValueSpec track2;
  track2.derivation = ValueDerivation::kTrack2;
  track2.track2 = {"pan", "expiry", "service_code", "discretionary_data"};
  ValueSpec expiry = attribute("expiry", ValueEncoding::kBcd);
  expiry.suffix = hex("31");
  // Per issuer, the same on all its cards: the issuer public key certificate and remainder.
  Rng issuer(7);
  const std::string issuer_cert = to_hex(issuer.bytes(176));
  const std::string issuer_remainder = to_hex(issuer.bytes(36));
  CommandSpec store;
  store.kind = CommandKind::kStoreData;
  store.dgis = {
      tlv_dgi(0x0101, {{0x57, track2},
                       {0x5F20, attribute("cardholder_name", ValueEncoding::kAscii)},
                       {0x9F1F, attribute("discretionary_data", ValueEncoding::kAscii)}}),
      tlv_dgi(
          0x0102,
          {{0x5A, attribute("pan", ValueEncoding::kBcd)},
           {0x5F24, expiry},
           {0x5F25, constant("250101")},
           {0x5F28, constant("0840")},
           {0x5F34, constant("01")},
           {0x5F30, attribute("service_code", ValueEncoding::kNumeric, 2)},
           {0x8C, constant("9F02069F03069F1A0295055F2A029A039C019F37049F35019F45029F4C089F3403")},
           {0x8D, constant("910A8A0295059F37049F4C08")},
           {0x8E, constant("000000000000000042031E031F00")},
           {0x9F07, constant("FF00")},
           {0x9F0D, constant("B860BC8800")},
           {0x9F0E, constant("0010000000")},
           {0x9F0F, constant("B868BC9800")},
           {0x9F4A, constant("82")}}),
      tlv_dgi(0x0201, {{0x8F, constant("92")},
                       {0x90, constant(issuer_cert)},
                       {0x92, constant(issuer_remainder)},
                       {0x9F32, constant("03")}}),
      tlv_dgi(0x0202, {{0x9F46, attribute("icc_pk_cert", ValueEncoding::kHex)},
                       {0x9F47, constant("03")},
                       {0x9F49, constant("9F3704")}}),
      value_dgi(0x8000, attribute("icc_keys", ValueEncoding::kHex), true),
      value_dgi(0x9000, attribute("icc_kcvs", ValueEncoding::kHex), false),
      value_dgi(0x8010, attribute("icc_pin", ValueEncoding::kHex), true),
      value_dgi(0x9010, constant("0303"), false),
      value_dgi(0x8201, attribute("icc_crt_1", ValueEncoding::kHex), true),
      value_dgi(0x8202, attribute("icc_crt_2", ValueEncoding::kHex), true),
      value_dgi(0x8203, attribute("icc_crt_3", ValueEncoding::kHex), true),
      value_dgi(0x8204, attribute("icc_crt_4", ValueEncoding::kHex), true),
      value_dgi(0x8205, attribute("icc_crt_5", ValueEncoding::kHex), true),
      value_dgi(0x9102, constant("A5088801025F2D02656E"), false),
      value_dgi(0x9104, constant("820219809410080101001001020018010200"), false),
  };
  p.script.push_back(store);
  CommandSpec status;
  status.kind = CommandKind::kSetStatus;
  status.status_scope = 0x40;
  status.aid = app_aid;
  status.state = 0x0F;
  p.script.push_back(status);
  return p;
}

// The same script over SCP02 (2-key 3DES, EMV CPS diversification). SCP02 sends sensitive
// data unpadded in multiples of 8 bytes: a numeric encrypted value is widened to 8 bytes.
PrepSpec as_scp02(PrepSpec p) {
  p.channel.scp = 2;
  p.channel.key_type = KeyType::kDes2;
  p.channel.diversification = DiversificationScheme::kEmvCps;
  for (CommandSpec& c : p.script) {
    for (DgiSpec& d : c.dgis) {
      if (d.encrypted && d.value && d.value->encoding == ValueEncoding::kNumeric)
        d.value->length = 8;
    }
  }
  return p;
}

// ---- the bench's cards ----------------------------------------------------------------

struct BenchCard {
  std::string card_id, se_id;
  std::map<std::string, SecureBytes, std::less<>> values;  // attribute name -> clear value
  Bytes pin_blob;                                          // the PIN block as the XOF holds it
  Bytes kdd;
  std::uint32_t counter = 0;
  Bytes host_challenge8, host_challenge16;
  std::unique_ptr<ClearCardKeys> aes_keys, des_keys;
  AttributeLookup lookup;
};

std::vector<std::unique_ptr<BenchCard>> make_cards(std::size_t n, std::uint64_t seed) {
  static const char* kSurnames[] = {"SMITH",  "GARCIA",   "MUELLER", "ROSSI",
                                    "DUBOIS", "KOWALSKI", "NGUYEN",  "JOHANSSON",
                                    "SILVA",  "OBRIEN",   "TANAKA",  "PETROV"};
  static const char* kMonths[] = {"01", "03", "06", "09", "12"};
  Rng rng(seed);
  const SecureBytes master(kGpTestKey);
  std::vector<std::unique_ptr<BenchCard>> cards;
  cards.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    auto c = std::make_unique<BenchCard>();
    char id[32];
    std::snprintf(id, sizeof id, "C%09zu", k + 1);
    c->card_id = id;
    std::snprintf(id, sizeof id, "SE%010zu", k + 1);
    c->se_id = id;
    auto set = [&](const std::string& name, const std::string& value) {
      c->values[name] = text_bytes(value);
    };
    set("card_id", c->card_id);
    set("se_id", c->se_id);
    set("pan", with_luhn("476173" + rng.digits(9)));
    set("expiry", std::to_string(28 + rng.next() % 4) + kMonths[rng.next() % 5]);
    set("service_code", "201");
    set("cardholder_name", std::string(kSurnames[rng.next() % 12]) + "/" +
                               static_cast<char>('A' + rng.next() % 26) + " " + rng.digits(4));
    set("discretionary_data", rng.digits(8));
    set("icc_pk_cert", to_hex(rng.bytes(176)));
    set("icc_keys", to_hex(rng.bytes(48)));
    set("icc_kcvs", to_hex(rng.bytes(9)));
    set("icc_pin", to_hex(rng.bytes(8)));
    for (int j = 1; j <= 5; ++j) set("icc_crt_" + std::to_string(j), to_hex(rng.bytes(64)));
    c->pin_blob = rng.bytes(24);  // RFC 5649 wrap of a 16-byte PIN block
    c->kdd = rng.bytes(kKddLength);
    c->counter = static_cast<std::uint32_t>(k + 1);
    c->host_challenge8 = rng.bytes(8);
    c->host_challenge16 = rng.bytes(16);
    c->aes_keys = std::make_unique<ClearCardKeys>(
        must(ClearCardKeys::create(
                 must(diversify_static_keys(DiversificationScheme::kKdf3, master, c->kdd), "kdf3"),
                 KeyFamily::kAes),
             "AES card keys"));
    c->des_keys = std::make_unique<ClearCardKeys>(
        must(ClearCardKeys::create(
                 must(diversify_static_keys(DiversificationScheme::kEmvCps, master, c->kdd), "emv"),
                 KeyFamily::kDes),
             "DES card keys"));
    const BenchCard* self = c.get();
    c->lookup = [self](std::string_view name) -> Result<const SecureBytes*> {
      if (auto it = self->values.find(name); it != self->values.end()) return &it->second;
      return Error(ErrorCode::kInvalidArgument, "no attribute " + std::string(name));
    };
    cards.push_back(std::move(c));
  }
  return cards;
}

// SCP03 S8 (i=70), SCP03 S16 (i=71) or SCP02 (i=55), at `level`.
ChannelParams channel(const BenchCard& c, std::uint8_t scp, std::uint8_t i, std::uint8_t level) {
  ChannelParams p;
  p.scp = scp;
  p.i = i;
  p.level = level;
  p.kvn = scp == 3 ? 0x30 : 0x20;
  p.kdd = c.kdd;
  p.aid = kIsdAid;
  p.counter = c.counter;
  p.host_challenge = scp == 3 && (i & 0x01) != 0 ? c.host_challenge16 : c.host_challenge8;
  return p;
}

CardKeys& keys_for(BenchCard& c, std::uint8_t scp) { return scp == 3 ? *c.aes_keys : *c.des_keys; }
std::uint8_t i_for(std::uint8_t scp) { return scp == 3 ? 0x70 : 0x55; }

// The bundle entry of one card, assembled as pipeline/prep_stages.cpp CardPreparer does.
formats::BundleCard bundle_card(const BenchCard& c, const ChannelParams& params,
                                const OfflineSession& session, std::vector<ScriptApdu> script) {
  formats::BundleSession out;
  out.scp = params.scp;
  out.i = params.i;
  out.level = params.level;
  out.kvn = params.kvn;
  out.kdd = params.kdd;
  out.sd_aid = params.aid;
  out.counter = params.counter;
  out.host_challenge = params.host_challenge;
  out.expected_response = session.expected_response();
  out.apdus.push_back({must(select_by_aid(params.aid), "SELECT").to_bytes(), 0x9000,
                       "SELECT " + to_hex(params.aid) + " (clear, before the session)", {}});
  out.apdus.push_back({session.initialize_update().to_bytes(), 0x9000,
                       "INITIALIZE UPDATE (response must equal expected_response)", {}});
  out.apdus.push_back(
      {session.external_authenticate().to_bytes(), 0x9000, "EXTERNAL AUTHENTICATE", {}});
  for (ScriptApdu& a : script)
    out.apdus.push_back({std::move(a.bytes), a.expected_sw, std::move(a.label), std::move(a.expected_data)});
  formats::BundleCard card;
  card.card_id = c.card_id;
  card.se_id = c.se_id;
  card.sessions.push_back(std::move(out));
  return card;
}

// ---- the shared fixture, built before any benchmark runs --------------------------------

constexpr std::size_t kCards = 256;  // the demo profile's bundle segment-cards
constexpr const char* kPin = "1234";

struct Hsm {
  std::filesystem::path dir;
  std::shared_ptr<hsm::Module> module;
  std::shared_ptr<hsm::Token> token;
  std::unique_ptr<hsm::KeyStore> keys;
  std::vector<std::unique_ptr<hsm::HsmAeadKey>> dkeps;  // by XOF key class
  std::vector<AeadKey*> dkep_ptrs;
};

struct Fixture {
  Profile profile;
  PrepSpec prep[2][2];  // [scp02, scp03][demo, cps]
  std::vector<std::unique_ptr<BenchCard>> cards;
  std::vector<formats::BundleCard> bundle[2];  // SCP03 cards, [demo, cps]
  Bytes body[2];                               // their uncompressed segment body
  std::filesystem::path tmp;
  std::optional<Hsm> hsm;
  std::string hsm_error;
  std::optional<formats::XofHeader> xof_header;
  std::vector<formats::XofCard> xof_cards;
};

Fixture* g = nullptr;

const PrepSpec& prep_of(std::uint8_t scp, std::int64_t script) {
  return g->prep[scp == 3 ? 1 : 0][script];
}
const char* script_name(std::int64_t script) { return script == 0 ? "demo" : "cps"; }

formats::BundleHeader bundle_header(int level) {
  formats::BundleHeader h;
  h.xof_sha256 = Bytes(32, 0x5A);
  h.profile_sha256 = g->profile.sha256;
  h.reservation_id = 1;
  h.profile_id = g->profile.id;
  h.product = g->profile.prep->product;
  h.segment_cards = static_cast<std::uint32_t>(kCards);
  h.zstd_level = level;
  h.integrity_key_uri = g->profile.integrity_key_uri;
  h.integrity_kcv = {0x01, 0x02, 0x03};
  h.zstd_version = formats::zstd_library_version();
  return h;
}

std::uint32_t segment_body_length(const Bytes& segment) {  // offset 12, big-endian
  return (std::uint32_t{segment[12]} << 24) | (std::uint32_t{segment[13]} << 16) |
         (std::uint32_t{segment[14]} << 8) | segment[15];
}

bool make_hsm(Hsm& h, const std::string& module_path, std::string& error) {
  char tmpl[] = "/tmp/persoflow-bench-prep-XXXXXX";
  auto fail = [&](std::string why) {
    error = std::move(why);
    return false;
  };
  if (mkdtemp(tmpl) == nullptr) return fail("mkdtemp failed");
  h.dir = tmpl;
  std::filesystem::create_directories(h.dir / "tokens");
  std::ofstream(h.dir / "softhsm2.conf") << "directories.tokendir = " << (h.dir / "tokens").string()
                                         << "\nobjectstore.backend = file\nlog.level = ERROR\n";
  setenv("SOFTHSM2_CONF", (h.dir / "softhsm2.conf").c_str(), 1);
  const std::string cmd =
      "softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin " +
      std::string(kPin) + " >/dev/null";
  if (std::system(cmd.c_str()) != 0) return fail("softhsm2-util --init-token failed");
  auto module = hsm::Module::load(module_path);
  if (!module) return fail(module.error().message());
  h.module = *module;
  auto token = hsm::Token::open(h.module, "bench", text_bytes(kPin));
  if (!token) return fail(token.error().message());
  h.token = *token;
  h.keys = std::make_unique<hsm::KeyStore>(h.token);
  return true;
}

void build_fixture(Fixture& f) {
  f.profile = must(config::load_profile(profile_path()), "profile " + profile_path());
  if (!f.profile.prep) die(profile_path() + " has no <prep>");
  f.prep[1][0] = *f.profile.prep;
  f.prep[1][1] = cps_prep(*f.profile.prep);
  f.prep[0][0] = as_scp02(f.prep[1][0]);
  f.prep[0][1] = as_scp02(f.prep[1][1]);
  f.cards = make_cards(kCards, 1);

  // The 256 SCP03 cards of one bundle segment, made as prep makes them.
  const std::uint8_t level = f.profile.prep->channel.level;
  for (int s = 0; s < 2; ++s) {
    for (auto& c : f.cards) {
      const ChannelParams params = channel(*c, 3, 0x70, level);
      auto session = must(open_offline_session(*c->aes_keys, params), "SCP03 session");
      auto script =
          must(build_card_script(f.prep[1][s], c->lookup, *session, params.i), "card script");
      f.bundle[s].push_back(bundle_card(*c, params, *session, std::move(script)));
    }
    const auto seg =
        must(formats::encode_bundle_segment(bundle_header(3), 0, f.bundle[s]), "bundle segment");
    const std::span<const std::uint8_t> frame =
        std::span<const std::uint8_t>(seg.bytes).subspan(20);
    const SecureBytes body =
        must(formats::zstd_decompress(frame, segment_body_length(seg.bytes)), "unzstd");
    f.body[s].assign(body.reveal().begin(), body.reveal().end());
  }

  char tmpl[] = "/tmp/persoflow-bench-prep-files-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) die("mkdtemp failed");
  f.tmp = tmpl;

  // XOF: the profile's header with DKeps generated in a SoftHSM token, and the profile's
  // segment of cards (the 256 cards repeated under new card ids).
  const char* module = std::getenv("PERSOFLOW_PKCS11_MODULE");
  f.hsm.emplace();
  if (!make_hsm(*f.hsm, module != nullptr ? module : "/usr/lib/softhsm/libsofthsm2.so",
                f.hsm_error)) {
    if (!f.hsm->dir.empty()) std::filesystem::remove_all(f.hsm->dir);
    f.hsm.reset();
    return;
  }
  Hsm& h = *f.hsm;
  std::vector<Bytes> kcvs;
  for (const KeyClass& kc : f.profile.key_classes) {
    const auto info =
        must(h.keys->generate({"dkep-" + kc.name, KeyType::kAes256,
                               KeyUsage{.encrypt = true, .decrypt = true}, std::nullopt}),
             "DKep " + kc.name);
    kcvs.push_back(must(h.keys->kcv(info), "KCV"));
    h.dkeps.push_back(std::make_unique<hsm::HsmAeadKey>(*h.keys, info));
    h.dkep_ptrs.push_back(h.dkeps.back().get());
  }
  f.xof_header = must(
      formats::make_xof_header(f.profile, Bytes(32, 0xA5), kcvs, {0x01, 0x02, 0x03}), "XOF header");
  const formats::XofHeader& xh = *f.xof_header;
  for (std::size_t k = 0; k < f.profile.segment_cards; ++k) {
    const BenchCard& c = *f.cards[k % kCards];
    formats::XofCard x;
    char id[32];
    std::snprintf(id, sizeof id, "C%09zu", k + 1);
    x.card_id = id;
    for (const formats::XofAttribute& a : xh.attributes) {
      if (a.kind == formats::XofAttributeKind::kWrapped) {
        x.values.emplace_back(SecureBytes(c.pin_blob));
      } else if (a.name == xh.card_id_attribute) {
        x.values.emplace_back(text_bytes(x.card_id));
      } else {
        x.values.emplace_back(c.values.at(a.name));
      }
    }
    f.xof_cards.push_back(std::move(x));
  }
}

// ---- benchmarks ---------------------------------------------------------------------

CommandApdu store_data(std::size_t n) {
  return must(CommandApdu::create(0x80, 0xE2, 0x00, 0x00, Rng(n).bytes(n)), "STORE DATA");
}

// One STORE DATA of range(1) bytes wrapped in an open offline session (i, level range(0)).
void wrap_apdu(benchmark::State& state, std::uint8_t scp, std::uint8_t i) {
  BenchCard& c = *g->cards[0];
  const auto level = static_cast<std::uint8_t>(state.range(0));
  auto session = must(open_offline_session(keys_for(c, scp), channel(c, scp, i, level)), "session");
  const CommandApdu plain = store_data(static_cast<std::size_t>(state.range(1)));
  for (auto _ : state) benchmark::DoNotOptimize(session->wrap(plain));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(1));
}

// SCP02 i=55: level 01 C-MAC (retail MAC, ICV encrypted), 03 C-MAC + C-DECRYPTION.
void BM_Scp02_WrapApdu(benchmark::State& state) { wrap_apdu(state, 2, 0x55); }
BENCHMARK(BM_Scp02_WrapApdu)
    ->ArgNames({"level", "bytes"})
    ->Args({1, 200})
    ->Args({3, 32})
    ->Args({3, 200});

// SCP03 S8 (i=70) through OfflineSession, by level: 01 C-MAC, 03 + C-DEC, 51 (=0x33) + R-MAC/R-ENC.
void BM_Scp03_WrapApduLevel(benchmark::State& state) { wrap_apdu(state, 3, 0x70); }
BENCHMARK(BM_Scp03_WrapApduLevel)
    ->ArgNames({"level", "bytes"})
    ->Args({1, 200})
    ->Args({3, 32})
    ->Args({3, 200})
    ->Args({0x33, 200});

// SCP03 S16 (i=71): 16-byte C-MAC.
void BM_Scp03_WrapApduS16(benchmark::State& state) { wrap_apdu(state, 3, 0x71); }
BENCHMARK(BM_Scp03_WrapApduS16)->ArgNames({"level", "bytes"})->Args({3, 32})->Args({3, 200});

// One card's session opened from its static keys (ClearCardKeys): INITIALIZE UPDATE,
// expected response (pseudo-random card challenge), session keys, EXTERNAL AUTHENTICATE.
// scp 3 / i 70 (S8), 3 / 71 (S16), 2 / 55. Items: sessions (cards).
void BM_OfflineSession_Open(benchmark::State& state) {
  const auto scp = static_cast<std::uint8_t>(state.range(0));
  const auto i = static_cast<std::uint8_t>(state.range(1));
  std::vector<ChannelParams> params;
  for (auto& c : g->cards) params.push_back(channel(*c, scp, i, 0x03));
  std::size_t k = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(open_offline_session(keys_for(*g->cards[k], scp), params[k]));
    if (++k == kCards) k = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OfflineSession_Open)
    ->ArgNames({"scp", "i"})
    ->Args({3, 0x70})
    ->Args({3, 0x71})
    ->Args({2, 0x55});

// build_card_script for one card (values encoded, DGIs and STORE DATA blocks built,
// sensitive DGIs encrypted, every command wrapped) in the card's already open session.
// Items: cards; bytes: wrapped APDU bytes produced.
void BM_CardScript_BuildCard(benchmark::State& state) {
  const auto scp = static_cast<std::uint8_t>(state.range(0));
  const PrepSpec& prep = prep_of(scp, state.range(1));
  const std::uint8_t level = prep.channel.level;
  std::vector<std::unique_ptr<OfflineSession>> sessions;
  for (auto& c : g->cards) {
    sessions.push_back(must(
        open_offline_session(keys_for(*c, scp), channel(*c, scp, i_for(scp), level)), "session"));
  }
  std::size_t k = 0, bytes = 0, apdus = 0;
  for (auto _ : state) {
    auto script = build_card_script(prep, g->cards[k]->lookup, *sessions[k], i_for(scp));
    if (!script) {
      state.SkipWithError(script.error().message().c_str());
      break;
    }
    for (const ScriptApdu& a : *script) bytes += a.bytes.size();
    apdus += script->size();
    if (++k == kCards) k = 0;
  }
  state.SetLabel(script_name(state.range(1)));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["apdus/card"] = static_cast<double>(apdus) /
                                 static_cast<double>(std::max<std::int64_t>(state.iterations(), 1));
}
BENCHMARK(BM_CardScript_BuildCard)->ArgNames({"scp", "script"})->ArgsProduct({{3, 2}, {0, 1}});

// The host side of prep's CardPreparer for one card: session opened, script built, bundle
// entry assembled (SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, script, labels). What
// it leaves out is the HSM's part (static keys, host challenge). Items: cards.
void BM_CardScript_PrepareCard(benchmark::State& state) {
  const auto scp = static_cast<std::uint8_t>(state.range(0));
  const PrepSpec& prep = prep_of(scp, state.range(1));
  std::vector<ChannelParams> params;
  for (auto& c : g->cards) params.push_back(channel(*c, scp, i_for(scp), prep.channel.level));
  std::size_t k = 0, bytes = 0;
  for (auto _ : state) {
    BenchCard& c = *g->cards[k];
    auto session = open_offline_session(keys_for(c, scp), params[k]);
    auto script = session ? build_card_script(prep, c.lookup, **session, params[k].i)
                          : Result<std::vector<ScriptApdu>>(session.error());
    if (!script) {
      state.SkipWithError(script.error().message().c_str());
      break;
    }
    const formats::BundleCard card = bundle_card(c, params[k], **session, std::move(*script));
    for (const auto& a : card.sessions[0].apdus) bytes += a.command.size();
    if (++k == kCards) k = 0;
  }
  state.SetLabel(script_name(state.range(1)));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_CardScript_PrepareCard)->ArgNames({"scp", "script"})->ArgsProduct({{3, 2}, {0, 1}});

// encode_bundle_segment for 256 SCP03 cards at zstd `level`. Items: cards; bytes: the
// uncompressed segment body; counters: compression ratio, body bytes per card.
void BM_Bundle_EncodeSegment(benchmark::State& state) {
  const auto& cards = g->bundle[state.range(1)];
  const formats::BundleHeader header = bundle_header(static_cast<int>(state.range(0)));
  std::size_t body = 0, stored = 0;
  for (auto _ : state) {
    auto seg = formats::encode_bundle_segment(header, 0, cards);
    if (!seg) {
      state.SkipWithError(seg.error().message().c_str());
      break;
    }
    body = segment_body_length(seg->bytes);
    stored = seg->bytes.size();
    benchmark::DoNotOptimize(seg);
  }
  state.SetLabel(script_name(state.range(1)));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(cards.size()));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body));
  state.counters["ratio"] = static_cast<double>(body) / static_cast<double>(stored);
  state.counters["B/card"] = static_cast<double>(body) / static_cast<double>(cards.size());
}
BENCHMARK(BM_Bundle_EncodeSegment)->ArgNames({"level", "script"})->ArgsProduct({{1, 3, 9}, {0, 1}});

// BundleWriter::append of an encoded 256-card segment (level 3): SHA-256 of the segment,
// write to the temporary file, index entries. A new writer every 64 segments (not timed).
// Items: cards; bytes: segment bytes written.
void BM_Bundle_AppendSegment(benchmark::State& state) {
  constexpr std::uint32_t kSegments = 64;
  const auto& base = g->bundle[state.range(0)];
  const formats::BundleHeader header = bundle_header(3);
  std::vector<formats::BundleEncodedSegment> segments;
  for (std::uint32_t s = 0; s < kSegments; ++s) {
    std::vector<formats::BundleCard> cards = base;
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "S%u-", s);
    for (auto& c : cards) c.card_id.insert(0, prefix);
    segments.push_back(must(formats::encode_bundle_segment(header, s, cards), "segment"));
  }
  const std::string path = (g->tmp / "append.pfb").string();
  std::optional<formats::BundleWriter> writer;
  std::uint32_t next = kSegments;
  std::int64_t bytes = 0;
  for (auto _ : state) {
    if (next == kSegments) {
      state.PauseTiming();
      writer.reset();
      writer.emplace(must(formats::BundleWriter::create(path, header), "bundle writer"));
      next = 0;
      state.ResumeTiming();
    }
    if (Status ok = writer->append(segments[next]); !ok) {
      state.SkipWithError(ok.error().message().c_str());
      break;
    }
    bytes += static_cast<std::int64_t>(segments[next].bytes.size());
    ++next;
  }
  writer.reset();
  state.SetLabel(script_name(state.range(0)));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(base.size()));
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_Bundle_AppendSegment)->ArgNames({"script"})->Arg(0)->Arg(1);

// zstd_compress alone (per-thread context) over the uncompressed body of the 256-card
// segment. Items: cards; bytes: uncompressed; counter: ratio.
void BM_Zstd_Compress(benchmark::State& state) {
  const Bytes& body = g->body[state.range(1)];
  const int level = static_cast<int>(state.range(0));
  std::size_t out = 0;
  for (auto _ : state) {
    auto frame = formats::zstd_compress(body, level);
    if (!frame) {
      state.SkipWithError(frame.error().message().c_str());
      break;
    }
    out = frame->size();
    benchmark::DoNotOptimize(frame);
  }
  state.SetLabel(script_name(state.range(1)));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kCards));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
  state.counters["ratio"] = static_cast<double>(body.size()) / static_cast<double>(out);
}
BENCHMARK(BM_Zstd_Compress)->ArgNames({"level", "script"})->ArgsProduct({{1, 3, 9}, {0, 1}});

std::int64_t xof_value_bytes() {
  std::int64_t n = 0;
  for (const auto& c : g->xof_cards) {
    for (const auto& v : c.values) n += v ? static_cast<std::int64_t>(v->size()) : 0;
  }
  return n;
}

bool need_hsm(benchmark::State& state) {
  if (g->hsm) return true;
  state.SkipWithError(("no SoftHSM token: " + g->hsm_error).c_str());
  return false;
}

// encode_segment of the demo profile's XOF segment (1024 cards, 3 AES-GCM blocks sealed by
// SoftHSM under token DKeps, zstd 3, one wrapped PIN blob per card). Items: cards; bytes:
// the cards' clear values.
void BM_Xof_SegmentEncode(benchmark::State& state) {
  if (!need_hsm(state)) return;
  std::size_t stored = 0;
  for (auto _ : state) {
    auto seg = formats::encode_segment(*g->xof_header, 0, g->xof_cards, g->hsm->dkep_ptrs);
    if (!seg) {
      state.SkipWithError(seg.error().message().c_str());
      break;
    }
    stored = seg->bytes.size();
    benchmark::DoNotOptimize(seg);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(g->xof_cards.size()));
  state.SetBytesProcessed(state.iterations() * xof_value_bytes());
  state.counters["segment B"] = static_cast<double>(stored);
}
BENCHMARK(BM_Xof_SegmentEncode)->Unit(benchmark::kMicrosecond);

// The same segment read back as a reader does: parse_xof_segment (bytes copied in, as read
// from the file) then decode_xof_segment (AES-GCM open in SoftHSM, zstd, cards rebuilt).
void BM_Xof_SegmentDecode(benchmark::State& state) {
  if (!need_hsm(state)) return;
  const auto seg = must(formats::encode_segment(*g->xof_header, 0, g->xof_cards, g->hsm->dkep_ptrs),
                        "XOF segment");
  for (auto _ : state) {
    auto parsed = formats::parse_xof_segment(*g->xof_header, seg.bytes, 0, 0, "bench");
    auto cards =
        parsed ? formats::decode_xof_segment(*g->xof_header, *parsed, g->hsm->dkep_ptrs, "bench")
               : Result<std::vector<formats::XofCard>>(parsed.error());
    if (!cards) {
      state.SkipWithError(cards.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(cards);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(g->xof_cards.size()));
  state.SetBytesProcessed(state.iterations() * xof_value_bytes());
}
BENCHMARK(BM_Xof_SegmentDecode)->Unit(benchmark::kMicrosecond);

// ---- key-handling="host": the HSM's part of a batch, and the registry lookup per card ----

// The kdf3 static keys of the profile's 1024-card XOF segment from a token master key
// (hsm::HostStaticKeyDeriver), as prep's host mode asks for them: batched (the master has
// the encrypt usage: one C_Encrypt of 3072 blocks, CMAC(MK, M) = AES(MK, M xor K1)) or
// the per-key fallback (sign only: one C_SignInit/C_Sign per key). Items: cards.
void BM_HostMode_Kdf3Keys(benchmark::State& state) {
  if (!need_hsm(state)) return;
  const bool batched = state.range(0) == 1;
  const std::string label = batched ? "bench-kmc-enc" : "bench-kmc-sign";
  auto info = g->hsm->keys->find("pkcs11:object=" + label);
  if (!info) {
    info = g->hsm->keys->generate({label, KeyType::kAes128, KeyUsage{.encrypt = batched, .sign = true}, std::nullopt});
  }
  if (!info) {
    state.SkipWithError(info.error().message().c_str());
    return;
  }
  const auto deriver =
      must(hsm::HostStaticKeyDeriver::create(*g->hsm->keys, *info, DiversificationScheme::kKdf3, KeyType::kAes128),
           "deriver");
  std::vector<Bytes> kdds;
  for (std::size_t c = 0; c < 1024; ++c) kdds.push_back(g->cards[c % kCards]->kdd);
  std::vector<std::span<const std::uint8_t>> spans(kdds.begin(), kdds.end());
  for (auto _ : state) {
    auto keys = deriver.derive(spans);
    if (!keys) {
      state.SkipWithError(keys.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(keys);
  }
  state.SetLabel(batched ? "batched C_Encrypt" : "C_Sign per key");
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_HostMode_Kdf3Keys)->ArgNames({"batched"})->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

// A registry of `ses` SEs (SE0000000001, ...) in the fixture's directory, made once per
// size.
std::string bench_registry(int ses = 1024) {
  const auto dir = g->tmp / ("registry-" + std::to_string(ses));
  if (std::filesystem::exists(dir / "r.db")) return (dir / "r.db").string();
  std::filesystem::create_directories(dir);
  const std::string csv = (dir / "r.csv").string();
  {
    std::ofstream out(csv);
    out << "se_id,msi,kdd,isd_aid,scp,i,kvn,next_counter,product\n";
    for (int r = 1; r <= ses; ++r) {
      char line[160];
      std::snprintf(line, sizeof line, "SE%010d,2080%011d,D80464E4DE3F%08X,A000000151000000,03,70,30,1,bench\n", r,
                    r, r);
      out << line;
    }
  }
  auto reg = must(formats::SeRegistry::open((dir / "r.db").string(), true), "registry");
  must(reg.import_csv(csv), "registry import");
  return (dir / "r.db").string();
}

// One SE row read back by its row id, as prep reads each card's SE (SeRegistry::get_row,
// which prepares its SQL statement on every call). Items: rows.
void BM_Registry_GetRow(benchmark::State& state) {
  auto reg = must(formats::SeRegistry::open(bench_registry(), false), "registry");
  std::int64_t row = 0;
  for (auto _ : state) {
    auto se = reg.get_row(row % 1024 + 1);
    if (!se) {
      state.SkipWithError(se.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(se);
    ++row;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Registry_GetRow);

// The same lookup with the statement prepared once and reset for each row, straight on
// SQLite (get_row's SQL and columns): what get_row would cost with a kept statement; with
// `batch`:1 also inside one read transaction per 1024 rows (a segment's SEs read at once),
// which saves the file lock and journal check of each statement.
void BM_Registry_GetRowStatementKept(benchmark::State& state) {
  const bool batch = state.range(0) == 1;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(bench_registry().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    state.SkipWithError("sqlite3_open_v2 failed");
    sqlite3_close(db);
    return;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT row, se_id, msi, iccid, kdd, isd_aid, scp, i, kvn, next_counter, max_counter, "
                         "product FROM se WHERE row = ?",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    state.SkipWithError(sqlite3_errmsg(db));
    sqlite3_close(db);
    return;
  }
  std::int64_t row = 0;
  for (auto _ : state) {
    if (batch && row % 1024 == 0) {
      if (row != 0) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
      sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    }
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, row % 1024 + 1);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
      state.SkipWithError("no row");
      break;
    }
    formats::SeRecord se;
    se.se_id = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
    const auto* kdd = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, 4));
    se.kdd.assign(kdd, kdd + sqlite3_column_bytes(stmt, 4));
    const auto* aid = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, 5));
    se.isd_aid.assign(aid, aid + sqlite3_column_bytes(stmt, 5));
    se.scp = static_cast<std::uint8_t>(sqlite3_column_int(stmt, 6));
    se.i = static_cast<std::uint8_t>(sqlite3_column_int(stmt, 7));
    se.kvn = static_cast<std::uint8_t>(sqlite3_column_int(stmt, 8));
    se.product = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 11));
    benchmark::DoNotOptimize(se);
    ++row;
  }
  sqlite3_reset(stmt);
  if (batch && row != 0) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Registry_GetRowStatementKept)->ArgNames({"batch"})->Arg(0)->Arg(1);

// One reservation batch as prep's planner makes it (SeRegistry::reserve_more): 16,384
// cards, one per SE of a 16,384-SE registry, looked up by SE id; each iteration is a
// committed transaction (synchronous=FULL on the fixture's directory, so the fsyncs of
// the disk under /tmp are in the time) that adds the batch's counter ranges and advances
// every SE's counter. The registry keeps growing as a long-lived one does. Items: cards.
void BM_Registry_ReserveMore(benchmark::State& state) {
  constexpr int kSes = 16384;
  auto reg = must(formats::SeRegistry::open(bench_registry(kSes), false), "registry");
  formats::ReservationInfo info;
  info.run_id = "bench";
  info.product = "bench";
  info.scp = 3;
  const std::int64_t id = must(reg.open_reservation(info), "reservation");
  std::vector<formats::SeLookup> lookups;
  lookups.reserve(kSes);
  for (int r = 1; r <= kSes; ++r) {
    char se_id[16];
    std::snprintf(se_id, sizeof se_id, "SE%010d", r);
    lookups.push_back({formats::SeLookupKind::kSeId, se_id});
  }
  for (auto _ : state) {
    auto reserved = reg.reserve_more(id, lookups, info);
    if (!reserved || reserved->reserved != lookups.size()) {
      state.SkipWithError(reserved ? "cards not reserved" : reserved.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(reserved);
  }
  state.SetItemsProcessed(state.iterations() * kSes);
}
BENCHMARK(BM_Registry_ReserveMore)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace persoflow

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  persoflow::Fixture fixture;
  persoflow::g = &fixture;
  persoflow::build_fixture(fixture);
  if (!fixture.hsm)
    std::fprintf(stderr, "bench_prep: no SoftHSM token (%s): XOF benchmarks skipped\n",
                 fixture.hsm_error.c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (fixture.hsm) {
    fixture.hsm->dkeps.clear();
    fixture.hsm->keys.reset();
    fixture.hsm->token.reset();
    fixture.hsm->module.reset();
    std::filesystem::remove_all(fixture.hsm->dir);
  }
  std::filesystem::remove_all(fixture.tmp);
  return 0;
}
