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
    std::lock_guard lock(mutex_);
    auto* b = static_cast<FreeBlock*>(p);
    b->next = free_[c];
    free_[c] = b;
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
