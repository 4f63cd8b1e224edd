// The <prep> element of product profiles: the shipped demo profile, every element's
// values, and errors naming the profile file, line and element before any card exists.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "config/profile_parser.h"
#include "engine/hex.h"

namespace persoflow::config {
namespace {

using ::testing::HasSubstr;

const std::string kProfilesDir = PERSOFLOW_TEST_VECTORS_DIR "/../../config/profiles";

// Lines 1-13: the import part; <prep> is line 14, <se> 15, <secure-channel> 16,
// <script> 17, its first command 18.
const std::string kHead = R"(<profile id="t" version="1">
  <issuer>Test</issuer>
  <transport-key kek-id="A1" uri="pkcs11:object=tk"/>
  <records format="xml" element="card"/>
  <key-class name="general" dkep="pkcs11:object=dkep"/>
  <integrity-key uri="pkcs11:object=integrity"/>
  <attributes>
    <attribute name="card_id" source="@id" type="alphanumeric" key-class="general" reveal="clear"/>
    <attribute name="se_id" source="se" type="alphanumeric" key-class="general" reveal="clear"/>
    <attribute name="pan" source="pan" type="digits" key-class="general" luhn="true"/>
    <attribute name="pin" source="pin" type="hex" key-class="general" field-encryption="aes-kwp" field-key="pkcs11:object=f"/>
  </attributes>
  <card-id attribute="card_id"/>
)";

const std::string kChannel =
    R"(    <secure-channel scp="03" level="03" key-type="aes128" diversification="emv" master-key="pkcs11:object=kmc" host-challenge-key="pkcs11:object=hc"/>
)";

std::string with_prep(const std::string& channel, const std::string& script,
                      const std::string& se = R"(    <se lookup="se-id" attribute="se_id"/>
)") {
  return kHead + "  <prep product=\"p1\">\n" + se + channel + "    <script>\n" + script +
         "    </script>\n  </prep>\n</profile>\n";
}

TEST(PrepParserTest, ShippedDemoProfile) {
  auto p = load_profile(kProfilesDir + "/acme-debit-scp03.xml");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(p->prep);
  const PrepSpec& prep = *p->prep;
  EXPECT_EQ(prep.product, "acme-debit");
  EXPECT_EQ(prep.se.kind, SeKeyKind::kSeId);
  EXPECT_EQ(prep.se.attribute, "se_id");
  EXPECT_EQ(prep.channel.scp, 3);
  EXPECT_EQ(prep.channel.level, 0x03);
  EXPECT_EQ(prep.channel.key_type, KeyType::kAes128);
  ASSERT_TRUE(prep.channel.diversification);
  EXPECT_EQ(*prep.channel.diversification, DiversificationScheme::kKdf3);
  ASSERT_EQ(prep.script.size(), 3u);
  EXPECT_EQ(prep.script[0].kind, CommandKind::kInstallForPersonalization);
  EXPECT_EQ(to_hex(prep.script[0].aid), "A0000000041010");
  ASSERT_EQ(prep.script[1].kind, CommandKind::kStoreData);
  ASSERT_EQ(prep.script[1].dgis.size(), 3u);
  EXPECT_EQ(prep.script[1].dgis[0].id, 0x0101);
  ASSERT_TRUE(prep.script[1].dgis[0].template_tag);
  EXPECT_EQ(*prep.script[1].dgis[0].template_tag, 0x70u);
  EXPECT_EQ(prep.script[1].dgis[0].tlvs.size(), 4u);
  EXPECT_EQ(prep.script[1].dgis[0].tlvs[1].tag, 0x5F24u);
  EXPECT_EQ(to_hex(prep.script[1].dgis[0].tlvs[1].value.suffix), "31");
  EXPECT_TRUE(prep.script[1].dgis[1].encrypted);
  EXPECT_EQ(prep.script[1].dgis[1].value->encoding, ValueEncoding::kNumeric);
  EXPECT_EQ(prep.script[1].dgis[1].value->length, 4u);
  EXPECT_EQ(to_hex(prep.script[1].dgis[2].value->constant), "A5088801025F2D02656E");
  EXPECT_EQ(prep.script[2].kind, CommandKind::kSetStatus);
  EXPECT_EQ(prep.script[2].state, 0x0F);
  EXPECT_EQ(prep.bundle_segment_cards, 256u);
}

TEST(PrepParserTest, ProfilesWithoutPrepStillParse) {
  auto p = load_profile(kProfilesDir + "/acme-import-xml.xml");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE(p->prep);
}

