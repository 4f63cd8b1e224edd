#include "pipeline/card_id_set.h"

#include <gtest/gtest.h>

#include <string>

namespace persoflow::pipeline {
namespace {

TEST(CardIdSetTest, SecondInsertOfAnIdIsRefused) {
  CardIdSet set;
  EXPECT_TRUE(set.insert("C0001"));
  EXPECT_TRUE(set.insert("C0002"));
  EXPECT_FALSE(set.insert("C0001"));
  EXPECT_TRUE(set.insert(""));
  EXPECT_FALSE(set.insert(""));
  EXPECT_EQ(set.size(), 3u);
}

TEST(CardIdSetTest, ManyIdsAcrossGrowthStayDistinctAndDetected) {
  CardIdSet set;
  constexpr int kN = 300000;
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(set.insert("C" + std::to_string(i))) << i;
  EXPECT_EQ(set.size(), static_cast<std::size_t>(kN));
  for (int i = 0; i < kN; i += 997) EXPECT_FALSE(set.insert("C" + std::to_string(i))) << i;
  EXPECT_TRUE(set.insert("C" + std::to_string(kN)));
}

}  // namespace
}  // namespace persoflow::pipeline
