// GlobalPlatform command builders against byte-exact APDUs of gp-reference.md (§7.4, §7.5,
// §7.8, §7.10) and the layouts of GPC v2.3.1 §11 where no trace exists.
#include "engine/gp_commands.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/dgi.h"
#include "engine/gp_store_data.h"
#include "engine/scp03.h"
#include "engine/secure_bytes.h"

namespace persoflow {
namespace {

Bytes hex(std::string_view text) {
  auto r = from_hex(text);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test hex: " << r.error().message();
    return {};
  }
  return std::move(r).value();
}

std::string apdu_hex(const Result<CommandApdu>& r) {
  if (!r.has_value()) return "<error: " + r.error().message() + ">";
  return r->to_hex();
}

template <typename T>
std::string invalid_message(const Result<T>& r) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  return r.error().message();
}

const Bytes kElf = hex("D0D1D2D3D4D501");
const Bytes kApp = hex("D0D1D2D3D4D50101");
const Bytes kIsd = hex("A000000151000000");

// ---- SELECT ---------------------------------------------------------------------------

TEST(GpSelect, ByAidFirstAndNext) {
  EXPECT_EQ(apdu_hex(select_by_aid(kIsd)), "00A4040008A00000015100000000");
  EXPECT_EQ(apdu_hex(select_by_aid(kIsd, SelectOccurrence::kNext)), "00A4040208A00000015100000000");
  EXPECT_EQ(apdu_hex(select_by_aid({})), "00A4040000");  // ISD by empty name
}

TEST(GpSelect, RefusesBadAidLength) {
  EXPECT_EQ(apdu_hex(select_by_aid(hex("A000000151"))), "00A4040005A00000015100");
  EXPECT_EQ(invalid_message(select_by_aid(hex("A0000001"))),
            "SELECT: AID: length 4, expected 5-16");
  EXPECT_EQ(invalid_message(select_by_aid(Bytes(17, 0xA0))),
            "SELECT: AID: length 17, expected 5-16");
}

// ---- INSTALL --------------------------------------------------------------------------

InstallForInstallFields kaoh_install_fields() {
  InstallForInstallFields f;
  f.load_file_aid = kElf;
  f.module_aid = kApp;
  f.instance_aid = kApp;
  f.privileges = {0x02};
  f.parameters.application_specific = {0x00};
  f.parameters.system_parameters = hex("C80207D0");
  return f;
}

// §7.5.1 install_mac_enc, last command's plaintext (P1 0C, Le 00).
TEST(GpInstall, InstallAndMakeSelectableMatchesKaohTrace) {
  EXPECT_EQ(apdu_hex(install_for_install_and_make_selectable(kaoh_install_fields())),
            "80E60C0027"
            "07D0D1D2D3D4D50108D0D1D2D3D4D5010108D0D1D2D3D4D50101010209C90100EF04C80207D000"
            "00");
}

TEST(GpInstall, ForInstallSameDataP1Is04) {
  EXPECT_EQ(apdu_hex(install_for_install(kaoh_install_fields())),
            "80E6040027"
            "07D0D1D2D3D4D50108D0D1D2D3D4D5010108D0D1D2D3D4D50101010209C90100EF04C80207D000"
            "00");
}

TEST(GpInstall, EmptyC9ThreePrivilegeBytesAndToken) {
  auto f = kaoh_install_fields();
  f.privileges = hex("800000");
  f.parameters = {};
  f.token = hex("AABB");
  EXPECT_EQ(apdu_hex(install_for_install(f)),
            "80E6040024"
            "07D0D1D2D3D4D50108D0D1D2D3D4D5010108D0D1D2D3D4D5010103800000"
            "02C90002AABB00");
}

// §7.10 D5 plaintext: 80E62000 0E 000008D0D1D2D3D4D50101000000 00.
TEST(GpInstall, ForPersonalizationMatchesD5) {
  EXPECT_EQ(apdu_hex(install_for_personalization(kApp)),
            "80E620000E000008D0D1D2D3D4D5010100000000");
}