TEST(PrepParserTest, AllCommandKindsAndDiversificationNone) {
  const std::string channel =
      R"(    <secure-channel scp="02" level="01" key-type="des2" diversification="none" enc-key="pkcs11:object=e" mac-key="pkcs11:object=m" dek-key="pkcs11:object=d" host-challenge-key="pkcs11:object=hc"/>
)";
  const std::string script = R"(      <select aid="A0000000031010"/>
      <apdu hex="80CA9F7F00"/>
      <store-data><dgi id="9103" value=""/><dgi id="0202" attribute="pan" encoding="ascii"/></store-data>
      <set-status scope="card" state="0F"/>
)";
  auto p = parse_profile(with_prep(channel, script), "p.xml");
  ASSERT_TRUE(p) << p.error().message();
  const PrepSpec& prep = *p->prep;
  EXPECT_FALSE(prep.channel.diversification);
  EXPECT_EQ(prep.channel.enc_key_uri, "pkcs11:object=e");
  ASSERT_EQ(prep.script.size(), 4u);
  EXPECT_EQ(prep.script[1].kind, CommandKind::kApdu);
  EXPECT_EQ(to_hex(prep.script[1].apdu), "80CA9F7F00");
  EXPECT_EQ(prep.script[3].status_scope, 0x80);
  EXPECT_TRUE(prep.script[3].aid.empty());
}

TEST(PrepParserTest, ContentManagementCommands) {
  const std::string script = R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001" privileges="80C000"/>
      <install-for-make-selectable aid="a0000001515350410001"/>
      <install-for-install load-file="F041434D4501" module="F041434D450101" aid="A0000000041010" privileges="04"
                           c9="0102AB" ef="C80207D0" token="1122" make-selectable="true"/>
      <install-for-make-selectable aid="A0000000041010" privileges="000000"/>
      <install-for-extradition sd="A0000001515350410001" aid="A0000000041010"/>
      <delete aid="A0000000041010"/>
      <delete aid="F041434D4501" related="true"/>
      <install-for-install load-file="F041434D4501" module="F041434D450101" aid="A0000000041011" privileges="00" c9="" ef="" make-selectable="false"/>
)";
  auto p = parse_profile(with_prep(kChannel, script), "p.xml");
  ASSERT_TRUE(p) << p.error().message();
  const std::vector<CommandSpec>& s = p->prep->script;
  ASSERT_EQ(s.size(), 8u);

  EXPECT_EQ(s[0].kind, CommandKind::kInstallForInstall);
  EXPECT_EQ(s[0].line, 18u);
  EXPECT_EQ(to_hex(s[0].load_file_aid), "A0000001515350");
  EXPECT_EQ(to_hex(s[0].module_aid), "A000000151535041");
  EXPECT_EQ(to_hex(s[0].aid), "A0000001515350410001");
  EXPECT_EQ(to_hex(s[0].privileges), "80C000");
  EXPECT_TRUE(s[0].application_parameters.empty());
  EXPECT_FALSE(s[0].system_parameters);
  EXPECT_TRUE(s[0].token.empty());
  EXPECT_FALSE(s[0].make_selectable);

  EXPECT_EQ(s[1].kind, CommandKind::kInstallForMakeSelectable);
  EXPECT_EQ(to_hex(s[1].aid), "A0000001515350410001");
  EXPECT_EQ(to_hex(s[1].privileges), "00") << "no privileges= is 00";

  EXPECT_EQ(s[2].kind, CommandKind::kInstallForInstall);
  EXPECT_EQ(s[2].line, 20u);
  EXPECT_EQ(to_hex(s[2].privileges), "04");
  EXPECT_EQ(to_hex(s[2].application_parameters), "0102AB");
  ASSERT_TRUE(s[2].system_parameters);
  EXPECT_EQ(to_hex(*s[2].system_parameters), "C80207D0");
  EXPECT_EQ(to_hex(s[2].token), "1122");
  EXPECT_TRUE(s[2].make_selectable);

  EXPECT_EQ(s[3].kind, CommandKind::kInstallForMakeSelectable);
  EXPECT_EQ(s[3].line, 22u);
  EXPECT_EQ(to_hex(s[3].privileges), "000000");

  EXPECT_EQ(s[4].kind, CommandKind::kInstallForExtradition);
  EXPECT_EQ(to_hex(s[4].sd_aid), "A0000001515350410001");
  EXPECT_EQ(to_hex(s[4].aid), "A0000000041010");

  EXPECT_EQ(s[5].kind, CommandKind::kDelete);
  EXPECT_EQ(to_hex(s[5].aid), "A0000000041010");
  EXPECT_FALSE(s[5].delete_related);
  EXPECT_EQ(s[6].kind, CommandKind::kDelete);
  EXPECT_EQ(to_hex(s[6].aid), "F041434D4501");
  EXPECT_TRUE(s[6].delete_related);

  // Empty c9= is C9 00; empty ef= is an EF 00 (present, empty).
  EXPECT_TRUE(s[7].application_parameters.empty());
  ASSERT_TRUE(s[7].system_parameters);
  EXPECT_TRUE(s[7].system_parameters->empty());
  EXPECT_FALSE(s[7].make_selectable);
}

