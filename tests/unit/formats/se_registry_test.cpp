// The SE registry (formats/se_registry.h) on a real SQLite file in a temporary directory:
// the schema as SQLite itself reports it, CSV import and its errors (file:line:column),
// counter reservation (consecutive values, rejects that leave the other cards served,
// values never handed out twice), reservation states, and reopening the file.
#include "formats/se_registry.h"

#include <sqlite3.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace persoflow::formats {
namespace {

using test::TempDir;
using test::write_file;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kHeader =
    "se_id,msi,iccid,kdd,isd_aid,scp,i,kvn,next_counter,max_counter,product\n";

std::string row(const std::string& se_id, const std::string& msi = "",
                const std::string& next = "1", const std::string& max = "",
                const std::string& product = "acme-se", const std::string& scp = "03",
                const std::string& i = "70") {
  return se_id + "," + msi + ",8901000000000000001,00112233445566778899,A000000151000000," + scp +
         "," + i + ",30," + next + "," + max + "," + product + "\n";
}

// Runs one SQL query straight through SQLite and returns the first column of every row,
// so the tests read the file independently of SeRegistry's own queries.
std::vector<std::string> query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::vector<std::string> out;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(s, 0);
    out.emplace_back(t == nullptr ? "NULL" : reinterpret_cast<const char*>(t));
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

class SeRegistryTest : public ::testing::Test {
 protected:
  std::string db_path() const { return (dir_ / "registry.db").string(); }

  SeRegistry open_db() {
    auto r = SeRegistry::open(db_path(), true);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return std::move(r).value();
  }

  std::string csv(const std::string& name, const std::string& text) {
    const auto p = dir_ / name;
    write_file(p, text);
    return p.string();
  }

  // Imports `text` and returns the error message (empty when it succeeded).
  std::string import_error(SeRegistry& reg, const std::string& text) {
    auto r = reg.import_csv(csv("bad.csv", text));
    if (r) return "";
    EXPECT_EQ(r.error().code(), ErrorCode::kParse) << r.error().message();
    return r.error().message();
  }

  SeRecord must_find(SeRegistry& reg, const std::string& se_id) {
    auto r = reg.find({SeLookupKind::kSeId, se_id});
    EXPECT_TRUE(r.has_value() && r->has_value()) << se_id;
    return r && *r ? **r : SeRecord{};
  }

  static std::vector<SeLookup> ids(const std::vector<std::string>& keys) {
    std::vector<SeLookup> out;
    for (const auto& k : keys) out.push_back({SeLookupKind::kSeId, k});
    return out;
  }

