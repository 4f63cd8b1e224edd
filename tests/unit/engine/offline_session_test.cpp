// Offline sessions over CardKeys (engine/offline_session.h) against every published
// session in scp03_sessions.vec and scp02_sessions.vec: INITIALIZE UPDATE, the expected
// answer, EXTERNAL AUTHENTICATE and each wrapped command byte for byte, and the same bytes
// as the clear-key code where no vector exists (AES-256, S16, i = 55). The number of
// static-key calls per open. Command chaining (GPC v2.3.1 §11.1.5.1) has no published
// vector: it is recomputed here from the engine's primitives (CMAC, AES, retail MAC),
// not through Scp03Session / Scp02Session.
#include "engine/offline_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "engine/scp02.h"
#include "engine/scp03.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::load_vectors;
using test::VectorRecord;

Bytes hex(const std::string& text) {
  auto r = from_hex(text);
  EXPECT_TRUE(r.has_value()) << text;
  return r ? *r : Bytes{};
}

SecureBytes key(const std::string& text) { return SecureBytes(hex(text)); }

std::uint8_t byte_of(const std::string& text) { return hex(text).at(0); }

std::uint32_t number_of(const std::string& text) {
  std::uint32_t v = 0;
  for (std::uint8_t b : hex(text)) v = (v << 8) | b;
  return v;
}

CommandApdu apdu(const std::string& text) {
  auto a = CommandApdu::parse(hex(text));
  EXPECT_TRUE(a.has_value()) << text;
  return *a;
}

ClearCardKeys clear_keys(const std::string& enc, const std::string& mac, const std::string& dek, KeyFamily family) {
  auto k = ClearCardKeys::create(StaticKeySet{key(enc), key(mac), key(dek)}, family);
  EXPECT_TRUE(k.has_value()) << (k ? "" : k.error().message());
  return std::move(k).value();
}

// Counts the static-key calls and forwards them.
class CountingKeys final : public CardKeys {
 public:
  explicit CountingKeys(CardKeys& inner) : inner_(inner) {}
  KeyType type() const override { return inner_.type(); }
  Result<SecureBytes> aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) override {
    ++cmac_calls;
    return inner_.aes_cmac(role, data);
  }
  Result<SecureBytes> cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) override {
    ++cbc_calls;
    return inner_.cbc_encrypt(role, data);
  }
  Result<Bytes> kcv(CardKeyRole role) override { return inner_.kcv(role); }
  int cmac_calls = 0;
  int cbc_calls = 0;

 private:
  CardKeys& inner_;
};

std::unique_ptr<OfflineSession> open(CardKeys& keys, const ChannelParams& p) {
  auto s = open_offline_session(keys, p);
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().message());
  return s ? std::move(s).value() : nullptr;
}

// ---- SCP03 published sessions ------------------------------------------------------------

struct Scp03Vector {
  VectorRecord fields;
  std::vector<VectorRecord> commands;
};

std::vector<Scp03Vector> scp03_vectors() {
  std::vector<Scp03Vector> out;
  for (const VectorRecord& r : load_vectors("scp03_sessions.vec")) {
    if (r.has("KEnc")) {
      out.push_back({r, {}});
    } else {
      out.back().commands.push_back(r);
    }
  }
  return out;
}

ChannelParams scp03_params(const VectorRecord& f, bool give_card_challenge) {
  ChannelParams p;
  p.scp = 3;
  p.i = byte_of(f.at("I"));
  p.level = byte_of(f.at("SecurityLevel"));
  p.kvn = byte_of(f.at("Kvn"));
  p.requested_kvn = byte_of(f.at("RequestedKvn"));
  p.kdd = hex(f.at("Kdd"));
  p.aid = hex(f.at("Aid"));
  p.counter = number_of(f.at("SequenceCounter"));
  p.host_challenge = hex(f.at("HostChallenge"));
  if (give_card_challenge) p.card_challenge = hex(f.at("CardChallenge"));
  return p;
}