TEST(PrepParserTest, ScriptLimitCountsContentManagementCommands) {
  std::string script;
  for (int k = 0; k < 256; ++k) script += "      <delete aid=\"A0000000041010\"/>\n";
  auto p = parse_profile(with_prep(kChannel, script), "p.xml");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->prep->script.size(), 256u);
  script += "      <install-for-extradition sd=\"A0000001515350410001\" aid=\"A0000000041010\"/>\n";
  p = parse_profile(with_prep(kChannel, script), "p.xml");
  ASSERT_FALSE(p);
  EXPECT_THAT(p.error().message(), HasSubstr("p.xml:274: <script>: more than 256 commands"));
}

struct BadCase {
  const char* name;
  std::string xml;
  const char* message;  // expected in the error, after "p.xml:LINE: "
  int line;
};

// A <prep> with a <key-set> "sp" for SD A000000151535041AA (line 17) before <script>
// (line 18, first command line 19).
std::string with_key_set(const std::string& script, const std::string& key_set_attributes = "") {
  return kHead + "  <prep product=\"p1\">\n    <se lookup=\"se-id\" attribute=\"se_id\"/>\n" + kChannel +
         "    <key-set name=\"sp\" sd=\"A000000151535041AA\" kvn=\"31\" key-type=\"aes128\" "
         "diversification=\"kdf3\" master-key=\"pkcs11:object=sp\"" + key_set_attributes + "/>\n    <script>\n" +
         script + "    </script>\n  </prep>\n</profile>\n";
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::vector<BadCase> bad_cases() {
  return {
      {"UnknownKeyHandling", replaced(with_prep(kChannel, "      <apdu hex=\"80CA006600\"/>\n"), "<prep product=\"p1\">",
                                      "<prep product=\"p1\" key-handling=\"lax\">"),
       "<prep>: unknown key-handling 'lax' (known: strict, host)", 14},
      {"KeyHandlingIsCaseSensitive", replaced(with_prep(kChannel, "      <apdu hex=\"80CA006600\"/>\n"),
                                              "<prep product=\"p1\">", "<prep product=\"p1\" key-handling=\"Host\">"),
       "<prep>: unknown key-handling 'Host' (known: strict, host)", 14},
      {"HostKeyHandlingWithStoredStaticKeys",
       replaced(with_prep(R"(    <secure-channel scp="03" level="03" key-type="aes128" diversification="none" enc-key="pkcs11:object=e" mac-key="pkcs11:object=m" dek-key="pkcs11:object=d" host-challenge-key="pkcs11:object=hc"/>
)",
                          "      <apdu hex=\"80CA006600\"/>\n"),
                "<prep product=\"p1\">", "<prep product=\"p1\" key-handling=\"host\">"),
       "<prep>: key-handling=\"host\" needs a diversification scheme in <secure-channel>", 14},
      {"PutKeyInTheWrongSd", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session sd="A000000151535041BB">
        <put-key key-set="sp"/>
      </session>
)"),
       "<put-key key-set=\"sp\">: step in the wrong channel: the key set belongs to A000000151535041AA", 21},
      {"PutKeyOfAnIsdlessKeySetInTheIsd", with_key_set(R"(      <put-key key-set="sp"/>
)"),
       "step in the wrong channel: the key set belongs to A000000151535041AA, this session is the first session", 19},
      {"SessionKeysBeforePutKey", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session sd="A000000151535041AA" keys="sp">
        <apdu hex="80CA006600"/>
      </session>
)"),
       "<session keys=\"sp\">: step in the wrong channel: no earlier <put-key key-set=\"sp\">", 20},
      {"SessionKeysToAnotherSd", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session sd="A000000151535041AA">
        <put-key key-set="sp"/>
      </session>
      <session sd="A000000151535041BB" keys="sp">
        <apdu hex="80CA006600"/>
      </session>
)"),
       "the key set belongs to A000000151535041AA, the session selects A000000151535041BB", 23},
      {"PersonalizationThroughTheWrongSd", with_key_set(R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000000041010" privileges="00"/>
      <install-for-extradition sd="A000000151535041AA" aid="A0000000041010"/>
      <install-for-personalization aid="A0000000041010"/>
)"),
       "the application is associated with A000000151535041AA (line 20), this session is the first session", 21},
      {"UnknownKeySetInSession", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session keys="zz">
        <apdu hex="80CA006600"/>
      </session>
)"),
       "<session keys=\"zz\">: key set 'zz' is not declared", 20},
      {"CommandAfterSession", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session><apdu hex="80CA006600"/></session>
      <apdu hex="80CA006600"/>
)"),
       "<apdu> after a <session>", 21},
      {"EmptySession", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session sd="A000000151535041AA"></session>
)"),
       "<session> holds no command", 20},
      {"NestedSession", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session><session/></session>
)"),
       "<session> inside a <session>", 20},
      {"NoFirstSessionCommand", with_key_set(R"(      <session><apdu hex="80CA006600"/></session>
)"),
       "<script> holds no command for its first session", 18},
      {"KeySetKvnOutOfRange", replaced(with_key_set("      <apdu hex=\"80CA006600\"/>\n"), "kvn=\"31\"", "kvn=\"80\""),
       "kvn must be 01 to 7F", 17},
      {"KeySetAes192", replaced(with_key_set("      <apdu hex=\"80CA006600\"/>\n"), "kvn=\"31\" key-type=\"aes128\"", "kvn=\"31\" key-type=\"aes192\""),
       "a key set the script puts is SCP03 aes128 or aes256", 17},
      {"KeySetWithoutPseudoRandomChallenge", with_key_set("      <apdu hex=\"80CA006600\"/>\n", " i=\"60\""),
       "no pseudo-random card challenge", 17},
      {"KeySetNotKdf3", replaced(with_key_set("      <apdu hex=\"80CA006600\"/>\n"), "diversification=\"kdf3\" master-key=\"pkcs11:object=sp\"", "diversification=\"emv\" master-key=\"pkcs11:object=sp\""),
       "diversification must be kdf3", 17},
      {"PutKeyReplaceZero", with_key_set(R"(      <apdu hex="80CA006600"/>
      <session sd="A000000151535041AA"><put-key key-set="sp" replace="00"/></session>
)"),
       "replace= is the KVN replaced, 01 to 7F", 20},
      {"UnknownAttribute", with_prep(kChannel, R"(      <store-data><dgi id="0101" attribute="nope"/></store-data>
)"),
       "attribute 'nope' is not declared", 18},
      {"FieldEncryptedAttributeWithEncoding", with_prep(kChannel, R"(      <store-data><dgi id="8010" attribute="pin" encrypted="true" encoding="hex"/></store-data>
)"),
       "encoding= does not apply to the field-encrypted attribute 'pin'", 18},
      {"FieldEncryptedAttributeInClear", with_prep(kChannel, R"(      <store-data><dgi id="8010" attribute="pin"/></store-data>
)"),
       "its DGI must say encrypted=\"true\"", 18},
      {"FieldEncryptedAttributeInATlv", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="99" attribute="pin"/></dgi></store-data>
)"),
       "attribute 'pin' is field-encrypted: it can only fill a whole DGI", 18},
      {"KeyToKeyUnderScp02", with_prep(R"(    <secure-channel scp="02" level="03" key-type="des2" diversification="emv" master-key="pkcs11:object=k" host-challenge-key="pkcs11:object=hc"/>
)", R"(      <store-data><dgi id="8010" attribute="pin" encrypted="true"/></store-data>
)"),
       "add via=\"host\" to opt in to the host path", 18},
      {"ViaHostUnderScp03", with_prep(kChannel, R"(      <store-data><dgi id="8010" attribute="pin" encrypted="true" via="host"/></store-data>
)"),
       "via=\"host\" is refused with SCP03", 18},
      {"ViaOnAPlainDgi", with_prep(kChannel, R"(      <store-data><dgi id="0101" value="01" via="host"/></store-data>
)"),
       "via= applies to source= DGIs and field-encrypted attributes only", 18},
      {"ViaOnKcvs", with_prep(kChannel + R"(    <icc-keys option="A" pan="pan" imk-ac="pkcs11:object=a" imk-smi="pkcs11:object=b" imk-smc="pkcs11:object=c"/>
)", R"(      <store-data><dgi id="9000" source="icc-key-kcvs" via="host"/></store-data>
)"),
       "via= applies to values encrypted for the card, not to KCVs", 19},
      {"ViaUnknown", with_prep(R"(    <secure-channel scp="02" level="03" key-type="des2" diversification="emv" master-key="pkcs11:object=k" host-challenge-key="pkcs11:object=hc"/>
)", R"(      <store-data><dgi id="8010" attribute="pin" encrypted="true" via="cloud"/></store-data>
)"),
       "via=\"cloud\" is not one of: host", 18},
      {"IccKeysDgiWithoutIccKeys", with_prep(kChannel, R"(      <store-data><dgi id="8000" source="icc-master-keys"/></store-data>
)"),
       "source=\"icc-master-keys\" needs an <icc-keys> element", 18},
      {"UnknownDgiSource", with_prep(kChannel, R"(      <store-data><dgi id="8000" source="keys"/></store-data>
)"),
       "source=\"keys\" is not one of: icc-master-keys, icc-key-kcvs", 18},
      {"SourceWithValue", with_prep(kChannel, R"(      <store-data><dgi id="9000" source="icc-key-kcvs" value="00"/></store-data>
)"),
       "value= does not go with source=", 18},
      {"IccKeysBadOption", with_prep(kChannel + R"(    <icc-keys option="D" pan="pan" imk-ac="pkcs11:object=a" imk-smi="pkcs11:object=b" imk-smc="pkcs11:object=c"/>
)", R"(      <store-data><dgi id="8000" source="icc-master-keys"/></store-data>
)"),
       "option must be A, B or C", 17},
      {"IccKeysPanNotDigits", with_prep(kChannel + R"(    <icc-keys option="A" pan="se_id" imk-ac="pkcs11:object=a" imk-smi="pkcs11:object=b" imk-smc="pkcs11:object=c"/>
)", R"(      <store-data><dgi id="8000" source="icc-master-keys"/></store-data>
)"),
       "pan= needs a digits attribute; 'se_id' is not one", 17},
      {"MissingMasterKey",
       with_prep(R"(    <secure-channel scp="03" level="03" key-type="aes128" diversification="emv" host-challenge-key="pkcs11:object=hc"/>
)",
                 "      <select aid=\"A0000000031010\"/>\n"),
       "missing required master-key=", 16},
      {"WrongKeyFamily",
       with_prep(R"(    <secure-channel scp="03" level="03" key-type="des2" diversification="emv" master-key="pkcs11:object=k" host-challenge-key="pkcs11:object=hc"/>
)",
                 "      <select aid=\"A0000000031010\"/>\n"),
       "SCP03 uses AES keys", 16},
      {"BadLevel",
       with_prep(R"(    <secure-channel scp="03" level="02" key-type="aes128" diversification="emv" master-key="pkcs11:object=k" host-challenge-key="pkcs11:object=hc"/>
)",
                 "      <select aid=\"A0000000031010\"/>\n"),
       "SCP03 security levels are 01 03 11 13 33", 16},
      {"ShortAid", with_prep(kChannel, "      <select aid=\"A000\"/>\n"), "aid must be 5 to 16 bytes", 18},
      {"BcdOfNonDigits", with_prep(kChannel, R"(      <store-data><dgi id="0101" attribute="se_id" encoding="bcd"/></store-data>
)"),
       "needs a digits or yymm attribute", 18},
      {"UnknownDerivation", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track3"/></dgi></store-data>
)"),
       "derive=\"track3\" is not one of: track2", 18},
      {"Track2WithoutPan", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track2" expiry="pan" service-code="pan"/></dgi></store-data>
)"),
       "derive=\"track2\" needs pan=", 18},
      {"Track2OfNonDigits", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track2" pan="pan" expiry="se_id" service-code="pan"/></dgi></store-data>
)"),
       "expiry= needs a digits or yymm attribute; 'se_id' is not one", 18},
      {"Track2OfUndeclared", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track2" pan="pan" expiry="nope" service-code="pan"/></dgi></store-data>
)"),
       "attribute 'nope' is not declared", 18},
      {"Track2WithEncoding", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track2" pan="pan" expiry="pan" service-code="pan" encoding="bcd"/></dgi></store-data>
)"),
       "encoding= does not go with derive=", 18},
      {"PartWithoutDerive", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" attribute="pan" pan="pan"/></dgi></store-data>
)"),
       "pan= goes with derive=\"track2\" only", 18},
      {"NumericWithoutLength", with_prep(kChannel, R"(      <store-data><dgi id="0101" attribute="pan" encoding="numeric"/></store-data>
)"),
       "needs length=", 18},
      {"RepeatedDgi", with_prep(kChannel, R"(      <store-data><dgi id="0101" value="01"/><dgi id="0101" value="02"/></store-data>
)"),
       "DGI 0101 repeated", 18},
      {"WrappedApdu", with_prep(kChannel, "      <apdu hex=\"84CA9F7F00\"/>\n"), "give the plain command", 18},
      {"UnknownCommand", with_prep(kChannel, "      <get-data/>\n"), "unknown element <get-data> in <script>", 18},
      {"UnknownSeAttribute", with_prep(kChannel, "      <select aid=\"A0000000031010\"/>\n",
                                       "    <se lookup=\"msi\" attribute=\"msi\"/>\n"),
       "<se>: attribute 'msi' is not declared", 15},
      {"TemplateOnRawValue", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70" value="01"/></store-data>
)"),
       "template= needs <tlv> children", 18},
      {"InstallWithoutLoadFile", with_prep(kChannel, R"(      <install-for-install module="A000000151535041" aid="A0000001515350410001" privileges="80"/>
)"),
       "missing required load-file= on <install-for-install>", 18},
      {"InstallShortModule", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A0000001" aid="A0000001515350410001" privileges="80"/>
)"),
       "<install-for-install>: module must be 5 to 16 bytes, got 4", 18},
      {"InstallLongInstanceAid", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041"
                           aid="A000000151535041000102030405060708" privileges="80"/>
)"),
       "<install-for-install>: aid must be 5 to 16 bytes, got 17", 19},
      {"InstallWithoutPrivileges", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001"/>
)"),
       "missing required privileges= on <install-for-install>", 18},
      {"InstallTwoPrivilegeBytes", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001"
                           privileges="80C0"/>
)"),
       "<install-for-install>: privileges must be 1 or 3 bytes, got 2", 19},
      {"InstallC9NotHex", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001" privileges="80" c9="0G"/>
)"),
       "<install-for-install>: c9 must be hex digits", 18},
      {"InstallEfNotTlvs", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001" privileges="80"
                           ef="C80407D0"/>
)"),
       "<install-for-install>: ef must be the system parameters as BER-TLVs (C7, C8, CF...)", 19},
      {"InstallMakeSelectableNotBoolean", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001" privileges="80" make-selectable="yes"/>
)"),
       "<install-for-install>: make-selectable must be \"true\" or \"false\"", 18},
      {"InstallDataFieldTooLong", with_prep(kChannel, "      <install-for-install load-file=\"A0000001515350\" module=\"A000000151535041\" "
                                                      "aid=\"A0000001515350410001\" privileges=\"80\" c9=\"" + std::string(480, 'A') + "\"/>\n"),
       "<install-for-install>: INSTALL [for install]: data field 275 bytes, at most 255", 18},
      {"InstallUnknownAttribute", with_prep(kChannel, R"(      <install-for-install load-file="A0000001515350" module="A000000151535041" aid="A0000001515350410001" privileges="80" params="C900"/>
)"),
       "unknown attribute params= on <install-for-install>", 18},
      {"MakeSelectableFourPrivilegeBytes", with_prep(kChannel, R"(      <install-for-make-selectable aid="A0000000041010" privileges="00000000"/>
)"),
       "<install-for-make-selectable>: privileges must be 1 or 3 bytes, got 4", 18},
      {"MakeSelectableWithoutAid", with_prep(kChannel, R"(      <install-for-make-selectable privileges="04"/>
)"),
       "missing required aid= on <install-for-make-selectable>", 18},
      {"ExtraditionWithoutSd", with_prep(kChannel, R"(      <install-for-extradition aid="A0000000041010"/>
)"),
       "missing required sd= on <install-for-extradition>", 18},
      {"ExtraditionShortSd", with_prep(kChannel, R"(      <install-for-extradition sd="A0000001" aid="A0000000041010"/>
)"),
       "<install-for-extradition>: sd must be 5 to 16 bytes, got 4", 18},
      {"ExtraditionToItself", with_prep(kChannel, R"(      <install-for-extradition sd="A0000000041010"
                               aid="a0000000041010"/>
)"),
       "<install-for-extradition>: aid is the security domain sd= itself", 19},
      {"DeleteShortAid", with_prep(kChannel, R"(      <delete aid="A0000000"/>
)"),
       "<delete>: aid must be 5 to 16 bytes, got 4", 18},
      {"DeleteRelatedNotBoolean", with_prep(kChannel, R"(      <delete aid="A0000000041010" related="yes"/>
)"),
       "<delete>: related must be \"true\" or \"false\"", 18},
      {"DeleteWithChild", with_prep(kChannel, R"(      <delete aid="A0000000041010"><dgi id="0101" value="01"/></delete>
)"),
       "unexpected element <dgi> inside <delete>", 18},
      {"DeleteKeyAttribute", with_prep(kChannel, R"(      <delete aid="A0000000041010" key="01"/>
)"),
       "unknown attribute key= on <delete> (known: aid, related)", 18},
      {"PrimitiveTemplate", with_prep(kChannel, R"(      <store-data><dgi id="0101" template="5A"><tlv tag="5A" value="01"/></dgi></store-data>
)"),
       "is not a constructed BER tag", 18},
  };
}

