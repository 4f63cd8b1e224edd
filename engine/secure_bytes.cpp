#include "engine/secure_bytes.h"

#include <openssl/crypto.h>
#include <sys/mman.h>

#include <array>
#include <cstddef>
#include <mutex>
#include <new>
#include <stdexcept>

namespace persoflow {

namespace detail {
void secure_wipe(void* data, std::size_t size) {
  if (data != nullptr && size > 0) OPENSSL_cleanse(data, size);
}

namespace {

constexpr std::size_t kChunkBytes = 256 * 1024;
constexpr std::size_t kArenaBytes = 64 * 1024 * 1024;
constexpr std::size_t kMinClass = 16;
constexpr std::size_t kMaxClass = 4096;
constexpr std::size_t kClasses = 9;  // 16, 32, ..., 4096

std::size_t class_index(std::size_t bytes) {
  std::size_t size = kMinClass;
  std::size_t index = 0;
  while (size < bytes) {
    size <<= 1;
    ++index;
  }
  return index;
}

// One reserved range of address space, committed and locked chunk by chunk.
class LockedArena {
 public:
  LockedArena() {
    void* base = ::mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (base == MAP_FAILED) return;
    base_ = static_cast<std::uint8_t*>(base);
    (void)::madvise(base, kArenaBytes, MADV_DONTDUMP);
  }
  LockedArena(const LockedArena&) = delete;
  LockedArena& operator=(const LockedArena&) = delete;

  void* allocate(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (base_ != nullptr && bytes <= kMaxClass) {
      const std::size_t c = class_index(bytes);
      // This thread's cache first: no lock. Prep allocates a dozen small secrets per card
      // on every thread, and one mutex for all of them was a measurable contention point.
      if (!t_cache_dead) {
        ThreadCache& t = t_cache;
        if (t.head[c] == nullptr) refill(c);
        if (FreeBlock* b = t.head[c]) {
          t.head[c] = b->next;
          --t.count[c];
          return b;
        }
      }
      const std::size_t size = kMinClass << c;
      std::lock_guard lock(mutex_);
      if (free_[c] != nullptr) {
        FreeBlock* b = free_[c];
        free_[c] = b->next;
        return b;
      }
      if (end_ - next_ < static_cast<std::ptrdiff_t>(size) && !grow()) {
        ++heap_blocks_;
        return ::operator new(bytes);
      }
      void* out = next_;
      next_ += size;
      return out;
    }
    {
      std::lock_guard lock(mutex_);
      ++heap_blocks_;
    }
    return ::operator new(bytes);
  }

  void deallocate(void* p, std::size_t bytes) {
    if (p == nullptr) return;
    if (!owns(p)) {
      ::operator delete(p);
      return;
    }
    if (bytes == 0) bytes = 1;
    const std::size_t c = class_index(bytes);
    auto* b = static_cast<FreeBlock*>(p);
    if (!t_cache_dead) {
      ThreadCache& t = t_cache;
      b->next = t.head[c];
      t.head[c] = b;
      if (++t.count[c] > kCacheMax) spill(c);
      return;
    }
    std::lock_guard lock(mutex_);
    b->next = free_[c];
    free_[c] = b;
  }

  // The thread is ending: its cached blocks go back to the shared lists, and its later
  // allocations and releases (thread-local destructors running after this one) take the
  // lock.
  void drain_thread_cache() {
    ThreadCache& t = t_cache;
    std::lock_guard lock(mutex_);
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (FreeBlock* b = t.head[c]) {
        t.head[c] = b->next;
        b->next = free_[c];
        free_[c] = b;
      }
      t.count[c] = 0;
    }
    t_cache_dead = true;
  }

  bool owns(const void* p) const {
    const auto* q = static_cast<const std::uint8_t*>(p);
    return base_ != nullptr && q >= base_ && q < base_ + kArenaBytes;
  }

