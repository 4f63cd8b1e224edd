// Sessions of one logged-in token, leased to callers one at a time.
//
// A lease is move-only; when it dies the session goes back to the pool, unless a
// call on it failed with a return value that breaks sessions (CKR_DEVICE_ERROR,
// CKR_SESSION_HANDLE_INVALID, ...): then it is closed and forgotten, and the next
// lease opens a fresh one. Login state belongs to the token, never to a session:
// nothing here calls C_Logout.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "hsm/pkcs11_api.h"

namespace persoflow::hsm {

class SessionPool;

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
  // broken when the return value calls for it.
  Status check(CK_RV rv, std::string_view function, std::string_view what);

  bool broken() const { return broken_; }
  // Closes the session instead of returning it to the pool (an operation was left
  // active on it, or its state is unknown).
  void mark_broken() { broken_ = true; }

 private:
  friend class SessionPool;
  SessionLease(SessionPool* pool, CK_FUNCTION_LIST* api, CK_SESSION_HANDLE handle)
      : pool_(pool), api_(api), handle_(handle) {}
  void release();

  SessionPool* pool_;
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE handle_;
  bool broken_ = false;
};

class SessionPool {
 public:
  SessionPool(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, std::size_t max_sessions);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // An idle session, or a new one while fewer than max_sessions are open; otherwise
  // waits for a lease to come back.
  Result<SessionLease> lease();

  std::size_t open_sessions() const;
  std::size_t discarded_sessions() const;
  std::size_t max_sessions() const { return max_sessions_; }

 private:
  friend class SessionLease;
  void give_back(CK_SESSION_HANDLE handle, bool broken);

  CK_FUNCTION_LIST* api_;
  CK_SLOT_ID slot_;
  std::size_t max_sessions_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<CK_SESSION_HANDLE> idle_;
  std::size_t open_ = 0;
  std::size_t discarded_ = 0;
};

}  // namespace persoflow::hsm