TEST(PrepParserTest, Track2DerivedValue) {
  auto p = parse_profile(with_prep(kChannel, R"(      <store-data><dgi id="0101" template="70"><tlv tag="57" derive="track2" pan="pan" expiry="pan" service-code="pan" discretionary="pan"/></dgi></store-data>
)"),
                         "p.xml");
  ASSERT_TRUE(p) << p.error().message();
  const ValueSpec& v = p->prep->script[0].dgis[0].tlvs[0].value;
  EXPECT_EQ(v.derivation, ValueDerivation::kTrack2);
  EXPECT_EQ(v.track2.pan, "pan");
  EXPECT_EQ(v.track2.discretionary, "pan");
  EXPECT_TRUE(v.attribute.empty());
}

TEST(PrepParserTest, ShippedEmvProfile) {
  auto p = load_profile(kProfilesDir + "/emv-payment-scp03.xml");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(p->prep && p->prep->icc_keys);
  EXPECT_EQ(p->prep->icc_keys->option, IccDerivationOption::kA);
  EXPECT_EQ(p->prep->icc_keys->pan_attribute, "pan");
  EXPECT_EQ(p->prep->icc_keys->psn_attribute, "psn");
  EXPECT_EQ(p->prep->icc_keys->imk_smc_uri, "pkcs11:object=imk-smc");
  std::map<DgiId, const DgiSpec*> dgis;
  for (const CommandSpec& c : p->prep->script) {
    for (const DgiSpec& d : c.dgis) dgis[d.id] = &d;
  }
  ASSERT_EQ(dgis.size(), 8u);
  EXPECT_EQ(dgis.at(0x8000)->source, DgiSource::kIccMasterKeys);
  EXPECT_TRUE(dgis.at(0x8000)->encrypted);
  EXPECT_EQ(dgis.at(0x9000)->source, DgiSource::kIccKeyKcvs);
  EXPECT_FALSE(dgis.at(0x9000)->encrypted);
  EXPECT_EQ(dgis.at(0x8010)->source, DgiSource::kKeyToKey);
  EXPECT_EQ(dgis.at(0x8010)->wrapped_attribute, "pin_block");
  EXPECT_EQ(dgis.at(0x0101)->tlvs[0].value.derivation, ValueDerivation::kTrack2);
}

