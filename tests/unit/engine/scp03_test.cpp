// SCP03 host side against the kaoh/globalplatform real-card traces (scp03_sessions.vec),
// reproduced byte for byte: INITIALIZE UPDATE, the card's answer (pseudo-random challenge
// and cryptogram), session keys, EXTERNAL AUTHENTICATE and every wrapped command. K-DEK
// encryption against kaoh's storeDataTest.c (scp03_dek.vec). S16 mode: no public vector
// is compiled in gp-reference.md, so S16 is checked for internal consistency only.
#include "engine/scp03.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "engine/hex.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::load_vectors;
using test::VectorRecord;

Bytes hex(const std::string& text) {
  auto r = from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test hex: " << r.error().message();
    return {};
  }
  return std::move(r).value();
}

SecureBytes key(const std::string& text) {
  auto r = secure_from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test key hex";
    return SecureBytes();
  }
  return std::move(r).value();
}

std::uint8_t byte_of(const std::string& text) { return hex(text).at(0); }

std::uint32_t u24_of(const std::string& text) {
  const Bytes b = hex(text);
  return (static_cast<std::uint32_t>(b.at(0)) << 16) | (static_cast<std::uint32_t>(b.at(1)) << 8) |
         b.at(2);
}

CommandApdu apdu(const std::string& text) {
  auto r = CommandApdu::parse(hex(text));
  EXPECT_TRUE(r.has_value()) << text;
  return std::move(r).value();
}

struct Trace {
  VectorRecord session;
  std::vector<VectorRecord> commands;
};

std::vector<std::pair<std::string, Trace>> load_traces() {
  std::vector<std::pair<std::string, Trace>> traces;
  for (const auto& r : load_vectors("scp03_sessions.vec")) {
    if (r.has("KEnc")) {
      traces.push_back({r.section, Trace{r, {}}});
    } else {
      EXPECT_FALSE(traces.empty());
      EXPECT_EQ(traces.back().first, r.section);
      traces.back().second.commands.push_back(r);
    }
  }
  return traces;
}

// The first kaoh session's inputs, for the negative and consistency tests.
struct KaohInputs {
  SecureBytes k_enc = key("F995D0A069335C7DF42E590317FFEA6D");
  SecureBytes k_mac = key("58563362EC5A4541ABCD32B34B1EAE7D");
  Bytes host_challenge = hex("B2BDE1A2DC66BD56");
  Bytes aid = hex("A000000151000000");
  Scp03InitUpdateResponse response() const {
    auto r = Scp03InitUpdateResponse::parse(
        hex("00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015"));
    EXPECT_TRUE(r.has_value());
    return std::move(r).value();
  }
};

Scp03Session open_or_die(const SecureBytes& k_enc, const SecureBytes& k_mac, const Bytes& hc,
                         const Scp03InitUpdateResponse& resp, std::uint8_t level) {
  auto s = Scp03Session::open(k_enc, k_mac, hc, resp, level);
  EXPECT_TRUE(s.has_value()) << (s.has_value() ? "" : s.error().message());
  return std::move(s).value();
}

