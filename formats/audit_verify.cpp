// verify_audit_log: every line of an audit log checked alone (audit_entry.cpp) and
// against the line before it (seq, prev). Lines are read one at a time: a log of years
// is not held in memory.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "formats/audit_entry.h"
#include "formats/audit_log.h"

namespace persoflow::formats {
namespace {

// Yields the next line (without its newline) and whether a newline ended it; false at the end.
using NextLine = std::function<bool(std::string& line, bool& newline)>;

std::string entry_range(std::uint64_t from, std::uint64_t to) {
  return from == to ? "entry " + std::to_string(from) + " is"
                    : "entries " + std::to_string(from) + " to " + std::to_string(to) + " are";
}

Status verify_lines(const NextLine& next, const std::string& name, AuditVerifyReport& report) {
  report = AuditVerifyReport{};
  report.last_hash = std::string(audit_entry::kZeroHash);
  std::string line;
  bool newline = false;
  std::uint64_t number = 0;
  auto flag = [&](AuditDefect defect, std::string reason) {
    report.bad_line = number;
    report.defect = defect;
    report.reason = std::move(reason);
  };
  while (next(line, newline)) {
    ++number;
    if (!newline) {
      flag(AuditDefect::kTruncated,
           "the final line is incomplete (no newline at the end): an interrupted write or a "
           "truncated file");
      break;
    }
    audit_entry::Checked c = audit_entry::check_line(line);
    if (c.defect != AuditDefect::kNone) {
      flag(c.defect, std::move(c.reason));
      break;
    }
    const std::uint64_t expected = report.last_seq + 1;
    const std::string seq_text =
        "seq " + std::to_string(c.seq) + " where " + std::to_string(expected) + " was expected";
    if (c.seq > expected) {
      // Removed, or moved further down? Look for the expected entry in the rest of the file.
      std::uint64_t found_at = 0;
      for (std::uint64_t n = number + 1; found_at == 0 && next(line, newline); ++n) {
        if (audit_entry::peek_seq(line) == expected) found_at = n;
      }
      if (found_at != 0) {
        flag(AuditDefect::kReordered, seq_text + ", and entry " + std::to_string(expected) +
                                          " is at line " + std::to_string(found_at) +
                                          ": lines were reordered");
      } else {
        flag(AuditDefect::kRemoved,
             seq_text + ": " + entry_range(expected, c.seq - 1) + " missing (removed)");
      }
      break;
    }
    if (c.seq < expected) {
      flag(AuditDefect::kInserted, seq_text +
                                       ": the sequence goes back; a line was inserted before it, "
                                       "or an earlier entry copied here");
      break;
    }
    if (c.prev != report.last_hash) {
      flag(AuditDefect::kInserted,
           number == 1 ? "prev of the first line is not 64 zeros: the line was inserted, or the "
                         "log's head replaced"
                       : "prev is not the hash of line " + std::to_string(number - 1) +
                             ": a line was inserted here, or the line before it replaced");
      break;
    }
    report.entries = number;
    report.last_seq = c.seq;
    report.last_hash = std::move(c.hash);
  }
  if (!report.intact()) {
    return Error(ErrorCode::kIntegrity, "audit log " + name + ": line " +
                                            std::to_string(report.bad_line) + ": " + report.reason);
  }
  return ok_status();
}

}  // namespace

std::string_view audit_defect_name(AuditDefect defect) {
  switch (defect) {
    case AuditDefect::kNone:
      return "none";
    case AuditDefect::kTruncated:
      return "truncated";
    case AuditDefect::kMalformed:
      return "malformed";
    case AuditDefect::kEdited:
      return "edited";
    case AuditDefect::kRemoved:
      return "removed";
    case AuditDefect::kReordered:
      return "reordered";
    case AuditDefect::kInserted:
      return "inserted";
  }
  return "unknown";
}

Status verify_audit_text(std::string_view text, const std::string& name,
                         AuditVerifyReport& report) {
  std::size_t pos = 0;
  NextLine next = [&](std::string& line, bool& newline) {
    if (pos >= text.size()) return false;
    const std::size_t end = text.find('\n', pos);
    newline = end != std::string_view::npos;
    const std::size_t stop = newline ? end : text.size();
    line.assign(text.substr(pos, stop - pos));
    pos = stop + 1;
    return true;
  };
  return verify_lines(next, name, report);
}

Status verify_audit_log(const std::string& path, AuditVerifyReport& report) {
  report = AuditVerifyReport{};
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "audit log not found: " + path);
  }
  if (std::filesystem::is_directory(path, ec)) {
    return Error(ErrorCode::kIo, "cannot read audit log " + path + ": it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(ErrorCode::kIo, "cannot open audit log " + path + ": " + std::strerror(errno));
  }
  NextLine next = [&in](std::string& line, bool& newline) {
    if (!std::getline(in, line)) return false;
    newline = !in.eof();
    return true;
  };
  Status s = verify_lines(next, path, report);
  if (in.bad()) return Error(ErrorCode::kIo, "cannot read audit log " + path);
  return s;
}

}  // namespace persoflow::formats
