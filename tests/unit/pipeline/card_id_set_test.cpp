#include "pipeline/card_id_set.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <unordered_set>

#include "tests/support/temp_dir.h"

namespace persoflow::pipeline {
namespace {

namespace fs = std::filesystem;

// insert() that must not fail.
bool add(CardIdSet& set, const std::string& id) {
  auto r = set.insert(id);
  EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : r.error().message());
  return r.has_value() && *r;
}

std::set<std::string> entries_of(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(CardIdSetTest, SecondInsertOfAnIdIsRefused) {
  test::TempDir dir;
  CardIdSet set(dir.path().string());
  EXPECT_TRUE(add(set, "C0001"));
  EXPECT_TRUE(add(set, "C0002"));
  EXPECT_FALSE(add(set, "C0001"));
  EXPECT_TRUE(add(set, ""));
  EXPECT_FALSE(add(set, ""));
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.runs(), 0u);  // nothing spilled: no file at all
}

TEST(CardIdSetTest, ManyIdsAcrossGrowthStayDistinctAndDetected) {
  test::TempDir dir;
  CardIdSet set(dir.path().string());
  constexpr int kN = 300000;
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(add(set, "C" + std::to_string(i))) << i;
  EXPECT_EQ(set.size(), static_cast<std::size_t>(kN));
  EXPECT_GT(set.stats().spills, 0u);  // the default table spilled: the disk path is covered
  for (int i = 0; i < kN; i += 997) EXPECT_FALSE(add(set, "C" + std::to_string(i))) << i;
  EXPECT_TRUE(add(set, "C" + std::to_string(kN)));
}

// Small runs, a few hundred thousand ids drawn with many repeats (ids reappear after
// several spills and merges): every answer is the reference set's.
TEST(CardIdSetTest, AgreesWithAnExactSetAcrossRunsAndMerges) {
  test::TempDir dir;
  CardIdSetOptions options;
  options.run_entries = 1000;
  CardIdSet set(dir.path().string(), options);
  std::unordered_set<std::string> reference;
  std::mt19937_64 rng(20261122);
  constexpr int kInserts = 400000;
  constexpr std::uint64_t kSpace = 250000;  // about 40% of the inserts are repeats
  std::uint64_t repeats = 0;
  for (int i = 0; i < kInserts; ++i) {
    // Half the draws from the whole space, half near the newest ids (repeats in the table).
    const std::uint64_t n =
        (i % 2 == 0) ? rng() % kSpace
                     : (static_cast<std::uint64_t>(i) * kSpace / kInserts + rng() % 2000) % kSpace;
    const std::string id = "4000" + std::to_string(n);
    const bool expected = reference.insert(id).second;
    if (!expected) ++repeats;
    auto got = set.insert(id);
    ASSERT_TRUE(got.has_value()) << got.error().message();
    ASSERT_EQ(*got, expected) << "insert " << i << " of " << id;
  }
  EXPECT_EQ(set.size(), reference.size());
  EXPECT_GT(repeats, 100000u);
  const CardIdSetStats stats = set.stats();
  EXPECT_GT(stats.merges, 10u);
  // Tiered merging keeps the runs logarithmic: at most fanout - 1 per tier.
  const double tiers = std::ceil(std::log(static_cast<double>(stats.spills)) / std::log(4.0)) + 1;
  EXPECT_LE(static_cast<double>(stats.max_runs), 3 * tiers);
  // The filters keep disk reads rare: repeats found in runs read one block each; other reads
  // are filter false positives (about 0.2% per run probed at 14 bits per key).
  EXPECT_LT(stats.block_reads,
            repeats + static_cast<std::uint64_t>(kInserts) * stats.max_runs / 100);
}

// Very small runs: many tiers of merges (as ten million cards would make with the
// defaults), the runs stay few and the earliest ids are still found.
TEST(CardIdSetTest, DeepTiersStayFewAndExact) {
  test::TempDir dir;
  CardIdSetOptions options;
  options.run_entries = 64;
  CardIdSet set(dir.path().string(), options);
  constexpr int kN = 200000;  // 3125 spills: 6 tiers
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(add(set, "D" + std::to_string(i))) << i;
  const CardIdSetStats stats = set.stats();
  EXPECT_EQ(stats.spills, static_cast<std::uint64_t>(kN / 64));
  EXPECT_LE(stats.max_runs, 3u * 7u);
  EXPECT_LE(set.runs(), 3u * 7u);
  for (int i = 0; i < kN; i += 101) ASSERT_FALSE(add(set, "D" + std::to_string(i))) << i;
  for (int i = kN; i < kN + 1000; ++i) ASSERT_TRUE(add(set, "D" + std::to_string(i))) << i;
}

// The project's memory target: a few bytes of RAM per card at a million cards.
TEST(CardIdSetTest, MillionCardsInAFewBytesEach) {
  test::TempDir dir;
  CardIdSet set(dir.path().string());
  std::size_t at_100k = 0;
  constexpr int kN = 1000000;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(add(set, "5" + std::to_string(1000000000 + i))) << i;
    if (i + 1 == 100000) at_100k = set.memory_bytes();
  }
  const std::size_t at_1m = set.memory_bytes();
  EXPECT_LT(at_100k, std::size_t{1} << 20);
  EXPECT_LT(at_1m, std::size_t{3} << 20);
  EXPECT_LE(set.stats().max_runs, 16u);
  EXPECT_FALSE(add(set, "5" + std::to_string(1000000000)));
  EXPECT_FALSE(add(set, "5" + std::to_string(1000000000 + kN / 2)));
}

