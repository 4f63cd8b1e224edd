// AuditLog::append and the process's audit origin. Verification is in audit_verify.cpp,
// the line format in audit_entry.cpp.
#include "formats/audit_log.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/audit_entry.h"

namespace persoflow::formats {
namespace {

using Json = nlohmann::ordered_json;

// Owns a file descriptor; closing it also releases the flock.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string errno_text(int err) { return std::strerror(err); }

bool valid_event_name(std::string_view event) {
  if (event.empty() || event.size() > 64) return false;
  return std::all_of(event.begin(), event.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

std::string utc_now_rfc3339() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

// The chain's end: the last line's seq and hash (0 and zeros for an empty file).
struct Tail {
  std::uint64_t seq = 0;
  std::string hash{audit_entry::kZeroHash};
};

Result<Tail> read_tail(int fd, const std::string& path, std::uint64_t size) {
  if (size == 0) return Tail{};
  const std::string refused = "audit log " + path + ": nothing appended: ";
  const std::string advice = "; run 'persoflow audit verify " + path + "' and see docs/audit.md";
  // The last line, its newline, and the newline before it.
  const std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(size, kAuditMaxLineBytes + 2));
  std::string buf(want, '\0');
  std::size_t got = 0;
  while (got < want) {
    const ssize_t r =
        ::pread(fd, buf.data() + got, want - got, static_cast<off_t>(size - want + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return Error(ErrorCode::kIo, "cannot read audit log " + path + ": " +
                                       (r < 0 ? errno_text(errno) : "short read"));
    }
    got += static_cast<std::size_t>(r);
  }
  if (buf.back() != '\n') {
    return Error(ErrorCode::kIntegrity, refused +
                                            "its last line is incomplete (no newline at the end: "
                                            "an interrupted write or a cut file)" +
                                            advice);
  }
  const std::string_view view(buf.data(), buf.size() - 1);  // without the final newline
  const std::size_t nl = view.rfind('\n');
  if (nl == std::string_view::npos && want < size) {
    return Error(ErrorCode::kIntegrity, refused + "its last line is longer than " +
                                            std::to_string(kAuditMaxLineBytes) + " bytes" + advice);
  }
  const std::string_view line = nl == std::string_view::npos ? view : view.substr(nl + 1);
  audit_entry::Checked c = audit_entry::check_line(line);
  if (c.defect != AuditDefect::kNone) {
    return Error(ErrorCode::kIntegrity,
                 refused + "its last line is damaged (" + c.reason + ")" + advice);
  }
  return Tail{c.seq, std::move(c.hash)};
}

Status write_all(int fd, std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Error(ErrorCode::kIo, w < 0 ? errno_text(errno) : "write made no progress");
    done += static_cast<std::size_t>(w);
  }
  return ok_status();
}

// A new file's name survives a crash only once its directory is synced.
Status sync_parent_directory(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int raw = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) {
    return Error(ErrorCode::kIo,
                 "cannot open directory " + dir.string() + ": " + errno_text(errno));
  }
  UniqueFd fd(raw);
  if (::fsync(fd.get()) != 0) {
    return Error(ErrorCode::kIo,
                 "cannot sync directory " + dir.string() + ": " + errno_text(errno));
  }
  return ok_status();
}

}  // namespace

AuditOrigin AuditOrigin::of_this_process() {
  AuditOrigin o;
  if (const char* env = std::getenv("PERSOFLOW_OPERATOR"); env != nullptr && *env != '\0') {
    o.operator_name = env;
  } else {
    const uid_t uid = ::geteuid();
    const long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
        found->pw_name != nullptr && *found->pw_name != '\0') {
      o.operator_name = found->pw_name;
    } else {
      o.operator_name = std::to_string(uid);
    }
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) o.host = host;
  o.pid = ::getpid();
  return o;
}

Result<AuditEntryId> AuditLog::append(std::string_view event, const Json& details) const {
  if (!valid_event_name(event)) {
    return Error(ErrorCode::kInvalidArgument, "audit event name '" + std::string(event) +
                                                  "' is not 1 to 64 characters of a-z 0-9 . _ -");
  }
  if (!details.is_object()) {
    return Error(ErrorCode::kInvalidArgument,
                 "the details of audit event '" + std::string(event) + "' must be a JSON object");
  }
  const int raw = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (raw < 0) {
    const int err = errno;
    if (err == EISDIR) {
      return Error(ErrorCode::kInvalidArgument, "audit log " + path_ + " is not a regular file");
    }
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open audit log " + path_ + ": " + errno_text(err));
  }
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error(ErrorCode::kIo, "cannot stat audit log " + path_ + ": " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, "audit log " + path_ + " is not a regular file");
  }
  // One appender at a time, from reading the tail to fsync: no interleaving, no fork.
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) {
      return Error(ErrorCode::kIo, "cannot lock audit log " + path_ + ": " + errno_text(errno));
    }
  }
  if (::fstat(fd.get(), &st) != 0) {
    return Error(ErrorCode::kIo, "cannot stat audit log " + path_ + ": " + errno_text(errno));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  PF_ASSIGN_OR_RETURN(Tail tail, read_tail(fd.get(), path_, size));

  Json entry;
  entry["seq"] = tail.seq + 1;
  entry["time"] = utc_now_rfc3339();
  entry["event"] = std::string(event);
  entry["operator"] = origin_.operator_name;
  entry["host"] = origin_.host;
  entry["pid"] = origin_.pid;
  entry["details"] = details;
  entry["prev"] = tail.hash;
  PF_ASSIGN_OR_RETURN(audit_entry::Line line, audit_entry::write_line(entry));
  if (line.text.size() > kAuditMaxLineBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 "audit event '" + std::string(event) + "' is longer than " +
                     std::to_string(kAuditMaxLineBytes) + " bytes; nothing appended");
  }
  line.text += '\n';

  // A failed write or sync is cut back off, so the tail stays a complete line.
  auto undo = [&](const std::string& what, const Error& cause) {
    const bool cut = ::ftruncate(fd.get(), static_cast<off_t>(size)) == 0 && ::fsync(fd.get()) == 0;
    return Error(ErrorCode::kIo,
                 "cannot " + what + " audit log " + path_ + ": " + cause.message() +
                     (cut ? "; nothing appended" : "; the file may now end in a partial line"));
  };
  if (Status w = write_all(fd.get(), line.text); !w) return undo("write", w.error());
  if (::fsync(fd.get()) != 0) return undo("sync", Error(ErrorCode::kIo, errno_text(errno)));
  if (size == 0) PF_TRY_CTX(sync_parent_directory(path_), "audit log " + path_ + " created");
  return AuditEntryId{tail.seq + 1, std::move(line.hash)};
}

}  // namespace persoflow::formats
