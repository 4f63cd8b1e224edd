// The PKCS#11 layer against real SoftHSM tokens: module loading, token selection,
// login, the session pool and CK_RV naming.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "hsm/ck_rv.h"
#include "tests/integration/hsm_test_fixture.h"

namespace persoflow::test {
namespace {

TEST(HsmModuleTest, MissingModuleIsNotFoundAndNamesThePath) {
  auto m = hsm::Module::load("/nonexistent/libnothing.so");
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(m.error().message().find("/nonexistent/libnothing.so"), std::string::npos);
}

TEST(HsmModuleTest, FileThatIsNotAModuleIsRefused) {
  TempDir dir;
  write_file(dir / "fake.so", "not an ELF file");
  auto m = hsm::Module::load((dir / "fake.so").string());
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), ErrorCode::kHsm);
  EXPECT_NE(m.error().message().find("cannot load PKCS#11 module"), std::string::npos);
}

TEST_F(HsmTest, ListsTheTokenByLabel) {
  auto tokens = module_->tokens();
  ASSERT_TRUE(tokens.has_value());
  bool found = false;
  for (const auto& t : *tokens) found = found || (t.label == token_env_->label() && t.initialized);
  EXPECT_TRUE(found);
  EXPECT_EQ(token_->label(), token_env_->label());
}

TEST_F(HsmTest, MissingTokenNamesTheLabelAndListsTokensPresent) {
  auto t = hsm::Token::open(module_, "no-such-token", secret("1234"));
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(t.error().message().find("'no-such-token'"), std::string::npos);
  EXPECT_NE(t.error().message().find("'" + token_env_->label() + "'"), std::string::npos);
}

TEST(HsmTokenTest, WrongPinIsAnAuthErrorNamingCLogin) {
  SoftHsmToken env("pin-test", "5678");
  auto module = hsm::Module::load(env.module());
  ASSERT_TRUE(module.has_value());
  auto t = hsm::Token::open(*module, "pin-test", secret("0000"));
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), ErrorCode::kAuth);
  EXPECT_EQ(t.error().function(), "C_Login");
  ASSERT_TRUE(t.error().ck_rv().has_value());
  EXPECT_EQ(*t.error().ck_rv(), static_cast<unsigned long>(CKR_PIN_INCORRECT));
  EXPECT_NE(t.error().message().find("CKR_PIN_INCORRECT"), std::string::npos);
}

TEST_F(HsmTest, PoolReusesAReturnedSession) {
  CK_SESSION_HANDLE first = CK_INVALID_HANDLE;
  {
    auto lease = token_->sessions().lease();
    ASSERT_TRUE(lease.has_value());
    first = lease->handle();
  }
  auto again = token_->sessions().lease();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->handle(), first);
  EXPECT_EQ(token_->sessions().open_sessions(), 1u);
}

TEST_F(HsmTest, BrokenSessionIsDiscardedAndReplaced) {
  CK_SESSION_HANDLE dead = CK_INVALID_HANDLE;
  {
    auto lease = token_->sessions().lease();
    ASSERT_TRUE(lease.has_value());
    dead = lease->handle();
    // Close it behind the pool's back: the next call on it fails like a dropped session.
    ASSERT_EQ(lease->api()->C_CloseSession(dead), static_cast<CK_RV>(CKR_OK));
    std::uint8_t buf[8];
    Status s = lease->check(lease->api()->C_GenerateRandom(dead, buf, sizeof buf),
                            "C_GenerateRandom", "test");
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().function(), "C_GenerateRandom");
    EXPECT_NE(s.error().message().find("CKR_SESSION_HANDLE_INVALID"), std::string::npos);
    EXPECT_TRUE(lease->broken());
  }
  EXPECT_EQ(token_->sessions().discarded_sessions(), 1u);
  EXPECT_EQ(token_->sessions().open_sessions(), 0u);
  auto fresh = token_->sessions().lease();
  ASSERT_TRUE(fresh.has_value());
  std::uint8_t buf[8];
  EXPECT_EQ(fresh->api()->C_GenerateRandom(fresh->handle(), buf, sizeof buf), static_cast<CK_RV>(CKR_OK));
}

TEST_F(HsmTest, PoolNeverOpensMoreThanItsMaximum) {
  // The fixture's pool allows 4 sessions.
  std::vector<hsm::SessionLease> held;
  for (int i = 0; i < 4; ++i) {
    auto l = token_->sessions().lease();
    ASSERT_TRUE(l.has_value());
    held.push_back(std::move(l).value());
  }
  auto waiter = std::async(std::launch::async, [&] { return token_->sessions().lease().has_value(); });
  EXPECT_EQ(waiter.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  held.pop_back();  // give one back: the waiter gets it
  EXPECT_TRUE(waiter.get());
  EXPECT_EQ(token_->sessions().open_sessions(), 4u);
}

TEST(CkRvTest, NamesKnownAndUnknownValues) {
  EXPECT_EQ(hsm::ck_rv_name(CKR_OK), "CKR_OK");
  EXPECT_EQ(hsm::ck_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(hsm::ck_rv_name(CKR_KEY_FUNCTION_NOT_PERMITTED), "CKR_KEY_FUNCTION_NOT_PERMITTED");
  EXPECT_EQ(hsm::ck_rv_name(CKR_VENDOR_DEFINED + 0x12), "CKR_VENDOR_DEFINED+0x12");
  EXPECT_EQ(hsm::ck_rv_name(0x0FFFFFFF), "CKR_0x0FFFFFFF");
}

TEST(CkRvTest, SessionBreakingValues) {
  EXPECT_TRUE(hsm::rv_breaks_session(CKR_DEVICE_ERROR));
  EXPECT_TRUE(hsm::rv_breaks_session(CKR_SESSION_HANDLE_INVALID));
  EXPECT_FALSE(hsm::rv_breaks_session(CKR_KEY_HANDLE_INVALID));
  EXPECT_FALSE(hsm::rv_breaks_session(CKR_OK));
}

TEST(CkRvTest, ErrorsCarryFunctionAndCode) {
  Error e = hsm::rv_error(CKR_PIN_LOCKED, "C_Login", "logging in");
  EXPECT_EQ(e.code(), ErrorCode::kAuth);
  EXPECT_EQ(e.function(), "C_Login");
  EXPECT_EQ(e.message(), "logging in: C_Login returned CKR_PIN_LOCKED");
  Error d = hsm::rv_error(CKR_DEVICE_ERROR, "C_Encrypt", "encrypting");
  EXPECT_EQ(d.code(), ErrorCode::kHsm);
  EXPECT_TRUE(hsm::check_rv(CKR_OK, "C_Encrypt", "x").has_value());
}

}  // namespace
}  // namespace persoflow::test
