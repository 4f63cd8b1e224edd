#include "engine/result.h"

#include <gtest/gtest.h>

#include <memory>

namespace persoflow {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return Error(ErrorCode::kInvalidArgument, "not positive");
  return v;
}

Result<int> doubled(int v) {
  PF_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check_with_context(int v) {
  PF_TRY_CTX(parse_positive(v), "record 7");
  return ok_status();
}

TEST(ResultTest, HoldsValueOrError) {
  Result<int> ok = parse_positive(3);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, 3);
  Result<int> bad = parse_positive(-1);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message(), "not positive");
}

TEST(ResultTest, AssignOrReturnPropagates) {
  EXPECT_EQ(*doubled(4), 8);
  auto r = doubled(0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "not positive");
}

TEST(ResultTest, ContextIsAddedOnlyOnFailure) {
  EXPECT_TRUE(check_with_context(1).has_value());
  auto s = check_with_context(-5);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().message(), "record 7: not positive");
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

TEST(ResultTest, HsmErrorCarriesFunctionAndRv) {
  Error e = Error::hsm(0x60, "C_FindObjectsInit", "key lookup failed: CKR_KEY_HANDLE_INVALID");
  EXPECT_EQ(e.code(), ErrorCode::kHsm);
  EXPECT_EQ(e.function(), "C_FindObjectsInit");
  ASSERT_TRUE(e.ck_rv().has_value());
  EXPECT_EQ(*e.ck_rv(), 0x60u);
  EXPECT_EQ(error_code_name(e.code()), "hsm");
}

}  // namespace
}  // namespace persoflow
