#include "hsm/token.h"

#include <vector>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

// The operation that met the lost login, then the restoration that failed; the CK_RV and
// code are the restoration's (CKR_PIN_LOCKED is kAuth and persistent).
Error after_then(const Error& operation, const Error& restoration) {
  std::string message = operation.message() + "; then " + restoration.message();
  if (restoration.ck_rv()) {
    return Error::hsm(*restoration.ck_rv(), restoration.function(), std::move(message), restoration.code());
  }
  return Error(restoration.code(), std::move(message));
}

}  // namespace

Status ObjectSession::check(CK_RV rv, std::string_view function, std::string_view what) const {
  if (rv == CKR_OK) return ok_status();
  Error error = rv_error(rv, function, what);
  if (!rv_may_mean_lost_login(rv)) return error;
  return token_->after_failure_locked(generation_, std::move(error));  // lock_ holds object_mu_
}

Token::Token(std::shared_ptr<Module> module, TokenDescription description, CK_SESSION_HANDLE login_session,
             const SecureBytes& pin, TokenOptions options)
    : module_(std::move(module)),
      description_(std::move(description)),
      pin_(pin),
      options_(options),
      login_session_(login_session),
      pool_(std::make_unique<SessionPool>(module_->api(), description_.slot, options.max_sessions,
                                        static_cast<LoginKeeper*>(this))) {}

Token::~Token() {
  pool_.reset();  // close pooled sessions first
  if (login_session_ != CK_INVALID_HANDLE) module_->api()->C_CloseSession(login_session_);
}

Result<std::shared_ptr<Token>> Token::open(std::shared_ptr<Module> module, const std::string& label,
                                           const SecureBytes& pin, TokenOptions options) {
  PF_ASSIGN_OR_RETURN(auto tokens, module->tokens());
  const TokenDescription* found = nullptr;
  std::string present;
  for (const auto& t : tokens) {
    if (t.initialized) {
      if (!present.empty()) present += ", ";
      present += "'" + t.label + "'";
    }
    if (t.label == label) {
      if (found != nullptr) {
        return Error(ErrorCode::kInvalidArgument,
                     "token label '" + label + "' is ambiguous in module " + module->path() +
                         ": more than one token carries it");
      }
      found = &t;
    }
  }
  if (found == nullptr) {
    return Error(ErrorCode::kNotFound,
                 "token '" + label + "' not found in PKCS#11 module " + module->path() +
                     " (tokens present: " + (present.empty() ? "none" : present) + ")");
  }
  CK_FUNCTION_LIST* api = module->api();
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  PF_TRY(check_rv(api->C_OpenSession(found->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                     nullptr, &session),
                  "C_OpenSession", "opening a session on token '" + label + "'"));
  auto pin_bytes = pin.reveal();
  // C_Login takes a non-const pointer in the v2.40 header; it does not write through it.
  CK_RV rv = api->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_bytes.data()),
                          static_cast<CK_ULONG>(pin_bytes.size()));
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    api->C_CloseSession(session);
    return rv_error(rv, "C_Login", "logging in to token '" + label + "'");
  }
  return std::shared_ptr<Token>(new Token(std::move(module), *found, session, pin, options));
}

ObjectSession Token::object_session() {
  std::unique_lock lock(object_mu_);
  // A failed restoration leaves login_session_ invalid or dead: the caller's first call
  // fails, and ObjectSession::check reports the restoration's error.
  if (login_lost_.load(std::memory_order_acquire) && !failure_) (void)restore_locked();
  return ObjectSession(std::move(lock), this, module_->api(), login_session_, pool_->generation());
}

