#include "config/config_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/temp_dir.h"

namespace persoflow::config {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A schema with two sections that share a key name, to tell sections apart.
const ConfigFile::Schema& two_sections() {
  static const ConfigFile::Schema kSchema = {
      {"hsm", {"module", "token"}},
      {"journal", {"path", "token"}},
  };
  return kSchema;
}

// The message of a kParse error, or a marker that makes any comparison fail.
std::string parse_error(const Result<ConfigFile>& r) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  return r.error().message();
}

TEST(ConfigFileTest, ParsesSectionsKeysAndValues) {
  auto r = ConfigFile::parse(
      "[hsm]\n"
      "module = /opt/hsm/lib.so\n"
      "token=tk-acme-01\n",
      "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "module"), "/opt/hsm/lib.so");
  EXPECT_EQ(r->get("hsm", "token"), "tk-acme-01");
  EXPECT_EQ(r->path(), "conf");
}

TEST(ConfigFileTest, AbsentKeyIsNullopt) {
  auto r = ConfigFile::parse("[hsm]\ntoken = a\n", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "module"), std::nullopt);
  EXPECT_EQ(r->get("other", "token"), std::nullopt);
  EXPECT_EQ(r->get("hsm", "token"), "a");
}

TEST(ConfigFileTest, EmptyTextHasNoEntries) {
  auto r = ConfigFile::parse("", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), std::nullopt);
}

TEST(ConfigFileTest, SkipsCommentsAndBlankLines) {
  auto r = ConfigFile::parse(
      "# hash comment\n"
      "; semicolon comment\n"
      "\n"
      "   \t \n"
      "[hsm]\n"
      "  # indented comment with = sign\n"
      "  ; token = not-this-one\n"
      "token = tk\n",
      "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), "tk");
  EXPECT_EQ(r->where("hsm", "token"), "conf:8");
}

TEST(ConfigFileTest, TrimsSpacesTabsAndCarriageReturns) {
  auto r = ConfigFile::parse("\t[ hsm ]\r\n\t token \t=\t tk one \t\r\n", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), "tk one");  // inner space kept
}

TEST(ConfigFileTest, ValueMayContainEqualsSign) {
  auto r = ConfigFile::parse("[hsm]\nmodule = /a=b/c.so\n", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "module"), "/a=b/c.so");
}

TEST(ConfigFileTest, EmptyValueIsKept) {
  auto r = ConfigFile::parse("[hsm]\ntoken =\n", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), "");
}

TEST(ConfigFileTest, LastLineWithoutNewline) {
  auto r = ConfigFile::parse("[hsm]\ntoken = tk", "conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), "tk");
  EXPECT_EQ(r->where("hsm", "token"), "conf:2");
}

TEST(ConfigFileTest, WhereNamesFileAndLine) {
  auto r = ConfigFile::parse("[hsm]\n\n# c\nmodule = m\ntoken = t\n", "/etc/pf.conf", persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->where("hsm", "module"), "/etc/pf.conf:4");
  EXPECT_EQ(r->where("hsm", "token"), "/etc/pf.conf:5");
  // An absent key is located at the file only.
  EXPECT_EQ(r->where("hsm", "pin_file"), "/etc/pf.conf");
}

TEST(ConfigFileTest, SameKeyInTwoSectionsIsNotARepeat) {
  auto r = ConfigFile::parse("[hsm]\ntoken = a\n[journal]\ntoken = b\npath = /j\n", "conf",
                             two_sections());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), "a");
  EXPECT_EQ(r->get("journal", "token"), "b");
  EXPECT_EQ(r->get("journal", "path"), "/j");
  EXPECT_EQ(r->get("hsm", "path"), std::nullopt);
}

TEST(ConfigFileTest, KeysBelongToTheLatestSection) {
  // "path" exists only in [journal]; after switching back to [hsm] it is unknown.
  auto r = ConfigFile::parse("[journal]\npath = /j\n[hsm]\npath = /x\n", "conf", two_sections());
  EXPECT_THAT(parse_error(r), StartsWith("conf:4: unknown key 'path' in [hsm]"));
}

TEST(ConfigFileTest, UnknownSectionIsAnErrorNamingFileLineAndKnownSections) {
  auto r = ConfigFile::parse("# pf\n\n[hms]\ntoken = t\n", "pf.conf", two_sections());
  EXPECT_EQ(parse_error(r), "pf.conf:3: unknown section [hms] (known: hsm, journal)");
}

