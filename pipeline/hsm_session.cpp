#include "pipeline/hsm_session.h"

namespace persoflow::pipeline {

Result<HsmSession> open_hsm(const config::HsmSettings& settings) {
  HsmSession s;
  PF_ASSIGN_OR_RETURN(s.module, hsm::Module::load(settings.module));
  PF_ASSIGN_OR_RETURN(SecureBytes pin, config::read_pin(settings.pin));
  PF_ASSIGN_OR_RETURN(s.token, hsm::Token::open(s.module, settings.token, pin,
                                                hsm::TokenOptions{settings.max_sessions}));
  s.keys = std::make_unique<hsm::KeyStore>(s.token);
  return s;
}

}  // namespace persoflow::pipeline