TEST(OfflineSessionTest, Scp03PublishedSessionsByteForByte) {
  const auto vectors = scp03_vectors();
  ASSERT_EQ(vectors.size(), 5u);
  int wrapped = 0;
  for (const Scp03Vector& v : vectors) {
    for (bool given : {false, true}) {
      SCOPED_TRACE(v.fields.section + (given ? " (card challenge given)" : " (pseudo-random)"));
      ClearCardKeys keys = clear_keys(v.fields.at("KEnc"), v.fields.at("KMac"), v.fields.at("KDek"), KeyFamily::kAes);
      auto s = open(keys, scp03_params(v.fields, given));
      ASSERT_NE(s, nullptr);
      EXPECT_EQ(s->initialize_update().to_hex(), v.fields.at("InitUpdate"));
      EXPECT_EQ(to_hex(s->expected_response()), v.fields.at("InitUpdateResponse"));
      EXPECT_EQ(s->external_authenticate().to_hex(), v.fields.at("ExtAuth"));
      for (const VectorRecord& c : v.commands) {
        // Alternate wrap() and wrap_chained(): a command that fits is the same either way.
        if (given) {
          auto w = s->wrap_chained(apdu(c.at("Plain")));
          ASSERT_TRUE(w.has_value()) << w.error().message();
          ASSERT_EQ(w->size(), 1u);
          EXPECT_EQ((*w)[0].to_hex(), c.at("Wrapped")) << "counter " << c.at("Counter");
        } else {
          auto w = s->wrap(apdu(c.at("Plain")));
          ASSERT_TRUE(w.has_value()) << w.error().message();
          EXPECT_EQ(w->to_hex(), c.at("Wrapped")) << "counter " << c.at("Counter");
        }
        ++wrapped;
      }
    }
  }
  EXPECT_EQ(wrapped, 2 * 7);
}

// Same bytes as the clear-key code (Scp03Session::open over the expected response) for
// what has no published session: AES-256 and S16, and an R-MAC level.
TEST(OfflineSessionTest, Scp03SameAsClearKeyCodeForAes256S16AndRMac) {
  const std::string k256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
  const std::string m256 = "202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F";
  const std::string d256 = "404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F";
  const std::string k128 = "F995D0A069335C7DF42E590317FFEA6D";
  const std::string m128 = "58563362EC5A4541ABCD32B34B1EAE7D";
  struct Case {
    std::string enc, mac, dek;
    std::uint8_t i, level;
  };
  for (const Case& c : {Case{k256, m256, d256, 0x70, 0x03}, Case{k256, m256, d256, 0x71, 0x03},
                        Case{k128, m128, k128, 0x71, 0x01}, Case{k128, m128, k128, 0x70, 0x13},
                        Case{k256, m256, d256, 0x30, 0x33 & 0x13}}) {
    SCOPED_TRACE(std::to_string(c.enc.size() / 2) + " bytes, i " + std::to_string(c.i));
    const Bytes hc = (c.i & 1) ? hex("000102030405060708090A0B0C0D0E0F") : hex("0102030405060708");
    ChannelParams p;
    p.i = c.i;
    p.level = c.level;
    p.kvn = 0x30;
    p.kdd = hex("00112233445566778899");
    p.aid = hex("A000000151000000");
    p.counter = 1;
    p.host_challenge = hc;
    ClearCardKeys keys = clear_keys(c.enc, c.mac, c.dek, KeyFamily::kAes);
    auto s = open(keys, p);
    ASSERT_NE(s, nullptr);

    auto expected = scp03_expected_init_update_response(key(c.enc), key(c.mac), p.kdd, p.kvn, p.i, 1, p.aid, hc);
    ASSERT_TRUE(expected.has_value()) << expected.error().message();
    EXPECT_EQ(to_hex(s->expected_response()), to_hex(expected->to_bytes()));
    auto clear = Scp03Session::open(key(c.enc), key(c.mac), hc, *expected, c.level);
    ASSERT_TRUE(clear.has_value()) << clear.error().message();
    auto ext = clear->external_authenticate();
    ASSERT_TRUE(ext.has_value());
    EXPECT_EQ(s->external_authenticate().to_hex(), ext->to_hex());
    for (const char* cmd : {"80F24002024F0000", "80CA006600", "80E400800A4F08A00100015141434C"}) {
      auto a = s->wrap(apdu(cmd));
      auto b = clear->wrap(apdu(cmd));
      ASSERT_TRUE(a.has_value() && b.has_value());
      EXPECT_EQ(a->to_hex(), b->to_hex()) << cmd;
    }
    // K-DEK: the same as scp03_encrypt_key / scp03_encrypt_sensitive with the clear key.
    auto sensitive = s->encrypt_sensitive(hex(m256));
    auto reference = scp03_encrypt_sensitive(key(c.dek), hex(m256));
    ASSERT_TRUE(sensitive.has_value() && reference.has_value());
    EXPECT_EQ(*sensitive, *reference);
  }
}

