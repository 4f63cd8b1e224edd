// SCP02 against published sessions (tests/vectors/scp02_sessions.vec): session keys,
// cryptograms, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE and every wrapped command of the
// kaoh/globalplatform and osmocom/pysim traces, byte for byte; then the i = 55 card
// challenge, the offline expected response, and the refusals.
#include "engine/scp02.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/des_mac.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::ByteVec;
using test::hex_bytes;

SecureBytes key_of(const std::string& hex) { return SecureBytes(hex_bytes(hex)); }
std::string hex_of(const SecureBytes& s) { return to_hex(s.reveal()); }
std::uint16_t u16_of(const std::string& hex) {
  const ByteVec b = hex_bytes(hex);
  return static_cast<std::uint16_t>((b.at(0) << 8) | b.at(1));
}

StaticKeySet keys_of(const test::VectorRecord& v) {
  return StaticKeySet{key_of(v.at("KEnc")), key_of(v.at("KMac")), key_of(v.at("KDek"))};
}

CommandApdu apdu_of(const std::string& hex) {
  auto a = CommandApdu::parse(hex_bytes(hex));
  EXPECT_TRUE(a.has_value()) << hex;
  return std::move(a).value();
}

std::vector<test::VectorRecord> records(const std::string& section) {
  std::vector<test::VectorRecord> out;
  for (auto& v : test::load_vectors("scp02_sessions.vec")) {
    if (v.section == section) out.push_back(v);
  }
  return out;
}

// A session opened from a trace record's INITIALIZE UPDATE response.
Scp02Session open_trace(const test::VectorRecord& v) {
  auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
  EXPECT_TRUE(resp.has_value());
  const Scp02Params params{hex_bytes(v.at("I")).at(0), hex_bytes(v.at("SecurityLevel")).at(0)};
  auto s = Scp02Session::open(keys_of(v), params, hex_bytes(v.at("HostChallenge")), *resp);
  EXPECT_TRUE(s.has_value()) << (s.has_value() ? "" : s.error().message());
  return std::move(s).value();
}

TEST(Scp02Test, SessionKeysFromGlobalPlatformProVectors) {
  const auto recs = records("session-keys");
  ASSERT_EQ(recs.size(), 4u);
  for (const auto& v : recs) {
    auto k = scp02_derive_session_key(key_of(v.at("StaticKey")), u16_of(v.at("Constant")),
                                      u16_of(v.at("Sequence")));
    ASSERT_TRUE(k.has_value()) << k.error().message();
    EXPECT_EQ(hex_of(*k), v.at("SessionKey")) << "line " << v.line;
    EXPECT_EQ(test::hex_upper(test::reference_kcv("des2", hex_bytes(hex_of(*k)))), v.at("KCV"));
  }
}

TEST(Scp02Test, SensitiveDataKeyWrapFromGlobalPlatformPro) {
  const auto recs = records("key-wrap");
  ASSERT_EQ(recs.size(), 1u);
  const auto& v = recs[0];
  auto s_dek = scp02_derive_session_key(key_of(v.at("StaticKey")), kScp02ConstDek, u16_of(v.at("Sequence")));
  ASSERT_TRUE(s_dek.has_value());
  auto wrapped = scp02_encrypt_sensitive(*s_dek, key_of(v.at("Data")));
  ASSERT_TRUE(wrapped.has_value()) << wrapped.error().message();
  EXPECT_EQ(to_hex(*wrapped), v.at("Encrypted"));
}

TEST(Scp02Test, TraceHandshakesByteForByte) {
  const auto recs = records("trace");
  ASSERT_EQ(recs.size(), 3u);
  for (const auto& v : recs) {
    SCOPED_TRACE(v.at("Name"));
    const ByteVec host_chal = hex_bytes(v.at("HostChallenge"));
    auto iu = scp02_initialize_update(hex_bytes(v.at("KeyVersion")).at(0), host_chal);
    ASSERT_TRUE(iu.has_value());
    EXPECT_EQ(iu->to_hex(), v.at("InitUpdateCommand"));

    auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
    ASSERT_TRUE(resp.has_value()) << resp.error().message();
    EXPECT_EQ(to_hex(resp->to_bytes()), v.at("InitUpdateResponse"));
    EXPECT_EQ(resp->scp_identifier, 0x02);

    auto keys = scp02_session_keys(keys_of(v), resp->sequence_counter);
    ASSERT_TRUE(keys.has_value());
    EXPECT_EQ(hex_of(keys->enc), v.at("SEnc"));
    EXPECT_EQ(hex_of(keys->cmac), v.at("SMac"));
    EXPECT_EQ(hex_of(keys->dek), v.at("SDek"));
    if (v.has("SRmac")) {
      EXPECT_EQ(hex_of(keys->rmac), v.at("SRmac"));
    }

    auto card = scp02_card_cryptogram(keys->enc, host_chal, resp->sequence_counter, resp->card_challenge);
    ASSERT_TRUE(card.has_value());
    EXPECT_EQ(*card, resp->card_cryptogram);
    auto host = scp02_host_cryptogram(keys->enc, host_chal, resp->sequence_counter, resp->card_challenge);
    ASSERT_TRUE(host.has_value());
    EXPECT_EQ(to_hex(*host), v.at("HostCryptogram"));

    Scp02Session s = open_trace(v);
    EXPECT_EQ(to_hex(s.host_cryptogram()), v.at("HostCryptogram"));
    auto ext = s.external_authenticate();
    ASSERT_TRUE(ext.has_value()) << ext.error().message();
    EXPECT_EQ(ext->to_hex(), v.at("ExtAuthCommand"));
  }
}