  TempDir dir_{"se-registry-test"};
};

TEST_F(SeRegistryTest, SchemaIsCreatedWithVersionAndDurabilitySettings) {
  { auto reg = open_db(); }
  EXPECT_EQ(query(db_path(), "PRAGMA user_version"), std::vector<std::string>{"2"});
  EXPECT_EQ(query(db_path(), "PRAGMA journal_mode"), std::vector<std::string>{"delete"});
  const auto tables =
      query(db_path(), "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name");
  EXPECT_THAT(tables, ::testing::IsSupersetOf({"se", "reservation", "counter_range"}));
  const auto ddl = query(db_path(), "SELECT sql FROM sqlite_master WHERE name='reservation'");
  ASSERT_EQ(ddl.size(), 1u);
  EXPECT_THAT(ddl[0], HasSubstr("AUTOINCREMENT"));
}

TEST_F(SeRegistryTest, OpenWithoutCreateOnMissingFileIsNotFound) {
  auto r = SeRegistry::open(db_path(), false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr(db_path()));
}

TEST_F(SeRegistryTest, RefusesFilesThatAreNotRegistries) {
  write_file(dir_ / "text.db", std::string(4096, 'x'));
  auto r = SeRegistry::open((dir_ / "text.db").string(), false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_THAT(r.error().message(), HasSubstr("text.db"));

  sqlite3* db = nullptr;
  const std::string other = (dir_ / "other.db").string();
  ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto o = SeRegistry::open(other, false);
  ASSERT_FALSE(o.has_value());
  EXPECT_THAT(o.error().message(), HasSubstr("not a persoflow SE registry"));
}

TEST_F(SeRegistryTest, ImportsGoodRowsWithDefaultsAndCaseInsensitiveHex) {
  auto reg = open_db();
  const std::string text =
      "# exported 2024-05-01\n"
      "\n"
      "se_id, kdd, isd_aid, scp, i, kvn, next_counter, product, msi\r\n"
      "SE-1,00112233445566778899,a000000151000000,03,70,30,0x10,acme-se,262011234567890\r\n"
      "SE-2,AABBCCDDEEFF00112233,A0000001510000,02,55,20,7,acme-uicc,\n";
  auto s = reg.import_csv(csv("good.csv", text));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->inserted, 2u);
  EXPECT_EQ(s->updated, 0u);
  EXPECT_EQ(*reg.count(), 2u);

  const SeRecord a = must_find(reg, "SE-1");
  EXPECT_EQ(a.msi, "262011234567890");
  EXPECT_EQ(to_hex(a.kdd), "00112233445566778899");
  EXPECT_EQ(to_hex(a.isd_aid), "A000000151000000");
  EXPECT_EQ(a.scp, 3);
  EXPECT_EQ(a.i, 0x70);
  EXPECT_EQ(a.kvn, 0x30);
  EXPECT_EQ(a.next_counter, 16u);
  EXPECT_EQ(a.max_counter, kScp03MaxCounter);
  EXPECT_EQ(a.product, "acme-se");

  const SeRecord b = must_find(reg, "SE-2");
  EXPECT_EQ(b.scp, 2);
  EXPECT_EQ(b.i, 0x55);
  EXPECT_EQ(b.max_counter, kScp02MaxCounter);
  EXPECT_TRUE(b.msi.empty());
  EXPECT_EQ(query(db_path(), "SELECT msi FROM se WHERE se_id='SE-2'"),
            std::vector<std::string>{"NULL"});  // empty MSI stored as NULL: UNIQUE ignores it

  auto by_msi = reg.find({SeLookupKind::kMsi, "262011234567890"});
  ASSERT_TRUE(by_msi.has_value() && by_msi->has_value());
  EXPECT_EQ((*by_msi)->se_id, "SE-1");
  auto none = reg.find({SeLookupKind::kSeId, "SE-9"});
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
}

struct BadCase {
  std::string text;
  std::string where;   // "bad.csv:LINE: column NAME" (or just "bad.csv:LINE")
  std::string reason;  // a piece of the reason
};

TEST_F(SeRegistryTest, BadRowsNameFileLineColumnAndWriteNothing) {
  const std::vector<BadCase> cases = {
      {kHeader + row("SE-1") + "SE-2,,x,0011223344556677,A000000151000000,03,70,30,1,,p\n",
       ":3: column kdd:", "8 bytes; must be 10 bytes"},
      {kHeader + "SE-1,,x,00112233445566778899,A0000001,03,70,30,1,,p\n",
       ":2: column isd_aid:", "4 bytes; must be 5 to 16 bytes"},
      {kHeader + "SE-1,,x,0011223344556677889G,A000000151,03,70,30,1,,p\n",
       ":2: column kdd:", "not hex"},
      {kHeader + row("SE-1", "", "1", "", "p", "01"), ":2: column scp:", "02 or 03"},
      {kHeader + row("SE-1", "", "0x1000000"), ":2: column next_counter:", "0xFFFFFF"},
      {kHeader + row("SE-1", "", "0x10000", "", "p", "02", "55"),
       ":2: column next_counter:", "0xFFFF,"},
      {kHeader + row("SE-1", "", "12", "11"), ":2: column next_counter:", "above max_counter 11"},
      {kHeader + row("SE-1", "", "abc"), ":2: column next_counter:", "not a counter"},
      {kHeader + row("SE-1", "", "1", "", "p", "03", "60"), ":2: column i:", "b5"},
      {kHeader + row("SE-1", "", "1", "", "p", "02", "15"), ":2: column i:", "b7"},
      {kHeader + row("SE-1", "", "1", "", "p", "03", "7"), ":2: column i:", "one hex byte"},
      {kHeader + row("SE-1", "M1") + "# comment\n" + row("SE-1", "M2"),
       ":4: column se_id:", "already on line 2"},
      {kHeader + row("SE-1", "M1") + row("SE-2", "M1"), ":3: column msi:", "already on line 2"},
      {kHeader + "\"SE-1\",,x,00112233445566778899,A000000151,03,70,30,1,,p\n",
       ":2: column se_id:", "quote"},
      {kHeader + "SE 1,,x,00112233445566778899,A000000151,03,70,30,1,,p\n",
       ":2: column se_id:", "blank"},
      {kHeader + "SE-1,,x,00112233445566778899,A000000151,03,70,30,1,,\n",
       ":2: column product:", "required"},
      {kHeader + "SE-1,,x\xC3\xA9,00112233445566778899,A000000151,03,70,30,1,,p\n",
       ":2: column iccid:", "0xC3"},
      {kHeader + "SE-1,,x,00112233445566778899,A000000151,03,70,30,1,p\n",
       ":2:", "10 fields, the header names 11 columns"},
      {"se_id,kdd,isd_aid,scp,i,kvn,product\n",
       ":1: column next_counter:", "required column missing"},
      {"se_id,kdd,isd_aid,scp,i,kvn,next_counter,product,colour\n",
       ":1: column 'colour':", "unknown column"},
      {"se_id,kdd,kdd,isd_aid,scp,i,kvn,next_counter,product\n", ":1: column kdd:", "named twice"},
      {"# only a comment\n\n", "bad.csv:", "no header line"},
  };
  auto reg = open_db();
  for (const BadCase& c : cases) {
    const std::string message = import_error(reg, c.text);
    EXPECT_THAT(message, StartsWith((dir_ / "bad.csv").string())) << c.text;
    EXPECT_THAT(message, HasSubstr(c.where)) << c.text;
    EXPECT_THAT(message, HasSubstr(c.reason)) << c.text;
  }
  EXPECT_EQ(*reg.count(), 0u) << "a bad file must write nothing, not even its good rows";
}

TEST_F(SeRegistryTest, MsiOfAnotherSeInTheRegistryIsRefused) {
  auto reg = open_db();
  ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-1", "M1"))).has_value());
  const std::string message = import_error(reg, kHeader + row("SE-2", "M2") + row("SE-3", "M1"));
  EXPECT_THAT(message, HasSubstr("bad.csv:3: column msi: 'M1' already belongs to SE 'SE-1'"));
  EXPECT_EQ(*reg.count(), 1u) << "SE-2 (line 2) must have been rolled back";
}

TEST_F(SeRegistryTest, ReimportUpdatesFieldsButNeverLowersTheCounter) {
  auto reg = open_db();
  ASSERT_TRUE(
      reg.import_csv(csv("a.csv", kHeader + row("SE-1", "M1", "100") + row("SE-2", "", "5")))
          .has_value());
  // SE-1: a stale export (counter 3) with a new product; SE-2: identical; SE-3: new.
  auto s = reg.import_csv(csv("b.csv", kHeader + row("SE-1", "M9", "3", "", "acme-2") +
                                           row("SE-2", "", "5") + row("SE-3")));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->inserted, 1u);
  EXPECT_EQ(s->updated, 1u);
  EXPECT_EQ(s->unchanged, 1u);
  const SeRecord a = must_find(reg, "SE-1");
  EXPECT_EQ(a.next_counter, 100u) << "a counter never goes back";
  EXPECT_EQ(a.product, "acme-2");
  EXPECT_EQ(a.msi, "M9");
  // A higher CSV counter is taken.
  ASSERT_TRUE(
      reg.import_csv(csv("c.csv", kHeader + row("SE-1", "M9", "250", "", "acme-2"))).has_value());
  EXPECT_EQ(must_find(reg, "SE-1").next_counter, 250u);
}