TEST(OfflineSessionTest, Scp03SensitiveDataUnderKDekMatchesKaoh) {
  int checked = 0;
  for (const VectorRecord& v : load_vectors("scp03_dek.vec")) {
    if (!v.has("Dek") || !v.has("Encrypted")) continue;
    ClearCardKeys keys = clear_keys(v.at("Dek"), v.at("Dek"), v.at("Dek"), KeyFamily::kAes);
    ChannelParams p;
    p.i = 0x70;
    p.level = 0x03;
    p.kdd = Bytes(10, 0);
    p.aid = hex("A000000151000000");
    p.counter = 1;
    p.host_challenge = Bytes(8, 0x11);
    auto s = open(keys, p);
    ASSERT_NE(s, nullptr);
    auto enc = s->encrypt_sensitive(hex(v.at("Key")));
    ASSERT_TRUE(enc.has_value()) << enc.error().message();
    EXPECT_EQ(to_hex(*enc), v.at("Encrypted")) << "line " << v.line;
    ++checked;
  }
  EXPECT_GE(checked, 1);
  // Not whole blocks: padded with 80 00.. before encryption.
  ClearCardKeys keys = clear_keys("000102030405060708090A0B0C0D0E0F", "000102030405060708090A0B0C0D0E0F",
                                  "000102030405060708090A0B0C0D0E0F", KeyFamily::kAes);
  ChannelParams p;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.host_challenge = Bytes(8, 0x11);
  auto s = open(keys, p);
  ASSERT_NE(s, nullptr);
  auto padded = s->encrypt_sensitive(hex("0102030405"));
  auto reference = scp03_encrypt_sensitive(key("000102030405060708090A0B0C0D0E0F"), pad80(hex("0102030405"), 16));
  ASSERT_TRUE(padded.has_value() && reference.has_value());
  EXPECT_EQ(*padded, *reference);
}

// ---- SCP02 published sessions ------------------------------------------------------------

std::vector<VectorRecord> scp02_section(const std::string& section) {
  std::vector<VectorRecord> out;
  for (const VectorRecord& r : load_vectors("scp02_sessions.vec")) {
    if (r.section == section) out.push_back(r);
  }
  return out;
}

TEST(OfflineSessionTest, Scp02PublishedSessionsByteForByte) {
  const auto traces = scp02_section("trace");
  ASSERT_EQ(traces.size(), 3u);
  int wrapped = 0;
  for (const VectorRecord& t : traces) {
    SCOPED_TRACE(t.at("Name"));
    const Bytes response = hex(t.at("InitUpdateResponse"));
    auto parsed = Scp02InitUpdateResponse::parse(response);
    ASSERT_TRUE(parsed.has_value());
    ChannelParams p;
    p.scp = 2;
    p.i = byte_of(t.at("I"));
    p.level = byte_of(t.at("SecurityLevel"));
    p.kvn = parsed->key_version;
    p.requested_kvn = byte_of(t.at("KeyVersion"));
    p.kdd = parsed->key_diversification_data;
    p.counter = parsed->sequence_counter;
    p.host_challenge = hex(t.at("HostChallenge"));
    p.card_challenge = parsed->card_challenge;
    ClearCardKeys keys = clear_keys(t.at("KEnc"), t.at("KMac"), t.at("KDek"), KeyFamily::kDes);
    auto s = open(keys, p);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->initialize_update().to_hex(), t.at("InitUpdateCommand"));
    EXPECT_EQ(to_hex(s->expected_response()), t.at("InitUpdateResponse"));
    EXPECT_EQ(s->external_authenticate().to_hex(), t.at("ExtAuthCommand"));

    // The clear-key session recovers the LOAD plaintexts that are only published encrypted.
    auto reference = Scp02Session::open(StaticKeySet{key(t.at("KEnc")), key(t.at("KMac")), key(t.at("KDek"))},
                                        Scp02Params{p.i, p.level}, p.host_challenge, *parsed);
    ASSERT_TRUE(reference.has_value());
    for (int n = 1; t.has("Wrapped" + std::to_string(n)); ++n) {
      const std::string idx = std::to_string(n);
      const CommandApdu on_wire = apdu(t.at("Wrapped" + idx));
      CommandApdu plain = apdu("00000000");
      if (t.has("Command" + idx)) {
        plain = apdu(t.at("Command" + idx));
      } else {
        auto data = reference->decrypt_command_data(on_wire);
        ASSERT_TRUE(data.has_value());
        EXPECT_EQ(to_hex(data->reveal()).substr(0, t.at("PlainPrefix" + idx).size()), t.at("PlainPrefix" + idx));
        auto rebuilt = CommandApdu::create(static_cast<std::uint8_t>(on_wire.cla() & ~0x04), on_wire.ins(),
                                           on_wire.p1(), on_wire.p2(), data->reveal(), on_wire.le());
        ASSERT_TRUE(rebuilt.has_value());
        plain = *rebuilt;
      }
      auto w = s->wrap_chained(plain);
      ASSERT_TRUE(w.has_value()) << w.error().message();
      ASSERT_EQ(w->size(), 1u);
      EXPECT_EQ((*w)[0].to_hex(), t.at("Wrapped" + idx)) << "command " << n;
      ++wrapped;
    }
  }
  EXPECT_EQ(wrapped, 11);
}

