// `persoflow registry` through the real binary: CSV import into a fresh database, show
// (text and --json, by SE id and by MSI, with the reserved ranges), reservations, and the
// exit codes of a missing SE (4), a bad CSV (3, naming file:line:column) and bad usage (2).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/se_registry.h"
#include "tests/support/run_process.h"
#include "tests/support/temp_dir.h"

namespace persoflow::test {
namespace {

using ::testing::HasSubstr;

const std::string kCsv =
    "se_id,msi,iccid,kdd,isd_aid,scp,i,kvn,next_counter,max_counter,product\n"
    "SE-0001,262011234567890,89490200001234567890,00112233445566778899,A000000151000000,03,70,30,"
    "0x000010,,acme-se\n"
    "SE-0002,,,AABBCCDDEEFF00112233,A0000001510000,02,55,20,7,1000,acme-uicc\n";

class CliRegistryTest : public ::testing::Test {
 protected:
  ProcessResult pf(std::vector<std::string> args) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    return run_process(args);
  }
  std::string db() const { return (dir_ / "registry.db").string(); }
  std::string csv(const std::string& text, const std::string& name = "ses.csv") {
    write_file(dir_ / name, text);
    return (dir_ / name).string();
  }
  void import_good() {
    auto r = pf({"registry", "import", "--db", db(), "--csv", csv(kCsv)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  TempDir dir_{"cli-registry-test"};
};

TEST_F(CliRegistryTest, ImportCreatesTheDatabaseAndPrintsOneLine) {
  auto r = pf({"registry", "import", "--db", db(), "--csv", csv(kCsv)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(db()));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2 inserted, 0 updated, 0 unchanged"));

  auto again = pf({"registry", "import", "--db", db(), "--csv", csv(kCsv), "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto j = nlohmann::json::parse(again.out);
  EXPECT_EQ(j.at("inserted"), 0);
  EXPECT_EQ(j.at("unchanged"), 2);
  EXPECT_EQ(j.at("ses"), 2);

  // Read back with the library, not the CLI.
  auto reg = formats::SeRegistry::open(db(), false);
  ASSERT_TRUE(reg.has_value()) << reg.error().message();
  EXPECT_EQ(*reg->count(), 2u);
}

TEST_F(CliRegistryTest, ShowJsonHasEveryFieldAndTheReservedRanges) {
  import_good();
  {
    auto reg = formats::SeRegistry::open(db(), false);
    ASSERT_TRUE(reg.has_value());
    auto res = reg->reserve(
        {{formats::SeLookupKind::kSeId, "SE-0001"}, {formats::SeLookupKind::kSeId, "SE-0001"}},
        {"run-7", "acme-se", 3, "ops", ""});
    ASSERT_TRUE(res.has_value() && res->reserved == 2);
  }
  auto r = pf({"registry", "show", "--db", db(), "--se", "SE-0001", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("se_id"), "SE-0001");
  EXPECT_EQ(j.at("msi"), "262011234567890");
  EXPECT_EQ(j.at("iccid"), "89490200001234567890");
  EXPECT_EQ(j.at("kdd"), "00112233445566778899");
  EXPECT_EQ(j.at("isd_aid"), "A000000151000000");
  EXPECT_EQ(j.at("scp"), 3);
  EXPECT_EQ(j.at("i"), "70");
  EXPECT_EQ(j.at("kvn"), "30");
  EXPECT_EQ(j.at("next_counter"), 0x12);
  EXPECT_EQ(j.at("max_counter"), 0xFFFFFF);
  EXPECT_EQ(j.at("remaining"), 0xFFFFFF - 0x12 + 1);
  EXPECT_EQ(j.at("product"), "acme-se");
  ASSERT_EQ(j.at("ranges").size(), 1u);
  EXPECT_EQ(j.at("ranges")[0].at("first"), 0x10);
  EXPECT_EQ(j.at("ranges")[0].at("last"), 0x11);
  EXPECT_EQ(j.at("ranges")[0].at("state"), "reserved");

  auto by_msi = pf({"registry", "show", "--db", db(), "--msi", "262011234567890"});
  ASSERT_EQ(by_msi.exit_code, 0) << by_msi.err;
  EXPECT_THAT(by_msi.out, HasSubstr("SE SE-0001"));
  EXPECT_THAT(by_msi.out, HasSubstr("0x000010-0x000011"));

  auto list = pf({"registry", "reservations", "--db", db(), "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const auto l = nlohmann::json::parse(list.out);
  ASSERT_EQ(l.at("reservations").size(), 1u);
  EXPECT_EQ(l.at("reservations")[0].at("run_id"), "run-7");
  EXPECT_EQ(l.at("reservations")[0].at("counters"), 2);
  auto text = pf({"registry", "reservations", "--db", db()});
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_THAT(text.out, HasSubstr("1 reservation\n"));
}

TEST_F(CliRegistryTest, UnknownSeOrMissingDatabaseExits4) {
  import_good();
  auto r = pf({"registry", "show", "--db", db(), "--se", "SE-9999"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("SE id 'SE-9999' is not in the registry"));
  auto m = pf({"registry", "show", "--db", db(), "--msi", "000"});
  EXPECT_EQ(m.exit_code, 4);
  auto no_db = pf({"registry", "reservations", "--db", (dir_ / "missing.db").string()});
  EXPECT_EQ(no_db.exit_code, 4) << no_db.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "missing.db")) << "show/reservations never create";
  auto no_csv = pf({"registry", "import", "--db", db(), "--csv", (dir_ / "none.csv").string()});
  EXPECT_EQ(no_csv.exit_code, 4) << no_csv.err;
}

TEST_F(CliRegistryTest, BadCsvExits3NamingFileLineAndColumn) {
  const std::string path =
      csv(kCsv + "SE-0003,,,0011,A000000151000000,03,70,30,1,,acme-se\n", "bad.csv");
  auto r = pf({"registry", "import", "--db", db(), "--csv", path});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr(path + ":4: column kdd: 2 bytes; must be 10 bytes"));
  // Nothing written, not even the good lines 2 and 3.
  auto reg = formats::SeRegistry::open(db(), false);
  ASSERT_TRUE(reg.has_value());
  EXPECT_EQ(*reg->count(), 0u);
}

TEST_F(CliRegistryTest, HelpAndUsageErrors) {
  auto help = pf({"registry", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("import"));
  EXPECT_THAT(help.out, HasSubstr("reservations"));
  auto show_help = pf({"registry", "show", "--help"});
  EXPECT_EQ(show_help.exit_code, 0);
  EXPECT_THAT(show_help.out, HasSubstr("--msi"));

  EXPECT_EQ(pf({"registry", "import", "--db", db()}).exit_code, 2);  // --csv missing
  auto neither = pf({"registry", "show", "--db", db()});
  EXPECT_EQ(neither.exit_code, 2);
  EXPECT_THAT(neither.err, HasSubstr("exactly one of --se and --msi"));
  EXPECT_EQ(pf({"registry", "show", "--db", db(), "--se", "A", "--msi", "B"}).exit_code, 2);
}

}  // namespace
}  // namespace persoflow::test