TEST(Scp03SessionTest, KaohTracesByteForByte) {
  const auto traces = load_traces();
  ASSERT_EQ(traces.size(), 5u);
  int wrapped_count = 0;
  for (const auto& [name, trace] : traces) {
    SCOPED_TRACE("scp03_sessions.vec [" + name + "]");
    const VectorRecord& s = trace.session;
    const SecureBytes k_enc = key(s.at("KEnc"));
    const SecureBytes k_mac = key(s.at("KMac"));
    const Bytes hc = hex(s.at("HostChallenge"));
    const std::uint8_t kvn = byte_of(s.at("Kvn"));
    const std::uint8_t i = byte_of(s.at("I"));

    // INITIALIZE UPDATE command.
    auto iu = scp03_initialize_update(byte_of(s.at("RequestedKvn")), hc);
    ASSERT_TRUE(iu.has_value());
    EXPECT_EQ(iu->to_hex(), s.at("InitUpdate"));

    // The card's answer, predicted offline (pseudo-random challenge), and parsed back.
    auto expected =
        scp03_expected_init_update_response(k_enc, k_mac, hex(s.at("Kdd")), kvn, i,
                                            u24_of(s.at("SequenceCounter")), hex(s.at("Aid")), hc);
    ASSERT_TRUE(expected.has_value()) << expected.error().message();
    EXPECT_EQ(to_hex(expected->to_bytes()), s.at("InitUpdateResponse"));
    auto challenge = scp03_pseudo_random_card_challenge(k_enc, u24_of(s.at("SequenceCounter")),
                                                        hex(s.at("Aid")), Scp03Mode::kS8);
    ASSERT_TRUE(challenge.has_value());
    EXPECT_EQ(to_hex(*challenge), s.at("CardChallenge"));

    auto parsed = Scp03InitUpdateResponse::parse(hex(s.at("InitUpdateResponse")));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(to_hex(parsed->kdd), s.at("Kdd"));
    EXPECT_EQ(parsed->kvn, kvn);
    EXPECT_EQ(parsed->i, i);
    EXPECT_EQ(to_hex(parsed->card_challenge), s.at("CardChallenge"));
    EXPECT_EQ(to_hex(parsed->card_cryptogram), s.at("CardCryptogram"));
    ASSERT_TRUE(parsed->sequence_counter.has_value());
    EXPECT_EQ(*parsed->sequence_counter, u24_of(s.at("SequenceCounter")));
    EXPECT_EQ(parsed->mode(), Scp03Mode::kS8);

    // Session keys and cryptograms.
    Scp03Session session = open_or_die(k_enc, k_mac, hc, *parsed, byte_of(s.at("SecurityLevel")));
    EXPECT_EQ(to_hex(session.session_keys().s_enc.reveal()), s.at("SEnc"));
    EXPECT_EQ(to_hex(session.session_keys().s_mac.reveal()), s.at("SMac"));
    if (s.has("SRmac")) {
      EXPECT_EQ(to_hex(session.session_keys().s_rmac.reveal()), s.at("SRmac"));
    }
    if (s.has("HostCryptogram")) {
      EXPECT_EQ(to_hex(session.host_cryptogram()), s.at("HostCryptogram"));
    }

    // EXTERNAL AUTHENTICATE and the wrapped commands.
    auto ea = session.external_authenticate();
    ASSERT_TRUE(ea.has_value()) << ea.error().message();
    EXPECT_EQ(ea->to_hex(), s.at("ExtAuth"));
    EXPECT_EQ(session.encryption_counter(), 1u);
    for (const auto& c : trace.commands) {
      SCOPED_TRACE("command at line " + std::to_string(c.line));
      EXPECT_EQ(session.encryption_counter(), std::stoul(c.at("Counter")));
      auto w = session.wrap(apdu(c.at("Plain")));
      ASSERT_TRUE(w.has_value()) << w.error().message();
      EXPECT_EQ(w->to_hex(), c.at("Wrapped"));
      ++wrapped_count;
    }
  }
  EXPECT_EQ(wrapped_count, 7);
}

TEST(Scp03SessionTest, WrongStaticKeyGivesDifferentCryptogramAndOpenFails) {
  KaohInputs in;
  SecureBytes wrong_mac = in.k_mac;
  wrong_mac.reveal_mutable()[0] ^= 0x01;
  const auto resp = in.response();
  auto good = scp03_derive_session_keys(in.k_enc, in.k_mac, in.host_challenge, resp.card_challenge);
  auto bad = scp03_derive_session_keys(in.k_enc, wrong_mac, in.host_challenge, resp.card_challenge);
  ASSERT_TRUE(good.has_value() && bad.has_value());
  auto good_cg = scp03_card_cryptogram(good->s_mac, in.host_challenge, resp.card_challenge);
  auto bad_cg = scp03_card_cryptogram(bad->s_mac, in.host_challenge, resp.card_challenge);
  ASSERT_TRUE(good_cg.has_value() && bad_cg.has_value());
  EXPECT_EQ(to_hex(*good_cg), "E127185170F45FCA");
  EXPECT_NE(*good_cg, *bad_cg);

  auto s = Scp03Session::open(in.k_enc, wrong_mac, in.host_challenge, resp, 0x03);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kIntegrity);

  // A wrong K-ENC changes the pseudo-random challenge, so the card's cryptogram fails too.
  SecureBytes wrong_enc = in.k_enc;
  wrong_enc.reveal_mutable()[15] ^= 0x80;
  auto ch = scp03_pseudo_random_card_challenge(wrong_enc, 0x15, in.aid, Scp03Mode::kS8);
  ASSERT_TRUE(ch.has_value());
  EXPECT_NE(to_hex(*ch), "C40932A6FEFEAEB2");
  // Another sequence counter, or the 7-byte AID some cards report, gives another challenge.
  auto ch16 = scp03_pseudo_random_card_challenge(in.k_enc, 0x16, in.aid, Scp03Mode::kS8);
  auto ch7 =
      scp03_pseudo_random_card_challenge(in.k_enc, 0x15, hex("A0000001510000"), Scp03Mode::kS8);
  ASSERT_TRUE(ch16.has_value() && ch7.has_value());
  EXPECT_NE(to_hex(*ch16), "C40932A6FEFEAEB2");
  EXPECT_NE(to_hex(*ch7), "C40932A6FEFEAEB2");
}