TEST(OfflineSessionTest, Scp02SensitiveDataUnderSDekMatchesGlobalPlatformPro) {
  const auto recs = scp02_section("key-wrap");
  ASSERT_EQ(recs.size(), 1u);
  const VectorRecord& v = recs[0];
  ClearCardKeys keys = clear_keys(v.at("StaticKey"), v.at("StaticKey"), v.at("StaticKey"), KeyFamily::kDes);
  ChannelParams p;
  p.scp = 2;
  p.i = 0x55;
  p.level = 0x01;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.counter = number_of(v.at("Sequence"));
  p.host_challenge = hex("0102030405060708");
  auto s = open(keys, p);
  ASSERT_NE(s, nullptr);
  auto enc = s->encrypt_sensitive(hex(v.at("Data")));
  ASSERT_TRUE(enc.has_value()) << enc.error().message();
  EXPECT_EQ(to_hex(*enc), v.at("Encrypted"));
  EXPECT_FALSE(s->encrypt_sensitive(hex("01020304")).has_value()) << "not a multiple of 8";
}

TEST(OfflineSessionTest, Scp02PseudoRandomSameAsClearKeyCode) {
  const std::string k = "404142434445464748494A4B4C4D4E4F";
  const StaticKeySet clear{key(k), key(k), key(k)};
  ClearCardKeys keys = clear_keys(k, k, k, KeyFamily::kDes);
  ChannelParams p;
  p.scp = 2;
  p.i = 0x55;
  p.level = 0x03;
  p.kvn = 0x20;
  p.kdd = hex("000074746E6E6E626262");
  p.aid = hex("A000000151000000");
  p.counter = 0x069F;
  p.host_challenge = hex("0102030405060708");
  auto s = open(keys, p);
  ASSERT_NE(s, nullptr);
  auto expected = scp02_expected_init_update_response(clear, p.kdd, p.kvn, 0x069F, p.host_challenge, p.aid);
  ASSERT_TRUE(expected.has_value());
  EXPECT_EQ(to_hex(s->expected_response()), to_hex(expected->to_bytes()));
  auto reference = Scp02Session::open(clear, Scp02Params{0x55, 0x03}, p.host_challenge, *expected, p.aid);
  ASSERT_TRUE(reference.has_value()) << reference.error().message();
  auto ext = reference->external_authenticate();
  ASSERT_TRUE(ext.has_value());
  EXPECT_EQ(s->external_authenticate().to_hex(), ext->to_hex());
  for (const char* cmd : {"80F22002024F0000", "80CA006600", "80E602001E07D0D1D2D3D4D50108A000000003000000000AEF08C6020160C80207D00000"}) {
    auto a = s->wrap(apdu(cmd));
    auto b = reference->wrap(apdu(cmd));
    ASSERT_TRUE(a.has_value() && b.has_value());
    EXPECT_EQ(a->to_hex(), b->to_hex()) << cmd;
  }
}

// ---- Cost and refusals ---------------------------------------------------------------------