TEST_F(SeRegistryTest, GetRowsReadsRowsInTheOrderGivenAndNamesAMissingOne) {
  auto reg = open_db();
  ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-A", "MSI-A", "10") + row("SE-B", "", "0x20") +
                                              row("SE-C", "", "7")))
                  .has_value());
  // Row ids as prep gets them: from the reservation.
  auto r = reg.reserve(ids({"SE-A", "SE-B", "SE-C"}), {"run-1", "acme-se", 3, "alice", std::string(64, 'a')});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const std::int64_t a = r->cards[0].se_row;
  const std::int64_t b = r->cards[1].se_row;
  const std::int64_t c = r->cards[2].se_row;
  const std::vector<std::int64_t> rows = {c, a, c, b};
  auto got = reg.get_rows(rows);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  ASSERT_EQ(got->size(), 4u);
  EXPECT_EQ((*got)[0].se_id, "SE-C");
  EXPECT_EQ((*got)[1].se_id, "SE-A");
  EXPECT_EQ((*got)[1].msi, "MSI-A");
  EXPECT_EQ((*got)[1].next_counter, 11u);
  EXPECT_EQ((*got)[2].se_id, "SE-C");
  EXPECT_EQ((*got)[3].se_id, "SE-B");
  EXPECT_EQ((*got)[3].next_counter, 0x21u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto one = reg.get_row(rows[i]);
    ASSERT_TRUE(one.has_value());
    EXPECT_EQ(one->se_id, (*got)[i].se_id);
    EXPECT_EQ(one->kdd, (*got)[i].kdd);
    EXPECT_EQ(one->next_counter, (*got)[i].next_counter);
  }
  EXPECT_TRUE(reg.get_rows({}).has_value());

  const std::vector<std::int64_t> bad = {a, 999999, b};
  auto missing = reg.get_rows(bad);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message(), ::testing::HasSubstr("no SE row 999999"));
  // The read transaction of the failed call is over: the registry is writable again.
  ASSERT_TRUE(reg.reserve(ids({"SE-A"}), {"run-2", "acme-se", 3, "alice", std::string(64, 'a')}).has_value());
  auto again = reg.get_rows(rows);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)[1].next_counter, 12u);
}