TEST(Scp02Test, TraceWrappedCommandsByteForByte) {
  int wrapped_count = 0;
  for (const auto& v : records("trace")) {
    SCOPED_TRACE(v.at("Name"));
    Scp02Session s = open_trace(v);
    ASSERT_TRUE(s.external_authenticate().has_value());
    for (int n = 1; v.has("Wrapped" + std::to_string(n)); ++n) {
      const std::string idx = std::to_string(n);
      const std::string expected = v.at("Wrapped" + idx);
      const CommandApdu on_wire = apdu_of(expected);
      auto plain_data = s.decrypt_command_data(on_wire);
      ASSERT_TRUE(plain_data.has_value()) << plain_data.error().message();
      CommandApdu plain = apdu_of(v.has("Command" + idx) ? v.at("Command" + idx) : "00000000");
      if (v.has("Command" + idx)) {
        EXPECT_EQ(to_hex(plain_data->reveal()), to_hex(plain.data())) << "command " << n;
      } else {
        // Only the first plaintext bytes are published: check them, rebuild the command.
        const std::string prefix = v.at("PlainPrefix" + idx);
        EXPECT_EQ(to_hex(plain_data->reveal()).substr(0, prefix.size()), prefix) << "command " << n;
        auto rebuilt = CommandApdu::create(static_cast<std::uint8_t>(on_wire.cla() & ~0x04), on_wire.ins(),
                                           on_wire.p1(), on_wire.p2(), plain_data->reveal(), on_wire.le());
        ASSERT_TRUE(rebuilt.has_value());
        plain = *rebuilt;
      }
      auto w = s.wrap(plain);
      ASSERT_TRUE(w.has_value()) << w.error().message();
      EXPECT_EQ(w->to_hex(), expected) << "command " << n;
      EXPECT_EQ(to_hex(s.last_cmac()), expected.substr(expected.size() - (w->le() ? 18 : 16), 16));
      ++wrapped_count;
    }
  }
  EXPECT_EQ(wrapped_count, 11);
}

TEST(Scp02Test, IcvEncryptionMatchesTheKaohIntermediateValue) {
  // kaoh get_status_mac_only: ICV = DES(S-MAC[0:8], EXT AUTH C-MAC) = 3D61D477BDF5419D.
  const auto v = records("trace").at(0);
  Scp02Session s = open_trace(v);
  ASSERT_TRUE(s.external_authenticate().has_value());
  EXPECT_EQ(to_hex(s.last_cmac()), "BEF49310977617BA");
  auto icv = des_ecb_encrypt(s.session_keys().cmac, s.last_cmac());
  ASSERT_TRUE(icv.has_value());
  EXPECT_EQ(to_hex(*icv), "3D61D477BDF5419D");
}

TEST(Scp02Test, ChainWithoutIcvEncryptionDiffersForI05) {
  // i = 05 (no ICV encryption): the first command after EXTERNAL AUTHENTICATE is MACed with
  // the plain previous C-MAC as ICV; i = 15 gives the published bytes.
  const auto v = records("trace").at(0);
  auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
  ASSERT_TRUE(resp.has_value());
  auto s = Scp02Session::open(keys_of(v), Scp02Params{0x05, 0x01}, hex_bytes(v.at("HostChallenge")), *resp);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->external_authenticate().has_value());
  auto w = s->wrap(apdu_of(v.at("Command1")));
  ASSERT_TRUE(w.has_value());
  auto expected_mac = retail_mac(s->session_keys().cmac, hex_bytes("BEF49310977617BA"), hex_bytes("84F220020A4F00"));
  ASSERT_TRUE(expected_mac.has_value());
  EXPECT_EQ(to_hex(s->last_cmac()), to_hex(*expected_mac));
  EXPECT_NE(w->to_hex(), v.at("Wrapped1"));
}

