// The EMV CPS reference profile (config/profiles/emv-payment-scp03.xml) end to end through
// the real binary and a fresh SoftHSM token: gen-issuer, run (import + prep), then every
// card's session checked by the tests' own verifier (OpenSSL only) and every DGI rebuilt
// from the plain record: records with Track 2 Equivalent Data, FCI and GPO constants, the
// ICC master keys in DGI 8000 (decrypted under the card's K-DEK and compared with EMV
// Option A computed here from the clear IMKs), their KCVs in 9000, the PIN block in 8010
// (moved key-to-key: decrypted, it is the issuer's padded block) and 9010.
#include "tests/integration/cli_prep_fixture.h"

#include <openssl/evp.h>

namespace persoflow::test {
namespace {

// Issuer master keys, from two known components each (the verifier needs the values).
// IMK-AC is pyemv's test IMK (gp-reference.md §7.9).
const std::string kImkAc1 = "0123456789ABCDEFFEDCBA9876543210";
const std::string kImkAc2 = "00000000000000000000000000000000";
const std::string kImkSmi1 = "11111111111111112222222222222222";
const std::string kImkSmi2 = "0A0B0C0D0E0F10111213141516171819";
const std::string kImkSmc1 = "C1C1C1C1C1C1C1C1D2D2D2D2D2D2D2D2";
const std::string kImkSmc2 = "00112233445566778899AABBCCDDEEFF";
// The SCP02 product's KMC (3DES, EMV CPS diversification).
const std::string kKmc02a = "404142434445464748494A4B4C4D4E4F";
const std::string kKmc02b = "0102030405060708090A0B0C0D0E0F10";
// The service provider's master key of tsm-sp-onboarding.xml (its SD's key set, kdf3).
const std::string kKmcSp1 = "5A5B5C5D5E5F60616263646566676869";
const std::string kKmcSp2 = "0102030405060708F1F2F3F4F5F6F7F8";

// EMV Book 2 A1.4.1 Option A, here straight on OpenSSL: Y = rightmost 16 digits of
// PAN || PSN; Z = 3DES(IMK, Y) || 3DES(IMK, Y xor FF..); odd parity on every byte.
ByteVec option_a(const ByteVec& imk, const std::string& pan, const std::string& psn) {
  std::string x = pan + psn;
  if (x.size() > 16) x = x.substr(x.size() - 16);
  x.insert(0, 16 - x.size(), '0');
  const ByteVec y = hex_bytes(x);
  ByteVec y2 = y;
  for (auto& b : y2) b ^= 0xFF;
  ByteVec z = ref_ecb(RefCipher::kTdes, true, imk, y);
  const ByteVec zr = ref_ecb(RefCipher::kTdes, true, imk, y2);
  z.insert(z.end(), zr.begin(), zr.end());
  for (auto& b : z) {
    int ones = 0;
    for (int k = 1; k < 8; ++k) ones += (b >> k) & 1;
    b = static_cast<std::uint8_t>((b & 0xFE) | (ones % 2 == 0 ? 1 : 0));
  }
  return z;
}

// RFC 5649 unwrap (AES key wrap with padding), straight on OpenSSL.
ByteVec kwp_unwrap(const ByteVec& kek, const ByteVec& wrapped) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  ByteVec out(wrapped.size() + 16);
  int len = 0;
  const bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_wrap_pad(), nullptr, kek.data(), nullptr) == 1 &&
                  EVP_DecryptUpdate(ctx, out.data(), &len, wrapped.data(), static_cast<int>(wrapped.size())) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_TRUE(ok) << "RFC 5649 unwrap failed";
  out.resize(ok ? static_cast<std::size_t>(len) : 0);
  return out;
}

struct EmvCard {
  std::string id, se_id, pan, psn, expiry, service_code, name, discretionary, pin_block;
};