TEST(PrepParserTest, ShippedScp02EmvProfileOptsIntoTheHostPath) {
  auto p = load_profile(kProfilesDir + "/emv-payment-scp02.xml");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(p->prep);
  EXPECT_EQ(p->prep->channel.scp, 2);
  int via_host = 0;
  for (const CommandSpec& c : p->prep->script) {
    for (const DgiSpec& d : c.dgis) via_host += d.via_host ? 1 : 0;
  }
  EXPECT_EQ(via_host, 2);  // 8000 and 8010
}

TEST(PrepParserTest, ShippedTsmProfile) {
  auto p = load_profile(kProfilesDir + "/tsm-sp-onboarding.xml");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(p->prep);
  const PrepSpec& prep = *p->prep;
  EXPECT_EQ(prep.product, "acme-tsm");
  EXPECT_EQ(prep.channel.scp, 3);
  EXPECT_EQ(prep.channel.level, 0x03);
  EXPECT_EQ(prep.channel.key_type, KeyType::kAes128);
  ASSERT_TRUE(prep.channel.diversification);
  EXPECT_EQ(*prep.channel.diversification, DiversificationScheme::kKdf3);
  auto kinds_of = [](const std::vector<CommandSpec>& commands) {
    std::vector<CommandKind> kinds;
    for (const CommandSpec& c : commands) kinds.push_back(c.kind);
    return kinds;
  };
  // 1. The ISD: SP SD, applet, extradition.
  ASSERT_EQ(kinds_of(prep.script),
            (std::vector<CommandKind>{CommandKind::kInstallForInstall, CommandKind::kInstallForMakeSelectable,
                                      CommandKind::kInstallForInstall, CommandKind::kInstallForExtradition}));
  const CommandSpec& sd = prep.script[0];
  EXPECT_EQ(sd.privileges[0] & 0x80, 0x80) << "the SP SD has the Security Domain privilege";
  const CommandSpec& applet = prep.script[2];
  EXPECT_TRUE(applet.make_selectable);
  EXPECT_FALSE(applet.application_parameters.empty());
  EXPECT_EQ(prep.script[3].sd_aid, sd.aid) << "extradited to the SP SD";
  EXPECT_EQ(prep.script[3].aid, applet.aid);
  // The SP's key set, for its SD.
  ASSERT_EQ(prep.key_sets.size(), 1u);
  const KeySetSpec& ks = prep.key_sets[0];
  EXPECT_EQ(ks.name, "sp");
  EXPECT_EQ(ks.sd_aid, sd.aid);
  EXPECT_EQ(ks.kvn, 0x31);
  EXPECT_EQ(ks.i, 0x70);
  EXPECT_EQ(ks.key_type, KeyType::kAes128);
  EXPECT_EQ(ks.master_key_uri, "pkcs11:object=kmc-sp");
  // 2. The SP SD with the registry's key set: PUT KEY. 3. With the new keys: personalization.
  ASSERT_EQ(prep.sessions.size(), 2u);
  EXPECT_EQ(prep.sessions[0].sd_aid, sd.aid);
  EXPECT_TRUE(prep.sessions[0].key_set.empty());
  ASSERT_EQ(kinds_of(prep.sessions[0].commands), (std::vector<CommandKind>{CommandKind::kPutKey}));
  EXPECT_EQ(prep.sessions[0].commands[0].key_set, "sp");
  EXPECT_EQ(prep.sessions[0].commands[0].old_kvn, 0x00);
  EXPECT_EQ(prep.sessions[1].sd_aid, sd.aid);
  EXPECT_EQ(prep.sessions[1].key_set, "sp");
  ASSERT_EQ(kinds_of(prep.sessions[1].commands),
            (std::vector<CommandKind>{CommandKind::kInstallForPersonalization, CommandKind::kStoreData,
                                      CommandKind::kSetStatus}));
  EXPECT_EQ(prep.sessions[1].commands[0].aid, applet.aid);
  EXPECT_GE(prep.sessions[1].commands[1].dgis.size(), 2u);
  // Two values of the SE's key set per card: the ISD session and the PUT KEY session.
  EXPECT_EQ(registry_counters_per_card(prep), 2u);
}

