// Opens what a command needs from the HSM: module, token (logged in) and key store,
// from resolved settings.
#pragma once

#include <memory>

#include "config/hsm_settings.h"
#include "engine/result.h"
#include "hsm/key_store.h"
#include "hsm/module.h"
#include "hsm/token.h"

namespace persoflow::pipeline {

struct HsmSession {
  std::shared_ptr<hsm::Module> module;
  std::shared_ptr<hsm::Token> token;
  std::unique_ptr<hsm::KeyStore> keys;
};

Result<HsmSession> open_hsm(const config::HsmSettings& settings);

}  // namespace persoflow::pipeline
