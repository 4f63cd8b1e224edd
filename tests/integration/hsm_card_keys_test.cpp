// HsmCardKeys (hsm/hsm_card_keys.h) on a real SoftHSM token per test: offline SCP03 and
// SCP02 sessions over keys in the HSM are byte-identical to the same sessions over
// ClearCardKeys holding the same clear values, for (a) token keys imported from known
// values and (b) card keys diversified in the HSM from a master key (clear values from
// engine/key_diversification.h). Then the binary: `scp wrap --key-enc/--key-mac/--key-dek`
// prints exactly what `--test-keys` prints for the same keys.
#include "hsm/hsm_card_keys.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/key_diversification.h"
#include "engine/offline_session.h"
#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/run_process.h"

namespace persoflow::test {
namespace {

Bytes hex(const std::string& s) {
  auto b = from_hex(s);
  EXPECT_TRUE(b.has_value()) << s;
  return b ? *b : Bytes{};
}

SecureBytes key(const std::string& s) { return SecureBytes(hex(s)); }

CommandApdu apdu(const std::string& s) {
  auto a = CommandApdu::parse(hex(s));
  EXPECT_TRUE(a.has_value()) << s;
  return *a;
}

const std::string kAesEnc128 = "F995D0A069335C7DF42E590317FFEA6D";  // kaoh scp03Test.c
const std::string kAesMac128 = "58563362EC5A4541ABCD32B34B1EAE7D";
const std::string kAesDek128 = "0A02A6D687406DCFA09DC70B3EDB7E38";
const std::string kAesEnc256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
const std::string kAesMac256 = "202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F";
const std::string kAesDek256 = "404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F";
const std::string kDesEnc = "404142434445464748494A4B4C4D4E4F";  // OPGP_VISA_DEFAULT_KEY, pySim
const std::string kDesMac = "101102030405060708090A0B0C0D0E0F";
const std::string kDesDek = "102102030405060708090A0B0C0D0E0F";

ChannelParams params(std::uint8_t scp, std::uint8_t i, std::uint8_t level) {
  ChannelParams p;
  p.scp = scp;
  p.i = i;
  p.level = level;
  p.kvn = 0x30;
  p.kdd = hex("00112233445566778899");
  p.aid = hex("A000000151000000");
  p.counter = scp == 3 ? 0x000102 : 0x0102;
  p.host_challenge = (scp == 3 && (i & 1)) ? hex("000102030405060708090A0B0C0D0E0F") : hex("0102030405060708");
  return p;
}

// Everything the two sessions produce, compared byte for byte.
void expect_same_sessions(CardKeys& hsm_keys, CardKeys& clear_keys, const ChannelParams& p) {
  SCOPED_TRACE("SCP0" + std::to_string(p.scp) + " i " + std::to_string(p.i) + " level " + std::to_string(p.level));
  auto a = open_offline_session(hsm_keys, p);
  ASSERT_TRUE(a.has_value()) << a.error().message();
  auto b = open_offline_session(clear_keys, p);
  ASSERT_TRUE(b.has_value()) << b.error().message();
  OfflineSession& h = **a;
  OfflineSession& c = **b;
  EXPECT_EQ(h.initialize_update(), c.initialize_update());
  EXPECT_EQ(to_hex(h.expected_response()), to_hex(c.expected_response()));
  EXPECT_EQ(h.external_authenticate().to_hex(), c.external_authenticate().to_hex());
  for (const char* cmd : {"80F24002024F0000", "80CA006600", "80E400800A4F08A00100015141434C"}) {
    auto x = h.wrap(apdu(cmd));
    auto y = c.wrap(apdu(cmd));
    ASSERT_TRUE(x.has_value() && y.has_value());
    EXPECT_EQ(x->to_hex(), y->to_hex()) << cmd;
  }
  auto big = CommandApdu::create(0x80, 0xE6, 0x0C, 0x00, Bytes(400, 0x5C), 256);
  ASSERT_TRUE(big.has_value());
  auto x = h.wrap_chained(*big);
  auto y = c.wrap_chained(*big);
  ASSERT_TRUE(x.has_value() && y.has_value());
  ASSERT_EQ(x->size(), 2u);
  EXPECT_EQ(*x, *y);
  const Bytes sensitive = hex(kAesMac256);  // 32 bytes: whole AES and DES blocks
  auto sx = h.encrypt_sensitive(sensitive);
  auto sy = c.encrypt_sensitive(sensitive);
  ASSERT_TRUE(sx.has_value()) << sx.error().message();
  ASSERT_TRUE(sy.has_value());
  EXPECT_EQ(*sx, *sy);
}

void expect_same_kcvs(CardKeys& hsm_keys, CardKeys& clear_keys) {
  for (CardKeyRole role : {CardKeyRole::kEnc, CardKeyRole::kMac, CardKeyRole::kDek}) {
    auto x = hsm_keys.kcv(role);
    auto y = clear_keys.kcv(role);
    ASSERT_TRUE(x.has_value()) << x.error().message();
    ASSERT_TRUE(y.has_value());
    EXPECT_EQ(*x, *y);
  }
}

class HsmCardKeysTest : public HsmTest {
 protected:
  hsm::KeyInfo import(const std::string& label, KeyType type, const std::string& value,
                      KeyUsage usage = KeyUsage{.encrypt = true, .sign = true}) {
    auto k = keys_->create_from_value(hsm::KeySpec{label, type, usage, std::nullopt}, key(value));
    EXPECT_TRUE(k.has_value()) << (k ? "" : k.error().message());
    return k ? *k : hsm::KeyInfo{};
  }