TEST(Scp02Test, PseudoRandomChallengeAndOfflineExpectedResponse) {
  // i = 55: the card challenge is RetailMAC(S-MAC, 0, pad80(AID))[0:6]; the offline
  // response is accepted by open() with the AID check on, and the session it opens
  // produces the same EXTERNAL AUTHENTICATE as one opened from a parsed response.
  const StaticKeySet keys{key_of("404142434445464748494A4B4C4D4E4F"), key_of("404142434445464748494A4B4C4D4E4F"),
                          key_of("404142434445464748494A4B4C4D4E4F")};
  const ByteVec aid = hex_bytes("A000000151000000");
  const ByteVec host = hex_bytes("0102030405060708");
  const ByteVec kdd = hex_bytes("000074746E6E6E626262");
  auto s_mac = scp02_derive_session_key(keys.mac, kScp02ConstCMac, 0x069F);
  ASSERT_TRUE(s_mac.has_value());
  auto chal = scp02_pseudo_random_card_challenge(*s_mac, aid);
  ASSERT_TRUE(chal.has_value());
  auto mac = retail_mac(*s_mac, ByteVec(8, 0), aid);
  ASSERT_TRUE(mac.has_value());
  EXPECT_EQ(*chal, ByteVec(mac->begin(), mac->begin() + 6));

  auto resp = scp02_expected_init_update_response(keys, kdd, 0x20, 0x069F, host, aid);
  ASSERT_TRUE(resp.has_value()) << resp.error().message();
  EXPECT_EQ(resp->card_challenge, *chal);
  EXPECT_EQ(resp->key_diversification_data, kdd);
  const ByteVec wire = resp->to_bytes();
  ASSERT_EQ(wire.size(), 28u);
  EXPECT_EQ(to_hex(ByteVec(wire.begin() + 10, wire.begin() + 14)), "2002069F");

  auto s = Scp02Session::open(keys, Scp02Params{0x55, 0x01}, host, *resp, aid);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->sequence_counter(), 0x069F);
  auto ext = s->external_authenticate();
  ASSERT_TRUE(ext.has_value());

  // A different AID gives a different challenge: open() refuses the response.
  auto wrong = Scp02Session::open(keys, Scp02Params{0x55, 0x01}, host, *resp, hex_bytes("A0000000030000"));
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kIntegrity);
}

TEST(Scp02Test, SecurityLevelNoneLeavesCommandsAlone) {
  auto v = records("trace").at(2);
  auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
  ASSERT_TRUE(resp.has_value());
  auto s = Scp02Session::open(keys_of(v), Scp02Params{0x15, 0x00}, hex_bytes(v.at("HostChallenge")), *resp);
  ASSERT_TRUE(s.has_value());
  auto ext = s->external_authenticate();
  ASSERT_TRUE(ext.has_value());
  EXPECT_EQ(ext->p1(), 0x00);
  const CommandApdu plain = apdu_of("80F28002024F0000");
  auto w = s->wrap(plain);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(*w, plain);
}

// ---- Negative tests -----------------------------------------------------------------------

TEST(Scp02Test, WrongKeysFailTheCardCryptogram) {
  auto v = records("trace").at(2);
  auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
  ASSERT_TRUE(resp.has_value());
  StaticKeySet swapped{key_of(v.at("KMac")), key_of(v.at("KEnc")), key_of(v.at("KDek"))};
  auto s = Scp02Session::open(swapped, Scp02Params{0x15, 0x01}, hex_bytes(v.at("HostChallenge")), *resp);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kIntegrity);
  // A tampered cryptogram byte is refused as well.
  resp->card_cryptogram[7] ^= 0x01;
  auto t = Scp02Session::open(keys_of(v), Scp02Params{0x15, 0x01}, hex_bytes(v.at("HostChallenge")), *resp);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), ErrorCode::kIntegrity);
}

TEST(Scp02Test, MalformedInitUpdateResponsesAreParseErrors) {
  const ByteVec good = hex_bytes("00000000000000000000700200016B4524ABEE7CF32EA3838BC148F3");
  auto short_r = Scp02InitUpdateResponse::parse(ByteVec(good.begin(), good.end() - 1));
  ASSERT_FALSE(short_r.has_value());
  EXPECT_EQ(short_r.error().code(), ErrorCode::kParse);
  ByteVec scp03 = good;
  scp03[11] = 0x03;
  auto wrong_scp = Scp02InitUpdateResponse::parse(scp03);
  ASSERT_FALSE(wrong_scp.has_value());
  EXPECT_EQ(wrong_scp.error().code(), ErrorCode::kParse);
}

