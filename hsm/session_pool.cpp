#include "hsm/session_pool.h"

#include "hsm/ck_rv.h"

namespace persoflow::hsm {

SessionLease::SessionLease(SessionLease&& other) noexcept
    : pool_(other.pool_),
      api_(other.api_),
      handle_(other.handle_),
      generation_(other.generation_),
      broken_(other.broken_) {
  other.pool_ = nullptr;
}

SessionLease& SessionLease::operator=(SessionLease&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = other.pool_;
    api_ = other.api_;
    handle_ = other.handle_;
    generation_ = other.generation_;
    broken_ = other.broken_;
    other.pool_ = nullptr;
  }
  return *this;
}

SessionLease::~SessionLease() { release(); }

void SessionLease::release() {
  if (pool_ != nullptr) {
    pool_->give_back(handle_, broken_, generation_);
    pool_ = nullptr;
  }
}

Status SessionLease::check(CK_RV rv, std::string_view function, std::string_view what) {
  if (rv == CKR_OK) return ok_status();
  if (rv_breaks_session(rv)) broken_ = true;
  Error error = rv_error(rv, function, what);
  if (pool_ != nullptr && rv_may_mean_lost_login(rv)) {
    return pool_->after_failure(generation_, std::move(error));
  }
  return error;
}

SessionPool::SessionPool(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, std::size_t max_sessions,
                         LoginKeeper* keeper)
    : api_(api), slot_(slot), max_sessions_(max_sessions == 0 ? 1 : max_sessions), keeper_(keeper) {}

SessionPool::~SessionPool() {
  std::lock_guard lock(mu_);
  for (CK_SESSION_HANDLE h : idle_) api_->C_CloseSession(h);
  idle_.clear();
  close_quarantine_locked();
}

void SessionPool::close_quarantine_locked() {
  for (CK_SESSION_HANDLE h : quarantine_) api_->C_CloseSession(h);
  quarantine_.clear();
}

Result<SessionLease> SessionPool::lease() {
  // Outside mu_: restoring a login takes the token's lock, then retire_all() takes mu_.
  if (keeper_ != nullptr) PF_TRY(keeper_->ensure_logged_in());
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_sessions_; });
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  if (!idle_.empty()) {
    CK_SESSION_HANDLE h = idle_.back();
    idle_.pop_back();
    return SessionLease(this, api_, h, generation);
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
  // Opened before a retire_all() that happened meanwhile: tagged with the old generation,
  // it is closed when it comes back.
  return SessionLease(this, api_, h, generation);
}

void SessionPool::give_back(CK_SESSION_HANDLE handle, bool broken, std::uint64_t generation) {
  // The generation is compared under mu_, so that a retire_all() cannot slip between the
  // comparison and the push and leave an old session idle.
  std::lock_guard lock(mu_);
  const bool old = generation != generation_.load(std::memory_order_acquire);
  if (old && old_leased_ > 0 && --old_leased_ == 0) close_quarantine_locked();
  if (broken || old) {
    // May fail: the session is already gone. One the module closed is not closed again:
    // its number may be a new session's by now.
    if (generation >= closed_below_) api_->C_CloseSession(handle);
    --open_;
    ++discarded_;
  } else {
    idle_.push_back(handle);
  }
  cv_.notify_one();
}

Error SessionPool::after_failure(std::uint64_t session_generation, Error error) {
  if (keeper_ == nullptr) return error;
  return keeper_->after_failure(session_generation, std::move(error));
}


std::uint64_t SessionPool::retire_all(bool already_closed, std::vector<CK_SESSION_HANDLE> quarantine) {
  std::lock_guard lock(mu_);
  old_leased_ = open_ - idle_.size();  // every session out now is of an older generation
  quarantine_.insert(quarantine_.end(), quarantine.begin(), quarantine.end());
  const std::uint64_t next = generation_.load(std::memory_order_acquire) + 1;
  generation_.store(next, std::memory_order_release);
  if (already_closed) {
    closed_below_ = next;
  } else {
    for (CK_SESSION_HANDLE h : idle_) api_->C_CloseSession(h);
  }
  open_ -= idle_.size();
  discarded_ += idle_.size();
  idle_.clear();
  if (old_leased_ == 0) close_quarantine_locked();
  cv_.notify_all();
  return next;
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