std::map<std::string, EmvCard> parse_emv_plain(const std::string& xml) {
  std::map<std::string, EmvCard> out;
  const std::regex card_re("<card id=\"([^\"]+)\">(.*?)</card>");
  auto field = [](const std::string& body, const std::string& name) {
    std::smatch m;
    const std::regex re("<" + name + ">([^<]*)</" + name + ">");
    return std::regex_search(body, m, re) ? m[1].str() : std::string();
  };
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), card_re); it != std::sregex_iterator(); ++it) {
    const std::string body = (*it)[2];
    EmvCard c{(*it)[1],           field(body, "se-id"), field(body, "pan"),
              field(body, "psn"), field(body, "expiry"), field(body, "service-code"),
              field(body, "name"), field(body, "discretionary-data"), field(body, "pin-block")};
    out[c.id] = c;
  }
  return out;
}

// DGIs of a STORE DATA stream: id, then length (1 byte, or FF and 2 bytes), then value.
std::vector<std::pair<std::string, ByteVec>> parse_dgis(const ByteVec& data) {
  std::vector<std::pair<std::string, ByteVec>> out;
  std::size_t at = 0;
  while (at + 3 <= data.size()) {
    const std::string id = hex_upper(ByteVec(data.begin() + at, data.begin() + at + 2));
    std::size_t len = data[at + 2];
    at += 3;
    if (len == 0xFF) {
      len = (static_cast<std::size_t>(data[at]) << 8) | data[at + 1];
      at += 2;
    }
    EXPECT_LE(at + len, data.size()) << "DGI " << id;
    if (at + len > data.size()) break;
    out.emplace_back(id, ByteVec(data.begin() + at, data.begin() + at + len));
    at += len;
  }
  EXPECT_EQ(at, data.size());
  return out;
}

class CliEmvTest : public CliPrepTest {
 protected:
  void SetUp() override {
    CliPrepTest::SetUp();
    if (HasFatalFailure()) return;
    import_key("imk-ac", "des2", "derive", kImkAc1, kImkAc2);
    import_key("imk-smi", "des2", "derive", kImkSmi1, kImkSmi2);
    import_key("imk-smc", "des2", "derive", kImkSmc1, kImkSmc2);
    imk_ac_ = xor_bytes(hex_bytes(kImkAc1), hex_bytes(kImkAc2));
    imk_smi_ = xor_bytes(hex_bytes(kImkSmi1), hex_bytes(kImkSmi2));
    imk_smc_ = xor_bytes(hex_bytes(kImkSmc1), hex_bytes(kImkSmc2));
    import_key("kmc-scp02", "des2", "derive", kKmc02a, kKmc02b);
    kmc02_ = xor_bytes(hex_bytes(kKmc02a), hex_bytes(kKmc02b));
    import_key("kmc-sp", "aes128", "sign", kKmcSp1, kKmcSp2);
    kmc_sp_ = xor_bytes(hex_bytes(kKmcSp1), hex_bytes(kKmcSp2));
  }
  std::string profile() const override {
    if (!profile_name_.empty()) return std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/" + profile_name_;
    return std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/emv-payment-scp0" + std::to_string(scp_) + ".xml";
  }