TEST(OfflineSessionTest, StaticKeyCallsPerOpen) {
  const std::string k128 = "F995D0A069335C7DF42E590317FFEA6D";
  const std::string k256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
  ChannelParams p;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.counter = 1;
  p.host_challenge = Bytes(8, 0x22);
  struct Case {
    std::string key;
    std::uint8_t level;
    bool given;
    int calls;
  };
  // challenge (1) + S-ENC + S-MAC (1 or 2 blocks each) [+ S-RMAC].
  for (const Case& c : {Case{k128, 0x03, false, 3}, Case{k128, 0x13, false, 4}, Case{k128, 0x03, true, 2},
                        Case{k256, 0x03, false, 5}, Case{k256, 0x13, false, 7}}) {
    ClearCardKeys clear = clear_keys(c.key, c.key, c.key, KeyFamily::kAes);
    CountingKeys counting(clear);
    ChannelParams q = p;
    q.level = c.level;
    if (c.given) q.card_challenge = Bytes(8, 0x33);
    auto s = open(counting, q);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(counting.cmac_calls, c.calls) << c.key.size() / 2 << " bytes, level " << int(c.level);
    EXPECT_EQ(counting.cbc_calls, 0);
    ASSERT_TRUE(s->encrypt_sensitive(Bytes(16, 1)).has_value());
    EXPECT_EQ(counting.cbc_calls, 1);
  }
  const std::string d = "404142434445464748494A4B4C4D4E4F";
  ClearCardKeys des = clear_keys(d, d, d, KeyFamily::kDes);
  CountingKeys counting(des);
  ChannelParams q = p;
  q.scp = 2;
  q.i = 0x55;
  q.level = 0x03;
  auto s = open(counting, q);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(counting.cbc_calls, 3);
  EXPECT_EQ(counting.cmac_calls, 0);
  ASSERT_TRUE(s->encrypt_sensitive(Bytes(16, 1)).has_value());
  EXPECT_EQ(counting.cbc_calls, 3) << "S-DEK is a session key in host memory";
}

TEST(OfflineSessionTest, RefusesInconsistentParameters) {
  const std::string a = "F995D0A069335C7DF42E590317FFEA6D";
  ClearCardKeys aes = clear_keys(a, a, a, KeyFamily::kAes);
  ClearCardKeys des = clear_keys(a, a, a, KeyFamily::kDes);
  ChannelParams base;
  base.kdd = Bytes(10, 0);
  base.aid = hex("A000000151000000");
  base.counter = 1;
  base.host_challenge = Bytes(8, 0x22);
  auto refused = [&a](CardKeys& keys, const ChannelParams& p, const std::string& what) {
    auto s = open_offline_session(keys, p);
    ASSERT_FALSE(s.has_value()) << what;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument) << what;
    EXPECT_EQ(s.error().message().find(a), std::string::npos) << "key in message";
  };
  ChannelParams p = base;
  p.i = 0x00;
  refused(aes, p, "SCP03 i 00 without a card challenge");
  p.i = 0x20;
  refused(aes, p, "SCP03 i 20 without a card challenge");
  p.card_challenge = Bytes(8, 1);
  EXPECT_TRUE(open_offline_session(aes, p).has_value()) << "i 20 with a card challenge";
  p = base;
  p.i = 0x71;
  refused(aes, p, "S16 with an 8-byte host challenge");
  p = base;
  for (int level : {0x00, 0x02, 0x10, 0x31}) {
    p.level = static_cast<std::uint8_t>(level);
    refused(aes, p, "SCP03 level " + std::to_string(level));
  }
  p = base;
  p.i = 0x10;
  p.level = 0x13;
  refused(aes, p, "R-MAC level with an i that does not offer it");
  p = base;
  p.kdd = Bytes(9, 0);
  refused(aes, p, "9-byte KDD");
  p = base;
  p.aid = Bytes(4, 0);
  refused(aes, p, "4-byte AID");
  p = base;
  p.counter = 0x1000000;
  refused(aes, p, "4-byte counter");
  refused(des, base, "SCP03 with DES keys");
  p = base;
  p.scp = 1;
  refused(aes, p, "SCP01");

  ChannelParams q = base;
  q.scp = 2;
  q.i = 0x15;
  refused(des, q, "SCP02 i 15 without a card challenge");
  q.card_challenge = Bytes(6, 1);
  EXPECT_TRUE(open_offline_session(des, q).has_value()) << "i 15 with a card challenge";
  q.i = 0x55;
  q.card_challenge.reset();
  for (int level : {0x00, 0x02, 0x11, 0x13}) {
    q.level = static_cast<std::uint8_t>(level);
    refused(des, q, "SCP02 level " + std::to_string(level));
  }
  q.level = 0x01;
  q.counter = 0x10000;
  refused(des, q, "3-byte SCP02 counter");
  q.counter = 1;
  refused(aes, q, "SCP02 with AES keys");
  auto unsupported = [&] {
    ChannelParams r = q;
    r.i = 0x1A;  // implicit initiation
    r.card_challenge = Bytes(6, 1);
    return open_offline_session(des, r);
  }();
  ASSERT_FALSE(unsupported.has_value());
  EXPECT_EQ(unsupported.error().code(), ErrorCode::kUnsupported);
}

