#include "hsm/session_pool.h"

#include "hsm/ck_rv.h"

namespace persoflow::hsm {

SessionLease::SessionLease(SessionLease&& other) noexcept
    : pool_(other.pool_), api_(other.api_), handle_(other.handle_), broken_(other.broken_) {
  other.pool_ = nullptr;
}

SessionLease& SessionLease::operator=(SessionLease&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = other.pool_;
    api_ = other.api_;
    handle_ = other.handle_;
    broken_ = other.broken_;
    other.pool_ = nullptr;
  }
  return *this;
}

SessionLease::~SessionLease() { release(); }

void SessionLease::release() {
  if (pool_ != nullptr) {
    pool_->give_back(handle_, broken_);
    pool_ = nullptr;
  }
}

Status SessionLease::check(CK_RV rv, std::string_view function, std::string_view what) {
  if (rv == CKR_OK) return ok_status();
  if (rv_breaks_session(rv)) broken_ = true;
  return rv_error(rv, function, what);
}

SessionPool::SessionPool(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, std::size_t max_sessions)
    : api_(api), slot_(slot), max_sessions_(max_sessions == 0 ? 1 : max_sessions) {}

SessionPool::~SessionPool() {
  std::lock_guard lock(mu_);
  for (CK_SESSION_HANDLE h : idle_) api_->C_CloseSession(h);
  idle_.clear();
}

Result<SessionLease> SessionPool::lease() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_sessions_; });
  if (!idle_.empty()) {
    CK_SESSION_HANDLE h = idle_.back();
    idle_.pop_back();
    return SessionLease(this, api_, h);
  }
  ++open_;  // reserve the slot before the call so that waiters count it
  lock.unlock();
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = api_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
  if (rv != CKR_OK) {
    lock.lock();
    --open_;
    cv_.notify_one();
    return rv_error(rv, "C_OpenSession", "opening a session");
  }
  return SessionLease(this, api_, h);
}

void SessionPool::give_back(CK_SESSION_HANDLE handle, bool broken) {
  if (broken) {
    api_->C_CloseSession(handle);  // may fail: the session is already gone
  }
  std::lock_guard lock(mu_);
  if (broken) {
    --open_;
    ++discarded_;
  } else {
    idle_.push_back(handle);
  }
  cv_.notify_one();
}

std::size_t SessionPool::open_sessions() const {
  std::lock_guard lock(mu_);
  return open_;
}

std::size_t SessionPool::discarded_sessions() const {
  std::lock_guard lock(mu_);
  return discarded_;
}

}  // namespace persoflow::hsm