// The counter advances for every command, also those without data (Amd D §6.2.6,
// gp-reference.md §2.7 and §9.2), and the ICV is AES-ECB(S-ENC, counter block).
TEST(Scp03SessionTest, EncryptionCounterAdvancesOnEveryCommand) {
  KaohInputs in;
  Scp03Session s = open_or_die(in.k_enc, in.k_mac, in.host_challenge, in.response(), 0x03);
  ASSERT_TRUE(s.external_authenticate().has_value());
  EXPECT_EQ(s.encryption_counter(), 1u);

  // GET DATA C1 (no data): not encrypted, only C-MAC; the counter still moves to 2.
  auto get_data = s.wrap(apdu("80CA00C100"));
  ASSERT_TRUE(get_data.has_value());
  EXPECT_EQ(get_data->data().size(), 8u);
  EXPECT_EQ(get_data->cla(), 0x84);
  ASSERT_TRUE(get_data->le().has_value());
  EXPECT_EQ(s.encryption_counter(), 2u);

  // The next command with data is encrypted under counter 2.
  const Bytes chaining_before(s.mac_chaining_value().begin(), s.mac_chaining_value().end());
  auto status = s.wrap(apdu("80F24002024F0000"));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(s.encryption_counter(), 3u);
  const SecureBytes& s_enc = s.session_keys().s_enc;
  auto icv = aes_ecb_encrypt(s_enc, hex("00000000000000000000000000000002"));
  ASSERT_TRUE(icv.has_value());
  auto cipher = aes_cbc_encrypt(s_enc, *icv, hex("4F00800000000000 0000000000000000"));
  ASSERT_TRUE(cipher.has_value());
  const Bytes& data = status->data();
  ASSERT_EQ(data.size(), 24u);
  EXPECT_EQ(to_hex(std::span<const std::uint8_t>(data).first(16)), to_hex(*cipher));

  // C-MAC over chaining || 84 F2 40 02 18 || ciphertext; chaining becomes the full CMAC.
  Bytes mac_input = chaining_before;
  for (std::uint8_t b : hex("84F2400218")) mac_input.push_back(b);
  mac_input.insert(mac_input.end(), cipher->begin(), cipher->end());
  auto full = aes_cmac(s.session_keys().s_mac, mac_input);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(to_hex(std::span<const std::uint8_t>(data).last(8)), to_hex(*full).substr(0, 16));
  EXPECT_EQ(to_hex(s.mac_chaining_value()), to_hex(*full));

  // Under counter 1 (the "buggy counter" cards of §2.7) the ciphertext would differ.
  auto icv1 = aes_ecb_encrypt(s_enc, hex("00000000000000000000000000000001"));
  auto cipher1 = aes_cbc_encrypt(s_enc, *icv1, hex("4F00800000000000 0000000000000000"));
  ASSERT_TRUE(cipher1.has_value());
  EXPECT_NE(*cipher1, *cipher);
}

