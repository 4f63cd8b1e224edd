// engine/card_script.h: values encoded per the profile (every encoding, Track 2 Equivalent
// Data derived from its attributes), and a DGI longer than 255 bytes written with the long
// length form and split across STORE DATA blocks inside a real offline session.
#include "engine/card_script.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "engine/card_keys.h"

namespace persoflow {
namespace {

Bytes hex(const std::string& text) {
  auto b = from_hex(text);
  EXPECT_TRUE(b.has_value()) << text;
  return b ? *b : Bytes{};
}

// Attribute values by name; a name mapped to "" is an empty optional attribute.
class Card {
 public:
  explicit Card(std::map<std::string, std::string> values) {
    for (auto& [k, v] : values) {
      if (!v.empty()) values_.emplace(k, SecureBytes(std::span<const std::uint8_t>(
                                              reinterpret_cast<const std::uint8_t*>(v.data()), v.size())));
      else empty_.insert(k);
    }
  }
  AttributeLookup lookup() const {
    return [this](std::string_view name) -> Result<const SecureBytes*> {
      if (auto it = values_.find(std::string(name)); it != values_.end()) return &it->second;
      if (empty_.count(std::string(name)) != 0) return static_cast<const SecureBytes*>(nullptr);
      return Error(ErrorCode::kInvalidArgument, "no attribute " + std::string(name));
    };
  }

