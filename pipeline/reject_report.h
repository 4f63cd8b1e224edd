// The JSONL reject report of a run: one line per rejected record, naming the record
// number, its byte offset in the decrypted stream, the card id when it is known, the
// field and the reason. Sensitive values never appear; a PAN appears masked 6/4 only
// where the profile says reveal="mask-pan". Published atomically after the run's XOF,
// or alone when the run fails on its reject limit, or not at all.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "engine/result.h"
#include "formats/atomic_file.h"

namespace persoflow::pipeline {

struct Reject {
  std::uint64_t record = 0;    // 1-based record number; 0 for a problem between records
  std::uint64_t offset = 0;    // byte offset in the decrypted content
  std::string card_id;         // empty when unknown
  std::string field;           // the attribute, empty for record-level problems
  std::string category;        // malformed | missing | invalid | luhn | duplicate | field-encryption
  std::string reason;          // never quotes a sensitive value
  std::string shown_value;     // masked PAN or a clear (non-sensitive) value; usually empty
};

class RejectReport {
 public:
  // No file is written when `path` is empty; counts are kept either way.
  static Result<RejectReport> create(const std::string& path);

  Status add(const Reject& reject);
  Status commit();  // publishes the file (when there is one)

  std::uint64_t count() const { return count_; }
  // Rejects that concern a record (record number > 0), as opposed to the stream between records.
  std::uint64_t record_count() const { return record_count_; }
  const std::map<std::string, std::uint64_t>& by_category() const { return by_category_; }

 private:
  std::optional<formats::AtomicFile> file_;
  std::uint64_t count_ = 0;
  std::uint64_t record_count_ = 0;
  std::map<std::string, std::uint64_t> by_category_;
};

// One JSONL line (with its newline) for a reject.
std::string reject_json_line(const Reject& reject);

}  // namespace persoflow::pipeline