// <key-set>, <session> and <put-key> in a small profile: the shapes the parser accepts.
TEST(PrepParserTest, SessionsAndKeySets) {
  const std::string key_set =
      R"(    <key-set name="sp" sd="A000000151535041AA" kvn="32" key-type="aes256" diversification="kdf3" master-key="pkcs11:object=sp"/>
)";
  const std::string xml = kHead + "  <prep product=\"p1\">\n    <se lookup=\"se-id\" attribute=\"se_id\"/>\n" + kChannel +
                          key_set + R"(    <script>
      <apdu hex="80CA006600"/>
      <session sd="A000000151535041AA">
        <put-key key-set="sp" replace="30"/>
      </session>
      <session sd="A000000151535041AA" keys="sp">
        <apdu hex="80CA006600"/>
      </session>
      <session>
        <apdu hex="80CA006600"/>
      </session>
    </script>
  </prep>
</profile>
)";
  auto p = parse_profile(xml, "p.xml");
  ASSERT_TRUE(p) << p.error().message();
  const PrepSpec& prep = *p->prep;
  ASSERT_EQ(prep.key_sets.size(), 1u);
  EXPECT_EQ(prep.key_sets[0].key_type, KeyType::kAes256);
  EXPECT_EQ(prep.key_sets[0].level, 0x03);
  ASSERT_EQ(prep.sessions.size(), 3u);
  EXPECT_EQ(prep.sessions[0].commands[0].old_kvn, 0x30);
  EXPECT_TRUE(prep.sessions[2].sd_aid.empty()) << "no sd=: the ISD";
  EXPECT_EQ(registry_counters_per_card(prep), 3u) << "the first session and two on the registry's key set";
  ASSERT_NE(find_key_set(prep, "sp"), nullptr);
  EXPECT_EQ(find_key_set(prep, "nope"), nullptr);
}

