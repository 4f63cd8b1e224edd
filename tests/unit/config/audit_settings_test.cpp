#include "config/audit_settings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace persoflow::config {
namespace {

using ::testing::HasSubstr;

EnvLookup fake_env(std::map<std::string, std::string, std::less<>> vars = {}) {
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

std::optional<std::string> resolved(const std::optional<std::string>& flag, const ConfigFile* file,
                                    const EnvLookup& env) {
  auto r = resolve_audit_log(flag, file, env);
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return r.has_value() ? *r : std::optional<std::string>("<error>");
}

TEST(AuditSettingsTest, NoSourceMeansNoAuditLog) {
  EXPECT_EQ(resolved(std::nullopt, nullptr, fake_env()), std::nullopt);
  const ConfigFile hsm_only = conf("[hsm]\ntoken = t\n");
  EXPECT_EQ(resolved(std::nullopt, &hsm_only, fake_env()), std::nullopt);
}

TEST(AuditSettingsTest, FlagThenEnvironmentThenFile) {
  const ConfigFile file = conf("[audit]\nlog = /var/log/persoflow/audit.jsonl\n");
  const auto env = fake_env({{"PERSOFLOW_AUDIT_LOG", "/env/audit.jsonl"}});
  EXPECT_EQ(resolved("/flag/audit.jsonl", &file, env), "/flag/audit.jsonl");
  EXPECT_EQ(resolved(std::nullopt, &file, env), "/env/audit.jsonl");
  EXPECT_EQ(resolved(std::nullopt, &file, fake_env()), "/var/log/persoflow/audit.jsonl");
  EXPECT_EQ(resolved(std::nullopt, nullptr, env), "/env/audit.jsonl");
}

TEST(AuditSettingsTest, AnEmptyEnvironmentVariableCountsAsUnset) {
  const ConfigFile file = conf("[audit]\nlog = from-file.jsonl\n");
  EXPECT_EQ(resolved(std::nullopt, &file, fake_env({{"PERSOFLOW_AUDIT_LOG", ""}})),
            "from-file.jsonl");
  EXPECT_EQ(resolved(std::nullopt, nullptr, fake_env({{"PERSOFLOW_AUDIT_LOG", ""}})), std::nullopt);
}

TEST(AuditSettingsTest, EmptyFlagOrFileValueIsRefused) {
  auto flag = resolve_audit_log(std::string(), nullptr, fake_env());
  ASSERT_FALSE(flag.has_value());
  EXPECT_EQ(flag.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(flag.error().message(), HasSubstr("--audit-log needs a file name"));

  const ConfigFile file = conf("[hsm]\ntoken = t\n[audit]\nlog =\n");
  auto empty = resolve_audit_log(std::nullopt, &file, fake_env());
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), ErrorCode::kParse);
  EXPECT_THAT(empty.error().message(), HasSubstr("pf.conf:4: log in [audit] is empty"));
}

TEST(AuditSettingsTest, TheAuditSectionKnowsOnlyLog) {
  auto r = ConfigFile::parse("[audit]\npath = x\n", "pf.conf", persoflow_schema());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "pf.conf:2: unknown key 'path' in [audit] (known: log)");
}

}  // namespace
}  // namespace persoflow::config