TEST(Scp03SessionTest, ExternalAuthenticateChainingStartsAtZero) {
  KaohInputs in;
  Scp03Session s = open_or_die(in.k_enc, in.k_mac, in.host_challenge, in.response(), 0x01);
  EXPECT_EQ(to_hex(s.mac_chaining_value()), std::string(32, '0'));
  auto ea = s.external_authenticate();
  ASSERT_TRUE(ea.has_value());
  Bytes input(16, 0x00);
  for (std::uint8_t b : hex("8482010010")) input.push_back(b);
  input.insert(input.end(), s.host_cryptogram().begin(), s.host_cryptogram().end());
  auto full = aes_cmac(s.session_keys().s_mac, input);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(ea->to_hex(), "8482010010" + to_hex(s.host_cryptogram()) + to_hex(*full).substr(0, 16));
  EXPECT_EQ(to_hex(s.mac_chaining_value()), to_hex(*full));

  // Level 01: data stays in clear, followed by the C-MAC; Le kept.
  auto w = s.wrap(apdu("80F24002024F0000"));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->to_hex().substr(0, 14), "84F240020A4F00");
  EXPECT_EQ(w->le(), std::optional<std::uint32_t>(256));
  EXPECT_EQ(s.encryption_counter(), 2u);
}

TEST(Scp03SessionTest, ExtendedLengthWhenTheMacDoesNotFit) {
  KaohInputs in;
  Scp03Session s = open_or_die(in.k_enc, in.k_mac, in.host_challenge, in.response(), 0x01);
  ASSERT_TRUE(s.external_authenticate().has_value());
  const Bytes chaining(s.mac_chaining_value().begin(), s.mac_chaining_value().end());
  const Bytes payload(250, 0x5A);
  auto plain = CommandApdu::create(0x80, 0xE2, 0x00, 0x00, payload);
  ASSERT_TRUE(plain.has_value());
  auto w = s.wrap(*plain);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->form(), LengthForm::kExtended);
  EXPECT_EQ(w->data().size(), 258u);
  Bytes input = chaining;
  for (std::uint8_t b : hex("84E2000000 0102")) input.push_back(b);
  input.insert(input.end(), payload.begin(), payload.end());
  auto full = aes_cmac(s.session_keys().s_mac, input);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(to_hex(std::span<const std::uint8_t>(w->data()).last(8)), to_hex(*full).substr(0, 16));
}

TEST(Scp03SessionTest, OrderAndClassChecks) {
  KaohInputs in;
  Scp03Session s = open_or_die(in.k_enc, in.k_mac, in.host_challenge, in.response(), 0x03);
  EXPECT_FALSE(s.wrap(apdu("80CA00C100")).has_value());  // before EXTERNAL AUTHENTICATE
  ASSERT_TRUE(s.external_authenticate().has_value());
  EXPECT_FALSE(s.external_authenticate().has_value());   // only once
  EXPECT_FALSE(s.wrap(apdu("84CA00C100")).has_value());  // already secure messaging
  EXPECT_EQ(s.encryption_counter(), 1u);                 // refused commands do not count
}

TEST(Scp03SessionTest, SecurityLevels) {
  KaohInputs in;
  const auto resp = in.response();  // i = 70: R-MAC and R-ENC offered
  for (int level : {0x00, 0x01, 0x03, 0x11, 0x13, 0x33}) {
    auto s = Scp03Session::open(in.k_enc, in.k_mac, in.host_challenge, resp,
                                static_cast<std::uint8_t>(level));
    EXPECT_TRUE(s.has_value()) << level;
  }
  for (int level : {0x02, 0x05, 0x10, 0x30, 0x31}) {
    auto s = Scp03Session::open(in.k_enc, in.k_mac, in.host_challenge, resp,
                                static_cast<std::uint8_t>(level));
    ASSERT_FALSE(s.has_value()) << level;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  }
  // i = 10 (no R-MAC): levels with R-MAC are refused.
  const SecureBytes k192 = key("DE2A3629CBC24E8D8869E82C8B4C0D874D88166B6F8A1C12");
  auto r10 = Scp03InitUpdateResponse::parse(
      hex("00008301A8186727A822020310726B1E22EED4F4BBAB21001BFD4B6F02000012"));
  ASSERT_TRUE(r10.has_value());
  EXPECT_TRUE(Scp03Session::open(k192, k192, hex("4157115CAD7D2FE7"), *r10, 0x03).has_value());
  EXPECT_FALSE(Scp03Session::open(k192, k192, hex("4157115CAD7D2FE7"), *r10, 0x13).has_value());
  // Level 33 wraps commands like 03 (responses are not unwrapped offline).
  Scp03Session s03 = open_or_die(in.k_enc, in.k_mac, in.host_challenge, resp, 0x03);
  Scp03Session s33 = open_or_die(in.k_enc, in.k_mac, in.host_challenge, resp, 0x33);
  auto ea33 = s33.external_authenticate();
  ASSERT_TRUE(ea33.has_value());
  EXPECT_EQ(ea33->p1(), 0x33);
  ASSERT_TRUE(s03.external_authenticate().has_value());
  EXPECT_EQ(s33.wrap(apdu("80F24002024F0000"))->data().size(), 24u);
}