// prep takes each SE's row from its reservation instead of reading it again: the row as
// the reservation's transaction read it (next_counter from before it), for every card with
// a counter, whichever key found it; none for a rejected card.
TEST_F(SeRegistryTest, AReservedCardCarriesItsSeRowAsTheReservationReadIt) {
  auto reg = open_db();
  ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-A", "MSI-A", "10") + row("SE-B", "", "0x20") +
                                              row("SE-C", "", "7", "", "other-product")))
                  .has_value());
  auto r = reg.reserve(ids({"SE-B", "SE-A", "SE-X", "SE-C", "SE-A"}), {"run-1", "acme-se", 3, "alice", std::string(64, 'a')});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->cards.size(), 5u);
  for (std::size_t i : {0u, 1u, 4u}) {
    ASSERT_TRUE(r->cards[i].ok) << i;
    ASSERT_TRUE(r->cards[i].se.has_value()) << i;
    auto row_now = reg.get_row(r->cards[i].se_row);
    ASSERT_TRUE(row_now.has_value());
    const SeRecord& se = *r->cards[i].se;
    EXPECT_EQ(se.se_id, row_now->se_id);
    EXPECT_EQ(se.msi, row_now->msi);
    EXPECT_EQ(se.iccid, row_now->iccid);
    EXPECT_EQ(se.kdd, row_now->kdd);
    EXPECT_EQ(se.isd_aid, row_now->isd_aid);
    EXPECT_EQ(se.scp, row_now->scp);
    EXPECT_EQ(se.i, row_now->i);
    EXPECT_EQ(se.kvn, row_now->kvn);
    EXPECT_EQ(se.max_counter, row_now->max_counter);
    EXPECT_EQ(se.product, row_now->product);
    EXPECT_LT(se.next_counter, row_now->next_counter) << "read before the reservation advanced it";
  }
  EXPECT_EQ(r->cards[0].se->se_id, "SE-B");
  EXPECT_EQ(r->cards[0].se->next_counter, 0x20u);
  EXPECT_EQ(r->cards[1].se->se_id, "SE-A");
  EXPECT_EQ(r->cards[4].se->se_id, "SE-A");
  for (std::size_t i : {2u, 3u}) {
    EXPECT_FALSE(r->cards[i].ok) << i;
    EXPECT_FALSE(r->cards[i].se.has_value()) << i;
  }
}

TEST_F(SeRegistryTest, ReserveGivesConsecutiveCountersPerSeAndRecordsRanges) {
  auto reg = open_db();
  ASSERT_TRUE(
      reg.import_csv(csv("a.csv", kHeader + row("SE-A", "MSI-A", "10") + row("SE-B", "", "0x20")))
          .has_value());
  std::vector<SeLookup> cards = ids({"SE-A", "SE-B", "SE-A"});
  cards.push_back({SeLookupKind::kMsi, "MSI-A"});  // same SE, found through its MSI
  auto r = reg.reserve(cards, {"run-1", "acme-se", 3, "alice", std::string(64, 'a')});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_GT(r->id, 0);
  ASSERT_EQ(r->cards.size(), 4u);
  EXPECT_EQ(r->reserved, 4u);
  EXPECT_EQ(r->cards[0].counter, 10u);
  EXPECT_EQ(r->cards[1].counter, 0x20u);
  EXPECT_EQ(r->cards[2].counter, 11u);
  EXPECT_EQ(r->cards[3].counter, 12u);
  EXPECT_EQ(r->cards[0].se_row, r->cards[3].se_row);
  auto row_a = reg.get_row(r->cards[0].se_row);
  ASSERT_TRUE(row_a.has_value());
  EXPECT_EQ(row_a->se_id, "SE-A");
  EXPECT_EQ(row_a->next_counter, 13u);
  EXPECT_EQ(must_find(reg, "SE-B").next_counter, 0x21u);

  auto ranges = reg.ranges_of(r->id);
  ASSERT_TRUE(ranges.has_value());
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].se_id, "SE-A");
  EXPECT_EQ((*ranges)[0].first, 10u);
  EXPECT_EQ((*ranges)[0].last, 12u);
  EXPECT_EQ((*ranges)[0].kvn, 0x30);
  EXPECT_EQ((*ranges)[1].se_id, "SE-B");
  EXPECT_EQ((*ranges)[1].first, 0x20u);
  EXPECT_EQ((*ranges)[1].last, 0x20u);

  auto rec = reg.reservation(r->id);
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->run_id, "run-1");
  EXPECT_EQ((*rec)->product, "acme-se");
  EXPECT_EQ((*rec)->counters, 4u);
  EXPECT_EQ((*rec)->state, ReservationState::kReserved);
  EXPECT_THAT((*rec)->created_utc, ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z"));
  EXPECT_EQ(query(db_path(), "SELECT operator FROM reservation"),
            std::vector<std::string>{"alice"});
}