  LockedArenaStats stats() {
    std::lock_guard lock(mutex_);
    return {chunks_, locked_chunks_, heap_blocks_};
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // Blocks a thread keeps for itself, per size class (trivially destructible, so it stays
  // usable while other thread-local destructors run).
  struct ThreadCache {
    std::array<FreeBlock*, kClasses> head;
    std::array<std::uint32_t, kClasses> count;
  };
  static constexpr std::uint32_t kCacheBatch = 32;  // blocks moved per refill or spill
  static constexpr std::uint32_t kCacheMax = 2 * kCacheBatch;
  static thread_local ThreadCache t_cache;
  static thread_local bool t_cache_dead;

  // Up to kCacheBatch blocks of class c into this thread's cache, from the shared free
  // list, then from the current chunk. Leaves the cache empty when the arena is full.
  void refill(std::size_t c);
  // kCacheBatch blocks of class c back from this thread's cache to the shared list.
  void spill(std::size_t c) {
    ThreadCache& t = t_cache;
    std::lock_guard lock(mutex_);
    for (std::uint32_t i = 0; i < kCacheBatch && t.head[c] != nullptr; ++i) {
      FreeBlock* b = t.head[c];
      t.head[c] = b->next;
      --t.count[c];
      b->next = free_[c];
      free_[c] = b;
    }
  }
  // The next chunk (the rest of the current one is left unused): locked if the system
  // allows (RLIMIT_MEMLOCK, CAP_IPC_LOCK), used unlocked otherwise.
  bool grow() {
    const std::size_t used = chunks_ * kChunkBytes;
    if (used + kChunkBytes > kArenaBytes) return false;
    std::uint8_t* chunk = base_ + used;
    if (::mlock(chunk, kChunkBytes) == 0) ++locked_chunks_;
    ++chunks_;
    next_ = chunk;
    end_ = chunk + kChunkBytes;
    return true;
  }

  std::mutex mutex_;
  std::uint8_t* base_ = nullptr;
  std::uint8_t* next_ = nullptr;
  std::uint8_t* end_ = nullptr;
  std::size_t chunks_ = 0;
  std::size_t locked_chunks_ = 0;
  std::size_t heap_blocks_ = 0;
  std::array<FreeBlock*, kClasses> free_{};
};

// Never destroyed: blocks may be released by static destructors after main returns.
LockedArena& arena() {
  static auto* a = new LockedArena();
  return *a;
}

thread_local LockedArena::ThreadCache LockedArena::t_cache{};
thread_local bool LockedArena::t_cache_dead = false;

// Gives a thread's cached blocks back when the thread ends (constructed on the thread's
// first refill).
struct ThreadCacheDrain {
  void arm() {}
  ~ThreadCacheDrain() { arena().drain_thread_cache(); }
};
thread_local ThreadCacheDrain t_drain;

void LockedArena::refill(std::size_t c) {
  t_drain.arm();  // odr-use: this thread's drain is constructed, and runs at its exit
  ThreadCache& t = t_cache;
  const std::size_t size = kMinClass << c;
  std::lock_guard lock(mutex_);
  for (std::uint32_t i = 0; i < kCacheBatch; ++i) {
    FreeBlock* b = free_[c];
    if (b != nullptr) {
      free_[c] = b->next;
    } else {
      if (end_ - next_ < static_cast<std::ptrdiff_t>(size) && !grow()) break;
      b = reinterpret_cast<FreeBlock*>(next_);
      next_ += size;
    }
    b->next = t.head[c];
    t.head[c] = b;
    ++t.count[c];
  }
}

}  // namespace

void* locked_allocate(std::size_t bytes) { return arena().allocate(bytes); }
void locked_deallocate(void* p, std::size_t bytes) { arena().deallocate(p, bytes); }
LockedArenaStats locked_arena_stats() { return arena().stats(); }
bool locked_arena_owns(const void* p) { return arena().owns(p); }

}  // namespace detail

void SecureBytes::wipe() {
  detail::secure_wipe(bytes_.data(), bytes_.size());
  bytes_.clear();
}

bool SecureBytes::equals(const SecureBytes& other) const {
  return constant_time_equal(bytes_, other.bytes_);
}

void SecureBytes::xor_with(std::span<const std::uint8_t> other) {
  if (other.size() != bytes_.size()) {
    // A programming error, not an input error: callers check component sizes first.
    throw std::logic_error("SecureBytes::xor_with: size mismatch");
  }
  for (std::size_t i = 0; i < bytes_.size(); ++i) bytes_[i] ^= other[i];
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace persoflow