TEST(GpInstall, ForMakeSelectableLayout) {  // Table 11-44, GPP makeDefaultSelected
  EXPECT_EQ(apdu_hex(install_for_make_selectable(kApp, hex("04"))),
            "80E608000F000008D0D1D2D3D4D501010104000000");
}

TEST(GpInstall, ForExtraditionLayout) {  // Table 11-45
  EXPECT_EQ(apdu_hex(install_for_extradition(kIsd, kApp)),
            "80E6100016"
            "08A000000151000000"
            "00"
            "08D0D1D2D3D4D50101"
            "00"
            "00"
            "00"
            "00");
}

TEST(GpInstall, ValidationNamesTheField) {
  auto f = kaoh_install_fields();
  f.instance_aid = hex("D0D1D2D3");
  EXPECT_EQ(invalid_message(install_for_install(f)),
            "INSTALL [for install]: instance AID: length 4, expected 5-16");
  f = kaoh_install_fields();
  f.load_file_aid = Bytes(17, 0xA0);
  EXPECT_EQ(invalid_message(install_for_install(f)),
            "INSTALL [for install]: load file AID: length 17, expected 5-16");
  f = kaoh_install_fields();
  f.privileges = {0x80, 0x00};
  EXPECT_EQ(invalid_message(install_for_install(f)),
            "INSTALL [for install]: privileges: length 2, expected 1 or 3");
  f = kaoh_install_fields();
  f.parameters.application_specific = Bytes(230, 0x11);  // data field over 255
  EXPECT_NE(invalid_message(install_for_install(f)).find("at most 255"), std::string::npos);
  EXPECT_EQ(invalid_message(install_for_personalization(hex("A0000001"))),
            "INSTALL [for personalization]: application AID: length 4, expected 5-16");
  EXPECT_EQ(invalid_message(install_for_make_selectable(kApp, {})),
            "INSTALL [for make selectable]: privileges: length 0, expected 1 or 3");
  EXPECT_EQ(invalid_message(install_for_extradition(hex("A0"), kApp)),
            "INSTALL [for extradition]: security domain AID: length 1, expected 5-16");
}

// ---- PUT KEY --------------------------------------------------------------------------

// §7.10 D1: SCP02 key set, 80 D8 00 81 Lc data.
TEST(GpPutKey, MatchesD1) {
  const std::string block = "8010EFBEE6C6D99D7B70BDE9D7E927F020AF038BAF47";
  const Bytes data = hex("01" + block + block + block);
  EXPECT_EQ(apdu_hex(put_key({.old_kvn = 0x00, .new_kvn = 0x01}, data)),
            "80D8008143" + ("01" + block + block + block) + "00");
  EXPECT_EQ(apdu_hex(put_key({.old_kvn = 0x01, .new_kvn = 0x01}, data)).substr(0, 10),
            "80D8018143");
}

// §7.10 D2: the data field comes from scp03_put_key_set_data (reused, not duplicated).
TEST(GpPutKey, WrapsScp03KeySetDataD2) {
  SecureBytes kdek(hex("404142434445464748494A4B4C4D4E4F"));
  SecureBytes enc(hex("000102030405060708090A0B0C0D0E0F"));
  SecureBytes mac(hex("101112131415161718191A1B1C1D1E1F"));
  SecureBytes dek(hex("202122232425262728292A2B2C2D2E2F"));
  auto data =
      scp03_put_key_set_data(kdek, 0x30, enc, mac, dek, PutKeyComponentFormat::kAmdDTable710);
  ASSERT_TRUE(data.has_value()) << data.error().message();
  EXPECT_EQ(apdu_hex(put_key({.old_kvn = 0x00, .new_kvn = 0x30}, *data)),
            "80D8008146"
            "308811103D0FA4B855D2A5AA4954B8B5DF582A3A03C35280881110790ACCDA858B997029FA9AE50C9CD0"
            "28030138088811108CAA7F589AA0CEB6350A45E70A6E435B03840DE5"
            "00");
  auto single = put_key({.new_kvn = 0x30, .first_key_id = 0x02, .multiple_keys = false}, *data);
  EXPECT_EQ(apdu_hex(single).substr(0, 8), "80D80002");
}

