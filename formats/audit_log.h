// The audit trail: an append-only, hash-chained JSONL file (docs/audit.md).
//
// Each line is one JSON object whose members are, in this order and nothing else:
//   seq, time, event, operator, host, pid, details, prev, hash
// written without spaces, UTF-8 (invalid bytes replaced by U+FFFD), ending in "\n".
//
//   hash = lower-hex SHA-256 of the line's bytes as written, with its final
//          `,"hash":"<64 hex>"}` replaced by `}` -- that is, of the JSON object holding
//          every member but "hash", serialized exactly as it appears on the line.
//   prev = the "hash" of the line before, or 64 zeros on line 1.
//
// A verifier needs no JSON canonicalization: it recomputes each hash from the bytes.
// Details never carry secrets: URIs, KCVs, digests, counts and card ids are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "engine/result.h"

namespace persoflow::formats {

// The longest line append() writes, newline excluded. Bounds the tail read under the lock.
inline constexpr std::size_t kAuditMaxLineBytes = 64 * 1024;

// Who writes the entries.
struct AuditOrigin {
  std::string operator_name;  // the "operator" member
  std::string host;
  std::int64_t pid = 0;

  // $PERSOFLOW_OPERATOR if set and not empty; else the login name of the effective uid
  // (getpwuid); else that uid in decimal. gethostname(), getpid().
  static AuditOrigin of_this_process();
};

// What one append wrote.
struct AuditEntryId {
  std::uint64_t seq = 0;
  std::string hash;  // 64 lower-case hex digits
};

// One audit log file. Holds only its path and origin: every append opens, locks, appends,
// fsyncs and closes, so any number of persoflow processes can share one log.
class AuditLog {
 public:
  explicit AuditLog(std::string path, AuditOrigin origin = AuditOrigin::of_this_process())
      : path_(std::move(path)), origin_(std::move(origin)) {}

  // Appends one entry, time now (UTC). Opens the file O_APPEND|O_CREAT (mode 0600 when
  // new) and holds an exclusive flock(2) over reading the last line, writing the new one
  // and fsync, so concurrent appenders neither interleave nor fork the chain.
  //   `event`: 1 to 64 characters of [a-z0-9._-] (kInvalidArgument otherwise);
  //   `details`: a JSON object (kInvalidArgument otherwise); the line at most
  //   kAuditMaxLineBytes (kInvalidArgument).
  // The last line must be a complete, self-consistent entry (valid JSON, all members,
  // its own hash right); otherwise nothing is written and the error is kIntegrity.
  // kNotFound if the directory does not exist, kIo for other system failures, kInvalidArgument
  // if the path is not a regular file. A failed write is cut back off the file.
  Result<AuditEntryId> append(std::string_view event, const nlohmann::ordered_json& details) const;

  const std::string& path() const { return path_; }
  const AuditOrigin& origin() const { return origin_; }

 private:
  std::string path_;
  AuditOrigin origin_;
};

// What is wrong with the first bad line.
enum class AuditDefect : std::uint8_t {
  kNone,       // the chain is intact
  kTruncated,  // the final line has no newline: an interrupted write or a cut file
  kMalformed,  // not JSON, a member missing, out of order, of the wrong type, extra
  kEdited,     // well-formed, but its hash does not match its content
  kRemoved,    // seq jumps forward and the missing entries appear nowhere later
  kReordered,  // seq jumps forward and the expected entry appears later in the file
  kInserted,   // seq as expected but prev is not the previous line's hash, or seq goes back
};

std::string_view audit_defect_name(AuditDefect defect);  // "none", "truncated", ...

struct AuditVerifyReport {
  std::uint64_t entries = 0;   // lines that verified (all of them when intact)
  std::uint64_t last_seq = 0;  // seq of the last line that verified (0: none)
  std::string last_hash;       // its hash (64 zeros: none)
  std::uint64_t bad_line = 0;  // 1-based number of the first bad line; 0 when intact
  AuditDefect defect = AuditDefect::kNone;
  std::string reason;  // why that line is bad, for people

  bool intact() const { return defect == AuditDefect::kNone; }
};

// Checks every line of the log at `path`: valid JSON, every member present in order with
// its type, seq consecutive from 1, prev equal to the previous line's hash, own hash right,
// final line complete. Fills `report` in every case where the file could be read; returns
// ok when the chain is intact, kIntegrity ("FILE: line N: reason") when it is not,
// kNotFound when the file does not exist, kIo when it cannot be read. An empty file is an
// intact log of 0 entries.
Status verify_audit_log(const std::string& path, AuditVerifyReport& report);

// The same over a log held in memory (`name` is used in the message).
Status verify_audit_text(std::string_view text, const std::string& name, AuditVerifyReport& report);

}  // namespace persoflow::formats
