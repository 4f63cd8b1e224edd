// SecureBytes: the only container for secret bytes (key components, clear keys in
// `host` mode, PIN values). Zeroized with OPENSSL_cleanse on every release, never
// printable, compared in constant time, read only through the greppable reveal().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace persoflow {

namespace detail {
void secure_wipe(void* data, std::size_t size);

// Secret bytes live in memory locked in RAM where the system allows (mlock: never written
// to swap) and left out of core dumps (MADV_DONTDUMP): a process-wide arena of mmap'd
// 256 KiB chunks (at most 64 MiB), carved in power-of-two size classes of 16 to 4096 bytes
// with a free list per class. Larger blocks, and every block once the arena is full, come
// from the ordinary heap (still wiped on release); so does a chunk the system refuses to
// lock, which is used unlocked. The arena is never given back before exit.
void* locked_allocate(std::size_t bytes);
void locked_deallocate(void* p, std::size_t bytes);
struct LockedArenaStats {
  std::size_t chunks = 0;         // chunks in use by the arena
  std::size_t locked_chunks = 0;  // of which mlock succeeded
  std::size_t heap_blocks = 0;    // blocks that came from the ordinary heap instead
};
LockedArenaStats locked_arena_stats();
bool locked_arena_owns(const void* p);

// Allocator that wipes memory before giving it back, so that a reallocation or a
// destruction never leaves secret bytes behind, and takes it from the locked arena.
template <typename T>
struct ZeroizingAllocator {
  using value_type = T;
  ZeroizingAllocator() = default;
  template <typename U>
  ZeroizingAllocator(const ZeroizingAllocator<U>& /*other*/) {}  // NOLINT
  T* allocate(std::size_t n) { return static_cast<T*>(locked_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) {
    secure_wipe(p, n * sizeof(T));
    locked_deallocate(p, n * sizeof(T));
  }
  template <typename U>
  bool operator==(const ZeroizingAllocator<U>& /*other*/) const {
    return true;
  }
};
}  // namespace detail

class SecureBytes {
 public:
  SecureBytes() = default;
  explicit SecureBytes(std::size_t size) : bytes_(size, 0) {}
  explicit SecureBytes(std::span<const std::uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}
  SecureBytes(const SecureBytes&) = default;
  SecureBytes(SecureBytes&& other) noexcept = default;
  SecureBytes& operator=(const SecureBytes&) = default;
  SecureBytes& operator=(SecureBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      bytes_ = std::move(other.bytes_);
    }
    return *this;
  }
  ~SecureBytes() { wipe(); }

  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  // The one way to read or write the secret. Grep for "reveal" to audit every use.
  std::span<const std::uint8_t> reveal() const { return bytes_; }
  std::span<std::uint8_t> reveal_mutable() { return bytes_; }

  void append(std::span<const std::uint8_t> bytes) { bytes_.insert(bytes_.end(), bytes.begin(), bytes.end()); }
  void resize(std::size_t size) { bytes_.resize(size, 0); }
  void reserve(std::size_t size) { bytes_.reserve(size); }  // moved by the allocator: wiped

  // Overwrites the bytes with zeros and empties the container.
  void wipe();

  // Constant-time comparison (CRYPTO_memcmp); sizes are not secret.
  bool equals(const SecureBytes& other) const;

  // XOR of another value of the same size into this one (key components).
  void xor_with(std::span<const std::uint8_t> other);

 private:
  std::vector<std::uint8_t, detail::ZeroizingAllocator<std::uint8_t>> bytes_;
};

// Deliberately absent: operator<<, operator==, implicit conversions to bytes or strings.

// Constant-time comparison of two public-size byte ranges (MACs, cryptograms, KCVs).
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

}  // namespace persoflow
