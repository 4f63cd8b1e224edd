// engine/card_script.h: the content-management commands of <script> (INSTALL [for install],
// [for install and make selectable], [for make selectable], [for extradition], DELETE)
// built inside a real offline SCP03 session. Level 01 (C-MAC only) leaves every data field
// readable, so each wrapped command is checked byte by byte against GPC v2.3.1 §11.2 and
// §11.5 (gp-reference.md §5, §5.1): CLA 84, INS, P1/P2, the LV-coded data field, the C-MAC
// and Le 00. The whole script is also compared with the same plain commands wrapped in
// order by a second, identical session: the C-MAC chain runs through the new commands.
#include "engine/card_script.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/card_keys.h"
#include "engine/gp_commands.h"
#include "engine/scp03.h"

namespace persoflow {
namespace {

Bytes hex(const std::string& text) {
  auto b = from_hex(text);
  EXPECT_TRUE(b.has_value()) << text;
  return b ? *b : Bytes{};
}

const std::string kSpSd = "A0000001515350410001";   // the SP SD instance
const std::string kSsdElf = "A0000001515350";       // the card's SD load file ...
const std::string kSsdModule = "A000000151535041";  // ... and module
const std::string kElf = "F041434D4501";            // the applet's load file ...
const std::string kModule = "F041434D450101";       // ... and module
const std::string kApp = "A0000000041010";          // the applet instance

std::unique_ptr<OfflineSession> open_session(CardKeys& keys, std::uint8_t level) {
  ChannelParams p;
  p.scp = 3;
  p.i = 0x70;
  p.level = level;
  p.kvn = 0x30;
  p.kdd = hex("00112233445566778899");
  p.aid = hex("A000000151000000");
  p.counter = 7;
  p.host_challenge = hex("0001020304050607");
  auto session = open_offline_session(keys, p);
  EXPECT_TRUE(session.has_value()) << session.error().message();
  return session ? std::move(*session) : nullptr;
}

std::unique_ptr<ClearCardKeys> test_keys() {
  const Bytes k = hex("404142434445464748494A4B4C4D4E4F");
  auto keys = ClearCardKeys::create(StaticKeySet{SecureBytes(k), SecureBytes(k), SecureBytes(k)},
                                    KeyFamily::kAes);
  EXPECT_TRUE(keys.has_value());
  return keys ? std::make_unique<ClearCardKeys>(std::move(*keys)) : nullptr;
}

CommandSpec install(const std::string& elf, const std::string& module, const std::string& aid,
                    const std::string& privileges, std::size_t line) {
  CommandSpec c;
  c.kind = CommandKind::kInstallForInstall;
  c.line = line;
  c.load_file_aid = hex(elf);
  c.module_aid = hex(module);
  c.aid = hex(aid);
  c.privileges = hex(privileges);
  return c;
}

// The script of a TSM onboarding, one of each new command (and both P1 / P2 variants).
PrepSpec onboarding(std::uint8_t level) {
  PrepSpec prep;
  prep.channel.scp = 3;
  prep.channel.level = level;
  // 1. The SP SD: Security Domain + Trusted Path + Authorized Management, no parameters.
  prep.script.push_back(install(kSsdElf, kSsdModule, kSpSd, "80C000", 10));
  // 2. Made selectable.
  CommandSpec selectable;
  selectable.kind = CommandKind::kInstallForMakeSelectable;
  selectable.line = 11;
  selectable.aid = hex(kSpSd);
  selectable.privileges = hex("80C000");
  prep.script.push_back(selectable);
  // 3. The applet, installed and made selectable, with C9 and EF parameters and a token.
  CommandSpec applet = install(kElf, kModule, kApp, "04", 12);
  applet.make_selectable = true;
  applet.application_parameters = hex("0102AB");
  applet.system_parameters = hex("C80207D0");
  applet.token = hex("1122");
  prep.script.push_back(applet);
  // 4. Extradited to the SP SD.
  CommandSpec extradite;
  extradite.kind = CommandKind::kInstallForExtradition;
  extradite.line = 13;
  extradite.sd_aid = hex(kSpSd);
  extradite.aid = hex(kApp);
  prep.script.push_back(extradite);
  // 5. DELETE of an instance alone, then of a load file with its related objects.
  CommandSpec del;
  del.kind = CommandKind::kDelete;
  del.line = 14;
  del.aid = hex(kApp);
  prep.script.push_back(del);
  del.line = 15;
  del.aid = hex(kElf);
  del.delete_related = true;
  prep.script.push_back(del);
  return prep;
}

// A C-MAC-only SCP03 command: header, Lc = plain data + 8, plain data, C-MAC (8), Le.
struct Parts {
  std::string header;  // CLA INS P1 P2
  std::size_t lc = 0;
  std::string data;     // the plain data field
  std::string trailer;  // after the C-MAC: Le
};

Parts split(const Bytes& apdu) {
  Parts p;
  EXPECT_GE(apdu.size(), 5u + 8u);
  if (apdu.size() < 13) return p;
  p.header = to_hex(Bytes(apdu.begin(), apdu.begin() + 4));
  p.lc = apdu[4];
  EXPECT_GE(p.lc, 8u);
  if (5 + p.lc > apdu.size() || p.lc < 8) return p;
  p.data =
      to_hex(Bytes(apdu.begin() + 5, apdu.begin() + 5 + static_cast<std::ptrdiff_t>(p.lc) - 8));
  p.trailer = to_hex(Bytes(apdu.begin() + 5 + static_cast<std::ptrdiff_t>(p.lc), apdu.end()));
  return p;
}

TEST(CardScriptCommandsTest, EachCommandsBytesUnderCmac) {
  auto keys = test_keys();
  ASSERT_TRUE(keys);
  auto session = open_session(*keys, 0x01);
  ASSERT_TRUE(session);
  auto script = build_card_script(onboarding(0x01), AttributeLookup{}, *session, 0x70);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  ASSERT_EQ(script->size(), 6u);

  // INSTALL [for install] (Table 11-43): 84 E6 04 00, LEN ELF | LEN module | LEN instance |
  // LEN privileges | LEN (C9 00) | LEN token (00), Le 00.
  Parts p = split((*script)[0].bytes);
  EXPECT_EQ(p.header, "84E60400");
  EXPECT_EQ(p.data, "07" + kSsdElf + "08" + kSsdModule + "0A" + kSpSd + "03" + "80C000" + "02" +
                        "C900" + "00");
  EXPECT_EQ(p.lc, p.data.size() / 2 + 8);
  EXPECT_EQ(p.trailer, "00");

  // INSTALL [for make selectable] (Table 11-44): 84 E6 08 00, 00 00 LEN AID LEN privileges
  // LEN params (00) LEN token (00), Le 00.
  p = split((*script)[1].bytes);
  EXPECT_EQ(p.header, "84E60800");
  EXPECT_EQ(p.data,
            "0000"
            "0A" +
                kSpSd +
                "03"
                "80C000"
                "00"
                "00");
  EXPECT_EQ(p.trailer, "00");

  // INSTALL [for install and make selectable]: P1 0C; install parameters C9 03 0102AB EF 04
  // C80207D0 (Table 11-49: C9 first, then EF), token 02 1122.
  p = split((*script)[2].bytes);
  EXPECT_EQ(p.header, "84E60C00");
  EXPECT_EQ(p.data, "06" + kElf + "07" + kModule + "07" + kApp +
                        "01"
                        "04"
                        "0B"
                        "C9030102AB"
                        "EF04C80207D0"
                        "02"
                        "1122");
  EXPECT_EQ(p.trailer, "00");

  // INSTALL [for extradition] (Table 11-45): 84 E6 10 00, LEN SD 00 LEN AID 00 LEN params (00)
  // LEN token (00), Le 00.
  p = split((*script)[3].bytes);
  EXPECT_EQ(p.header, "84E61000");
  EXPECT_EQ(p.data, "0A" + kSpSd +
                        "00"
                        "07" +
                        kApp +
                        "00"
                        "00"
                        "00");
  EXPECT_EQ(p.trailer, "00");

  // DELETE (§11.2): 84 E4 00 P2, 4F L AID, Le 00; P2 00 the object alone, 80 with related.
  p = split((*script)[4].bytes);
  EXPECT_EQ(p.header, "84E40000");
  EXPECT_EQ(p.data, "4F07" + kApp);
  EXPECT_EQ(p.trailer, "00");
  p = split((*script)[5].bytes);
  EXPECT_EQ(p.header, "84E40080");
  EXPECT_EQ(p.data, "4F06" + kElf);
  EXPECT_EQ(p.trailer, "00");

  for (const ScriptApdu& a : *script) EXPECT_EQ(a.expected_sw, 0x9000);
}

TEST(CardScriptCommandsTest, LabelsNameTheCommandAidAndLineOnly) {
  auto keys = test_keys();
  ASSERT_TRUE(keys);
  auto session = open_session(*keys, 0x03);
  ASSERT_TRUE(session);
  auto script = build_card_script(onboarding(0x03), AttributeLookup{}, *session, 0x70);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  ASSERT_EQ(script->size(), 6u);
  const std::vector<std::string> labels = {
      "INSTALL [for install] " + kSpSd + " (profile line 10)",
      "INSTALL [for make selectable] " + kSpSd + " (profile line 11)",
      "INSTALL [for install and make selectable] " + kApp + " (profile line 12)",
      "INSTALL [for extradition] " + kApp + " to " + kSpSd + " (profile line 13)",
      "DELETE " + kApp + " (profile line 14)",
      "DELETE " + kElf + " and related objects (profile line 15)",
  };
  for (std::size_t k = 0; k < labels.size(); ++k) {
    EXPECT_EQ((*script)[k].label, labels[k]);
    // Neither the install parameters nor the token are quoted.
    EXPECT_EQ((*script)[k].label.find("0102AB"), std::string::npos);
    EXPECT_EQ((*script)[k].label.find("1122"), std::string::npos);
  }
}

// The C-MAC chain (and at level 03 the C-DECRYPTION counter) runs through the new commands
// exactly as through any other: the script equals the plain builders' commands wrapped in
// order by an identical session.
TEST(CardScriptCommandsTest, WrappedInTheSessionLikeEveryCommand) {
  for (const std::uint8_t level : {std::uint8_t{0x01}, std::uint8_t{0x03}, std::uint8_t{0x33}}) {
    SCOPED_TRACE(static_cast<int>(level));
    auto keys = test_keys();
    ASSERT_TRUE(keys);
    auto session = open_session(*keys, level);
    auto twin = open_session(*keys, level);
    ASSERT_TRUE(session && twin);
    const PrepSpec prep = onboarding(level);
    auto script = build_card_script(prep, AttributeLookup{}, *session, 0x70);
    ASSERT_TRUE(script.has_value()) << script.error().message();

    InstallForInstallFields sd;
    sd.load_file_aid = hex(kSsdElf);
    sd.module_aid = hex(kSsdModule);
    sd.instance_aid = hex(kSpSd);
    sd.privileges = hex("80C000");
    InstallForInstallFields applet;
    applet.load_file_aid = hex(kElf);
    applet.module_aid = hex(kModule);
    applet.instance_aid = hex(kApp);
    applet.privileges = hex("04");
    applet.parameters.application_specific = hex("0102AB");
    applet.parameters.system_parameters = hex("C80207D0");
    applet.token = hex("1122");
    const std::vector<Result<CommandApdu>> plain = {
        install_for_install(sd),
        install_for_make_selectable(hex(kSpSd), hex("80C000")),
        install_for_install_and_make_selectable(applet),
        install_for_extradition(hex(kSpSd), hex(kApp)),
        delete_object(hex(kApp), false),
        delete_object(hex(kElf), true),
    };
    ASSERT_EQ(script->size(), plain.size());
    for (std::size_t k = 0; k < plain.size(); ++k) {
      ASSERT_TRUE(plain[k].has_value()) << plain[k].error().message();
      auto wrapped = twin->wrap(*plain[k]);
      ASSERT_TRUE(wrapped.has_value()) << wrapped.error().message();
      EXPECT_EQ(to_hex((*script)[k].bytes), to_hex(wrapped->to_bytes())) << (*script)[k].label;
    }
  }
}

// Install parameters too long for one wrapped APDU: the command is chained (GPC §11.1.5.1)
// and each segment labelled, as for any other command.
TEST(CardScriptCommandsTest, LongInstallIsChainedInSegments) {
  auto keys = test_keys();
  ASSERT_TRUE(keys);
  auto session = open_session(*keys, 0x01);
  ASSERT_TRUE(session);
  PrepSpec prep;
  prep.channel.scp = 3;
  prep.channel.level = 0x01;
  CommandSpec applet = install(kElf, kModule, kApp, "00", 20);
  // 7 + 8 + 8 + 2 + (1 + C9 81 C8 (203) + EF 04 (6)) + token: 236 + token bytes.
  applet.application_parameters = Bytes(200, 0x5A);
  applet.system_parameters = hex("C8020800");
  prep.script = {applet};
  auto script = build_card_script(prep, AttributeLookup{}, *session, 0x70);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  ASSERT_EQ(script->size(), 1u) << "fits: 236 + 8 bytes";

  applet.token = Bytes(14, 0x00);  // 250 + 8 > 255: two segments
  prep.script = {applet};
  auto keys2 = test_keys();
  auto session2 = open_session(*keys2, 0x01);
  ASSERT_TRUE(session2);
  script = build_card_script(prep, AttributeLookup{}, *session2, 0x70);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  ASSERT_EQ(script->size(), 2u);
  EXPECT_EQ((*script)[0].bytes[2], 0x84) << "P1 04 with b8: more INSTALL commands follow";
  EXPECT_EQ((*script)[1].bytes[2], 0x04);
  EXPECT_EQ((*script)[0].label,
            "INSTALL [for install] " + kApp + " (profile line 20) (segment 1/2)");
  EXPECT_EQ((*script)[1].label,
            "INSTALL [for install] " + kApp + " (profile line 20) (segment 2/2)");
}

// A spec the parser would refuse still fails cleanly when built (the builder checks too).
TEST(CardScriptCommandsTest, InvalidSpecIsAnErrorNamingTheField) {
  auto keys = test_keys();
  ASSERT_TRUE(keys);
  auto session = open_session(*keys, 0x01);
  ASSERT_TRUE(session);
  PrepSpec prep;
  prep.channel.scp = 3;
  prep.channel.level = 0x01;
  CommandSpec extradite;
  extradite.kind = CommandKind::kInstallForExtradition;
  extradite.sd_aid = hex("A0000001");
  extradite.aid = hex(kApp);
  prep.script = {extradite};
  auto script = build_card_script(prep, AttributeLookup{}, *session, 0x70);
  ASSERT_FALSE(script.has_value());
  EXPECT_EQ(script.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(script.error().message().find("security domain AID: length 4, expected 5-16"),
            std::string::npos)
      << script.error().message();
}

}  // namespace
}  // namespace persoflow

namespace persoflow {
namespace {

// PUT KEY from a provider (in prep: the HSM wraps the keys under the session's K-DEK):
// 80 D8 P1 81 with the provider's data field, wrapped at level 01 so it stays readable,
// the old KVN in P1 when the key set replaces one, the SE's expected answer on the (last)
// APDU, and the gp-reference.md §7.10 (D2) data field through scp03_put_key_set_data.
TEST(CardScriptCommandsTest, PutKeyFromTheProviderWithTheAnswerTheSeMustGive) {
  auto keys = test_keys();
  ASSERT_TRUE(keys);
  auto session = open_session(*keys, 0x01);
  ASSERT_TRUE(session);
  // (D2): new KVN 30, keys 000102..0F, 101112..1F, 202122..2F under K-DEK 404142..4F.
  const std::string d2 =
      "308811103D0FA4B855D2A5AA4954B8B5DF582A3A03C35280881110790ACCDA858B997029FA9AE50C9CD028030138088811108CAA7F589AA0"
      "CEB6350A45E70A6E435B03840DE5";
  auto data = scp03_put_key_set_data(SecureBytes(hex("404142434445464748494A4B4C4D4E4F")), 0x30,
                                     SecureBytes(hex("000102030405060708090A0B0C0D0E0F")),
                                     SecureBytes(hex("101112131415161718191A1B1C1D1E1F")),
                                     SecureBytes(hex("202122232425262728292A2B2C2D2E2F")),
                                     PutKeyComponentFormat::kAmdDTable710);
  ASSERT_TRUE(data.has_value()) << data.error().message();
  EXPECT_EQ(to_hex(*data), d2);
  CommandSpec put;
  put.kind = CommandKind::kPutKey;
  put.key_set = "sp";
  put.old_kvn = 0x2F;
  put.line = 33;
  int calls = 0;
  const PutKeyProvider provider = [&](const CommandSpec& c) -> Result<ProvidedPutKey> {
    ++calls;
    EXPECT_EQ(c.key_set, "sp");
    return ProvidedPutKey{*data, hex("30C35280013808840DE5"), 3};
  };
  const std::vector<CommandSpec> commands = {put};
  auto script = build_session_script(commands, SessionShape{3, 0x70, 0x01}, AttributeLookup{}, *session, {}, provider);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(script->size(), 1u);
  const ScriptApdu& a = (*script)[0];
  // 84 D8 2F 81, Lc = 70 + 8 (C-MAC), the data field unchanged at level 01, then Le 00.
  EXPECT_EQ(to_hex(Bytes(a.bytes.begin(), a.bytes.begin() + 5)), "84D82F814E");
  EXPECT_EQ(to_hex(Bytes(a.bytes.begin() + 5, a.bytes.begin() + 75)), d2);
  EXPECT_EQ(a.bytes.back(), 0x00);
  EXPECT_EQ(to_hex(a.expected_data), "30C35280013808840DE5");
  EXPECT_EQ(a.label, "PUT KEY key set 'sp' KVN 30 (replaces KVN 2F), the SE answers KVN and KCVs (profile line 33)");
  // Without a provider, the command cannot be built.
  auto keys2 = test_keys();
  auto session2 = open_session(*keys2, 0x01);
  ASSERT_TRUE(session2);
  auto none = build_session_script(commands, SessionShape{3, 0x70, 0x01}, AttributeLookup{}, *session2);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), ErrorCode::kUnsupported);
}

// The component from its parts (the HSM path) equals the one computed from the clear key.
TEST(CardScriptCommandsTest, PutKeyComponentFromPartsMatchesTheClearKeyPath) {
  const SecureBytes dek(hex("404142434445464748494A4B4C4D4E4F"));
  const SecureBytes key(hex("000102030405060708090A0B0C0D0E0F"));
  auto clear = scp03_put_key_component(dek, key, PutKeyComponentFormat::kAmdDTable710);
  ASSERT_TRUE(clear.has_value());
  auto parts = scp03_put_key_component_from(16, hex("3D0FA4B855D2A5AA4954B8B5DF582A3A"), hex("C35280"),
                                            PutKeyComponentFormat::kAmdDTable710);
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(*parts, *clear);
  EXPECT_FALSE(scp03_put_key_component_from(16, hex("3D0F"), hex("C35280"), PutKeyComponentFormat::kAmdDTable710));
  EXPECT_FALSE(scp03_put_key_component_from(16, hex("3D0FA4B855D2A5AA4954B8B5DF582A3A"), hex("C352"),
                                            PutKeyComponentFormat::kAmdDTable710));
  EXPECT_FALSE(scp03_put_key_component_from(20, Bytes(32, 0), hex("C35280"), PutKeyComponentFormat::kAmdDTable710));
}

}  // namespace
}  // namespace persoflow