// A script with several sessions on the SE's key set: each card takes consecutive values,
// the card's counter is the first; a card whose values do not all fit is rejected alone.
TEST_F(SeRegistryTest, SeveralValuesPerCard) {
  auto reg = open_db();
  ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-A", "", "10") + row("SE-END", "", "0x40", "0x41")))
                  .has_value());
  ReservationInfo info{"run-m", "acme-se", 3, "ops", ""};
  info.values_per_card = 2;
  auto r = reg.reserve(ids({"SE-A", "SE-A", "SE-END", "SE-END"}), info);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->cards.size(), 4u);
  EXPECT_EQ(r->cards[0].counter, 10u);
  EXPECT_EQ(r->cards[1].counter, 12u);
  EXPECT_TRUE(r->cards[2].ok) << "0x40 and 0x41 both fit";
  EXPECT_EQ(r->cards[2].counter, 0x40u);
  EXPECT_FALSE(r->cards[3].ok);
  EXPECT_THAT(r->cards[3].reject_reason, HasSubstr("counter exhausted"));
  EXPECT_THAT(r->cards[3].reject_reason, HasSubstr("and the 1 after it go beyond max 0x000041"));
  EXPECT_EQ(r->reserved, 3u);
  EXPECT_EQ(must_find(reg, "SE-A").next_counter, 14u);
  EXPECT_EQ(must_find(reg, "SE-END").next_counter, 0x42u);
  auto ranges = reg.ranges_of(r->id);
  ASSERT_TRUE(ranges.has_value());
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].first, 10u);
  EXPECT_EQ((*ranges)[0].last, 13u);
  EXPECT_EQ((*ranges)[1].first, 0x40u);
  EXPECT_EQ((*ranges)[1].last, 0x41u);
  auto rec = reg.reservation(r->id);
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->counters, 6u) << "values, not cards";
  // A value at max with one more needed: rejected, nothing handed out.
  auto again = reg.reserve(ids({"SE-END"}), info);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->cards[0].ok);
  info.values_per_card = 0;
  EXPECT_FALSE(reg.reserve(ids({"SE-A"}), info).has_value());
}

TEST_F(SeRegistryTest, RejectsCardsAloneWithReasonsWhileOthersGoOn) {
  auto reg = open_db();
  ASSERT_TRUE(
      reg.import_csv(csv("a.csv", kHeader + row("SE-OK") + row("SE-MAX", "", "0x41", "0x41") +
                                      row("SE-OTHER", "", "1", "", "other-product") +
                                      row("SE-02", "", "1", "", "acme-se", "02", "55")))
          .has_value());
  const std::vector<SeLookup> cards = {
      {SeLookupKind::kSeId, "SE-OK"},    {SeLookupKind::kSeId, "SE-NONE"},
      {SeLookupKind::kSeId, "SE-MAX"},   {SeLookupKind::kSeId, "SE-MAX"},
      {SeLookupKind::kSeId, "SE-OTHER"}, {SeLookupKind::kSeId, "SE-02"},
      {SeLookupKind::kMsi, "NO-MSI"},    {SeLookupKind::kSeId, "SE-OK"}};
  auto r = reg.reserve(cards, {"run-2", "acme-se", 3, "bob", ""});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const auto& c = r->cards;
  ASSERT_EQ(c.size(), cards.size());
  EXPECT_TRUE(c[0].ok);
  EXPECT_EQ(c[0].counter, 1u);
  EXPECT_FALSE(c[1].ok);
  EXPECT_EQ(c[1].reject_reason, "unknown SE id 'SE-NONE'");
  EXPECT_TRUE(c[2].ok) << "the value equal to max_counter is still usable";
  EXPECT_EQ(c[2].counter, 0x41u);
  EXPECT_FALSE(c[3].ok);
  EXPECT_THAT(c[3].reject_reason, HasSubstr("counter exhausted"));
  EXPECT_THAT(c[3].reject_reason, HasSubstr("SE-MAX"));
  EXPECT_THAT(c[3].reject_reason, HasSubstr("0x000042"));
  EXPECT_THAT(c[3].reject_reason, HasSubstr("0x000041"));
  EXPECT_FALSE(c[4].ok);
  EXPECT_THAT(c[4].reject_reason, HasSubstr("product 'other-product', not 'acme-se'"));
  EXPECT_FALSE(c[5].ok);
  EXPECT_THAT(c[5].reject_reason, HasSubstr("SCP02"));
  EXPECT_FALSE(c[6].ok);
  EXPECT_EQ(c[6].reject_reason, "unknown MSI 'NO-MSI'");
  EXPECT_TRUE(c[7].ok);
  EXPECT_EQ(c[7].counter, 2u);
  EXPECT_EQ(r->reserved, 3u);
  // Rejected SEs keep their counters.
  EXPECT_EQ(must_find(reg, "SE-OTHER").next_counter, 1u);
  EXPECT_EQ(must_find(reg, "SE-02").next_counter, 1u);
  EXPECT_EQ(must_find(reg, "SE-MAX").next_counter, 0x42u);

  // Without product / SCP constraints the same SEs are served.
  auto any = reg.reserve(ids({"SE-OTHER", "SE-02", "SE-MAX"}), {"run-3", "", 0, "bob", ""});
  ASSERT_TRUE(any.has_value());
  EXPECT_TRUE(any->cards[0].ok);
  EXPECT_TRUE(any->cards[1].ok);
  EXPECT_FALSE(any->cards[2].ok) << "still exhausted";
}