TEST(GpPutKey, Validation) {
  const Bytes data = hex("01801011");
  EXPECT_EQ(invalid_message(put_key({.new_kvn = 0x02}, data)),
            "PUT KEY: data field: first byte 01 is not the new KVN 02");
  EXPECT_EQ(invalid_message(put_key({.old_kvn = 0x80, .new_kvn = 0x01}, data)),
            "PUT KEY: old KVN above 7F");
  EXPECT_EQ(invalid_message(put_key({.new_kvn = 0x01, .first_key_id = 0x00}, data)),
            "PUT KEY: key identifier outside 01-7F");
  EXPECT_EQ(invalid_message(put_key({.new_kvn = 0x01}, hex("01"))),
            "PUT KEY: data field: needs new KVN and key data");
}

// ---- SET STATUS / DELETE / GET STATUS -------------------------------------------------

TEST(GpSetStatus, LayoutsAndLifeCycleCodes) {
  EXPECT_EQ(apdu_hex(set_status(SetStatusScope::kIssuerSecurityDomain, life_cycle::kCardSecured)),
            "80F0800F");
  EXPECT_EQ(apdu_hex(set_status(SetStatusScope::kApplicationOrSecurityDomain,
                                life_cycle::kAppLocked, kApp)),
            "80F0408308D0D1D2D3D4D50101");
  EXPECT_EQ(apdu_hex(set_status(SetStatusScope::kSecurityDomainAndApplications,
                                life_cycle::kSdPersonalized, kIsd)),
            "80F0600F08A000000151000000");
  EXPECT_EQ(apdu_hex(set_status(SetStatusScope::kApplicationOrSecurityDomain,
                                life_cycle::kAppSelectable, kApp)),
            "80F0400708D0D1D2D3D4D50101");
}

TEST(GpSetStatus, Validation) {
  EXPECT_EQ(invalid_message(set_status(SetStatusScope::kIssuerSecurityDomain, 0x0F, kIsd)),
            "SET STATUS: AID: must be empty for the ISD scope");
  EXPECT_EQ(invalid_message(set_status(SetStatusScope::kIssuerSecurityDomain, 0x01)),
            "SET STATUS: state 01: card state must be 07, 0F, 7F or FF");
  EXPECT_EQ(invalid_message(set_status(SetStatusScope::kApplicationOrSecurityDomain, 0x05, kApp)),
            "SET STATUS: state 05: expected 03, 0xxxx111 or b8 set (locked)");
  EXPECT_EQ(invalid_message(set_status(SetStatusScope::kApplicationOrSecurityDomain, 0x07, {})),
            "SET STATUS: AID: length 0, expected 5-16");
}

// §7.4.1 delete_application (plain data 4F08A00100015141434C, P2 80) and §7.5.1.
TEST(GpDelete, MatchesTraces) {
  EXPECT_EQ(apdu_hex(delete_object(hex("A00100015141434C"), true)),
            "80E400800A4F08A00100015141434C00");
  EXPECT_EQ(apdu_hex(delete_object(kApp, true)), "80E400800A4F08D0D1D2D3D4D5010100");
  EXPECT_EQ(apdu_hex(delete_object(kElf, false)), "80E40000094F07D0D1D2D3D4D50100");
  EXPECT_EQ(invalid_message(delete_object(hex("A001"), false)),
            "DELETE: AID: length 2, expected 5-16");
}