 private:
  std::map<std::string, SecureBytes> values_;
  std::set<std::string> empty_;
};

std::string encoded(const ValueSpec& spec, const Card& card) {
  auto v = encode_value(spec, card.lookup());
  EXPECT_TRUE(v.has_value()) << v.error().message();
  return v ? to_hex(v->reveal()) : "";
}

ValueSpec track2(bool with_discretionary = true) {
  ValueSpec v;
  v.derivation = ValueDerivation::kTrack2;
  v.track2 = {"pan", "expiry", "service_code", with_discretionary ? "dd" : ""};
  return v;
}

TEST(CardScriptTest, EveryEncoding) {
  const Card card({{"pan", "4761739001010010"}, {"odd", "541333008901001"}, {"name", "DOE/JANE"},
                   {"sc", "201"}, {"hex", "a0B1"}});
  ValueSpec v;
  v.attribute = "pan";
  v.encoding = ValueEncoding::kBcd;
  EXPECT_EQ(encoded(v, card), "4761739001010010");
  v.attribute = "odd";
  EXPECT_EQ(encoded(v, card), "541333008901001F");
  v.attribute = "sc";
  v.encoding = ValueEncoding::kNumeric;
  v.length = 2;
  EXPECT_EQ(encoded(v, card), "0201");
  v.attribute = "name";
  v.encoding = ValueEncoding::kAscii;
  v.length = 0;
  EXPECT_EQ(encoded(v, card), "444F452F4A414E45");
  v.attribute = "hex";
  v.encoding = ValueEncoding::kHex;
  EXPECT_EQ(encoded(v, card), "A0B1");
  ValueSpec c;
  c.constant = hex("9F0801");
  EXPECT_EQ(encoded(c, card), "9F0801");
}

TEST(CardScriptTest, Track2EquivalentDataFromItsParts) {
  // EMV Book 3 Annex A, tag 57: PAN, D, YYMM, service code, discretionary data, F pad.
  const Card card({{"pan", "4761739001010010"}, {"expiry", "2212"}, {"service_code", "201"}, {"dd", "1234567"}});
  EXPECT_EQ(encoded(track2(), card), "4761739001010010D22122011234567F");
  const Card even({{"pan", "4761739001010010"}, {"expiry", "2212"}, {"service_code", "201"}, {"dd", "12345678"}});
  EXPECT_EQ(encoded(track2(), even), "4761739001010010D221220112345678");
  const Card no_dd({{"pan", "5413330089010012"}, {"expiry", "3012"}, {"service_code", "101"}, {"dd", ""}});
  EXPECT_EQ(encoded(track2(), no_dd), "5413330089010012D3012101") << "an empty optional part is left out";
  EXPECT_EQ(encoded(track2(false), card), "4761739001010010D2212201");
}

TEST(CardScriptTest, Track2RefusesBadPartsNamingTheAttribute) {
  auto error_of = [](const Card& card) {
    auto v = encode_value(track2(), card.lookup());
    EXPECT_FALSE(v.has_value());
    if (v) return std::string();
    EXPECT_EQ(v.error().code(), ErrorCode::kInvalidArgument);
    return v.error().message();
  };
  EXPECT_NE(error_of(Card({{"pan", "47617390010100AB"}, {"expiry", "2212"}, {"service_code", "201"}, {"dd", ""}}))
                .find("'pan' is not all digits"),
            std::string::npos);
  EXPECT_NE(error_of(Card({{"pan", "4761739001010010"}, {"expiry", "221"}, {"service_code", "201"}, {"dd", ""}}))
                .find("'expiry'"),
            std::string::npos);
  EXPECT_NE(error_of(Card({{"pan", ""}, {"expiry", "2212"}, {"service_code", "201"}, {"dd", ""}})).find("empty"),
            std::string::npos);
  // 19 + 1 + 4 + 3 + 13 = 40 nibbles: 20 bytes, one too many for tag 57.
  const std::string msg = error_of(Card({{"pan", "4761739001010010123"}, {"expiry", "2212"}, {"service_code", "201"},
                                         {"dd", "1234567890123"}}));
  EXPECT_NE(msg.find("20 bytes"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("4761739001010010123"), std::string::npos) << "the PAN is never quoted";
}

TEST(CardScriptTest, LongDgiUsesTheLongLengthFormAndSpansStoreDataBlocks) {
  auto keys = ClearCardKeys::create(
      StaticKeySet{SecureBytes(hex("404142434445464748494A4B4C4D4E4F")),
                   SecureBytes(hex("404142434445464748494A4B4C4D4E4F")),
                   SecureBytes(hex("404142434445464748494A4B4C4D4E4F"))},
      KeyFamily::kAes);
  ASSERT_TRUE(keys.has_value());
  ChannelParams p;
  p.scp = 3;
  p.i = 0x70;
  p.level = 0x01;  // C-MAC only: the data stays readable in the wrapped commands
  p.kvn = 0x30;
  p.kdd = hex("00112233445566778899");
  p.aid = hex("A000000151000000");
  p.counter = 1;
  p.host_challenge = hex("0001020304050607");
  auto session = open_offline_session(*keys, p);
  ASSERT_TRUE(session.has_value()) << session.error().message();

  PrepSpec prep;
  prep.channel.scp = 3;
  prep.channel.level = 0x01;
  CommandSpec store;
  store.kind = CommandKind::kStoreData;
  DgiSpec big;
  big.id = 0x0202;
  big.value = ValueSpec{};
  for (int k = 0; k < 300; ++k) big.value->constant.push_back(static_cast<std::uint8_t>(k));
  DgiSpec small;
  small.id = 0x9102;
  small.value = ValueSpec{};
  small.value->constant = hex("A5088801025F2D02656E");
  store.dgis = {big, small};
  prep.script = {store};
  const Card card({});
  auto script = build_card_script(prep, card.lookup(), **session, 0x70);
  ASSERT_TRUE(script.has_value()) << script.error().message();
  ASSERT_EQ(script->size(), 2u);
  // Block 1: 84 E2 00 00 Lc | 0202 FF 012C | 242 bytes of the value | C-MAC.
  const Bytes& b1 = (*script)[0].bytes;
  ASSERT_EQ(b1.size(), 5u + 247u + 8u);
  EXPECT_EQ(to_hex(Bytes(b1.begin(), b1.begin() + 5)), "84E20000FF");
  EXPECT_EQ(to_hex(Bytes(b1.begin() + 5, b1.begin() + 10)), "0202FF012C");
  EXPECT_EQ(b1[10], 0x00);
  EXPECT_EQ(b1[5 + 247 - 1], 241);
  // Block 2 (last, P2 01): the value's 58 remaining bytes, then DGI 9102 whole.
  const Bytes& b2 = (*script)[1].bytes;
  EXPECT_EQ(to_hex(Bytes(b2.begin(), b2.begin() + 4)), "84E28001");
  ASSERT_EQ(b2[4], 58 + 3 + 10 + 8);
  EXPECT_EQ(b2[5], 242);
  EXPECT_EQ(b2[5 + 57], 299 & 0xFF);
  EXPECT_EQ(to_hex(Bytes(b2.begin() + 5 + 58, b2.end() - 8)), "91020AA5088801025F2D02656E");
  EXPECT_NE((*script)[0].label.find("block 1/2 (DGI 0202 9102)"), std::string::npos) << (*script)[0].label;
}

}  // namespace
}  // namespace persoflow
