#include "config/hsm_settings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <string>
#include <string_view>

#include "tests/support/temp_dir.h"

namespace persoflow::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using Vars = std::map<std::string, std::string, std::less<>>;

// An environment holding exactly `vars`.
EnvLookup fake_env(Vars vars = {}) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

ConfigFile conf(std::string_view text) {
  auto r = ConfigFile::parse(text, "pf.conf", persoflow_schema());
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return std::move(r).value();
}

HsmFlags token_flag(std::string token = "tk-flag") {
  HsmFlags f;
  f.token = std::move(token);
  return f;
}

std::string as_string(const SecureBytes& b) {
  auto v = b.reveal();
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

// ---------------------------------------------------------------- module

TEST(HsmSettingsTest, ModuleDefaultsWhenNothingIsGiven) {
  auto s = resolve_hsm_settings(token_flag(), nullptr, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, kDefaultModule);
  EXPECT_EQ(s->module, "/usr/lib/softhsm/libsofthsm2.so");
}

TEST(HsmSettingsTest, ModuleFromFileBeatsDefault) {
  const ConfigFile f = conf("[hsm]\nmodule = /file/mod.so\n");
  auto s = resolve_hsm_settings(token_flag(), &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, "/file/mod.so");
}

TEST(HsmSettingsTest, ModuleFromEnvBeatsFile) {
  const ConfigFile f = conf("[hsm]\nmodule = /file/mod.so\n");
  auto s = resolve_hsm_settings(token_flag(), &f, fake_env({{"PERSOFLOW_PKCS11_MODULE", "/env/mod.so"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, "/env/mod.so");
}

TEST(HsmSettingsTest, ModuleFromFlagBeatsEnvAndFile) {
  const ConfigFile f = conf("[hsm]\nmodule = /file/mod.so\n");
  HsmFlags flags = token_flag();
  flags.module = "/flag/mod.so";
  auto s = resolve_hsm_settings(flags, &f, fake_env({{"PERSOFLOW_PKCS11_MODULE", "/env/mod.so"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, "/flag/mod.so");
}

TEST(HsmSettingsTest, EmptyModuleEnvFallsThroughToFile) {
  const ConfigFile f = conf("[hsm]\nmodule = /file/mod.so\n");
  auto s = resolve_hsm_settings(token_flag(), &f, fake_env({{"PERSOFLOW_PKCS11_MODULE", ""}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, "/file/mod.so");
}

TEST(HsmSettingsTest, EmptyModuleEnvWithoutFileGivesDefault) {
  auto s = resolve_hsm_settings(token_flag(), nullptr, fake_env({{"PERSOFLOW_PKCS11_MODULE", ""}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->module, kDefaultModule);
}

// ---------------------------------------------------------------- token

TEST(HsmSettingsTest, NoTokenAnywhereIsAnError) {
  const ConfigFile f = conf("[hsm]\nmodule = /m.so\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(s.error().message(), HasSubstr("no token selected"));
  EXPECT_THAT(s.error().message(), HasSubstr("--token"));
  EXPECT_THAT(s.error().message(), HasSubstr("PERSOFLOW_TOKEN"));
}

TEST(HsmSettingsTest, NoTokenWithoutFileIsAnError) {
  auto s = resolve_hsm_settings(HsmFlags{}, nullptr, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(HsmSettingsTest, TokenFromFile) {
  const ConfigFile f = conf("[hsm]\ntoken = tk-file\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->token, "tk-file");
}

TEST(HsmSettingsTest, TokenFromEnvBeatsFile) {
  const ConfigFile f = conf("[hsm]\ntoken = tk-file\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env({{"PERSOFLOW_TOKEN", "tk-env"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->token, "tk-env");
}

TEST(HsmSettingsTest, TokenFromFlagBeatsEnvAndFile) {
  const ConfigFile f = conf("[hsm]\ntoken = tk-file\n");
  auto s = resolve_hsm_settings(token_flag("tk-flag"), &f, fake_env({{"PERSOFLOW_TOKEN", "tk-env"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->token, "tk-flag");
}

TEST(HsmSettingsTest, EmptyTokenEnvFallsThroughToFile) {
  const ConfigFile f = conf("[hsm]\ntoken = tk-file\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env({{"PERSOFLOW_TOKEN", ""}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->token, "tk-file");
}

TEST(HsmSettingsTest, EmptyTokenInFileIsAnError) {
  const ConfigFile f = conf("[hsm]\ntoken =\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(s.error().message(), HasSubstr("no token selected"));
}

TEST(HsmSettingsTest, EmptyTokenFlagIsAnError) {
  const ConfigFile f = conf("[hsm]\ntoken = tk-file\n");
  auto s = resolve_hsm_settings(token_flag(""), &f, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(HsmSettingsTest, EnvIsLookedUpByTheDocumentedNames) {
  // Variables with other names do not count.
  auto s = resolve_hsm_settings(HsmFlags{}, nullptr,
                                fake_env({{"TOKEN", "x"}, {"PERSOFLOW_MODULE", "/y.so"}}));
  EXPECT_FALSE(s.has_value());
  auto t = resolve_hsm_settings(HsmFlags{}, nullptr,
                                fake_env({{"PERSOFLOW_TOKEN", "x"}, {"PERSOFLOW_MODULE", "/y.so"}}));
  ASSERT_TRUE(t.has_value()) << t.error().message();
  EXPECT_EQ(t->module, kDefaultModule);
}

// ---------------------------------------------------------------- PIN source

TEST(HsmSettingsTest, PinSourceDefaultsToPersoflowPinEnv) {
  auto s = resolve_hsm_settings(token_flag(), nullptr, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kEnv);
  EXPECT_EQ(s->pin.name, kDefaultPinEnv);
  EXPECT_EQ(s->pin.name, "PERSOFLOW_PIN");
  EXPECT_EQ(s->pin.origin, "default");
}

TEST(HsmSettingsTest, PinEnvFlag) {
  HsmFlags flags = token_flag();
  flags.pin_env = "MY_PIN";
  auto s = resolve_hsm_settings(flags, nullptr, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kEnv);
  EXPECT_EQ(s->pin.name, "MY_PIN");
  EXPECT_EQ(s->pin.origin, "--pin-env");
}

TEST(HsmSettingsTest, PinFileFlag) {
  HsmFlags flags = token_flag();
  flags.pin_file = "/run/pin";
  auto s = resolve_hsm_settings(flags, nullptr, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kFile);
  EXPECT_EQ(s->pin.name, "/run/pin");
  EXPECT_EQ(s->pin.origin, "--pin-file");
}

TEST(HsmSettingsTest, PinEnvAndPinFileFlagsConflict) {
  HsmFlags flags = token_flag();
  flags.pin_env = "MY_PIN";
  flags.pin_file = "/run/pin";
  auto s = resolve_hsm_settings(flags, nullptr, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(s.error().message(), HasSubstr("--pin-env"));
  EXPECT_THAT(s.error().message(), HasSubstr("--pin-file"));
}

TEST(HsmSettingsTest, PinEnvFromFileNamesItsLine) {
  const ConfigFile f = conf("[hsm]\ntoken = t\npin_env = HSM_PIN\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kEnv);
  EXPECT_EQ(s->pin.name, "HSM_PIN");
  EXPECT_EQ(s->pin.origin, "pf.conf:3");
}

TEST(HsmSettingsTest, PinFileFromFileNamesItsLine) {
  const ConfigFile f = conf("[hsm]\n\npin_file = /etc/pf/pin\ntoken = t\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kFile);
  EXPECT_EQ(s->pin.name, "/etc/pf/pin");
  EXPECT_EQ(s->pin.origin, "pf.conf:3");
}

TEST(HsmSettingsTest, PinEnvAndPinFileInFileConflict) {
  const ConfigFile f = conf("[hsm]\ntoken = t\npin_env = HSM_PIN\npin_file = /etc/pf/pin\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.error().message(), "pf.conf:4: give either pin_env or pin_file, not both");
}

TEST(HsmSettingsTest, PinFlagBeatsPinSourceInFile) {
  const ConfigFile f = conf("[hsm]\ntoken = t\npin_file = /etc/pf/pin\n");
  HsmFlags flags;
  flags.pin_env = "FLAG_PIN";
  auto s = resolve_hsm_settings(flags, &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kEnv);
  EXPECT_EQ(s->pin.name, "FLAG_PIN");
  EXPECT_EQ(s->pin.origin, "--pin-env");

  const ConfigFile g = conf("[hsm]\ntoken = t\npin_env = FILE_PIN\n");
  HsmFlags file_flag;
  file_flag.pin_file = "/flag/pin";
  auto t = resolve_hsm_settings(file_flag, &g, fake_env());
  ASSERT_TRUE(t.has_value()) << t.error().message();
  EXPECT_EQ(t->pin.kind, PinSource::Kind::kFile);
  EXPECT_EQ(t->pin.name, "/flag/pin");
  EXPECT_EQ(t->pin.origin, "--pin-file");
}

TEST(HsmSettingsTest, ResolvingNeverReadsThePin) {
  // The PIN variable's value is not part of the settings.
  auto s = resolve_hsm_settings(token_flag(), nullptr, fake_env({{"PERSOFLOW_PIN", "Pin-4711-xyz"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.name, "PERSOFLOW_PIN");
  EXPECT_THAT(s->pin.origin, Not(HasSubstr("Pin-4711-xyz")));
}

// ---------------------------------------------------------------- max_sessions

TEST(HsmSettingsTest, MaxSessionsDefault) {
  auto s = resolve_hsm_settings(token_flag(), nullptr, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->max_sessions, kDefaultMaxSessions);
  EXPECT_EQ(s->max_sessions, 8u);
}

TEST(HsmSettingsTest, MaxSessionsFromFile) {
  const ConfigFile f = conf("[hsm]\nmax_sessions = 16\n");
  auto s = resolve_hsm_settings(token_flag(), &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->max_sessions, 16u);
}

TEST(HsmSettingsTest, MaxSessionsFileBoundsAreInclusive) {
  const ConfigFile lo = conf("[hsm]\nmax_sessions = 1\n");
  auto a = resolve_hsm_settings(token_flag(), &lo, fake_env());
  ASSERT_TRUE(a.has_value()) << a.error().message();
  EXPECT_EQ(a->max_sessions, 1u);
  const ConfigFile hi = conf("[hsm]\nmax_sessions = 1024\n");
  auto b = resolve_hsm_settings(token_flag(), &hi, fake_env());
  ASSERT_TRUE(b.has_value()) << b.error().message();
  EXPECT_EQ(b->max_sessions, 1024u);
}

TEST(HsmSettingsTest, MaxSessionsFlagBeatsFile) {
  const ConfigFile f = conf("[hsm]\nmax_sessions = 16\n");
  HsmFlags flags = token_flag();
  flags.max_sessions = 3;
  auto s = resolve_hsm_settings(flags, &f, fake_env());
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->max_sessions, 3u);
}

TEST(HsmSettingsTest, MaxSessionsFlagZeroIsAnError) {
  HsmFlags flags = token_flag();
  flags.max_sessions = 0;
  auto s = resolve_hsm_settings(flags, nullptr, fake_env());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(s.error().message(), HasSubstr("max_sessions"));
}

class BadMaxSessionsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(BadMaxSessionsTest, IsAParseErrorNamingTheLine) {
  const ConfigFile f = conf(std::string("[hsm]\ntoken = t\nmax_sessions = ") + GetParam() + "\n");
  auto s = resolve_hsm_settings(HsmFlags{}, &f, fake_env());
  ASSERT_FALSE(s.has_value()) << "accepted max_sessions = '" << GetParam() << "'";
  EXPECT_EQ(s.error().code(), ErrorCode::kParse);
  EXPECT_EQ(s.error().message(), "pf.conf:3: max_sessions must be a whole number from 1 to 1024");
}

INSTANTIATE_TEST_SUITE_P(Values, BadMaxSessionsTest,
                         ::testing::Values("", "0", "1025", "-1", "-0", "abc", "12abc", "4 5", "1.5",
                                           "0x10", "99999999999999999999999"));

// ---------------------------------------------------------------- read_pin: environment

TEST(ReadPinTest, FromEnvironment) {
  const PinSource src{PinSource::Kind::kEnv, "HSM_PIN", "--pin-env"};
  auto pin = read_pin(src, fake_env({{"HSM_PIN", "Pin-4711-xyz"}, {"PERSOFLOW_PIN", "other"}}));
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), "Pin-4711-xyz");
}

TEST(ReadPinTest, EnvironmentValueIsTakenVerbatim) {
  const PinSource src{PinSource::Kind::kEnv, "HSM_PIN", "--pin-env"};
  auto pin = read_pin(src, fake_env({{"HSM_PIN", " 12 34\n"}}));
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), " 12 34\n");
}

TEST(ReadPinTest, UnsetVariableNamesVariableAndOrigin) {
  const PinSource src{PinSource::Kind::kEnv, "HSM_PIN", "pf.conf:3"};
  auto pin = read_pin(src, fake_env({{"PERSOFLOW_PIN", "Pin-4711-xyz"}}));
  ASSERT_FALSE(pin.has_value());
  EXPECT_EQ(pin.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(pin.error().message(), HasSubstr("HSM_PIN"));
  EXPECT_THAT(pin.error().message(), HasSubstr("pf.conf:3"));
  EXPECT_THAT(pin.error().message(), Not(HasSubstr("Pin-4711-xyz")));
}

TEST(ReadPinTest, EmptyVariableIsAnError) {
  const PinSource src{PinSource::Kind::kEnv, "HSM_PIN", "--pin-env"};
  auto pin = read_pin(src, fake_env({{"HSM_PIN", ""}}));
  ASSERT_FALSE(pin.has_value());
  EXPECT_EQ(pin.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(pin.error().message(), HasSubstr("HSM_PIN"));
}

TEST(ReadPinTest, ProcessEnvironmentIsTheDefault) {
  constexpr const char* kVar = "PERSOFLOW_TEST_READ_PIN_4f2a";
  ASSERT_EQ(setenv(kVar, "Env-Pin-981", 1), 0);
  EXPECT_EQ(process_env(kVar), "Env-Pin-981");
  auto pin = read_pin(PinSource{PinSource::Kind::kEnv, kVar, "--pin-env"});
  ASSERT_EQ(unsetenv(kVar), 0);
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), "Env-Pin-981");
  EXPECT_EQ(process_env(kVar), std::nullopt);
}

// ---------------------------------------------------------------- read_pin: file

constexpr const char* kPin = "Pin-4711-xyz";

class ReadPinFileTest : public ::testing::Test {
 protected:
  // Writes `content` to a file of the given mode and returns its path.
  std::string pin_file(const std::string& content, fs::perms mode = fs::perms::owner_read |
                                                                    fs::perms::owner_write,
                       const std::string& name = "pin") {
    const fs::path p = dir_ / name;
    test::write_file(p, content);
    fs::permissions(p, mode, fs::perm_options::replace);
    return p.string();
  }

  static PinSource file_source(const std::string& path) {
    return PinSource{PinSource::Kind::kFile, path, "--pin-file"};
  }

  // The error read_pin gives for `path`, checking its code and that no PIN appears in it.
  static std::string pin_error(const std::string& path, ErrorCode code) {
    auto r = read_pin(file_source(path), fake_env({{"PERSOFLOW_PIN", "env-pin"}}));
    if (r.has_value()) return "<no error, PIN read: " + as_string(*r) + ">";
    EXPECT_EQ(r.error().code(), code);
    EXPECT_THAT(r.error().message(), HasSubstr(path));
    EXPECT_THAT(r.error().message(), Not(HasSubstr(kPin)));
    EXPECT_THAT(r.error().message(), Not(HasSubstr("4711")));
    return r.error().message();
  }

  test::TempDir dir_;
};

TEST_F(ReadPinFileTest, ReadsOneLine) {
  auto pin = read_pin(file_source(pin_file(kPin)), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), kPin);
}

TEST_F(ReadPinFileTest, TrailingNewlineIsStripped) {
  auto pin = read_pin(file_source(pin_file(std::string(kPin) + "\n")), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), kPin);
}

TEST_F(ReadPinFileTest, TrailingCrLfIsStripped) {
  auto pin = read_pin(file_source(pin_file(std::string(kPin) + "\r\n")), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), kPin);
}

TEST_F(ReadPinFileTest, InnerAndLeadingSpacesAreKept) {
  auto pin = read_pin(file_source(pin_file(" 12 34\n")), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), " 12 34");
}

TEST_F(ReadPinFileTest, OwnerReadOnlyIsAccepted) {
  auto pin = read_pin(file_source(pin_file(kPin, fs::perms::owner_read)), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), kPin);
}

TEST_F(ReadPinFileTest, Mode0600IsAccepted) {
  const std::string path = pin_file(kPin, fs::perms::owner_read | fs::perms::owner_write);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600u);
  auto pin = read_pin(file_source(path), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(as_string(*pin), kPin);
}

TEST_F(ReadPinFileTest, GroupReadableIsRefused) {
  const std::string path =
      pin_file(kPin, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  const std::string msg = pin_error(path, ErrorCode::kInvalidArgument);
  EXPECT_THAT(msg, HasSubstr("group or others"));
  EXPECT_THAT(msg, HasSubstr("mode 640"));
  EXPECT_THAT(msg, HasSubstr("chmod 600"));
}

TEST_F(ReadPinFileTest, WorldReadableIsRefused) {
  const std::string path =
      pin_file(kPin, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  const std::string msg = pin_error(path, ErrorCode::kInvalidArgument);
  EXPECT_THAT(msg, HasSubstr("mode 604"));
}

TEST_F(ReadPinFileTest, GroupOrOthersExecuteOrWriteIsRefused) {
  const fs::perms base = fs::perms::owner_read | fs::perms::owner_write;
  for (fs::perms extra : {fs::perms::group_write, fs::perms::group_exec, fs::perms::others_write,
                          fs::perms::others_exec}) {
    const std::string path = pin_file(kPin, base | extra);
    EXPECT_THAT(pin_error(path, ErrorCode::kInvalidArgument), HasSubstr("group or others"));
  }
}

TEST_F(ReadPinFileTest, Mode0644IsRefused) {
  // What a file gets under the usual umask 022.
  const fs::path p = dir_ / "pin-644";
  test::write_file(p, kPin);
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                         fs::perms::others_read,
                  fs::perm_options::replace);
  EXPECT_THAT(pin_error(p.string(), ErrorCode::kInvalidArgument), HasSubstr("mode 644"));
}

TEST_F(ReadPinFileTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "absent").string();
  EXPECT_THAT(pin_error(path, ErrorCode::kNotFound), HasSubstr("cannot open PIN file"));
}

TEST_F(ReadPinFileTest, EmptyFileIsRefused) {
  EXPECT_THAT(pin_error(pin_file(""), ErrorCode::kInvalidArgument), HasSubstr("is empty"));
}

TEST_F(ReadPinFileTest, FileWithOnlyANewlineIsEmpty) {
  EXPECT_THAT(pin_error(pin_file("\n"), ErrorCode::kInvalidArgument), HasSubstr("is empty"));
  EXPECT_THAT(pin_error(pin_file("\r\n\n", fs::perms::owner_read | fs::perms::owner_write, "pin2"),
                        ErrorCode::kInvalidArgument),
              HasSubstr("is empty"));
}

TEST_F(ReadPinFileTest, MultiLineFileIsRefused) {
  EXPECT_THAT(pin_error(pin_file(std::string(kPin) + "\nsecond-4711-line\n"), ErrorCode::kInvalidArgument),
              HasSubstr("more than one line"));
}

TEST_F(ReadPinFileTest, LeadingEmptyLineIsMultiLine) {
  EXPECT_THAT(pin_error(pin_file(std::string("\n") + kPin), ErrorCode::kInvalidArgument),
              HasSubstr("more than one line"));
}

TEST_F(ReadPinFileTest, CrLfLinesAreMultiLine) {
  EXPECT_THAT(pin_error(pin_file(std::string(kPin) + "\r\n" + kPin + "\r\n"), ErrorCode::kInvalidArgument),
              HasSubstr("more than one line"));
}

TEST_F(ReadPinFileTest, Exactly255BytesIsAccepted) {
  const std::string long_pin(255, 'p');
  auto pin = read_pin(file_source(pin_file(long_pin)), fake_env());
  ASSERT_TRUE(pin.has_value()) << pin.error().message();
  EXPECT_EQ(pin->size(), 255u);
  EXPECT_EQ(as_string(*pin), long_pin);
}

TEST_F(ReadPinFileTest, LongerThan255BytesIsRefused) {
  const std::string path = pin_file(std::string(256, 'p'));
  const std::string msg = pin_error(path, ErrorCode::kInvalidArgument);
  EXPECT_THAT(msg, HasSubstr("longer than 255 bytes"));
  EXPECT_THAT(msg, Not(HasSubstr("pppp")));
}

TEST_F(ReadPinFileTest, MuchLongerFileIsRefused) {
  const std::string path = pin_file(std::string(100000, 'p'));
  EXPECT_THAT(pin_error(path, ErrorCode::kInvalidArgument), HasSubstr("longer than 255 bytes"));
}

TEST_F(ReadPinFileTest, SymlinkIsRefused) {
  const std::string target = pin_file(kPin);
  // The target itself is acceptable, so only the link can be the reason for refusal.
  ASSERT_TRUE(read_pin(file_source(target), fake_env()).has_value());
  const fs::path link = dir_ / "pin-link";
  fs::create_symlink(target, link);
  const std::string msg = pin_error(link.string(), ErrorCode::kIo);
  EXPECT_THAT(msg, HasSubstr("cannot open PIN file"));
}

TEST_F(ReadPinFileTest, DanglingSymlinkIsRefused) {
  const fs::path link = dir_ / "dangling";
  fs::create_symlink(dir_ / "nowhere", link);
  auto r = read_pin(file_source(link.string()), fake_env());
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr(link.string()));
}

TEST_F(ReadPinFileTest, DirectoryIsNotARegularFile) {
  const fs::path sub = dir_ / "subdir";
  fs::create_directory(sub);
  fs::permissions(sub, fs::perms::owner_all, fs::perm_options::replace);
  EXPECT_THAT(pin_error(sub.string(), ErrorCode::kInvalidArgument), HasSubstr("not a regular file"));
}

TEST_F(ReadPinFileTest, FifoIsRefusedWithoutBlocking) {
  const fs::path fifo = dir_ / "pin-fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto pending = std::async(std::launch::async, [&] {
    auto r = read_pin(file_source(fifo.string()), fake_env());
    return r.has_value() ? std::string("<no error>") : r.error().message();
  });
  if (pending.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "read_pin blocked opening a FIFO";
    // Unblock the reader so the test can end.
    const int fd = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
    pending.wait();
    if (fd >= 0) close(fd);
    return;
  }
  EXPECT_THAT(pending.get(), HasSubstr("not a regular file"));
}

TEST_F(ReadPinFileTest, ReadPinUsesTheKindNotTheName) {
  // A kFile source whose name happens to be a set variable reads the file, not the variable.
  const PinSource src{PinSource::Kind::kFile, (dir_ / "HSM_PIN").string(), "--pin-file"};
  auto r = read_pin(src, fake_env({{src.name, "from-env"}, {"HSM_PIN", "from-env"}}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace persoflow::config

namespace persoflow::config {
namespace {

EnvLookup env_with(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(HsmSettingsPrecedenceTest, PersoflowPinInTheEnvironmentBeatsThePinFileOfTheConfigFile) {
  auto f = ConfigFile::parse("[hsm]\ntoken = t\npin_file = /etc/pf/pin\n", "pf.conf", persoflow_schema());
  ASSERT_TRUE(f.has_value());
  auto s = resolve_hsm_settings(HsmFlags{}, &*f, env_with({{"PERSOFLOW_PIN", "1234"}}));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->pin.kind, PinSource::Kind::kEnv);
  EXPECT_EQ(s->pin.name, "PERSOFLOW_PIN");
  EXPECT_EQ(s->pin.origin, "environment");
  // An empty PERSOFLOW_PIN counts as unset: the file's choice stands.
  auto t = resolve_hsm_settings(HsmFlags{}, &*f, env_with({{"PERSOFLOW_PIN", ""}}));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->pin.kind, PinSource::Kind::kFile);
}

TEST(HsmSettingsPrecedenceTest, EmptyValuesAreRefused) {
  HsmFlags flags;
  flags.token = "t";
  flags.module = "";
  auto m = resolve_hsm_settings(flags, nullptr, env_with({}));
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(m.error().message().find("module path is empty"), std::string::npos);

  HsmFlags pin_env;
  pin_env.token = "t";
  pin_env.pin_env = "";
  EXPECT_FALSE(resolve_hsm_settings(pin_env, nullptr, env_with({})).has_value());
  HsmFlags pin_file;
  pin_file.token = "t";
  pin_file.pin_file = "";
  EXPECT_FALSE(resolve_hsm_settings(pin_file, nullptr, env_with({})).has_value());
}

}  // namespace
}  // namespace persoflow::config
