// One line of the audit log (formats/audit_log.h, docs/audit.md): writing it with its
// hash, and checking it alone. Shared by AuditLog::append (which checks the last line
// before chaining to it) and verify_audit_log (which checks every line).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "engine/result.h"
#include "formats/audit_log.h"

namespace persoflow::formats::audit_entry {

// "prev" of the first line.
inline constexpr std::string_view kZeroHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The members of a line, in their order. "hash" is always last.
inline constexpr std::array<std::string_view, 9> kMembers = {
    "seq", "time", "event", "operator", "host", "pid", "details", "prev", "hash"};

// A line and its hash.
struct Line {
  std::string text;  // without the newline
  std::string hash;  // 64 lower-case hex digits
};

// Serializes `without_hash` (every member but "hash", in order) without spaces, UTF-8
// with invalid bytes replaced, then inserts `,"hash":"<SHA-256 of that serialization>"`
// before its closing brace.
Result<Line> write_line(const nlohmann::ordered_json& without_hash);

// A line checked on its own: JSON object, the nine members in order with their types,
// "hash" written last without spaces, and equal to the SHA-256 of the rest.
struct Checked {
  AuditDefect defect = AuditDefect::kNone;  // kMalformed or kEdited when bad
  std::string reason;
  std::uint64_t seq = 0;
  std::string prev;
  std::string hash;
};
Checked check_line(std::string_view line);

// The "seq" of a line if it has a numeric one, else 0 (no other check): to look ahead.
std::uint64_t peek_seq(std::string_view line);

}  // namespace persoflow::formats::audit_entry