TEST_F(SeRegistryTest, NoValueIsHandedOutTwiceAndIdsAreNeverReused) {
  auto reg = open_db();
  ASSERT_TRUE(
      reg.import_csv(csv("a.csv", kHeader + row("SE-1") + row("SE-2", "", "500"))).has_value());
  std::set<std::pair<std::string, std::uint32_t>> seen;
  std::int64_t last_id = 0;
  for (int run = 0; run < 3; ++run) {
    auto r = reg.reserve(ids({"SE-1", "SE-2", "SE-1", "SE-2", "SE-1"}),
                         {"run-" + std::to_string(run), "acme-se", 0, "ops", ""});
    ASSERT_TRUE(r.has_value());
    EXPECT_GT(r->id, last_id);
    last_id = r->id;
    for (std::size_t k = 0; k < r->cards.size(); ++k) {
      ASSERT_TRUE(r->cards[k].ok);
      const std::string se = k % 2 == 0 ? "SE-1" : "SE-2";
      EXPECT_TRUE(seen.emplace(se, r->cards[k].counter).second)
          << se << " counter " << r->cards[k].counter << " handed out twice";
    }
    ASSERT_TRUE(reg.mark_burnt(r->id).has_value());
  }
  EXPECT_EQ(seen.size(), 15u);
  // The newest reservation deleted by hand (as a careless operator might): AUTOINCREMENT
  // still gives the next one a fresh id.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  const std::string del =
      "DELETE FROM counter_range WHERE reservation_id = " + std::to_string(last_id) +
      "; DELETE FROM reservation WHERE id = " + std::to_string(last_id);
  ASSERT_EQ(sqlite3_exec(db, del.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto next = reg.reserve(ids({"SE-1"}), {"run-x", "", 0, "ops", ""});
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->id, last_id + 1);
  EXPECT_EQ(next->cards[0].counter, 10u) << "counters continue after the burnt ranges";

  auto ranges = reg.ranges_for_se("SE-2");
  ASSERT_TRUE(ranges.has_value());
  ASSERT_EQ(ranges->size(), 2u);  // the third run's range went with its deleted reservation
  EXPECT_EQ((*ranges)[0].first, 500u);
  EXPECT_EQ((*ranges)[0].last, 501u);
  EXPECT_EQ((*ranges)[1].first, 502u);
}

TEST_F(SeRegistryTest, ReservationStatesMoveOnlyFromReserved) {
  auto reg = open_db();
  ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-1"))).has_value());
  auto a = reg.reserve(ids({"SE-1"}), {"run-a", "acme-se", 3, "ops", ""});
  auto b = reg.reserve(ids({"SE-1"}), {"run-b", "acme-se", 3, "ops", ""});
  ASSERT_TRUE(a.has_value() && b.has_value());
  const std::string digest(64, 'c');
  EXPECT_FALSE(reg.mark_published(a->id, "abc").has_value()) << "a digest is 64 hex digits";
  ASSERT_TRUE(reg.mark_published(a->id, digest).has_value());
  EXPECT_TRUE(reg.mark_published(a->id, digest).has_value()) << "repeating is harmless";
  ASSERT_TRUE(reg.mark_burnt(b->id).has_value());
  auto burn_published = reg.mark_burnt(a->id);
  ASSERT_FALSE(burn_published.has_value());
  EXPECT_THAT(burn_published.error().message(), HasSubstr("is published"));
  EXPECT_FALSE(reg.mark_published(b->id, digest).has_value());
  auto missing = reg.mark_burnt(999);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  auto all = reg.reservations();
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].state, ReservationState::kPublished);
  EXPECT_EQ((*all)[0].output_digest, digest);
  EXPECT_EQ((*all)[1].state, ReservationState::kBurnt);
  EXPECT_EQ(reservation_state_name((*all)[1].state), "burnt");
}

