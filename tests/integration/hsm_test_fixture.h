// A GoogleTest fixture with a fresh SoftHSM token (its own temporary directory),
// the module loaded and the token opened through persoflow's hsm layer.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "hsm/key_store.h"
#include "hsm/module.h"
#include "hsm/token.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {

inline SecureBytes secret(const std::string& s) {
  return SecureBytes(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

class HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_env_ = std::make_unique<SoftHsmToken>();
    auto module = hsm::Module::load(token_env_->module());
    ASSERT_TRUE(module.has_value()) << module.error().message();
    module_ = *module;
    auto token = hsm::Token::open(module_, token_env_->label(), secret(token_env_->pin()),
                                  hsm::TokenOptions{4});
    ASSERT_TRUE(token.has_value()) << token.error().message();
    token_ = *token;
    keys_ = std::make_unique<hsm::KeyStore>(token_);
  }
  void TearDown() override {
    keys_.reset();
    token_.reset();
    module_.reset();
    token_env_.reset();
  }

  std::unique_ptr<SoftHsmToken> token_env_;
  std::shared_ptr<hsm::Module> module_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::KeyStore> keys_;
};

}  // namespace persoflow::test