TEST(PrepParserTest, KeyHandlingModes) {
  const std::string script = "      <apdu hex=\"80CA006600\"/>\n";
  auto absent = parse_profile(with_prep(kChannel, script), "p.xml");
  ASSERT_TRUE(absent) << absent.error().message();
  EXPECT_EQ(absent->prep->key_handling, KeyHandling::kStrict);
  for (const auto& [text, mode] : {std::pair{"strict", KeyHandling::kStrict}, std::pair{"host", KeyHandling::kHost}}) {
    SCOPED_TRACE(text);
    auto p = parse_profile(replaced(with_prep(kChannel, script), "<prep product=\"p1\">",
                                    std::string("<prep product=\"p1\" key-handling=\"") + text + "\">"),
                           "p.xml");
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p->prep->key_handling, mode);
  }
  // Every shipped prep profile also parses in host mode.
  for (const char* name : {"acme-debit-scp03.xml", "emv-payment-scp03.xml", "emv-payment-scp02.xml",
                           "tsm-sp-onboarding.xml"}) {
    SCOPED_TRACE(name);
    auto shipped = load_profile(kProfilesDir + "/" + name);
    ASSERT_TRUE(shipped) << shipped.error().message();
    EXPECT_EQ(shipped->prep->key_handling, KeyHandling::kStrict);
    std::ifstream in(kProfilesDir + "/" + name);
    const std::string xml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto host = parse_profile(replaced(xml, "key-handling=\"strict\"", "key-handling=\"host\""), name);
    ASSERT_TRUE(host) << host.error().message();
    EXPECT_EQ(host->prep->key_handling, KeyHandling::kHost);
  }
}

TEST(PrepParserTest, ErrorsNameFileLineAndElement) {
  for (const BadCase& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    auto p = parse_profile(c.xml, "p.xml");
    ASSERT_FALSE(p);
    EXPECT_THAT(p.error().message(), HasSubstr(c.message));
    EXPECT_THAT(p.error().message(), HasSubstr("p.xml:" + std::to_string(c.line) + ": "));
  }
}

}  // namespace
}  // namespace persoflow::config