// §7.4.1 get_status / get_status_enc_mac, §7.5.1, §7.5.2 (80F28002024F0000).
TEST(GpGetStatus, MatchesTraces) {
  EXPECT_EQ(apdu_hex(get_status({})), "80F24002024F0000");
  EXPECT_EQ(apdu_hex(get_status({.scope = GetStatusScope::kLoadFiles})), "80F22002024F0000");
  EXPECT_EQ(apdu_hex(get_status({.scope = GetStatusScope::kIssuerSecurityDomain})),
            "80F28002024F0000");
  EXPECT_EQ(apdu_hex(get_status({.scope = GetStatusScope::kLoadFilesAndModules})),
            "80F21002024F0000");
  EXPECT_EQ(apdu_hex(get_status({.next = true})), "80F24003024F0000");
  EXPECT_EQ(apdu_hex(get_status({.format = GetStatusFormat::kDeprecated})), "80F24000024F0000");
  // pySim ADF_SD.get_status tag list 5C 05 4F 9F70 C5 CC.
  EXPECT_EQ(apdu_hex(get_status({.tag_list = hex("4F9F70C5CC")})),
            "80F24002094F005C054F9F70C5CC00");
}

TEST(GpGetStatus, Validation) {
  EXPECT_EQ(invalid_message(get_status({.aid_prefix = Bytes(17, 0xA0)})),
            "GET STATUS: AID prefix: length 17, at most 16");
  EXPECT_EQ(
      invalid_message(get_status({.format = GetStatusFormat::kDeprecated, .tag_list = hex("4F")})),
      "GET STATUS: tag list: only with the tagged format (P2 b2 = 1)");
}

// ---- STORE DATA -----------------------------------------------------------------------

std::vector<std::string> hexes(const Result<std::vector<CommandApdu>>& r) {
  std::vector<std::string> out;
  if (!r.has_value()) {
    out.push_back("<error: " + r.error().message() + ">");
    return out;
  }
  for (const auto& c : *r) out.push_back(c.to_hex());
  return out;
}

StoreDataBuilder builder(const StoreDataOptions& options = {}) {
  auto b = StoreDataBuilder::create(options);
  EXPECT_TRUE(b.has_value());
  return std::move(b).value();
}

// §7.10 D5: DGI 8000 encrypted (P1 60, P2 00), then DGI 9000 clear, last (P1 80, P2 01).
TEST(GpStoreData, CpsSequenceMatchesD5) {
  const std::string enc8000 =
      "BE32EF81C6B32FC559414F7CFA49F6AFDC839B2E7F45E0D42C9509228C7B76F40C726264A515DD0BCF5B0DD18"
      "40BA56F";
  auto b = builder();
  ASSERT_TRUE(b.add_dgi(0x8000, hex(enc8000), true).has_value());
  ASSERT_TRUE(b.add_dgi(0x9000, hex("97DCB0CE4E2CB37DF3")).has_value());
  EXPECT_EQ(hexes(b.build()), (std::vector<std::string>{"80E2600033800030" + enc8000,
                                                        "80E280010C90000997DCB0CE4E2CB37DF3"}));
}

// §7.8 kaoh storeDataTest: DGI 00B9 then three DGIs 8113, concatenated in one data field.
const char* const kKaohAes128 =
    "00B930B71080018881011083010196010197020003B9088201018403504A77B9088201028403F2A8DFB9088201"
    "038403D7D0E4811310D533E59B45A153ED7E5E9C5DFCFD4AAA8113103EF0B1A5E3059DAB21FCE23A7B61C4CA8113"
    "10ADDE68F7AD497268D31A0DDD5C74B08F";

TEST(GpStoreData, KaohKeyLoadingDataFieldApplicationDependent) {
  const Bytes expected = hex(kKaohAes128);
  auto dgis = parse_dgis(expected);
  ASSERT_TRUE(dgis.has_value());
  ASSERT_EQ(dgis->size(), 4u);
  auto b = builder(
      {.encryption = StoreDataEncryptionSignal::kApplicationDependent, .signal_structure = true});
  for (const Dgi& d : *dgis) {
    ASSERT_TRUE(b.add_dgi(d.id, d.value, d.id == 0x8113).has_value());
  }
  auto commands = b.build();
  ASSERT_TRUE(commands.has_value());
  ASSERT_EQ(commands->size(), 1u);
  const CommandApdu& c = (*commands)[0];
  EXPECT_EQ(c.p1(), 0xA8);  // last | application-dependent encryption | DGI format
  EXPECT_EQ(c.p2(), 0x00);
  EXPECT_EQ(c.data(), expected);
  EXPECT_FALSE(c.le().has_value());
}