TEST_F(SeRegistryTest, StreamedReservationAddsBatchesUnderOneId) {
  auto reg = open_db();
  ASSERT_TRUE(
      reg.import_csv(csv("a.csv", kHeader + row("SE-A", "", "5") + row("SE-B", "", "7"))).has_value());
  const ReservationInfo info{"run-s", "acme-se", 3, "ops", std::string(64, 'e')};
  auto id = reg.open_reservation(info);
  ASSERT_TRUE(id.has_value()) << id.error().message();
  auto rec = reg.reservation(*id);
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->state, ReservationState::kReserved);
  EXPECT_EQ((*rec)->counters, 0u);

  auto b1 = reg.reserve_more(*id, ids({"SE-A", "SE-B"}), info);
  ASSERT_TRUE(b1.has_value()) << b1.error().message();
  // Another run takes SE-A's next value between the two batches.
  auto other = reg.reserve(ids({"SE-A"}), {"run-o", "acme-se", 3, "ops", ""});
  ASSERT_TRUE(other.has_value());
  auto b2 = reg.reserve_more(*id, ids({"SE-A", "SE-X", "SE-A"}), info);
  ASSERT_TRUE(b2.has_value()) << b2.error().message();
  EXPECT_EQ(b1->id, *id);
  EXPECT_EQ(b2->id, *id);
  EXPECT_EQ(b1->batch, 1);
  EXPECT_EQ(b2->batch, 2);
  EXPECT_EQ(b1->cards[0].counter, 5u);
  EXPECT_EQ(b1->cards[1].counter, 7u);
  EXPECT_EQ(other->cards[0].counter, 6u);
  EXPECT_EQ(b2->cards[0].counter, 7u);
  EXPECT_FALSE(b2->cards[1].ok);
  EXPECT_THAT(b2->cards[1].reject_reason, HasSubstr("unknown SE id 'SE-X'"));
  EXPECT_EQ(b2->cards[2].counter, 8u);
  EXPECT_EQ(b2->reserved, 2u);
  EXPECT_EQ(must_find(reg, "SE-A").next_counter, 9u);

  // SE-A has two ranges under the run's id (5 and 7-8) around the other run's 6.
  auto ranges = reg.ranges_of(*id);
  ASSERT_TRUE(ranges.has_value());
  ASSERT_EQ(ranges->size(), 3u);
  EXPECT_EQ((*ranges)[0].se_id, "SE-A");
  EXPECT_EQ((*ranges)[0].first, 5u);
  EXPECT_EQ((*ranges)[0].last, 5u);
  EXPECT_EQ((*ranges)[1].se_id, "SE-A");
  EXPECT_EQ((*ranges)[1].first, 7u);
  EXPECT_EQ((*ranges)[1].last, 8u);
  EXPECT_EQ((*ranges)[2].se_id, "SE-B");
  rec = reg.reservation(*id);
  EXPECT_EQ((*rec)->counters, 4u);
  EXPECT_EQ(query(db_path(), "SELECT batch FROM counter_range WHERE reservation_id = " +
                                 std::to_string(*id) + " ORDER BY batch, first"),
            (std::vector<std::string>{"1", "1", "2"}));

  // Only a reserved reservation of the same product takes more.
  auto wrong_product = reg.reserve_more(*id, ids({"SE-B"}), {"run-s", "other", 3, "ops", ""});
  ASSERT_FALSE(wrong_product.has_value());
  EXPECT_THAT(wrong_product.error().message(), HasSubstr("product 'acme-se'"));
  ASSERT_TRUE(reg.mark_burnt(*id).has_value());
  auto after_burn = reg.reserve_more(*id, ids({"SE-B"}), info);
  ASSERT_FALSE(after_burn.has_value());
  EXPECT_THAT(after_burn.error().message(), HasSubstr("is burnt"));
  EXPECT_EQ(must_find(reg, "SE-B").next_counter, 8u) << "a refused batch reserves nothing";
  auto missing = reg.reserve_more(4242, ids({"SE-B"}), info);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(SeRegistryTest, SchemaVersionOneIsUpgradedKeepingItsRanges) {
  {
    // A registry as version 1 wrote it: counter_range without `batch`.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
CREATE TABLE se (row INTEGER PRIMARY KEY, se_id TEXT NOT NULL UNIQUE, msi TEXT UNIQUE,
  iccid TEXT NOT NULL DEFAULT '', kdd BLOB NOT NULL CHECK (length(kdd) = 10),
  isd_aid BLOB NOT NULL CHECK (length(isd_aid) BETWEEN 5 AND 16),
  scp INTEGER NOT NULL CHECK (scp IN (2, 3)), i INTEGER NOT NULL CHECK (i BETWEEN 0 AND 255),
  kvn INTEGER NOT NULL CHECK (kvn BETWEEN 0 AND 255),
  next_counter INTEGER NOT NULL CHECK (next_counter BETWEEN 0 AND 16777216),
  max_counter INTEGER NOT NULL CHECK (max_counter BETWEEN 0 AND 16777215), product TEXT NOT NULL);
CREATE TABLE reservation (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
  product TEXT NOT NULL, created_utc TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('reserved', 'published', 'burnt')),
  counters INTEGER NOT NULL DEFAULT 0, output_digest TEXT, operator TEXT NOT NULL DEFAULT '',
  source_digest TEXT NOT NULL DEFAULT '');
CREATE TABLE counter_range (reservation_id INTEGER NOT NULL REFERENCES reservation (id),
  se_row INTEGER NOT NULL REFERENCES se (row), kvn INTEGER NOT NULL, first INTEGER NOT NULL,
  last INTEGER NOT NULL, CHECK (first <= last), PRIMARY KEY (reservation_id, se_row)) WITHOUT ROWID;
CREATE INDEX counter_range_by_se ON counter_range (se_row, first);
INSERT INTO se VALUES (1, 'SE-OLD', NULL, '', x'00112233445566778899', x'A000000151000000', 3, 112, 48, 4, 100, 'acme-se');
INSERT INTO reservation VALUES (1, 'run-old', 'acme-se', '2026-01-01T00:00:00Z', 'published', 3, NULL, 'ops', '');
INSERT INTO counter_range VALUES (1, 1, 48, 1, 3);
PRAGMA user_version = 1;
)sql";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  auto reg = open_db();
  EXPECT_EQ(query(db_path(), "PRAGMA user_version"), std::vector<std::string>{"2"});
  auto old = reg.ranges_of(1);
  ASSERT_TRUE(old.has_value());
  ASSERT_EQ(old->size(), 1u);
  EXPECT_EQ((*old)[0].se_id, "SE-OLD");
  EXPECT_EQ((*old)[0].first, 1u);
  EXPECT_EQ((*old)[0].last, 3u);
  auto r = reg.reserve(ids({"SE-OLD"}), {"run-new", "acme-se", 3, "ops", ""});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->cards[0].counter, 4u);
  EXPECT_GT(r->id, 1);
}