  hsm::HsmCardKeys token_keys(const std::string& prefix, KeyType type, const std::string& e, const std::string& m,
                              const std::string& d) {
    auto k = hsm::HsmCardKeys::from_token_keys(*keys_, import(prefix + "-enc", type, e), import(prefix + "-mac", type, m),
                                               import(prefix + "-dek", type, d));
    EXPECT_TRUE(k.has_value()) << (k ? "" : k.error().message());
    return std::move(k).value();
  }

  static ClearCardKeys clear(const std::string& e, const std::string& m, const std::string& d, KeyFamily f) {
    auto k = ClearCardKeys::create(StaticKeySet{key(e), key(m), key(d)}, f);
    EXPECT_TRUE(k.has_value());
    return std::move(k).value();
  }
};

TEST_F(HsmCardKeysTest, TokenKeysAes128And256SameAsClearKeys) {
  hsm::HsmCardKeys h128 = token_keys("c128", KeyType::kAes128, kAesEnc128, kAesMac128, kAesDek128);
  ClearCardKeys c128 = clear(kAesEnc128, kAesMac128, kAesDek128, KeyFamily::kAes);
  EXPECT_EQ(h128.type(), KeyType::kAes128);
  expect_same_kcvs(h128, c128);
  expect_same_sessions(h128, c128, params(3, 0x70, 0x03));  // S8
  expect_same_sessions(h128, c128, params(3, 0x71, 0x03));  // S16
  expect_same_sessions(h128, c128, params(3, 0x70, 0x13));  // S-RMAC derived too
  ChannelParams given = params(3, 0x00, 0x01);
  given.card_challenge = hex("C40932A6FEFEAEB2");
  expect_same_sessions(h128, c128, given);

  hsm::HsmCardKeys h256 = token_keys("c256", KeyType::kAes256, kAesEnc256, kAesMac256, kAesDek256);
  ClearCardKeys c256 = clear(kAesEnc256, kAesMac256, kAesDek256, KeyFamily::kAes);
  expect_same_kcvs(h256, c256);
  expect_same_sessions(h256, c256, params(3, 0x70, 0x03));  // two KDF blocks per session key
  expect_same_sessions(h256, c256, params(3, 0x71, 0x33));
}

TEST_F(HsmCardKeysTest, TokenKeysDes2SameAsClearKeys) {
  hsm::HsmCardKeys h = token_keys("d", KeyType::kDes2, kDesEnc, kDesMac, kDesDek);
  ClearCardKeys c = clear(kDesEnc, kDesMac, kDesDek, KeyFamily::kDes);
  expect_same_kcvs(h, c);
  expect_same_sessions(h, c, params(2, 0x55, 0x03));
  expect_same_sessions(h, c, params(2, 0x55, 0x01));
  ChannelParams given = params(2, 0x15, 0x03);
  given.card_challenge = hex("A15086BBEE58");
  expect_same_sessions(h, c, given);
}

// Card keys diversified in the HSM (EMV CPS and VISA2 from a 2-key 3DES KMC): the same
// sessions as the clear keys the engine diversifies from the same KMC.
TEST_F(HsmCardKeysTest, DiversifiedSessionKeysSameAsClearDiversification) {
  const std::string kmc = "404142434445464748494A4B4C4D4E4F";
  const hsm::KeyInfo master = import("kmc", KeyType::kDes2, kmc, KeyUsage{.derive = true});
  const Bytes kdd = hex("000050000000CAFE0101");
  for (DiversificationScheme scheme : {DiversificationScheme::kEmvCps, DiversificationScheme::kVisa2}) {
    SCOPED_TRACE(std::string(diversification_scheme_name(scheme)));
    auto derived = hsm::derive_static_keys(*keys_, master, scheme, kdd, KeyType::kDes2);
    ASSERT_TRUE(derived.has_value()) << derived.error().message();
    auto h = hsm::HsmCardKeys::from_derived(*keys_, *derived, KeyType::kDes2);
    ASSERT_TRUE(h.has_value()) << h.error().message();
    auto values = diversify_static_keys(scheme, key(kmc), kdd);
    ASSERT_TRUE(values.has_value());
    auto c = ClearCardKeys::create(std::move(values).value(), KeyFamily::kDes);
    ASSERT_TRUE(c.has_value());
    expect_same_kcvs(*h, *c);
    ChannelParams p = params(2, 0x55, 0x03);
    p.kdd = kdd;
    expect_same_sessions(*h, *c, p);
  }
}

// AES card keys diversified with kdf3 through HSM CMAC calls (hsm/key_derivation.h), for
// SCP03 AES-128 and AES-256, S8 and S16.
TEST_F(HsmCardKeysTest, Kdf3DiversifiedAesKeysSameAsClearDiversification) {
  const Bytes kdd = hex("00010203040506070809");
  struct Case {
    std::string master;
    KeyType type;
  };
  for (const Case& c : {Case{kAesEnc128, KeyType::kAes128}, Case{kAesEnc256, KeyType::kAes256}}) {
    SCOPED_TRACE(std::string(key_type_name(c.type)));
    const hsm::KeyInfo master = import("kmc-" + std::string(key_type_name(c.type)), c.type, c.master,
                                       KeyUsage{.sign = true, .derive = true});
    auto derived = hsm::derive_static_keys(*keys_, master, DiversificationScheme::kKdf3, kdd, c.type);
    ASSERT_TRUE(derived.has_value()) << derived.error().message();
    auto h = hsm::HsmCardKeys::from_derived(*keys_, *derived, c.type);
    ASSERT_TRUE(h.has_value()) << h.error().message();
    auto values = diversify_static_keys(DiversificationScheme::kKdf3, key(c.master), kdd);
    ASSERT_TRUE(values.has_value());
    auto clear = ClearCardKeys::create(std::move(values).value(), KeyFamily::kAes);
    ASSERT_TRUE(clear.has_value());
    expect_same_kcvs(*h, *clear);
    for (std::uint8_t i : {std::uint8_t{0x70}, std::uint8_t{0x71}}) {
      ChannelParams p = params(3, i, 0x03);
      p.kdd = kdd;
      expect_same_sessions(*h, *clear, p);
    }
  }
}

TEST_F(HsmCardKeysTest, RefusalsNameTheKeyNeverItsValue) {
  const hsm::KeyInfo enc = import("r-enc", KeyType::kAes128, kAesEnc128);
  const hsm::KeyInfo mac256 = import("r-mac256", KeyType::kAes256, kAesMac256);
  const hsm::KeyInfo dek = import("r-dek", KeyType::kAes128, kAesDek128);
  const hsm::KeyInfo mac_nosign = import("r-mac-nosign", KeyType::kAes128, kAesMac128, KeyUsage{.encrypt = true});
  auto check = [](const Result<hsm::HsmCardKeys>& r, const std::string& label) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(label), std::string::npos) << r.error().message();
    for (const std::string& v : {kAesEnc128, kAesMac256, kAesMac128, kAesDek128}) {
      EXPECT_EQ(r.error().message().find(v), std::string::npos);
    }
  };
  check(hsm::HsmCardKeys::from_token_keys(*keys_, enc, mac256, dek), "r-mac256");
  check(hsm::HsmCardKeys::from_token_keys(*keys_, enc, mac_nosign, dek), "r-mac-nosign");

