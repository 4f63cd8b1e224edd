// A token selected by label and logged in once, with its session pool.
//
// Login happens on a dedicated session that stays open for the token's lifetime
// (PKCS#11 login state is per token and ends when its last session closes).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "hsm/module.h"
#include "hsm/session_pool.h"

namespace persoflow::hsm {

struct TokenOptions {
  std::size_t max_sessions = 8;
};

// Exclusive use of the token's long-lived session, for session objects that must
// outlive any pooled session: PKCS#11 destroys a session object when the session that
// created it closes, and the pool closes broken sessions.
class ObjectSession {
 public:
  ObjectSession(std::mutex& mu, CK_FUNCTION_LIST* api, CK_SESSION_HANDLE handle)
      : lock_(mu), api_(api), handle_(handle) {}
  CK_FUNCTION_LIST* api() const { return api_; }
  CK_SESSION_HANDLE handle() const { return handle_; }
  Status check(CK_RV rv, std::string_view function, std::string_view what) const;

 private:
  std::unique_lock<std::mutex> lock_;
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE handle_;
};

class Token {
 public:
  // Finds the token labelled `label` in `module` and logs in as the user with `pin`.
  // kNotFound names the label and lists the tokens present; kAuth for a wrong or
  // locked PIN.
  static Result<std::shared_ptr<Token>> open(std::shared_ptr<Module> module, const std::string& label,
                                             const SecureBytes& pin, TokenOptions options = {});
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  const std::string& label() const { return description_.label; }
  const TokenDescription& description() const { return description_; }
  const Module& module() const { return *module_; }
  CK_FUNCTION_LIST* api() const { return module_->api(); }
  SessionPool& sessions() { return *pool_; }
  // The session that logged in; it lives as long as the token. One user at a time.
  ObjectSession object_session() { return ObjectSession(object_mu_, module_->api(), login_session_); }

 private:
  Token(std::shared_ptr<Module> module, TokenDescription description, CK_SESSION_HANDLE login_session,
        std::size_t max_sessions);

  std::shared_ptr<Module> module_;
  TokenDescription description_;
  CK_SESSION_HANDLE login_session_;
  std::mutex object_mu_;
  std::unique_ptr<SessionPool> pool_;
};

}  // namespace persoflow::hsm