TEST_F(SeRegistryTest, ReopeningKeepsEverything) {
  std::int64_t id = 0;
  {
    auto reg = open_db();
    ASSERT_TRUE(reg.import_csv(csv("a.csv", kHeader + row("SE-1", "M1", "7"))).has_value());
    auto r = reg.reserve(ids({"SE-1", "SE-1"}), {"run-a", "acme-se", 3, "ops", ""});
    ASSERT_TRUE(r.has_value());
    id = r->id;
    ASSERT_TRUE(reg.mark_published(id, std::string(64, 'e')).has_value());
  }
  auto reopened = SeRegistry::open(db_path(), false);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().message();
  EXPECT_EQ(must_find(*reopened, "SE-1").next_counter, 9u);
  EXPECT_EQ(must_find(*reopened, "SE-1").msi, "M1");
  auto rec = reopened->reservation(id);
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->state, ReservationState::kPublished);
  auto ranges = reopened->ranges_for_se("SE-1");
  ASSERT_TRUE(ranges.has_value());
  ASSERT_EQ(ranges->size(), 1u);
  EXPECT_EQ((*ranges)[0].first, 7u);
  EXPECT_EQ((*ranges)[0].last, 8u);
  auto next = reopened->reserve(ids({"SE-1"}), {"run-b", "", 0, "ops", ""});
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->cards[0].counter, 9u);
  EXPECT_GT(next->id, id);
}

TEST_F(SeRegistryTest, ParseFunctionNeedsNoDatabase) {
  auto rows = parse_registry_csv(kHeader + row("SE-1") + row("SE-2"), "mem.csv");
  ASSERT_TRUE(rows.has_value()) << rows.error().message();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].line, 3u);
  EXPECT_EQ((*rows)[1].record.se_id, "SE-2");
  auto bad = parse_registry_csv(kHeader + row("SE-1", "", "x"), "mem.csv");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), StartsWith("mem.csv:2: column next_counter: "));
}

}  // namespace
}  // namespace persoflow::formats