TEST(Scp03SessionTest, InitUpdateResponseParsing) {
  const Bytes good = hex("00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015");
  auto r = Scp03InitUpdateResponse::parse(good);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->to_bytes(), good);
  // Missing sequence counter for pseudo-random i.
  auto short_r = Scp03InitUpdateResponse::parse(std::span<const std::uint8_t>(good).first(29));
  ASSERT_FALSE(short_r.has_value());
  EXPECT_EQ(short_r.error().code(), ErrorCode::kParse);
  // Random challenge (i = 00): 29 bytes, no counter.
  Bytes random = Bytes(good.begin(), good.begin() + 29);
  random[12] = 0x00;
  auto rr = Scp03InitUpdateResponse::parse(random);
  ASSERT_TRUE(rr.has_value());
  EXPECT_FALSE(rr->sequence_counter.has_value());
  // SCP02 key information.
  Bytes scp02 = good;
  scp02[11] = 0x02;
  EXPECT_FALSE(Scp03InitUpdateResponse::parse(scp02).has_value());
  // Offline expectation needs the pseudo-random mode.
  KaohInputs in;
  EXPECT_FALSE(scp03_expected_init_update_response(in.k_enc, in.k_mac, Bytes(10), 0x30, 0x60, 1,
                                                   in.aid, in.host_challenge)
                   .has_value());
  EXPECT_FALSE(scp03_initialize_update(0x30, hex("0102030405")).has_value());
}

// No public S16 vector is compiled in gp-reference.md (Amd D v1.2 is not public; the
// Samsung OpenSCP emulation data was not transcribed), so S16 is checked for consistency:
// 16-byte challenge, cryptograms and C-MAC, L = 0080 for challenge and cryptograms.
TEST(Scp03SessionTest, S16ModeInternalConsistency) {
  const SecureBytes k_enc = key("000102030405060708090A0B0C0D0E0F");
  const SecureBytes k_mac = key("101112131415161718191A1B1C1D1E1F");
  const Bytes hc = hex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF");
  const Bytes aid = hex("A000000151000000");
  auto iu = scp03_initialize_update(0x30, hc);
  ASSERT_TRUE(iu.has_value());
  EXPECT_EQ(iu->to_hex(), "8050300010" + to_hex(hc) + "00");

  auto resp = scp03_expected_init_update_response(k_enc, k_mac, Bytes(10), 0x30, 0x71, 1, aid, hc);
  ASSERT_TRUE(resp.has_value()) << resp.error().message();
  const Bytes bytes = resp->to_bytes();
  EXPECT_EQ(bytes.size(), 48u);
  auto parsed = Scp03InitUpdateResponse::parse(bytes);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->mode(), Scp03Mode::kS16);
  EXPECT_EQ(parsed->card_challenge.size(), 16u);
  EXPECT_EQ(parsed->card_cryptogram.size(), 16u);

  // The challenge is the 128-bit KDF output (not two 64-bit ones).
  auto s8 = scp03_pseudo_random_card_challenge(k_enc, 1, aid, Scp03Mode::kS8);
  ASSERT_TRUE(s8.has_value());
  EXPECT_NE(to_hex(parsed->card_challenge).substr(0, 16), to_hex(*s8));

  Scp03Session s = open_or_die(k_enc, k_mac, hc, *parsed, 0x03);
  EXPECT_EQ(s.mode(), Scp03Mode::kS16);
  EXPECT_EQ(s.host_cryptogram().size(), 16u);
  auto ea = s.external_authenticate();
  ASSERT_TRUE(ea.has_value());
  EXPECT_EQ(ea->data().size(), 32u);
  EXPECT_EQ(ea->to_hex().substr(0, 10), "8482030020");
  // Full 16-byte C-MAC equals the chaining value.
  EXPECT_EQ(to_hex(std::span<const std::uint8_t>(ea->data()).last(16)),
            to_hex(s.mac_chaining_value()));

  auto w = s.wrap(apdu("80F24002024F0000"));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->data().size(), 32u);  // 16 ciphertext + 16 C-MAC
  EXPECT_EQ(to_hex(std::span<const std::uint8_t>(w->data()).last(16)),
            to_hex(s.mac_chaining_value()));

  // A tampered card cryptogram is refused.
  Scp03InitUpdateResponse forged = *parsed;
  forged.card_cryptogram[15] ^= 0x01;
  auto bad = Scp03Session::open(k_enc, k_mac, hc, forged, 0x03);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kIntegrity);
}