// The spill file never has a name in the directory, with O_TMPFILE or with the fallback.
TEST(CardIdSetTest, LeavesNoFileInTheSpillDirectory) {
  for (const bool o_tmpfile : {true, false}) {
    test::TempDir dir;
    test::write_file(dir / "other.xof.tmp", "x");
    const auto before = entries_of(dir.path());
    {
      CardIdSetOptions options;
      options.run_entries = 100;
      options.use_o_tmpfile = o_tmpfile;
      CardIdSet set(dir.path().string(), options);
      for (int i = 0; i < 5000; ++i) ASSERT_TRUE(add(set, "E" + std::to_string(i)));
      ASSERT_GT(set.runs(), 0u);
      EXPECT_EQ(entries_of(dir.path()), before) << "o_tmpfile " << o_tmpfile;
    }
    EXPECT_EQ(entries_of(dir.path()), before) << "o_tmpfile " << o_tmpfile;
  }
}

void expect_fails_naming(const std::string& dir, const std::string& reason) {
  CardIdSetOptions options;
  options.run_entries = 10;
  CardIdSet set(dir, options);
  std::optional<Error> error;
  for (int i = 0; i < 10 && !error; ++i) {
    auto r = set.insert("F" + std::to_string(i));
    if (!r) error = r.error();
  }
  ASSERT_TRUE(error.has_value()) << dir;
  EXPECT_EQ(error->code(), ErrorCode::kIo);
  EXPECT_NE(error->message().find(dir), std::string::npos) << error->message();
  EXPECT_NE(error->message().find(reason), std::string::npos) << error->message();
  // Once broken, the set says so on every insert rather than answer from half its state.
  auto again = set.insert("G");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().message(), error->message());
}

TEST(CardIdSetTest, AnUnusableDirectoryFailsNamingIt) {
  test::TempDir dir;
  expect_fails_naming((dir / "missing").string(), "No such file or directory");
  test::write_file(dir / "a-file", "x");
  expect_fails_naming((dir / "a-file").string(), "Not a directory");
  if (::geteuid() != 0) {  // root writes anywhere
    const fs::path locked = dir / "locked";
    fs::create_directory(locked);
    ASSERT_EQ(::chmod(locked.c_str(), 0500), 0);
    expect_fails_naming(locked.string(), "Permission denied");
    ::chmod(locked.c_str(), 0700);
  }
}

}  // namespace
}  // namespace persoflow::pipeline
