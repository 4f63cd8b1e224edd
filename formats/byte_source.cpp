#include "formats/byte_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace persoflow::formats {
namespace {

Error too_large_peek(std::size_t n, std::size_t max) {
  return Error(ErrorCode::kInternal, "ByteSource: peek of " + std::to_string(n) +
                                         " bytes exceeds the window of " + std::to_string(max));
}

}  // namespace

Result<std::span<const std::uint8_t>> ByteSource::read(std::size_t n) {
  PF_ASSIGN_OR_RETURN(auto bytes, peek(n));
  advance(bytes.size());
  return bytes;
}

Result<std::span<const std::uint8_t>> ByteSource::read_some(std::size_t max) {
  return read(std::min(max, max_peek()));
}

Result<std::uint64_t> ByteSource::skip(std::uint64_t n) {
  std::uint64_t done = 0;
  while (done < n) {
    const std::size_t step =
        static_cast<std::size_t>(std::min<std::uint64_t>(n - done, max_peek()));
    PF_ASSIGN_OR_RETURN(auto bytes, read(step));
    done += bytes.size();
    if (bytes.size() < step) break;
  }
  return done;
}

Result<bool> ByteSource::at_end() {
  PF_ASSIGN_OR_RETURN(auto bytes, peek(1));
  return bytes.empty();
}

// ---- FdByteSource ----

FdByteSource::FdByteSource(int fd, bool owns, std::size_t buffer_size)
    : fd_(fd), owns_(owns), buffer_(buffer_size) {}

Result<FdByteSource> FdByteSource::open(const std::string& path, std::size_t buffer_size) {
  if (buffer_size < kMinBufferSize) {
    return Error(ErrorCode::kInvalidArgument, "FdByteSource: buffer of " +
                                                  std::to_string(buffer_size) + " bytes is below " +
                                                  std::to_string(kMinBufferSize));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open " + path + ": " + std::strerror(err));
  }
  return FdByteSource(fd, true, buffer_size);
}

Result<FdByteSource> FdByteSource::borrow(int fd, std::size_t buffer_size) {
  if (buffer_size < kMinBufferSize) {
    return Error(ErrorCode::kInvalidArgument, "FdByteSource: buffer of " +
                                                  std::to_string(buffer_size) + " bytes is below " +
                                                  std::to_string(kMinBufferSize));
  }
  if (fd < 0) return Error(ErrorCode::kInvalidArgument, "FdByteSource: invalid descriptor");
  return FdByteSource(fd, false, buffer_size);
}

FdByteSource::FdByteSource(FdByteSource&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      owns_(std::exchange(other.owns_, false)),
      buffer_(std::move(other.buffer_)),
      begin_(other.begin_),
      end_(other.end_),
      eof_(other.eof_),
      offset_(other.offset_) {}

FdByteSource& FdByteSource::operator=(FdByteSource&& other) noexcept {
  if (this != &other) {
    close_fd();
    fd_ = std::exchange(other.fd_, -1);
    owns_ = std::exchange(other.owns_, false);
    buffer_ = std::move(other.buffer_);
    begin_ = other.begin_;
    end_ = other.end_;
    eof_ = other.eof_;
    offset_ = other.offset_;
  }
  return *this;
}

FdByteSource::~FdByteSource() { close_fd(); }

void FdByteSource::close_fd() {
  if (owns_ && fd_ >= 0) ::close(fd_);
  fd_ = -1;
  owns_ = false;
}

Result<std::span<const std::uint8_t>> FdByteSource::peek(std::size_t n) {
  if (n > buffer_.size()) return too_large_peek(n, buffer_.size());
  if (end_ - begin_ < n && !eof_) {
    if (fd_ < 0) return Error(ErrorCode::kInternal, "FdByteSource: read after move");
    // Keep the unconsumed bytes, move them to the front, and fill the rest of the buffer.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    while (end_ < n && !eof_) {
      const ssize_t got = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
      if (got < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        return Error(ErrorCode::kIo, "read failed at byte " + std::to_string(offset_ + end_) +
                                         ": " + std::strerror(err));
      }
      if (got == 0) eof_ = true;
      end_ += static_cast<std::size_t>(got);
    }
  }
  return std::span<const std::uint8_t>(buffer_.data() + begin_, std::min(n, end_ - begin_));
}

Result<std::span<const std::uint8_t>> FdByteSource::read_some(std::size_t max) {
  // Refill only when nothing is buffered (then there is nothing to move either).
  if (begin_ == end_ && max > 0) PF_TRY(peek(1));
  const std::size_t n = std::min(max, end_ - begin_);
  const std::span<const std::uint8_t> out(buffer_.data() + begin_, n);
  advance(n);
  return out;
}

void FdByteSource::advance(std::size_t n) {
  begin_ += n;
  offset_ += n;
}

// ---- MemoryByteSource ----

Result<std::span<const std::uint8_t>> MemoryByteSource::peek(std::size_t n) {
  if (n > max_peek_) return too_large_peek(n, max_peek_);
  return data_.subspan(pos_, std::min(n, data_.size() - pos_));
}

}  // namespace persoflow::formats
