// A token selected by label and logged in, with its session pool.
//
// Login happens on a dedicated session that stays open for the token's lifetime
// (PKCS#11 login state is per token and ends when its last session closes).
//
// Lost login. A module may close every session of the token (a device reset, the fault
// shim's drop-sessions): the login ends with them, every later session is public, private
// objects are invisible, and SoftHSM gives token objects new handles after the next login
// (docs/fault-injection.md). When a call fails in a way that can mean this
// (rv_may_mean_lost_login), the token looks at its login session (one C_GetSessionInfo):
// if it is gone or no longer logged in, the token
//   1. moves the pool to a new generation (its old sessions are closed: hsm/session_pool.h),
//   2. closes its old login session and opens a new one, logs in with the PIN it was
//      opened with (kept for that, in SecureBytes, for the token's life),
//   3. calls its login listeners on the new session (KeyStore finds its keys again by label
//      and id and updates the handles of every KeyInfo it gave out: hsm/key_store.h),
// and the failed call is reported as transient, so the caller's own retry (prep's per
// card, import's per value and segment) runs again on fresh sessions. Session objects do
// not survive: whoever made them on the object session must make them again (prep's card
// retry re-derives the card's keys). Since a handle error cannot say which handle it is
// about, once the token has logged in again every object or key handle error is
// reported as CKR_USER_NOT_LOGGED_IN (transient): a card in flight whose derived keys
// died is prepared again; a handle that is really wrong fails each retry, and the
// caller's bound stops it.
//
// Bounds: opening and logging in are tried at most kLoginAttempts times per restoration,
// and only for transient return values; a token restores its login at most
// TokenOptions::max_relogins times. A PIN error on the new C_Login (CKR_PIN_INCORRECT,
// CKR_PIN_LOCKED, ...) is never retried (each try would count against the PIN), nor is
// any other persistent error: the token then stays failed, and every later lease and
// object-session call reports that error ("logging in again to token 'T' after the
// module lost its login: C_Login returned CKR_PIN_LOCKED"), after the operation that met
// the lost login.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "hsm/module.h"
#include "hsm/session_pool.h"

namespace persoflow::hsm {

class Token;

struct TokenOptions {
  std::size_t max_sessions = 8;
  // How many times the token may log in again after losing its login, in its life.
  std::size_t max_relogins = 8;
};

// Exclusive use of the token's long-lived session, for session objects that must
// outlive any pooled session: PKCS#11 destroys a session object when the session that
// created it closes, and the pool closes broken sessions. Holding one, never lease a
// pooled session (restoring a lost login needs this lock, and may be what a lease waits
// for).
class ObjectSession {
 public:
  CK_FUNCTION_LIST* api() const { return api_; }
  CK_SESSION_HANDLE handle() const { return handle_; }
  // As SessionLease::check: a return value that can mean a lost login makes the token
  // check and, if need be, restore it (on a new object session; this one is then dead).
  Status check(CK_RV rv, std::string_view function, std::string_view what) const;

 private:
  friend class Token;
  ObjectSession(std::unique_lock<std::mutex> lock, Token* token, CK_FUNCTION_LIST* api,
                CK_SESSION_HANDLE handle, std::uint64_t generation)
      : lock_(std::move(lock)), token_(token), api_(api), handle_(handle), generation_(generation) {}

  std::unique_lock<std::mutex> lock_;
  Token* token_;
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE handle_;
  std::uint64_t generation_;  // the pool's, when it was taken
};

class Token final : private LoginKeeper {
 public:
  static constexpr int kLoginAttempts = 3;

  // Called with the new login session each time the token has logged in again, before
  // any caller can use it; an error fails the restoration (hsm/key_store.h uses this).
  using LoginListener = std::function<Status(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE session)>;

  // Finds the token labelled `label` in `module` and logs in as the user with `pin`.
  // kNotFound names the label and lists the tokens present; kAuth for a wrong or
  // locked PIN. The token keeps a copy of `pin` (SecureBytes, wiped when the token goes)
  // to log in again after losing its login.
  static Result<std::shared_ptr<Token>> open(std::shared_ptr<Module> module, const std::string& label,
                                             const SecureBytes& pin, TokenOptions options = {});
  ~Token() override;
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  const std::string& label() const { return description_.label; }
  const TokenDescription& description() const { return description_; }
  const Module& module() const { return *module_; }
  CK_FUNCTION_LIST* api() const { return module_->api(); }
  SessionPool& sessions() { return *pool_; }
  // The session that logged in; it lives until the token loses its login. One user at a
  // time. A login known to be lost is restored first; if that fails the handle is
  // CK_INVALID_HANDLE, and check() reports the restoration's error.
  ObjectSession object_session();

  // Generation of the login: 1 after open, one more each time the token logs in again.
  std::uint64_t login_generation() const { return login_generation_.load(std::memory_order_acquire); }
  // How many times the token has logged in again after losing its login.
  std::size_t relogins() const { return relogins_.load(std::memory_order_acquire); }

  std::uint64_t add_login_listener(LoginListener listener);
  void remove_login_listener(std::uint64_t id);

 private:
  friend class ObjectSession;
  Token(std::shared_ptr<Module> module, TokenDescription description, CK_SESSION_HANDLE login_session,
        const SecureBytes& pin, TokenOptions options);

  // LoginKeeper, for the pool.
  Status ensure_logged_in() override;
  Error after_failure(std::uint64_t session_generation, Error error) override;

  // The rest hold object_mu_.
  Error after_failure_locked(std::uint64_t session_generation, Error error);
  bool login_intact_locked();
  Status restore_locked();
  Result<CK_SESSION_HANDLE> login_once_locked(const std::string& what);

  std::shared_ptr<Module> module_;
  TokenDescription description_;
  SecureBytes pin_;
  TokenOptions options_;
  std::mutex object_mu_;  // the object session; also serializes restorations
  CK_SESSION_HANDLE login_session_;
  std::atomic<bool> login_lost_{false};
  std::atomic<bool> failed_{false};
  std::optional<Error> failure_;  // a restoration that cannot succeed; under object_mu_
  std::size_t restorations_ = 0;  // under object_mu_
  // The login session was found closed by the module (not merely logged out): so were
  // all others. Under object_mu_.
  bool sessions_closed_ = false;
  std::atomic<std::uint64_t> login_generation_{1};
  std::atomic<std::size_t> relogins_{0};
  std::mutex listeners_mu_;
  std::uint64_t next_listener_ = 1;
  std::map<std::uint64_t, LoginListener> listeners_;
  std::unique_ptr<SessionPool> pool_;
};

}  // namespace persoflow::hsm