TEST(Scp03DekTest, KaohStoreDataKeyEncryptionAndKcvs) {
  const auto vectors = load_vectors("scp03_dek.vec");
  EXPECT_EQ(vectors.size(), 7u);
  for (const auto& v : vectors) {
    SCOPED_TRACE("scp03_dek.vec line " + std::to_string(v.line));
    auto enc = scp03_encrypt_key(key(v.at("Dek")), key(v.at("Key")));
    ASSERT_TRUE(enc.has_value()) << enc.error().message();
    EXPECT_EQ(to_hex(*enc), v.at("Encrypted"));
    auto kcv = aes_kcv(key(v.at("Key")));
    ASSERT_TRUE(kcv.has_value());
    EXPECT_EQ(to_hex(*kcv), v.at("Kcv"));
  }
}

// gp-reference.md §7.10 (D2) is DERIVED (constructed there, not published): regression
// data for the two PUT KEY component layouts, not ground truth. Its pieces (AES-CBC under
// K-DEK, KCVs C35280 013808 840DE5) are checked against public vectors above / kcv.vec.
TEST(Scp03DekTest, PutKeyComponentLayoutsDerivedD2) {
  const SecureBytes dek = key("404142434445464748494A4B4C4D4E4F");
  const SecureBytes enc = key("000102030405060708090A0B0C0D0E0F");
  const SecureBytes mac = key("101112131415161718191A1B1C1D1E1F");
  const SecureBytes kdek = key("202122232425262728292A2B2C2D2E2F");
  auto amd =
      scp03_put_key_set_data(dek, 0x30, enc, mac, kdek, PutKeyComponentFormat::kAmdDTable710);
  ASSERT_TRUE(amd.has_value());
  EXPECT_EQ(
      to_hex(*amd),
      "308811103D0FA4B855D2A5AA4954B8B5DF582A3A03C35280881110790ACCDA858B997029FA9AE50C9CD028030138"
      "088811108CAA7F589AA0CEB6350A45E70A6E435B03840DE5");
  auto gpc =
      scp03_put_key_set_data(dek, 0x30, enc, mac, kdek, PutKeyComponentFormat::kGpcTable1171);
  ASSERT_TRUE(gpc.has_value());
  EXPECT_EQ(
      to_hex(*gpc),
      "3088103D0FA4B855D2A5AA4954B8B5DF582A3A03C352808810790ACCDA858B997029FA9AE50C9CD02803013808"
      "88108CAA7F589AA0CEB6350A45E70A6E435B03840DE5");
  // AES-192 key padded with 8 x 00: length byte in both layouts.
  const SecureBytes k192 = key("000102030405060708090A0B0C0D0E0F0001020304050607");
  auto c192 = scp03_put_key_component(dek, k192, PutKeyComponentFormat::kGpcTable1171);
  ASSERT_TRUE(c192.has_value());
  EXPECT_EQ(to_hex(*c192),
            "8821183D0FA4B855D2A5AA4954B8B5DF582A3A8269EB046BE707D96F24EF0C0DDE17980342D79D");

  EXPECT_FALSE(
      scp03_put_key_set_data(dek, 0x30, enc, k192, kdek, PutKeyComponentFormat::kAmdDTable710)
          .has_value());
  EXPECT_FALSE(scp03_encrypt_sensitive(dek, hex("0102")).has_value());  // not padded to 16
}

}  // namespace
}  // namespace persoflow