TEST(Scp02Test, RefusesUnsupportedOptionsAndLevels) {
  auto v = records("trace").at(2);
  auto resp = Scp02InitUpdateResponse::parse(hex_bytes(v.at("InitUpdateResponse")));
  ASSERT_TRUE(resp.has_value());
  for (int i : {0x0A, 0x1A, 0x1B, 0x17, 0x11}) {  // implicit, unmodified APDU
    auto s = Scp02Session::open(keys_of(v), Scp02Params{static_cast<std::uint8_t>(i), 0x01}, hex_bytes(v.at("HostChallenge")), *resp);
    ASSERT_FALSE(s.has_value()) << i;
    EXPECT_EQ(s.error().code(), ErrorCode::kUnsupported);
  }
  for (int level : {0x02, 0x10, 0x11, 0x13}) {  // R-MAC not implemented
    auto s = Scp02Session::open(keys_of(v), Scp02Params{0x15, static_cast<std::uint8_t>(level)}, hex_bytes(v.at("HostChallenge")), *resp);
    ASSERT_FALSE(s.has_value()) << level;
    EXPECT_EQ(s.error().code(), ErrorCode::kUnsupported);
  }
}

TEST(Scp02Test, SessionStateAndApduLimits) {
  auto v = records("trace").at(1);  // level 03
  Scp02Session s = open_trace(v);
  auto early = s.wrap(apdu_of("80F22002024F0000"));
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(s.external_authenticate().has_value());
  auto twice = s.external_authenticate();
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code(), ErrorCode::kInvalidArgument);

  // 240 bytes pad to 248, + 8 MAC = 256: no longer a short APDU.
  auto big = CommandApdu::create(0x80, 0xE8, 0x00, 0x00, ByteVec(240, 0x11));
  ASSERT_TRUE(big.has_value());
  auto too_big = s.wrap(*big);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kInvalidArgument);
  // 239 bytes fit exactly (pad to 240 + 8 = 248).
  auto fits = CommandApdu::create(0x80, 0xE8, 0x00, 0x00, ByteVec(239, 0x11));
  ASSERT_TRUE(fits.has_value());
  auto ok = s.wrap(*fits);
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_EQ(ok->data().size(), 248u);

  for (int cla : {0x84, 0x40, 0x60}) {
    auto c = CommandApdu::create(static_cast<std::uint8_t>(cla), 0xF2, 0x20, 0x02);
    ASSERT_TRUE(c.has_value());
    auto r = s.wrap(*c);
    ASSERT_FALSE(r.has_value()) << cla;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Scp02Test, LogicalChannelBitsAreClearedForTheMacOnly) {
  // CLA 81 (channel 1): the MAC is the one of CLA 80 (channel bits cleared, 04 set), the
  // wire CLA keeps the channel: 85.
  const auto v = records("trace").at(2);
  Scp02Session a = open_trace(v);
  Scp02Session b = open_trace(v);
  ASSERT_TRUE(a.external_authenticate().has_value());
  ASSERT_TRUE(b.external_authenticate().has_value());
  auto w0 = a.wrap(apdu_of("80F22002"));
  auto w1 = b.wrap(apdu_of("81F22002"));
  ASSERT_TRUE(w0.has_value() && w1.has_value());
  EXPECT_EQ(w0->to_hex(), v.at("Wrapped1"));
  EXPECT_EQ(w1->cla(), 0x85);
  EXPECT_EQ(w1->data(), w0->data());
}

TEST(Scp02Test, BadLengthsAreInvalidArguments) {
  const SecureBytes k = key_of("404142434445464748494A4B4C4D4E4F");
  EXPECT_FALSE(scp02_initialize_update(0, ByteVec(7, 0)).has_value());
  EXPECT_FALSE(scp02_card_cryptogram(k, ByteVec(8, 0), 1, ByteVec(5, 0)).has_value());
  EXPECT_FALSE(scp02_host_cryptogram(k, ByteVec(9, 0), 1, ByteVec(6, 0)).has_value());
  EXPECT_FALSE(scp02_pseudo_random_card_challenge(k, ByteVec(4, 0)).has_value());
  EXPECT_FALSE(scp02_pseudo_random_card_challenge(k, ByteVec(17, 0)).has_value());
  auto k24 = scp02_derive_session_key(key_of("404142434445464748494A4B4C4D4E4F5051525354555657"), kScp02ConstSEnc, 0);
  ASSERT_FALSE(k24.has_value());
  EXPECT_EQ(k24.error().code(), ErrorCode::kInvalidArgument);
  auto odd = scp02_encrypt_sensitive(k, key_of("01020304050607"));
  ASSERT_FALSE(odd.has_value());
  EXPECT_EQ(odd.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace persoflow