  // gen-issuer, registry, run; returns the plain cards and checks every card.
  void run_and_verify(int cards) {
    auto g = pf({"gen-issuer", "--profile", profile(), "--cards", std::to_string(cards), "--out", path("issuer.der"),
                 "--kek-id", "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--plain", path("plain.xml"), "--seed",
                 "5", "--registry-csv", path("registry.csv")});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    ASSERT_EQ(pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")}).exit_code, 0);
    plain_ = parse_emv_plain(read_file(path("plain.xml")));
    ASSERT_EQ(plain_.size(), static_cast<std::size_t>(cards));
    auto r = pf({"run", "--profile", profile(), "--in", path("issuer.der"), "--registry", path("registry.db"),
                 "--out-dir", path("out")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto bundle_cards = read_bundle(path("out/issuer.bundle"));
    ASSERT_EQ(bundle_cards.size(), static_cast<std::size_t>(cards));
    for (const auto& card : bundle_cards) verify_emv_card(card, plain_.at(card.card_id));
  }

  void verify_emv_card(const formats::BundleCard& card, const EmvCard& plain) {
    SCOPED_TRACE("card " + card.card_id);
    ASSERT_EQ(card.sessions.size(), 1u);
    const formats::BundleSession& s = card.sessions[0];
    const RefStaticKeys keys = scp_ == 3 ? ref_diversify("kdf3", kmc_, s.kdd, RefMasterType::kAes)
                                         : ref_diversify("emv", kmc02_, s.kdd);
    const RefSessionInput in = ref_input_of(s);
    EXPECT_EQ(s.scp, scp_);
    EXPECT_EQ(s.i, scp_ == 3 ? 0x70 : 0x55);
    EXPECT_EQ(hex_upper(s.expected_response), hex_upper(ref_expected_response(keys, in)));
    std::vector<RefApdu> apdus;
    for (std::size_t k = 1; k < s.apdus.size(); ++k) apdus.push_back({s.apdus[k].command});
    const RefVerified v = ref_verify_session(keys, in, s.expected_response, apdus);
    ASSERT_TRUE(v.ok) << v.failure;

    // INSTALL, the STORE DATA blocks, SET STATUS.
    ASSERT_GE(v.plain_commands.size(), 3u);
    EXPECT_EQ(hex_upper(v.plain_commands.front()).rfind("80E62000", 0), 0u);
    EXPECT_EQ(hex_upper(v.plain_commands.back()).rfind("80F0400F07A0000000041010", 0), 0u);
    ByteVec clear_stream;
    std::map<std::string, ByteVec> dgis;
    for (std::size_t k = 1; k + 1 < v.plain_commands.size(); ++k) {
      const ByteVec& c = v.plain_commands[k];
      ASSERT_EQ(hex_upper(ByteVec(c.begin(), c.begin() + 2)), "80E2");
      const ByteVec data(c.begin() + 5, c.begin() + 5 + c[4]);
      if ((c[2] & 0x60) == 0x60) {
        for (auto& [id, value] : parse_dgis(data)) dgis[id] = ref_decrypt_sensitive(keys, in, value);
      } else {
        clear_stream.insert(clear_stream.end(), data.begin(), data.end());
      }
    }
    for (auto& [id, value] : parse_dgis(clear_stream)) dgis[id] = value;
    EXPECT_EQ(dgis.size(), 8u);  // 0101 0102 9102 9104 8000 9000 8010 9010

    // Records, rebuilt from the plain values.
    std::string t2 = plain.pan + "D" + plain.expiry + plain.service_code + plain.discretionary;
    if (t2.size() % 2 != 0) t2 += "F";
    ByteVec r1 = tlv("57", hex_bytes(t2));
    for (const ByteVec& t : {tlv("5F20", ByteVec(plain.name.begin(), plain.name.end())),
                             tlv("9F1F", ByteVec(plain.discretionary.begin(), plain.discretionary.end()))}) {
      r1.insert(r1.end(), t.begin(), t.end());
    }
    EXPECT_EQ(hex_upper(dgis["0101"]), hex_upper(tlv("70", r1)));
    ByteVec r2 = tlv("5A", bcd(plain.pan));
    for (const ByteVec& t : {tlv("5F24", bcd(plain.expiry + "31")), tlv("5F34", bcd(plain.psn, 1)),
                             tlv("5F28", hex_bytes("0840")),
                             tlv("8C", hex_bytes("9F02069F03069F1A0295055F2A029A039C019F3704")),
                             tlv("8D", hex_bytes("8A029F02069F03069F1A0295055F2A029A039C019F3704")),
                             tlv("8E", hex_bytes("000000000000000042031E031F00"))}) {
      r2.insert(r2.end(), t.begin(), t.end());
    }
    EXPECT_EQ(hex_upper(dgis["0102"]), hex_upper(tlv("70", r2)));
    EXPECT_EQ(hex_upper(dgis["9102"]), "A50F500A41434D45204445424954870101");
    EXPECT_EQ(hex_upper(dgis["9104"]), "82021800940408010200");
    EXPECT_EQ(hex_upper(dgis["9010"]), "0303");

    // ICC master keys: decrypted under the K-DEK, they are Option A of the clear IMKs.
    const ByteVec ac = option_a(imk_ac_, plain.pan, plain.psn);
    const ByteVec smi = option_a(imk_smi_, plain.pan, plain.psn);
    const ByteVec smc = option_a(imk_smc_, plain.pan, plain.psn);
    ByteVec mks = ac;
    mks.insert(mks.end(), smi.begin(), smi.end());
    mks.insert(mks.end(), smc.begin(), smc.end());
    EXPECT_EQ(hex_upper(dgis["8000"]), hex_upper(mks));
    ByteVec kcvs = ref_kcv(ac, false);
    for (const ByteVec& k : {ref_kcv(smi, false), ref_kcv(smc, false)}) kcvs.insert(kcvs.end(), k.begin(), k.end());
    EXPECT_EQ(hex_upper(dgis["9000"]), hex_upper(kcvs));
    // The PIN block the issuer sent (format 2, padded to 16 bytes), moved key-to-key.
    const ByteVec pin = kwp_unwrap(xor_bytes(hex_bytes(kPinTk1), hex_bytes(kPinTk2)), hex_bytes(plain.pin_block));
    ASSERT_EQ(pin.size(), scp_ == 3 ? 16u : 8u);
    EXPECT_EQ(pin[0], 0x24);
    if (scp_ == 3) {
      EXPECT_EQ(hex_upper(ByteVec(pin.begin() + 8, pin.end())), "8000000000000000");
    }
    EXPECT_EQ(hex_upper(dgis["8010"]), hex_upper(pin));
  }

  ByteVec imk_ac_, imk_smi_, imk_smc_, kmc02_, kmc_sp_;
  int scp_ = 3;
  std::string profile_name_;
  std::map<std::string, EmvCard> plain_;
};

TEST(EmvOptionATest, TheVerifiersDerivationReproducesPyemv) {
  // gp-reference.md §7.9 (pyemv kd.py doctest): PAN 12345678901234567, PSN 01.
  EXPECT_EQ(hex_upper(option_a(hex_bytes("0123456789ABCDEFFEDCBA9876543210"), "12345678901234567", "01")),
            "73AD54688CEF2934B0979857E3C719F1");
  EXPECT_EQ(hex_upper(option_a(hex_bytes("0123456789ABCDEFFEDCBA9876543210"), "99012345678901234", "45")),
            "67F8292358083E5EA7AB7FDA58D53B6B");
}

TEST_F(CliEmvTest, EveryCardOfTheCpsProfileVerifiesIndependently) {
  run_and_verify(24);
  if (HasFatalFailure()) return;
  const auto& plain = plain_;
  for (const auto& [id, c] : plain) {
    ASSERT_EQ(c.pin_block.size(), 48u) << "the issuer's PIN block, padded to 16 bytes, then wrapped (RFC 5649)";
    ASSERT_EQ(c.psn.size(), 2u);
  }
  const auto report = nlohmann::json::parse(read_file(path("out/issuer.report.json")));
  for (const auto& e : report["key_handling"]["host_exposures"]) {
    EXPECT_EQ(e["what"].get<std::string>().find("DGI"), std::string::npos) << "SCP03: DGIs never transit the host";
  }
  // Nothing of the keys or the PIN block is in the bundle in clear.
  const std::string bundle = read_file(path("out/issuer.bundle"));
  for (const auto& [id, c] : plain) {
    const ByteVec pin = kwp_unwrap(xor_bytes(hex_bytes(kPinTk1), hex_bytes(kPinTk2)), hex_bytes(c.pin_block));
    ASSERT_EQ(pin.size(), 16u);
    EXPECT_EQ(bundle.find(std::string(pin.begin(), pin.begin() + 8)), std::string::npos);
    const ByteVec mk = option_a(imk_ac_, c.pan, c.psn);
    EXPECT_EQ(bundle.find(std::string(mk.begin(), mk.end())), std::string::npos);
  }
}

TEST_F(CliEmvTest, TheScp02ProfileTakesTheHostPathItOptsInto) {
  scp_ = 2;
  run_and_verify(16);
  if (HasFatalFailure()) return;
  for (const auto& [id, c] : plain_) {
    ASSERT_EQ(c.pin_block.size(), 32u) << "an 8-byte PIN block, wrapped (RFC 5649)";
  }
  // The report names both values that transited host memory, and why.
  const auto report = nlohmann::json::parse(read_file(path("out/issuer.report.json")));
  std::set<std::string> whats;
  for (const auto& e : report["key_handling"]["host_exposures"]) {
    whats.insert(e["what"].get<std::string>());
    EXPECT_FALSE(e["why"].get<std::string>().empty());
  }
  EXPECT_EQ(whats.count("DGI 8000: ICC master keys MK-AC, MK-SMI, MK-SMC"), 1u) << report.dump(2);
  EXPECT_EQ(whats.count("DGI 8010: attribute 'pin_block'"), 1u) << report.dump(2);
  // Without the opt-in, the SCP02 profile is refused before any card.
  std::string xml = read_file(profile());
  const std::string opt_in = "source=\"icc-master-keys\" via=\"host\"";
  xml.replace(xml.find(opt_in), opt_in.size(), "source=\"icc-master-keys\"");
  write_file(path("no-opt-in.xml"), xml);
  auto r = pf({"run", "--profile", path("no-opt-in.xml"), "--in", path("issuer.der"), "--registry",
               path("registry.db"), "--out-dir", path("out2")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("add via=\"host\" to opt in"), std::string::npos) << r.err;
}

// The TSM onboarding profile, three secure channels per card, each verified independently:
// 1. the ISD (registry key set, reserved counter): SP SD created, applet instantiated and
//    extradited; 2. the SP SD with the ISD's key set and the next reserved counter: PUT KEY
//    of the service provider's key set, whose keys decrypt (under the ISD's K-DEK) to kdf3 of
//    the SP master key computed here, with the KCVs the SE must answer; 3. the SP SD with
//    that new key set at counter 1: personalization (PIN block under the new K-DEK) and
//    activation.
TEST_F(CliEmvTest, TheTsmOnboardingProfileRotatesTheSpKeysAndPersonalizesThroughTheSpSd) {
  profile_name_ = "tsm-sp-onboarding.xml";
  auto g = pf({"gen-issuer", "--profile", profile(), "--cards", "6", "--out", path("issuer.der"), "--kek-id",
               "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--plain", path("plain.xml"), "--seed", "9",
               "--registry-csv", path("registry.csv")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ASSERT_EQ(pf({"registry", "import", "--db", path("registry.db"), "--csv", path("registry.csv")}).exit_code, 0);
  const auto plain = parse_emv_plain(read_file(path("plain.xml")));
  auto r = pf({"run", "--profile", profile(), "--in", path("issuer.der"), "--registry", path("registry.db"),
               "--out-dir", path("out")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(read_file(path("out/issuer.report.json")));
  EXPECT_EQ(report["reservation"]["counters_reserved"], 12) << "two values of the ISD key set per card";
  EXPECT_EQ(read_file(path("out/issuer.rejects.jsonl")), "");
  const auto cards = read_bundle(path("out/issuer.bundle"));
  ASSERT_EQ(cards.size(), 6u);
  const ByteVec sp_sd = hex_bytes("F041434D4553504431");
  std::set<std::string> sp_challenges;
  for (const auto& card : cards) {
    SCOPED_TRACE(card.card_id);
    ASSERT_EQ(card.sessions.size(), 3u);
    auto verify = [&](const formats::BundleSession& s, const RefStaticKeys& keys, RefSessionInput& in) {
      in = ref_input_of(s);
      EXPECT_EQ(s.scp, 3);
      EXPECT_EQ(hex_upper(s.expected_response), hex_upper(ref_expected_response(keys, in)));
      // APDU 0 is the clear SELECT of the session's SD.
      EXPECT_EQ(hex_upper(s.apdus[0].command), hex_upper(ByteVec{0x00, 0xA4, 0x04, 0x00}) +
                                                   hex_upper(ByteVec{static_cast<std::uint8_t>(s.sd_aid.size())}) +
                                                   hex_upper(s.sd_aid) + "00");
      std::vector<RefApdu> apdus;
      for (std::size_t k = 1; k < s.apdus.size(); ++k) apdus.push_back({s.apdus[k].command});
      RefVerified v = ref_verify_session(keys, in, s.expected_response, apdus);
      EXPECT_TRUE(v.ok) << v.failure;
      std::vector<std::string> heads;
      for (const ByteVec& c : v.plain_commands) heads.push_back(hex_upper(ByteVec(c.begin(), c.begin() + 4)));
      return std::make_pair(v, heads);
    };

    // 1. The ISD.
    const formats::BundleSession& s1 = card.sessions[0];
    const RefStaticKeys isd_keys = ref_diversify("kdf3", kmc_, s1.kdd, RefMasterType::kAes);
    RefSessionInput in1;
    auto [v1, heads1] = verify(s1, isd_keys, in1);
    ASSERT_TRUE(v1.ok);
    // INSTALL [install] SP SD, [make selectable] it, [install and make selectable] applet,
    // INSTALL [extradition] to the SP SD.
    EXPECT_EQ(heads1, (std::vector<std::string>{"80E60400", "80E60800", "80E60C00", "80E61000"}));
    EXPECT_NE(hex_upper(v1.plain_commands[0]).find("09F041434D455350443103" "80C000"), std::string::npos)
        << hex_upper(v1.plain_commands[0]);
    EXPECT_NE(hex_upper(v1.plain_commands.back()).find("09F041434D4553504431" "0007A0000000041010"), std::string::npos)
        << hex_upper(v1.plain_commands.back());

    // 2. The SP SD with the ISD's key set, the next counter value: PUT KEY.
    const formats::BundleSession& s2 = card.sessions[1];
    EXPECT_EQ(hex_upper(s2.sd_aid), hex_upper(sp_sd));
    EXPECT_EQ(s2.kvn, s1.kvn);
    EXPECT_EQ(s2.counter, s1.counter + 1);
    RefSessionInput in2;
    auto [v2, heads2] = verify(s2, isd_keys, in2);
    ASSERT_TRUE(v2.ok);
    ASSERT_EQ(heads2, (std::vector<std::string>{"80D80081"}));
    const RefStaticKeys sp_keys = ref_diversify("kdf3", kmc_sp_, s1.kdd, RefMasterType::kAes);
    const ByteVec& put = v2.plain_commands[0];
    ASSERT_GE(put.size(), 5u);
    const ByteVec data(put.begin() + 5, put.begin() + 5 + put[4]);
    // 31, then per key: 88 11 10 <key under the ISD's K-DEK> 03 <KCV> (Amd D Table 7-10).
    ASSERT_EQ(data.size(), 1u + 3 * 23);
    EXPECT_EQ(data[0], 0x31);
    ByteVec answer{0x31};
    const ByteVec* want_keys[] = {&sp_keys.enc, &sp_keys.mac, &sp_keys.dek};
    for (int k = 0; k < 3; ++k) {
      const ByteVec component(data.begin() + 1 + 23 * k, data.begin() + 1 + 23 * (k + 1));
      EXPECT_EQ(hex_upper(ByteVec(component.begin(), component.begin() + 3)), "881110");
      const ByteVec cipher(component.begin() + 3, component.begin() + 19);
      EXPECT_EQ(hex_upper(ref_decrypt_sensitive(isd_keys, in2, cipher)), hex_upper(*want_keys[k])) << "key " << k;
      EXPECT_EQ(component[19], 0x03);
      const ByteVec kcv = ref_kcv(*want_keys[k], true);
      EXPECT_EQ(hex_upper(ByteVec(component.begin() + 20, component.end())), hex_upper(kcv));
      answer.insert(answer.end(), kcv.begin(), kcv.end());
    }
    // The answer the SE must give: KVN and the KCVs, on the PUT KEY's (last) APDU.
    EXPECT_EQ(hex_upper(s2.apdus.back().expected_data), hex_upper(answer));
    for (std::size_t k = 0; k + 1 < s2.apdus.size(); ++k) EXPECT_TRUE(s2.apdus[k].expected_data.empty());

    // 3. The SP SD with its new key set, counter 1: personalization and activation.
    const formats::BundleSession& s3 = card.sessions[2];
    EXPECT_EQ(hex_upper(s3.sd_aid), hex_upper(sp_sd));
    EXPECT_EQ(s3.kvn, 0x31);
    EXPECT_EQ(s3.counter, 1u);
    EXPECT_EQ(hex_upper(ByteVec(s3.apdus[1].command.begin(), s3.apdus[1].command.begin() + 4)), "80503100")
        << "INITIALIZE UPDATE asks for the new key set";
    sp_challenges.insert(hex_upper(s3.host_challenge));
    RefSessionInput in3;
    auto [v3, heads3] = verify(s3, sp_keys, in3);
    ASSERT_TRUE(v3.ok);
    // [personalization], STORE DATA (clear 0101+0102, then encrypted 8010), SET STATUS.
    EXPECT_EQ(heads3, (std::vector<std::string>{"80E62000", "80E20000", "80E2E001", "80F0400F"}));
    const ByteVec& sd = v3.plain_commands[2];
    const ByteVec pin_data(sd.begin() + 5, sd.begin() + 5 + sd[4]);
    ASSERT_GE(pin_data.size(), 3u);
    EXPECT_EQ(hex_upper(ByteVec(pin_data.begin(), pin_data.begin() + 2)), "8010");
    const ByteVec pin = kwp_unwrap(xor_bytes(hex_bytes(kPinTk1), hex_bytes(kPinTk2)),
                                   hex_bytes(plain.at(card.card_id).pin_block));
    EXPECT_EQ(hex_upper(ref_decrypt_sensitive(sp_keys, in3, ByteVec(pin_data.begin() + 3, pin_data.end()))),
              hex_upper(pin));
  }
  EXPECT_EQ(sp_challenges.size(), cards.size());
  // Each SE's key set gave two consecutive values to its card, recorded as one range.
  auto reg = formats::SeRegistry::open(path("registry.db"), false);
  ASSERT_TRUE(reg.has_value());
  for (const auto& card : cards) {
    auto ranges = reg->ranges_for_se(card.se_id);
    ASSERT_TRUE(ranges.has_value());
    ASSERT_EQ(ranges->size(), 1u);
    EXPECT_EQ((*ranges)[0].first, card.sessions[0].counter);
    EXPECT_EQ((*ranges)[0].last, card.sessions[0].counter + 1);
  }
}

// Steps in the wrong channel are profile errors, named by file and line, before any card.
TEST_F(CliEmvTest, TsmStepsInTheWrongChannelAreProfileErrors) {
  profile_name_ = "tsm-sp-onboarding.xml";
  const std::string xml = read_file(profile());
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string x = xml;
    const std::size_t at = x.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) x.replace(at, from.size(), to);
    write_file(path("bad.xml"), x);
    return pf({"run", "--profile", path("bad.xml"), "--in", path("none.der"), "--registry", path("none.db"),
               "--out-dir", path("out")});
  };
  auto line_of = [&](const std::string& text) {
    return std::to_string(std::count(xml.begin(), xml.begin() + static_cast<std::ptrdiff_t>(xml.find(text)), '\n') + 1);
  };
  // Personalization through the ISD after the applet was extradited to the SP SD.
  auto r = broken("<session sd=\"F041434D4553504431\" keys=\"sp\">", "<session>");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("step in the wrong channel: the application is associated with F041434D4553504431 (line " +
                       line_of("<install-for-extradition")),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("bad.xml:" + line_of("<install-for-personalization")), std::string::npos) << r.err;
  // The SP's key set put through the ISD.
  r = broken("<session sd=\"F041434D4553504431\">\n        <put-key", "<session>\n        <put-key");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("bad.xml:" + line_of("<put-key") + ": <put-key key-set=\"sp\">: step in the wrong channel: "
                                                          "the key set belongs to F041434D4553504431"),
            std::string::npos)
      << r.err;
  // A session with the new keys before the PUT KEY.
  r = broken("        <put-key key-set=\"sp\"/>\n", "        <apdu hex=\"80CA006600\"/>\n");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no earlier <put-key key-set=\"sp\">"), std::string::npos) << r.err;
  // An undeclared key set; a command after a session.
  r = broken("<put-key key-set=\"sp\"/>", "<put-key key-set=\"other\"/>");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("key-set 'other' is not declared"), std::string::npos) << r.err;
  r = broken("    </script>", "      <apdu hex=\"80CA006600\"/>\n    </script>");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("after a <session>"), std::string::npos) << r.err;
  // A missing SP master key: named with the <key-set> line, before anything is reserved.
  auto g = pf({"gen-issuer", "--profile", profile(), "--cards", "2", "--out", path("none.der"), "--kek-id",
               "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--registry-csv", path("registry.csv")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ASSERT_EQ(pf({"registry", "import", "--db", path("none.db"), "--csv", path("registry.csv")}).exit_code, 0);
  r = broken("master-key=\"pkcs11:object=kmc-sp\"", "master-key=\"pkcs11:object=kmc-missing\"");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("bad.xml:" + line_of("<key-set") + ": <key-set name=\"sp\"> master-key"), std::string::npos)
      << r.err;
  auto reg = formats::SeRegistry::open(path("none.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
}

TEST_F(CliEmvTest, ProfileErrorsAreReportedBeforeAnyCard) {
  std::string xml = read_file(profile());
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string x = xml;
    x.replace(x.find(from), from.size(), to);
    write_file(path("bad.xml"), x);
    return pf({"run", "--profile", path("bad.xml"), "--in", path("none.der"), "--registry", path("none.db"),
               "--out-dir", path("out")});
  };
  auto r = broken("    <icc-keys option=\"A\" pan=\"pan\" psn=\"psn\" imk-ac=\"pkcs11:object=imk-ac\"\n"
                  "              imk-smi=\"pkcs11:object=imk-smi\" imk-smc=\"pkcs11:object=imk-smc\"/>\n",
                  "");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("source=\"icc-master-keys\" needs an <icc-keys> element"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bad.xml:"), std::string::npos) << r.err;
  r = broken("<dgi id=\"8010\" attribute=\"pin_block\" encrypted=\"true\"/>", "<dgi id=\"8010\" attribute=\"pin_block\"/>");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("its DGI must say encrypted=\"true\""), std::string::npos) << r.err;
  // A missing issuer master key: a run error before anything is reserved.
  auto g = pf({"gen-issuer", "--profile", profile(), "--cards", "2", "--out", path("none.der"), "--kek-id",
               "A1B2C3D4", "--tk", "pkcs11:object=tk-acme-01", "--registry-csv", path("registry.csv")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ASSERT_EQ(pf({"registry", "import", "--db", path("none.db"), "--csv", path("registry.csv")}).exit_code, 0);
  r = broken("imk-smc=\"pkcs11:object=imk-smc\"", "imk-smc=\"pkcs11:object=imk-missing\"");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("imk-smc"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("imk-missing"), std::string::npos) << r.err;
  // The profile file, the line of <icc-keys> and the element name the missing key.
  const std::size_t icc_line =
      static_cast<std::size_t>(std::count(xml.begin(), xml.begin() + static_cast<std::ptrdiff_t>(xml.find("<icc-keys")), '\n')) + 1;
  EXPECT_NE(r.err.find("bad.xml:" + std::to_string(icc_line) + ": <icc-keys> imk-smc"), std::string::npos) << r.err;
  auto reg = formats::SeRegistry::open(path("none.db"), false);
  ASSERT_TRUE(reg.has_value());
  auto list = reg->reservations();
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
}

}  // namespace
}  // namespace persoflow::test
