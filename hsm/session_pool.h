// Sessions of one logged-in token, leased to callers one at a time.
//
// A lease is move-only; when it dies the session goes back to the pool, unless a
// call on it failed with a return value that breaks sessions (CKR_DEVICE_ERROR,
// CKR_SESSION_HANDLE_INVALID, ...): then it is closed and forgotten, and the next
// lease opens a fresh one. Login state belongs to the token, never to a session:
// nothing here calls C_Logout.
//
// A failure that can mean the module lost the token's login (rv_may_mean_lost_login:
// every session closed by a device reset, say) is shown to the token (LoginKeeper), which
// looks at its login and logs in again if it is gone (hsm/token.h). Each time it does, the
// pool's generation moves on: idle sessions of the old one are closed at once, leased ones
// when they come back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "hsm/pkcs11_api.h"

namespace persoflow::hsm {

class SessionPool;

// What a pool asks of the token it belongs to (Token implements it).
class LoginKeeper {
 public:
  virtual ~LoginKeeper() = default;
  // Before a lease: ok unless the login is known to be lost and cannot be restored now.
  virtual Status ensure_logged_in() = 0;
  // After a call failed with `error` (an HSM error whose CK_RV rv_may_mean_lost_login)
  // on a session of pool generation `session_generation`: checks the login, logs in
  // again if it is gone, and returns the error the caller should see.
  virtual Error after_failure(std::uint64_t session_generation, Error error) = 0;
};

class SessionLease {
 public:
  SessionLease(SessionLease&& other) noexcept;
  SessionLease& operator=(SessionLease&& other) noexcept;
  SessionLease(const SessionLease&) = delete;
  SessionLease& operator=(const SessionLease&) = delete;
  ~SessionLease();

  CK_SESSION_HANDLE handle() const { return handle_; }
  CK_FUNCTION_LIST* api() const { return api_; }

  // The checkpoint every C_ call on this session passes through: CKR_OK -> ok;
  // otherwise an Error naming `function` and `what`, and the session is marked
  // broken when the return value calls for it. A return value that can mean a lost
  // login makes the token check (and if need be restore) its login first; once the
  // token has logged in again, an object handle error comes back as
  // CKR_USER_NOT_LOGGED_IN (transient: worth another try), and a login that cannot be
  // restored as the restoration's error, after the caller's operation.
  Status check(CK_RV rv, std::string_view function, std::string_view what);

  bool broken() const { return broken_; }
  // Closes the session instead of returning it to the pool (an operation was left
  // active on it, or its state is unknown).
  void mark_broken() { broken_ = true; }
  // The pool generation the session was leased in.
  std::uint64_t generation() const { return generation_; }

 private:
  friend class SessionPool;
  SessionLease(SessionPool* pool, CK_FUNCTION_LIST* api, CK_SESSION_HANDLE handle,
               std::uint64_t generation)
      : pool_(pool), api_(api), handle_(handle), generation_(generation) {}
  void release();

  SessionPool* pool_;
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE handle_;
  std::uint64_t generation_;
  bool broken_ = false;
};

class SessionPool {
 public:
  // `keeper` (may be null: no login recovery) must outlive the pool.
  SessionPool(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, std::size_t max_sessions,
              LoginKeeper* keeper = nullptr);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // An idle session, or a new one while fewer than max_sessions are open; otherwise
  // waits for a lease to come back. Fails without waiting when the token's login is
  // lost and cannot be restored (the restoration's error).
  Result<SessionLease> lease();

  std::size_t open_sessions() const;
  // Sessions closed because a call broke them or because they belonged to an older
  // generation (before the token logged in again).
  std::size_t discarded_sessions() const;
  std::size_t max_sessions() const { return max_sessions_; }
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Called by the token when it has logged in again: every session opened before is
  // dead or useless. Closes the idle ones now; leased ones are closed when they come
  // back. With `already_closed` (the module closed them: their handle numbers may
  // already belong to new sessions, SoftHSM reuses them) none is closed, only forgotten.
  // Returns the new generation.
  // `quarantine`: sessions the token opened to occupy the numbers the module freed, so
  // that leases still holding an old number meet one of them rather than a new session;
  // closed once every lease of the older generations has come back.
  std::uint64_t retire_all(bool already_closed, std::vector<CK_SESSION_HANDLE> quarantine = {});

 private:
  friend class SessionLease;
  void give_back(CK_SESSION_HANDLE handle, bool broken, std::uint64_t generation);
  Error after_failure(std::uint64_t session_generation, Error error);

  CK_FUNCTION_LIST* api_;
  CK_SLOT_ID slot_;
  std::size_t max_sessions_;
  LoginKeeper* keeper_;
  std::atomic<std::uint64_t> generation_{1};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<CK_SESSION_HANDLE> idle_;  // all of the current generation
  std::size_t open_ = 0;
  std::size_t discarded_ = 0;
  std::uint64_t closed_below_ = 0;  // sessions of older generations are gone: never C_CloseSession them
  std::size_t old_leased_ = 0;      // leases of older generations not yet back
  std::vector<CK_SESSION_HANDLE> quarantine_;
  void close_quarantine_locked();
};

}  // namespace persoflow::hsm