TEST(GpStoreData, KaohKeyLoadingPerCommandSeparatesEncryptedDgis) {
  const Bytes expected = hex(kKaohAes128);
  auto dgis = parse_dgis(expected);
  ASSERT_TRUE(dgis.has_value());
  auto b = builder();
  for (const Dgi& d : *dgis) ASSERT_TRUE(b.add_dgi(d.id, d.value, d.id == 0x8113).has_value());
  auto commands = b.build();
  ASSERT_TRUE(commands.has_value());
  ASSERT_EQ(commands->size(), 2u);
  EXPECT_EQ((*commands)[0].p1(), 0x00);
  EXPECT_EQ((*commands)[0].p2(), 0x00);
  EXPECT_EQ((*commands)[0].data().size(), 51u);  // 00B9 30 + 48
  EXPECT_EQ((*commands)[1].p1(), 0xE0);          // last | all encrypted
  EXPECT_EQ((*commands)[1].p2(), 0x01);
  Bytes joined = (*commands)[0].data();
  joined.insert(joined.end(), (*commands)[1].data().begin(), (*commands)[1].data().end());
  EXPECT_EQ(joined, expected);
}

Bytes pattern(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return out;
}

TEST(GpStoreData, SplitsA600ByteDgiOverBlocksWithLongLength) {
  const Bytes value = pattern(600);
  auto b = builder({.max_block_data = kStoreDataBlockUnderScp});
  ASSERT_TRUE(b.add_dgi(0x0101, value).has_value());
  auto commands = b.build();
  ASSERT_TRUE(commands.has_value());
  ASSERT_EQ(commands->size(), 3u);  // 5 + 600 = 605 = 239 + 239 + 127
  const std::vector<std::size_t> sizes = {239, 239, 127};
  const std::vector<std::uint8_t> p1s = {0x00, 0x00, 0x80};
  Bytes joined;
  for (std::size_t i = 0; i < 3; ++i) {
    const CommandApdu& c = (*commands)[i];
    EXPECT_EQ(c.cla(), 0x80);
    EXPECT_EQ(c.ins(), 0xE2);
    EXPECT_EQ(c.p1(), p1s[i]) << i;
    EXPECT_EQ(c.p2(), i) << i;
    EXPECT_EQ(c.data().size(), sizes[i]) << i;
    joined.insert(joined.end(), c.data().begin(), c.data().end());
  }
  // The DGI header appears once, with the FF long form and the full length 0258.
  EXPECT_EQ(to_hex(std::span(joined).first(5)), "0101FF0258");
  EXPECT_EQ(Bytes(joined.begin() + 5, joined.end()), value);
  EXPECT_EQ(to_hex(std::span((*commands)[1].data()).first(4)),
            to_hex(std::span(value).subspan(234, 4)));
}

TEST(GpStoreData, EncryptedSplitDgiFlagsEveryBlock) {
  auto b = builder({.max_block_data = 255});
  ASSERT_TRUE(b.add_dgi(0x8201, pattern(300), true).has_value());
  auto commands = b.build();
  ASSERT_TRUE(commands.has_value());
  ASSERT_EQ(commands->size(), 2u);  // 305 = 255 + 50
  EXPECT_EQ(hexes(commands).at(0).substr(0, 20), "80E26000FF8201FF012C");
  EXPECT_EQ((*commands)[1].p1(), 0xE0);
  EXPECT_EQ((*commands)[1].p2(), 0x01);
  EXPECT_EQ((*commands)[1].data().size(), 50u);
}