TEST(ConfigFileTest, EmptySectionNameIsUnknown) {
  auto r = ConfigFile::parse("[]\n", "conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "conf:1: unknown section [] (known: audit, hsm)");
}

TEST(ConfigFileTest, SectionNamesAreCaseSensitive) {
  auto r = ConfigFile::parse("[HSM]\n", "conf", persoflow_schema());
  EXPECT_THAT(parse_error(r), StartsWith("conf:1: unknown section [HSM]"));
}

TEST(ConfigFileTest, SectionHeaderWithoutClosingBracket) {
  auto r = ConfigFile::parse("[hsm]\ntoken = t\n[journal\n", "conf", two_sections());
  EXPECT_EQ(parse_error(r), "conf:3: section header without ']'");
}

TEST(ConfigFileTest, UnknownKeyIsAnErrorNamingFileLineAndKnownKeys) {
  auto r = ConfigFile::parse("[hsm]\ntoken = t\npin = 1234\n", "pf.conf", persoflow_schema());
  EXPECT_EQ(parse_error(r),
            "pf.conf:3: unknown key 'pin' in [hsm] (known: max_sessions, module, pin_env, pin_file, "
            "token)");
}

TEST(ConfigFileTest, UnknownKeyMessageDoesNotQuoteTheValue) {
  auto r = ConfigFile::parse("[hsm]\npin = Sup3rSecretPin\n", "conf", persoflow_schema());
  const std::string msg = parse_error(r);
  EXPECT_THAT(msg, HasSubstr("unknown key 'pin'"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("Sup3rSecretPin")));
}

TEST(ConfigFileTest, EmptyKeyIsUnknown) {
  auto r = ConfigFile::parse("[hsm]\n = value\n", "conf", persoflow_schema());
  EXPECT_THAT(parse_error(r), StartsWith("conf:2: unknown key '' in [hsm]"));
}

TEST(ConfigFileTest, KeysAreCaseSensitive) {
  auto r = ConfigFile::parse("[hsm]\nToken = t\n", "conf", persoflow_schema());
  EXPECT_THAT(parse_error(r), StartsWith("conf:2: unknown key 'Token' in [hsm]"));
}

TEST(ConfigFileTest, RepeatedKeyNamesBothLines) {
  auto r = ConfigFile::parse("[hsm]\ntoken = a\n# again\ntoken = b\n", "pf.conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "pf.conf:4: 'token' repeated in [hsm] (first at line 2)");
}

TEST(ConfigFileTest, RepeatedKeyAcrossReopenedSection) {
  auto r = ConfigFile::parse("[hsm]\ntoken = a\n[journal]\npath = p\n[hsm]\ntoken = b\n", "conf",
                             two_sections());
  EXPECT_EQ(parse_error(r), "conf:6: 'token' repeated in [hsm] (first at line 2)");
}

TEST(ConfigFileTest, RepeatedKeyWithSameValueIsStillAnError) {
  auto r = ConfigFile::parse("[hsm]\ntoken = a\ntoken = a\n", "conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "conf:3: 'token' repeated in [hsm] (first at line 2)");
}

TEST(ConfigFileTest, LineWithoutEqualsSign) {
  auto r = ConfigFile::parse("[hsm]\ntoken = t\nmodule /usr/lib/x.so\n", "pf.conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "pf.conf:3: expected 'key = value'");
}

TEST(ConfigFileTest, LineWithoutEqualsSignDoesNotQuoteTheLine) {
  auto r = ConfigFile::parse("[hsm]\nMyS3cretPinValue\n", "conf", persoflow_schema());
  const std::string msg = parse_error(r);
  EXPECT_THAT(msg, StartsWith("conf:2: "));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("MyS3cretPinValue")));
}

TEST(ConfigFileTest, KeyOutsideOfAnySection) {
  auto r = ConfigFile::parse("# leading comment\ntoken = t\n[hsm]\n", "pf.conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "pf.conf:2: key outside of any [section]");
}

TEST(ConfigFileTest, ErrorLineNumbersCountCrLfLines) {
  auto r = ConfigFile::parse("[hsm]\r\ntoken = t\r\n\r\nbogus\r\n", "conf", persoflow_schema());
  EXPECT_EQ(parse_error(r), "conf:4: expected 'key = value'");
}

TEST(ConfigFileTest, FirstErrorWins) {
  auto r = ConfigFile::parse("[hsm]\nnope = 1\n[nosuch]\n", "conf", persoflow_schema());
  EXPECT_THAT(parse_error(r), StartsWith("conf:2: unknown key 'nope'"));
}

TEST(ConfigFileTest, PersoflowSchemaHasTheHsmAndAuditSections) {
  const auto& schema = persoflow_schema();
  ASSERT_EQ(schema.size(), 2u);
  auto it = schema.find("hsm");
  ASSERT_NE(it, schema.end());
  EXPECT_EQ(it->second,
            (std::set<std::string>{"module", "token", "pin_env", "pin_file", "max_sessions"}));
  it = schema.find("audit");
  ASSERT_NE(it, schema.end());
  EXPECT_EQ(it->second, (std::set<std::string>{"log"}));
}

TEST(ConfigFileTest, LoadReadsAFileAndNamesItInWhere) {
  test::TempDir dir;
  const auto path = (dir / "persoflow.conf").string();
  test::write_file(path, "# persoflow\n[hsm]\ntoken = tk-file\nmax_sessions = 4\n");
  auto r = ConfigFile::load(path, persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->path(), path);
  EXPECT_EQ(r->get("hsm", "token"), "tk-file");
  EXPECT_EQ(r->get("hsm", "max_sessions"), "4");
  EXPECT_EQ(r->where("hsm", "max_sessions"), path + ":4");
}

TEST(ConfigFileTest, LoadErrorsNameTheFileAndLine) {
  test::TempDir dir;
  const auto path = (dir / "bad.conf").string();
  test::write_file(path, "[hsm]\nfoo = bar\n");
  auto r = ConfigFile::load(path, persoflow_schema());
  EXPECT_THAT(parse_error(r), StartsWith(path + ":2: unknown key 'foo'"));
}

TEST(ConfigFileTest, LoadOfMissingFileIsNotFound) {
  test::TempDir dir;
  const auto path = (dir / "absent.conf").string();
  auto r = ConfigFile::load(path, persoflow_schema());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr(path));
}

TEST(ConfigFileTest, LoadOfADirectoryIsAnError) {
  test::TempDir dir;
  auto r = ConfigFile::load(dir.path().string(), persoflow_schema());
  ASSERT_FALSE(r.has_value()) << "a directory was read as an empty configuration file";
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
  EXPECT_THAT(r.error().message(), HasSubstr(dir.path().string()));
}

TEST(ConfigFileTest, LoadOfAnEmptyFileIsEmptyConfiguration) {
  test::TempDir dir;
  const auto path = (dir / "empty.conf").string();
  test::write_file(path, "");
  auto r = ConfigFile::load(path, persoflow_schema());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->get("hsm", "token"), std::nullopt);
}

}  // namespace
}  // namespace persoflow::config