  // A DES key set has no AES-CMAC; the error names the operation and the key.
  hsm::HsmCardKeys des = token_keys("rd", KeyType::kDes2, kDesEnc, kDesMac, kDesDek);
  auto cmac = des.aes_cmac(CardKeyRole::kMac, hex("00"));
  ASSERT_FALSE(cmac.has_value());
  EXPECT_NE(cmac.error().message().find("card MAC key 'rd-mac'"), std::string::npos) << cmac.error().message();
  auto partial = des.cbc_encrypt(CardKeyRole::kEnc, hex("0011"));
  ASSERT_FALSE(partial.has_value());
  EXPECT_NE(partial.error().message().find("card ENC key 'rd-enc'"), std::string::npos) << partial.error().message();
  // SCP03 over DES keys is refused by the session, before any key is used.
  auto s = open_offline_session(des, params(3, 0x70, 0x03));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

// ---- The binary ------------------------------------------------------------------------------

class HsmCardKeysCliTest : public HsmCardKeysTest {
 protected:
  ProcessResult wrap(std::vector<std::string> args, const std::string& script) {
    args.insert(args.begin(), {PERSOFLOW_CLI_PATH, "scp", "wrap"});
    ProcessResult r = run_process(args, token_env_->env(), script);
    for (const std::string& secret : secrets_) {
      EXPECT_EQ(r.out.find(secret), std::string::npos) << "key hex printed";
      EXPECT_EQ(r.err.find(secret), std::string::npos) << "key hex printed";
    }
    return r;
  }
  std::vector<std::string> secrets_;
};

std::string long_install() {
  std::string data;
  for (int k = 0; k < 300; ++k) data += "A5";
  return "80E60C00" + std::string("00012C") + data + "0100";  // extended plain, 300 bytes, Le 256
}

TEST_F(HsmCardKeysCliTest, ScpWrapWithHsmKeysEqualsTestKeys) {
  struct Case {
    std::string prefix;
    KeyType type;
    std::string e, m, d;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {"s3", KeyType::kAes128, kAesEnc128, kAesMac128, kAesDek128,
       {"--scp", "03", "--i", "70", "--level", "03", "--kvn", "30", "--kdd", "00000000000000000000", "--aid",
        "A000000151000000", "--host-challenge", "DA2390D378D94B0A", "--sequence-counter", "000085"}},
      {"s16", KeyType::kAes256, kAesEnc256, kAesMac256, kAesDek256,
       {"--scp", "03", "--i", "71", "--s16", "--level", "33", "--kvn", "30", "--kdd", "00112233445566778899",
        "--aid", "A000000151000000", "--host-challenge", "000102030405060708090A0B0C0D0E0F",
        "--sequence-counter", "000001", "--json"}},
      {"s2", KeyType::kDes2, kDesEnc, kDesMac, kDesDek,
       {"--scp", "02", "--i", "55", "--level", "03", "--kvn", "20", "--kdd", "000074746E6E6E626262", "--aid",
        "A000000151000000", "--host-challenge", "1122334455667788", "--sequence-counter", "000A"}},
  };
  const std::string script = "80F22002024F0000\n80CA006600\n" + long_install() + "\n80F24002024F0000\n";
  for (const Case& c : cases) {
    SCOPED_TRACE(c.prefix);
    secrets_ = {c.e, c.m, c.d};
    const hsm::KeyInfo e = import(c.prefix + "-enc", c.type, c.e);
    const hsm::KeyInfo m = import(c.prefix + "-mac", c.type, c.m);
    const hsm::KeyInfo d = import(c.prefix + "-dek", c.type, c.d);
    std::vector<std::string> with_test = c.args;
    with_test.insert(with_test.end(), {"--test-keys", c.e + ":" + c.m + ":" + c.d});
    std::vector<std::string> with_hsm = c.args;
    with_hsm.insert(with_hsm.end(), {"--key-enc", e.uri, "--key-mac", m.uri, "--key-dek", d.uri});
    const ProcessResult clear = wrap(with_test, script);
    ASSERT_EQ(clear.exit_code, 0) << clear.err;
    const ProcessResult hsm = wrap(with_hsm, script);
    ASSERT_EQ(hsm.exit_code, 0) << hsm.err;
    EXPECT_EQ(hsm.out, clear.out);
    EXPECT_NE(hsm.out.find(c.args[3] == "71" ? "\"commands\"" : "COMMAND 4 (line 3)"), std::string::npos)
        << "the 300-byte command is chained: " << hsm.out;
  }
}

TEST_F(HsmCardKeysCliTest, ScpWrapHsmKeyErrors) {
  const hsm::KeyInfo e = import("x-enc", KeyType::kAes128, kAesEnc128);
  const hsm::KeyInfo m = import("x-mac", KeyType::kAes128, kAesMac128);
  const hsm::KeyInfo d = import("x-dek", KeyType::kAes128, kAesDek128);
  const hsm::KeyInfo des = import("x-des", KeyType::kDes2, kDesEnc);
  secrets_ = {kAesEnc128, kAesMac128, kAesDek128, kDesEnc};
  const std::vector<std::string> base = {"--scp", "03", "--i", "70", "--level", "03", "--kvn", "30", "--kdd",
                                         "00000000000000000000", "--aid", "A000000151000000", "--host-challenge",
                                         "DA2390D378D94B0A", "--sequence-counter", "000085"};
  auto with = [&](const std::string& enc, const std::string& mac, const std::string& dek) {
    std::vector<std::string> a = base;
    if (!enc.empty()) a.insert(a.end(), {"--key-enc", enc});
    if (!mac.empty()) a.insert(a.end(), {"--key-mac", mac});
    if (!dek.empty()) a.insert(a.end(), {"--key-dek", dek});
    return a;
  };
  ProcessResult r = wrap(with(e.uri, "", d.uri), "80CA006600\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("go together"), std::string::npos) << r.err;

  r = wrap(with(e.uri, "pkcs11:object=absent-mac", d.uri), "80CA006600\n");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--key-mac"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  r = wrap(with(e.uri, des.uri, d.uri), "80CA006600\n");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("x-des"), std::string::npos) << r.err;

  // SCP02 with AES keys: a usage error, nothing printed.
  std::vector<std::string> scp02 = {"--scp", "02", "--i", "55", "--level", "01", "--kvn", "20", "--kdd",
                                    "000074746E6E6E626262", "--aid", "A000000151000000", "--host-challenge",
                                    "1122334455667788", "--sequence-counter", "000A", "--key-enc", e.uri,
                                    "--key-mac", m.uri, "--key-dek", d.uri};
  r = wrap(scp02, "80CA006600\n");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("SCP02 needs 2-key 3DES"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

}  // namespace
}  // namespace persoflow::test