std::uint64_t Token::add_login_listener(LoginListener listener) {
  std::lock_guard lock(listeners_mu_);
  const std::uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void Token::remove_login_listener(std::uint64_t id) {
  std::lock_guard lock(listeners_mu_);
  listeners_.erase(id);
}

Status Token::ensure_logged_in() {
  if (!login_lost_.load(std::memory_order_acquire) && !failed_.load(std::memory_order_acquire)) {
    return ok_status();
  }
  std::lock_guard lock(object_mu_);
  if (failure_) return *failure_;
  if (login_lost_.load(std::memory_order_acquire)) return restore_locked();
  return ok_status();
}

Error Token::after_failure(std::uint64_t session_generation, Error error) {
  std::lock_guard lock(object_mu_);
  return after_failure_locked(session_generation, std::move(error));
}

Error Token::after_failure_locked(std::uint64_t session_generation, Error error) {
  if (failure_) return after_then(error, *failure_);
  // The pool's generation moves on only when a restoration succeeds. A session of the
  // current one failing may mean the login is lost now: look. An older session failing
  // is a consequence of the loss already repaired.
  if (session_generation == pool_->generation() && !login_lost_.load(std::memory_order_acquire) &&
      !login_intact_locked()) {
    login_lost_.store(true, std::memory_order_release);
  }
  if (login_lost_.load(std::memory_order_acquire)) {
    Status restored = restore_locked();
    if (!restored) return after_then(error, restored.error());
  }
  const unsigned long rv = error.ck_rv().value_or(CKR_OK);
  if (rv_is_handle_invalid(rv) && relogins_.load(std::memory_order_acquire) > 0) {
    // Once the token has logged in again, a handle error may be a handle that went with
    // the old login: a session object of the old sessions (a card's derived keys, made
    // before and used after), or a token object's old number (SoftHSM renumbers them;
    // the KeyStore's KeyInfo handles are updated, bare numbers are not). Which one cannot
    // be told here, so it is reported as its likely cause, CKR_USER_NOT_LOGGED_IN, which
    // callers retry (rv_is_transient): a caller that makes its session objects again
    // succeeds; a handle that is really wrong fails again, and the caller's bound on
    // retries stops it (prep: "still failing after 3 attempts").
    return Error::hsm(CKR_USER_NOT_LOGGED_IN, error.function(),
                      error.message() + " (the token had lost its login and has logged in again)",
                      error.code());
  }
  return error;
}

bool Token::login_intact_locked() {
  if (login_session_ == CK_INVALID_HANDLE) return false;
  CK_SESSION_INFO info{};
  const CK_RV rv = module_->api()->C_GetSessionInfo(login_session_, &info);
  if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
    sessions_closed_ = true;
    return false;
  }
  // Anything else (a device hiccup) tells nothing: leave the login alone, the caller's
  // retry comes back here.
  if (rv != CKR_OK) return true;
  return info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS;
}

Status Token::restore_locked() {
  if (failure_) return *failure_;
  const std::string what = "logging in again to token '" + label() + "' after the module lost its login";
  if (restorations_ >= options_.max_relogins) {
    failure_ = Error(ErrorCode::kHsm, what + ": it has already tried " + std::to_string(restorations_) +
                                          " times, the most a token may; the HSM is not stable enough to go on");
    failed_.store(true, std::memory_order_release);
    return *failure_;
  }
  ++restorations_;
  login_generation_.fetch_add(1, std::memory_order_acq_rel);
  CK_FUNCTION_LIST* api = module_->api();
  if (login_session_ != CK_INVALID_HANDLE) {
    // A session the module closed is not closed again: SoftHSM reuses session numbers,
    // and this one may already be another thread's new session.
    if (!sessions_closed_) api->C_CloseSession(login_session_);
    login_session_ = CK_INVALID_HANDLE;
  }
  // The module freed the old session numbers, and SoftHSM gives them to new sessions;
  // threads still holding an old lease may call with an old number at any time. Sessions
  // opened now take those numbers (the pool closes them when the old leases are back),
  // so the new login session and the pool's new sessions get numbers no lease holds.
  std::vector<CK_SESSION_HANDLE> quarantine;
  if (sessions_closed_) {
    for (std::size_t i = 0; i <= pool_->max_sessions(); ++i) {
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      if (api->C_OpenSession(description_.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h) != CKR_OK) break;
      quarantine.push_back(h);
    }
  }
  std::optional<Error> last;
  for (int attempt = 1; attempt <= kLoginAttempts; ++attempt) {
    auto session = login_once_locked(what);
    if (session) {
      login_session_ = *session;
      login_lost_.store(false, std::memory_order_release);
      relogins_.fetch_add(1, std::memory_order_acq_rel);
      // Only now: sessions leased during the restoration keep the old generation, so
      // their failures count as consequences of the lost login (after_failure_locked).
      pool_->retire_all(sessions_closed_, std::move(quarantine));
      sessions_closed_ = false;
      return ok_status();
    }
    last = std::move(session).error();
    const auto rv = last->ck_rv();
    if (!rv || !rv_is_transient(*rv)) {  // a PIN, token or key problem: never tried again
      for (CK_SESSION_HANDLE h : quarantine) api->C_CloseSession(h);
      failure_ = *last;
      failed_.store(true, std::memory_order_release);
      return *last;
    }
  }
  for (CK_SESSION_HANDLE h : quarantine) api->C_CloseSession(h);
  return *last;  // transient every time: the login stays lost, the next call tries again
}

Result<CK_SESSION_HANDLE> Token::login_once_locked(const std::string& what) {
  CK_FUNCTION_LIST* api = module_->api();
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  PF_TRY(check_rv(api->C_OpenSession(description_.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                     &session),
                  "C_OpenSession", what));
  auto pin_bytes = pin_.reveal();
  const CK_RV rv = api->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_bytes.data()),
                                static_cast<CK_ULONG>(pin_bytes.size()));
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    api->C_CloseSession(session);
    return rv_error(rv, "C_Login", what);
  }
  std::lock_guard lock(listeners_mu_);
  for (auto& [id, listener] : listeners_) {
    Status s = listener(api, session);
    if (!s) {
      api->C_CloseSession(session);
      return with_context(std::move(s).error(), what);
    }
  }
  return session;
}

}  // namespace persoflow::hsm