// ---- Command chaining ------------------------------------------------------------------------

Bytes concat_data(const std::vector<CommandApdu>& segments) {
  Bytes all;
  for (const CommandApdu& s : segments) all.insert(all.end(), s.data().begin(), s.data().end());
  return all;
}

void expect_segments(const std::vector<CommandApdu>& segs, const CommandApdu& plain, std::size_t mac_len) {
  ASSERT_GE(segs.size(), 2u);
  for (std::size_t k = 0; k < segs.size(); ++k) {
    const bool last = k + 1 == segs.size();
    EXPECT_EQ(segs[k].cla(), plain.cla() | 0x04);
    EXPECT_EQ(segs[k].ins(), plain.ins());
    EXPECT_EQ(segs[k].p1(), last ? plain.p1() : (plain.p1() | 0x80)) << "segment " << k;
    EXPECT_EQ(segs[k].p2(), plain.p2());
    EXPECT_LE(segs[k].data().size(), 255u);
    EXPECT_EQ(segs[k].form(), LengthForm::kShort);
    if (!last) {
      EXPECT_FALSE(segs[k].le().has_value());
      EXPECT_GE(segs[k].data().size(), 255u - mac_len) << "segments are filled";
    }
  }
  EXPECT_GE(segs.back().data().size(), mac_len) << "the C-MAC is whole in the last segment";
  EXPECT_EQ(segs.back().le(), plain.le());
}

Bytes counter_block(std::uint64_t counter) {
  Bytes b(16, 0);
  for (int k = 0; k < 8; ++k) b[15 - k] = static_cast<std::uint8_t>(counter >> (8 * k));
  return b;
}