TEST(GpStoreData, PacksSmallItemsAndStartsLargeOnesInANewBlock) {
  auto b = builder({.max_block_data = 16});
  ASSERT_TRUE(b.add_dgi(0x9010, hex("0303")).has_value());      // 5 bytes
  ASSERT_TRUE(b.add_dgi(0x9011, hex("01020304")).has_value());  // 7 bytes: shares block 0
  ASSERT_TRUE(b.add_dgi(0x0101, pattern(20)).has_value());      // 23 bytes: blocks 1-2
  ASSERT_TRUE(b.add_dgi(0x9012, hex("AA")).has_value());        // 4 bytes: shares block 2
  ASSERT_TRUE(b.add_dgi(0x9013, pattern(10)).has_value());      // 13 bytes: block 3
  auto h = hexes(b.build());
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[0], "80E200000C901002030390110401020304");
  EXPECT_EQ(h[1].substr(0, 16), "80E2000110010114");
  EXPECT_EQ(h[2].substr(0, 10), "80E200020B");  // 7 value bytes + 90 12 01 AA
  EXPECT_EQ(h[2].substr(h[2].size() - 8), "901201AA");
  EXPECT_EQ(h[3].substr(0, 16), "80E280030D90130A");
}

TEST(GpStoreData, OneItemPerBlockResponseExpectedAndNumbering) {
  auto b = builder({.response_expected = true,
                    .one_item_per_block = true,
                    .first_block_number = 0x10,
                    .mark_last_block = false});
  ASSERT_TRUE(b.add_dgi(0x9010, hex("0303")).has_value());
  ASSERT_TRUE(b.add_dgi(0x9011, hex("01")).has_value());
  EXPECT_EQ(hexes(b.build()), (std::vector<std::string>{"80E2011005901002030300",
                                                        "80E201110490110101"
                                                        "00"}));
}

TEST(GpStoreData, BerTlvWithStructureSignal) {
  auto b = builder({.signal_structure = true});
  ASSERT_TRUE(b.add_tlv(0x9F70, hex("07")).has_value());
  ASSERT_TRUE(b.add_tlv(0x70, pattern(260)).has_value());
  auto commands = b.build();
  ASSERT_TRUE(commands.has_value());
  ASSERT_EQ(commands->size(), 3u);  // 4, then 4 + 260 = 255 + 9 in a new block
  EXPECT_EQ((*commands)[0].to_hex(), "80E21000049F700107");
  EXPECT_EQ((*commands)[1].p1(), 0x10);  // BER-TLV format
  EXPECT_EQ((*commands)[1].data().size(), 255u);
  EXPECT_EQ(to_hex(std::span((*commands)[1].data()).first(4)), "70820104");
  EXPECT_EQ((*commands)[2].p1(), 0x90);
  EXPECT_EQ((*commands)[2].p2(), 0x02);
  EXPECT_EQ((*commands)[2].data().size(), 9u);
}

TEST(GpStoreData, Validation) {
  EXPECT_EQ(invalid_message(StoreDataBuilder::create({.max_block_data = 7})),
            "STORE DATA: max block data 7, expected 8-255");
  EXPECT_EQ(invalid_message(StoreDataBuilder::create({.max_block_data = 256})),
            "STORE DATA: max block data 256, expected 8-255");
  EXPECT_EQ(invalid_message(builder().build()), "STORE DATA: no DGI or TLV to send");

  auto mixed = builder({.signal_structure = true});
  ASSERT_TRUE(mixed.add_dgi(0x9010, hex("01")).has_value());
  EXPECT_FALSE(mixed.add_tlv(0x70, hex("01")).has_value());

  auto big = builder();
  EXPECT_FALSE(big.add_dgi(0x0101, Bytes(0x10000, 0x00)).has_value());
  EXPECT_FALSE(big.add_tlv(0x1F, hex("01")).has_value());  // incomplete two-byte tag
  EXPECT_EQ(big.item_count(), 0u);

  auto late = builder({.first_block_number = 0xFF});
  ASSERT_TRUE(late.add_dgi(0x0101, pattern(300)).has_value());
  EXPECT_EQ(invalid_message(late.build()), "STORE DATA: 2 blocks needed, block numbers allow 1");
}

}  // namespace
}  // namespace persoflow
