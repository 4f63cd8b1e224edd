// Incremental splitting of a decrypted issuer file into records (docs/formats/records.md).
//
// The plaintext arrives in chunks of any size (64 KiB, or 1 byte); feed() them in order,
// draining next() after each, and call finish() at the end of the stream. The splitter
// buffers only the current partial record (at most SplitterLimits::max_record_bytes) plus
// the complete items not yet taken with next(): a 10 GB file never needs more than that.
//
//   auto s = RecordSplitter::create(profile.records);
//   while (read chunk) { s->feed(chunk); while (auto item = s->next()) route(*item); }
//   s->finish(); while (auto item = s->next()) route(*item);
//
// Every item is either a Record or a RecordError, in stream order. An error never stops
// the stream: the splitter resynchronises and goes on with the next record. Record
// contents are cardholder data: a RecordError says what is wrong and where (record
// number, byte offset, element name from the profile), never what the bytes were.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "engine/profile.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow::formats {

// One complete record, as it appeared in the stream.
struct Record {
  std::uint64_t number = 0;  // 1-based, in stream order; errors about records use numbers too
  std::uint64_t offset = 0;  // of the record's first byte in the stream
  SecureBytes bytes;         // XML: "<card ...>...</card>" or "<card .../>";
                             // fixed width: the record without its line end
};

// A record or a region of the stream that could not be split.
struct RecordError {
  std::uint64_t number = 0;  // the record concerned; 0 when the problem is outside any record
  std::uint64_t offset = 0;  // stream byte offset where the record or the problem starts
  std::string reason;        // what is wrong; never quotes stream content

  // kParse, "record 3 at byte 120: <reason>" or "at byte 120: <reason>".
  Error to_error() const;
};

using SplitItem = std::variant<Record, RecordError>;

struct SplitterLimits {
  // XML records, and lines when RecordLayout::record_length is 0. Larger records are
  // reported as errors and skipped without being buffered.
  std::size_t max_record_bytes = std::size_t{1} << 20;
  // Element nesting inside one XML record (the record element is level 1).
  std::size_t max_record_depth = 64;
};

class RecordSplitter {
 public:
  // Fails (kInvalidArgument) when the layout cannot be split: an XML record element
  // that is not a plain element name, a fixed record_length above max_record_bytes,
  // a zero limit.
  static Result<RecordSplitter> create(const RecordLayout& layout, SplitterLimits limits = {});

  RecordSplitter(RecordSplitter&& other) noexcept;
  RecordSplitter& operator=(RecordSplitter&& other) noexcept;
  ~RecordSplitter();

  // The next bytes of the stream. Throws std::logic_error after finish() (a bug).
  void feed(std::span<const std::uint8_t> chunk);

  // The end of the stream: reports an unterminated record or malformed tail, if any.
  // Idempotent.
  void finish();

  // The next complete item, or nullopt until more bytes are fed (or, after finish(),
  // when the stream is exhausted).
  std::optional<SplitItem> next();

  // Record bytes held right now: the partial record plus the complete records not yet
  // taken with next(). Bounded by max_record_bytes + the records of the last chunk.
  std::size_t buffered_bytes() const;

  std::uint64_t bytes_fed() const;  // stream offset of the next byte to be fed
  bool finished() const;

  class Impl;  // one per RecordFormat, in record_splitter.cpp

 private:
  explicit RecordSplitter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace persoflow::formats