// SCP03, recomputed from the primitives: session keys from the clear KDF, the chaining value
// from EXTERNAL AUTHENTICATE, ICV from the counter, CMAC over the unsegmented command.
void check_scp03_chaining(std::uint8_t i, std::uint8_t level, std::size_t data_len) {
  SCOPED_TRACE("i " + std::to_string(i) + " level " + std::to_string(level) + " data " + std::to_string(data_len));
  const std::string ke = "F995D0A069335C7DF42E590317FFEA6D", km = "58563362EC5A4541ABCD32B34B1EAE7D";
  ClearCardKeys keys = clear_keys(ke, km, ke, KeyFamily::kAes);
  const bool s16 = (i & 1) != 0;
  const std::size_t n = s16 ? 16 : 8;
  ChannelParams p;
  p.i = i;
  p.level = level;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.counter = 7;
  p.host_challenge = Bytes(n, 0x5A);
  auto s = open(keys, p);
  ASSERT_NE(s, nullptr);

  Bytes data(data_len);
  for (std::size_t k = 0; k < data_len; ++k) data[k] = static_cast<std::uint8_t>(k * 7 + 1);
  auto plain = CommandApdu::create(0x80, 0xE6, 0x0C, 0x00, data, 256);
  ASSERT_TRUE(plain.has_value());
  auto segs = s->wrap_chained(*plain);
  ASSERT_TRUE(segs.has_value()) << segs.error().message();
  expect_segments(*segs, *plain, n);

  // Independent recomputation.
  const Bytes& resp = s->expected_response();
  const Bytes cc(resp.begin() + 13, resp.begin() + 13 + static_cast<std::ptrdiff_t>(n));
  auto sk = scp03_derive_session_keys(key(ke), key(km), p.host_challenge, cc);
  ASSERT_TRUE(sk.has_value());
  const Bytes ext = s->external_authenticate().to_bytes();
  Bytes ext_input(16, 0);
  ext_input.insert(ext_input.end(), ext.begin(), ext.begin() + 5 + static_cast<std::ptrdiff_t>(n));
  auto chain = aes_cmac(sk->s_mac, ext_input);
  ASSERT_TRUE(chain.has_value());
  ASSERT_EQ(to_hex(Bytes(chain->begin(), chain->begin() + static_cast<std::ptrdiff_t>(n))),
            to_hex(Bytes(ext.end() - static_cast<std::ptrdiff_t>(n), ext.end())));
  Bytes body = data;
  if (level & 0x02) {
    auto icv = aes_ecb_encrypt(sk->s_enc, counter_block(1));
    ASSERT_TRUE(icv.has_value());
    auto c = aes_cbc_encrypt(sk->s_enc, *icv, pad80(data, 16));
    ASSERT_TRUE(c.has_value());
    body = *c;
  }
  const std::size_t lc = body.size() + n;
  Bytes mac_input(*chain);
  mac_input.insert(mac_input.end(), {0x84, 0xE6, 0x0C, 0x00, 0x00, static_cast<std::uint8_t>(lc >> 8),
                                     static_cast<std::uint8_t>(lc)});
  mac_input.insert(mac_input.end(), body.begin(), body.end());
  auto full = aes_cmac(sk->s_mac, mac_input);
  ASSERT_TRUE(full.has_value());
  Bytes expected = body;
  expected.insert(expected.end(), full->begin(), full->begin() + static_cast<std::ptrdiff_t>(n));
  EXPECT_EQ(to_hex(concat_data(*segs)), to_hex(expected));
  const Bytes& last = segs->back().data();
  EXPECT_EQ(to_hex(Bytes(last.end() - static_cast<std::ptrdiff_t>(n), last.end())),
            to_hex(Bytes(full->begin(), full->begin() + static_cast<std::ptrdiff_t>(n))));

  // The next command continues from the chained one: counter 2, chaining value = full CMAC.
  const Bytes next_data = hex("4F00");
  auto next = s->wrap(apdu("80F24002024F0000"));
  ASSERT_TRUE(next.has_value());
  Bytes next_body = next_data;
  if (level & 0x02) {
    auto icv = aes_ecb_encrypt(sk->s_enc, counter_block(2));
    ASSERT_TRUE(icv.has_value());
    auto c = aes_cbc_encrypt(sk->s_enc, *icv, pad80(next_data, 16));
    ASSERT_TRUE(c.has_value());
    next_body = *c;
  }
  Bytes next_input(*full);
  next_input.insert(next_input.end(), {0x84, 0xF2, 0x40, 0x02, static_cast<std::uint8_t>(next_body.size() + n)});
  next_input.insert(next_input.end(), next_body.begin(), next_body.end());
  auto next_mac = aes_cmac(sk->s_mac, next_input);
  ASSERT_TRUE(next_mac.has_value());
  Bytes next_expected = {0x84, 0xF2, 0x40, 0x02, static_cast<std::uint8_t>(next_body.size() + n)};
  next_expected.insert(next_expected.end(), next_body.begin(), next_body.end());
  next_expected.insert(next_expected.end(), next_mac->begin(), next_mac->begin() + static_cast<std::ptrdiff_t>(n));
  next_expected.push_back(0x00);  // Le of the plain command
  EXPECT_EQ(next->to_hex(), to_hex(next_expected));
}

TEST(OfflineSessionTest, Scp03ChainingMacsTheUnsegmentedCommand) {
  check_scp03_chaining(0x70, 0x03, 400);  // C-DEC + C-MAC, S8: 416 + 8 -> 255 + 169
  check_scp03_chaining(0x71, 0x01, 600);  // C-MAC, S16: 616 -> 255 + 255 + 106
  check_scp03_chaining(0x70, 0x01, 505);  // 513 bytes: the last segment would hold 3 of 8 MAC bytes
  check_scp03_chaining(0x10, 0x33 & 0x03, 1000);
}

