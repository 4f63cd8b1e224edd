// The synthetic card generator behind gen-issuer: every generated card passes the
// profile's own validation, and generation is reproducible per (seed, index).
#include "pipeline/synthetic_cards.h"

#include <gtest/gtest.h>

#include "config/profile_parser.h"
#include "engine/attribute_rules.h"

namespace persoflow::pipeline {
namespace {

Profile load(const std::string& name) {
  auto p = config::load_profile(std::string(PERSOFLOW_SOURCE_DIR) + "/config/profiles/" + name);
  EXPECT_TRUE(p.has_value()) << p.error().message();
  return *p;
}

TEST(SyntheticCardsTest, EveryCardPassesTheProfileRules) {
  for (const char* name : {"acme-import-xml.xml", "acme-import-fixed.xml"}) {
    const Profile profile = load(name);
    SyntheticCards gen(profile, SyntheticOptions{42, "476173"});
    for (std::uint64_t i = 0; i < 2000; ++i) {
      const auto values = gen.values(i);
      ASSERT_EQ(values.size(), profile.attributes.size());
      for (std::size_t a = 0; a < values.size(); ++a) {
        const AttributeSpec& spec = profile.attributes[a];
        if (spec.field_encryption != FieldEncryption::kNone) {
          EXPECT_EQ(values[a].size(), 16u);  // an 8-byte PIN block, wrapped later
          continue;
        }
        EXPECT_EQ(check_attribute(spec, values[a]), std::nullopt) << name << " card " << i << " " << spec.name;
        if (spec.luhn) {
          EXPECT_TRUE(luhn_valid(values[a]));
          EXPECT_EQ(values[a].rfind("476173", 0), 0u);
        }
      }
    }
  }
}

TEST(SyntheticCardsTest, SameSeedSameCardsOtherSeedOtherCards) {
  const Profile profile = load("acme-import-xml.xml");
  SyntheticCards a(profile, SyntheticOptions{7, "476173"});
  SyntheticCards b(profile, SyntheticOptions{7, "476173"});
  SyntheticCards c(profile, SyntheticOptions{8, "476173"});
  EXPECT_EQ(a.values(123), b.values(123));
  EXPECT_NE(a.values(123), c.values(123));
  EXPECT_NE(a.values(123), a.values(124));
  // The card id is the index, whatever the seed.
  EXPECT_EQ(a.values(0)[0], c.values(0)[0]);
}

TEST(SyntheticCardsTest, RenderedRecordsHaveTheLayoutOfTheProfile) {
  const Profile xml = load("acme-import-xml.xml");
  SyntheticCards gx(xml, SyntheticOptions{});
  const std::string rec = gx.render(gx.values(0));
  EXPECT_EQ(rec.find("<card id=\"C"), 2u);
  EXPECT_NE(rec.find("</card>"), std::string::npos);
  EXPECT_NE(gx.prolog().find("<?xml"), std::string::npos);

  const Profile fixed = load("acme-import-fixed.xml");
  SyntheticCards gf(fixed, SyntheticOptions{});
  const std::string line = gf.render(gf.values(0));
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.size() - 1, fixed.records.record_length == 0 ? line.size() - 1 : fixed.records.record_length);
}

}  // namespace
}  // namespace persoflow::pipeline
