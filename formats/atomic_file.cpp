#include "formats/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>
#include <vector>

namespace persoflow::formats {
namespace {

struct SplitPath {
  std::string dir;  // "." when the path has no slash
  std::string name;
};

SplitPath split(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

std::string errno_text(int err) { return std::strerror(err); }

Status fsync_directory(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int err = errno;
    return Error(ErrorCode::kIo, "opening directory " + dir + " to fsync it: " + errno_text(err));
  }
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return Error(ErrorCode::kIo, "fsync of directory " + dir + ": " + errno_text(err));
  return ok_status();
}

constexpr std::size_t kTempSuffix = 6;  // mkostemp's XXXXXX
// A temporary is unlocked for an instant after mkostemp, before its writer's flock: one
// modified this recently is never taken for abandoned.
constexpr time_t kMinAbandonedAgeSeconds = 10;

}  // namespace

std::vector<std::string> AtomicFile::remove_abandoned_temporaries(const std::string& final_path) {
  std::vector<std::string> removed;
  const SplitPath parts = split(final_path);
  if (parts.name.empty() || parts.name == "." || parts.name == "..") return removed;
  const std::string prefix = "." + parts.name + ".tmp-";
  DIR* d = ::opendir(parts.dir.c_str());
  if (d == nullptr) return removed;
  std::vector<std::string> candidates;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n(e->d_name);
    if (n.size() == prefix.size() + kTempSuffix && n.substr(0, prefix.size()) == prefix) candidates.emplace_back(n);
  }
  ::closedir(d);
  for (const std::string& name : candidates) {
    const std::string path = (parts.dir == "/" ? "" : parts.dir) + "/" + name;
    // Not following a symbolic link, not blocking on a FIFO: only a regular file that was
    // a temporary of ours is a candidate.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat held {};
    struct stat named {};
    // Its writer holds the lock while it lives: a lock taken here means nobody writes it.
    // The name must still be this inode when it is unlinked.
    if (::fstat(fd, &held) == 0 && S_ISREG(held.st_mode) &&
        held.st_mtime + kMinAbandonedAgeSeconds <= ::time(nullptr) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        ::lstat(path.c_str(), &named) == 0 && named.st_ino == held.st_ino && named.st_dev == held.st_dev &&
        ::unlink(path.c_str()) == 0) {
      removed.push_back(path);
    }
    ::close(fd);
  }
  return removed;
}

Result<AtomicFile> AtomicFile::create(const std::string& final_path, Options options) {
  const SplitPath parts = split(final_path);
  if (parts.name.empty() || parts.name == "." || parts.name == "..") {
    return Error(ErrorCode::kInvalidArgument, "'" + final_path + "' does not name a file");
  }
  (void)remove_abandoned_temporaries(final_path);
  if (options.existing == Existing::kRefuse && ::access(final_path.c_str(), F_OK) == 0) {
    return Error(ErrorCode::kAlreadyExists,
                 final_path + " already exists and must not be replaced");
  }
  std::string tmpl = (parts.dir == "/" ? "" : parts.dir) + "/." + parts.name + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "creating a temporary file for " + final_path + " in " + parts.dir + ": " +
                     errno_text(err));
  }
  // The lock on a description of its own (fd is closed before the rename), taken before
  // anything is written: until it is released the file is this process's.
  const int lock_fd = ::open(buf.data(), O_RDONLY | O_CLOEXEC);
  AtomicFile file(final_path, std::string(buf.data()), fd, lock_fd, options.existing);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    return file.io_error("locking", err);  // `file` unlinks it
  }
  if (::fchmod(fd, options.mode) != 0) {
    const int err = errno;
    return file.io_error("setting the mode of", err);  // `file` unlinks it
  }
  return file;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : final_path_(std::move(other.final_path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(other.fd_),
      lock_fd_(other.lock_fd_),
      existing_(other.existing_),
      size_(other.size_),
      committed_(other.committed_),
      closed_(other.closed_),
      failed_(other.failed_) {
  other.fd_ = -1;
  other.lock_fd_ = -1;
  other.closed_ = true;  // the moved-from object owns nothing to abandon
}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    abandon();
    final_path_ = std::move(other.final_path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = other.fd_;
    lock_fd_ = other.lock_fd_;
    existing_ = other.existing_;
    size_ = other.size_;
    committed_ = other.committed_;
    closed_ = other.closed_;
    failed_ = other.failed_;
    other.fd_ = -1;
    other.lock_fd_ = -1;
    other.closed_ = true;
  }
  return *this;
}

Error AtomicFile::io_error(const std::string& what, int err) const {
  return Error(ErrorCode::kIo, what + " " + temp_path_ + " (temporary file for " + final_path_ +
                                   "): " + errno_text(err));
}

Status AtomicFile::write(std::span<const std::uint8_t> bytes) {
  if (closed_ || fd_ < 0)
    return Error(ErrorCode::kInternal, "write to a closed AtomicFile for " + final_path_);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      return io_error("writing", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += bytes.size();
  return ok_status();
}

Status AtomicFile::pwrite(std::uint64_t offset, std::span<const std::uint8_t> bytes) {
  if (closed_ || fd_ < 0)
    return Error(ErrorCode::kInternal, "pwrite to a closed AtomicFile for " + final_path_);
  if (offset > size_ || bytes.size() > size_ - offset) {
    return Error(ErrorCode::kInternal, "pwrite beyond the bytes written to " + temp_path_);
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      return io_error("writing (pwrite)", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Status AtomicFile::commit() {
  if (closed_ || fd_ < 0)
    return Error(ErrorCode::kInternal, "commit of a closed AtomicFile for " + final_path_);
  if (failed_)
    return Error(ErrorCode::kInternal,
                 "refusing to commit " + final_path_ + " after a failed write");
  if (::fsync(fd_) != 0) return io_error("fsync of", errno);
  if (::close(fd_) != 0) {
    const int err = errno;
    fd_ = -1;
    return io_error("closing", err);
  }
  fd_ = -1;
  if (existing_ == Existing::kReplace) {
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) return io_error("renaming", errno);
  } else {
    // link(2) fails with EEXIST instead of replacing: the check and the publication are
    // one step. The temporary name is removed afterwards.
    if (::link(temp_path_.c_str(), final_path_.c_str()) != 0) {
      const int err = errno;
      if (err == EEXIST) {
        return Error(ErrorCode::kAlreadyExists,
                     final_path_ + " appeared while it was being written; not replaced");
      }
      return io_error("linking", err);
    }
    ::unlink(temp_path_.c_str());
  }
  release_lock();  // the temporary name is gone: nothing left to protect
  committed_ = true;
  closed_ = true;
  return fsync_directory(split(final_path_).dir);
}

void AtomicFile::release_lock() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

void AtomicFile::abandon() {
  if (closed_) {
    release_lock();
    return;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  release_lock();  // after the unlink: a cleaner never sees the name unlocked
  closed_ = true;
}

int open_unnamed_file(const std::string& dir, const std::string& name_prefix, bool try_o_tmpfile) {
  const std::string where = dir.empty() ? std::string(".") : dir;
#ifdef O_TMPFILE
  if (try_o_tmpfile) {
    const int fd = ::open(where.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return -1;
  }
#else
  (void)try_o_tmpfile;
#endif
  std::string tmpl = (where.back() == '/' ? where : where + "/") + name_prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return -1;
  if (::unlink(buf.data()) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

int pwrite_all(int fd, const void* data, std::size_t bytes, std::uint64_t offset) {
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

int pread_all(int fd, void* data, std::size_t bytes, std::uint64_t offset) {
  auto* p = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace persoflow::formats