void check_scp02_chaining(std::uint8_t level, std::size_t data_len) {
  SCOPED_TRACE("level " + std::to_string(level) + " data " + std::to_string(data_len));
  const std::string k = "404142434445464748494A4B4C4D4E4F";
  ClearCardKeys keys = clear_keys(k, k, k, KeyFamily::kDes);
  ChannelParams p;
  p.scp = 2;
  p.i = 0x55;
  p.level = level;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.counter = 0x0010;
  p.host_challenge = Bytes(8, 0x5A);
  auto s = open(keys, p);
  ASSERT_NE(s, nullptr);

  Bytes data(data_len);
  for (std::size_t j = 0; j < data_len; ++j) data[j] = static_cast<std::uint8_t>(j * 3 + 2);
  auto plain = CommandApdu::create(0x80, 0xE6, 0x0C, 0x00, data, 256);
  ASSERT_TRUE(plain.has_value());
  auto segs = s->wrap_chained(*plain);
  ASSERT_TRUE(segs.has_value()) << segs.error().message();
  expect_segments(*segs, *plain, 8);

  auto sk = scp02_session_keys(StaticKeySet{key(k), key(k), key(k)}, 0x0010);
  ASSERT_TRUE(sk.has_value());
  const Bytes ext = s->external_authenticate().to_bytes();
  const Bytes ext_mac(ext.end() - 8, ext.end());
  auto icv = des_ecb_encrypt(sk->cmac, ext_mac);  // i.b5: ICV encryption
  ASSERT_TRUE(icv.has_value());
  const std::size_t lc = data.size() + 8;
  Bytes mac_input = {0x84, 0xE6, 0x0C, 0x00, 0x00, static_cast<std::uint8_t>(lc >> 8), static_cast<std::uint8_t>(lc)};
  mac_input.insert(mac_input.end(), data.begin(), data.end());
  auto mac = retail_mac(sk->cmac, *icv, mac_input);
  ASSERT_TRUE(mac.has_value());
  Bytes expected = data;
  if (level == 0x03) {
    auto c = tdes_cbc_encrypt(sk->enc, Bytes(8, 0), pad80(data, 8));
    ASSERT_TRUE(c.has_value());
    expected = *c;
  }
  expected.insert(expected.end(), mac->begin(), mac->end());
  EXPECT_EQ(to_hex(concat_data(*segs)), to_hex(expected));

  // The next command's ICV is the chained command's C-MAC, encrypted.
  auto next = s->wrap(apdu("80F22002024F0000"));
  ASSERT_TRUE(next.has_value());
  auto icv2 = des_ecb_encrypt(sk->cmac, *mac);
  ASSERT_TRUE(icv2.has_value());
  auto mac2 = retail_mac(sk->cmac, *icv2, hex("84F220020A4F00"));
  ASSERT_TRUE(mac2.has_value());
  const Bytes& nd = next->data();
  EXPECT_EQ(to_hex(Bytes(nd.end() - 8, nd.end())), to_hex(*mac2));
}

TEST(OfflineSessionTest, Scp02ChainingMacsTheUnsegmentedCommand) {
  check_scp02_chaining(0x03, 300);
  check_scp02_chaining(0x01, 250);  // 258 bytes: the plain data alone no longer fits with its MAC
  check_scp02_chaining(0x01, 760);  // 768: 255 + 255 + 258 -> the MAC moved whole into the last
}

TEST(OfflineSessionTest, ChainingRefusesP1B8AndFitsAreUnchanged) {
  const std::string k = "F995D0A069335C7DF42E590317FFEA6D";
  ClearCardKeys keys = clear_keys(k, k, k, KeyFamily::kAes);
  ChannelParams p;
  p.kdd = Bytes(10, 0);
  p.aid = hex("A000000151000000");
  p.host_challenge = Bytes(8, 1);
  auto a = open(keys, p);
  auto b = open(keys, p);
  ASSERT_TRUE(a && b);
  auto big = CommandApdu::create(0x80, 0xE6, 0x8C, 0x00, Bytes(300, 1));
  ASSERT_TRUE(big.has_value());
  auto refused = a->wrap_chained(*big);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  // 231 bytes pad to 240, + 8 = 248: fits, one APDU equal to wrap(); the refusal above
  // consumed nothing.
  auto fits = CommandApdu::create(0x80, 0xE6, 0x0C, 0x00, Bytes(231, 2));
  ASSERT_TRUE(fits.has_value());
  auto one = a->wrap_chained(*fits);
  auto same = b->wrap(*fits);
  ASSERT_TRUE(one.has_value() && same.has_value());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0], *same);
}

}  // namespace
}  // namespace persoflow
