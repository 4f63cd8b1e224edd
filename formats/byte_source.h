// Sequential byte input with the absolute offset always known, for streaming parsers
// (docs/formats/issuer-envelope.md). A parser peeks a few bytes to decide, then reads or
// skips; the memory held is one fixed window whatever the size of the input.
//
//   FdByteSource      a file descriptor behind a fixed buffer (64 KiB by default)
//   MemoryByteSource  a span already in memory (tests, fuzzing)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/result.h"

namespace persoflow::formats {

class ByteSource {
 public:
  ByteSource() = default;
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  virtual ~ByteSource() = default;

  // Up to `n` bytes from offset() on, without consuming them; fewer than `n` only at the end
  // of the input. `n` must not exceed max_peek(). The span stays valid until the next call
  // to peek(), read() or skip().
  virtual Result<std::span<const std::uint8_t>> peek(std::size_t n) = 0;

  // As peek(), then consumes the bytes returned.
  Result<std::span<const std::uint8_t>> read(std::size_t n);

  // Consumes and returns between 1 and `max` bytes (none only at the end of the input, or
  // when `max` is 0), taking what is already buffered before reading more: the way to stream
  // large values without copying inside the source. Valid until the next call.
  virtual Result<std::span<const std::uint8_t>> read_some(std::size_t max);

  // Consumes up to `n` bytes of any count; returns how many (fewer only at the end).
  Result<std::uint64_t> skip(std::uint64_t n);

  // True when no byte is left.
  Result<bool> at_end();

  // Absolute offset of the next byte, counted from the start of the input.
  virtual std::uint64_t offset() const = 0;

  // The largest `n` that peek() and read() accept.
  virtual std::size_t max_peek() const = 0;

 protected:
  ByteSource(ByteSource&&) = default;
  ByteSource& operator=(ByteSource&&) = default;

  // Consumes `n` bytes that the last peek() returned.
  virtual void advance(std::size_t n) = 0;
};

// Reads a file descriptor through one buffer allocated at construction.
class FdByteSource final : public ByteSource {
 public:
  static constexpr std::size_t kDefaultBufferSize = 64 * 1024;
  static constexpr std::size_t kMinBufferSize = 64;

  // Opens `path` read-only; the descriptor is closed with the source. kNotFound when the
  // file does not exist, kIo for other failures; buffer_size below kMinBufferSize is
  // kInvalidArgument.
  static Result<FdByteSource> open(const std::string& path,
                                   std::size_t buffer_size = kDefaultBufferSize);

  // Reads `fd` (a pipe, stdin) without taking ownership: the caller closes it.
  static Result<FdByteSource> borrow(int fd, std::size_t buffer_size = kDefaultBufferSize);

  FdByteSource(FdByteSource&& other) noexcept;
  FdByteSource& operator=(FdByteSource&& other) noexcept;
  ~FdByteSource() override;

  Result<std::span<const std::uint8_t>> peek(std::size_t n) override;
  Result<std::span<const std::uint8_t>> read_some(std::size_t max) override;
  std::uint64_t offset() const override { return offset_; }
  std::size_t max_peek() const override { return buffer_.size(); }

 protected:
  void advance(std::size_t n) override;

 private:
  FdByteSource(int fd, bool owns, std::size_t buffer_size);
  void close_fd();

  int fd_ = -1;
  bool owns_ = false;
  std::vector<std::uint8_t> buffer_;
  std::size_t begin_ = 0;  // first unconsumed byte in buffer_
  std::size_t end_ = 0;    // one past the last byte read into buffer_
  bool eof_ = false;
  std::uint64_t offset_ = 0;  // absolute offset of buffer_[begin_]
};

// Reads a span the caller keeps alive. `max_peek` limits the window like a small file buffer
// would, so tests can cross window boundaries anywhere. `base_offset` is the offset reported
// for data[0], for bytes cut out of a larger input (messages then name file offsets).
class MemoryByteSource final : public ByteSource {
 public:
  static constexpr std::size_t kUnlimited = static_cast<std::size_t>(-1);

  explicit MemoryByteSource(std::span<const std::uint8_t> data, std::size_t max_peek = kUnlimited,
                            std::uint64_t base_offset = 0)
      : data_(data), max_peek_(max_peek), base_offset_(base_offset) {}
  // The source points into the vector, so a temporary one is refused at compile time.
  explicit MemoryByteSource(const std::vector<std::uint8_t>&& data,
                            std::size_t max_peek = kUnlimited,
                            std::uint64_t base_offset = 0) = delete;
  MemoryByteSource(MemoryByteSource&&) = default;
  MemoryByteSource& operator=(MemoryByteSource&&) = default;
  ~MemoryByteSource() override = default;

  Result<std::span<const std::uint8_t>> peek(std::size_t n) override;
  std::uint64_t offset() const override { return base_offset_ + pos_; }
  std::size_t max_peek() const override { return max_peek_; }

 protected:
  void advance(std::size_t n) override { pos_ += n; }

 private:
  std::span<const std::uint8_t> data_;
  std::size_t max_peek_;
  std::uint64_t base_offset_;
  std::size_t pos_ = 0;
};

}  // namespace persoflow::formats
