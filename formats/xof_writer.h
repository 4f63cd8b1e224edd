// Writes an XOF: header, segments in order, footer with the integrity tag, trailer.
//
//   auto w = XofWriter::create(path, header);          // temporary file next to `path`
//   for each segment, in order: w->append(encode_segment(header, n, cards, dkeps));
//   w->finish(integrity_key, cards, rejects);          // fsync, rename, fsync directory
//
// Nothing appears under `path` before finish() returns successfully: readers never see a
// partial XOF. An existing file at `path` is replaced atomically by finish() (reruns
// re-import into the same name; a reader that has the old file open keeps reading it).
// A writer destroyed without a successful finish() removes its temporary file.
//
// encode_segment() runs in parallel workers; append() is called by one thread, in
// segment order (a sequencer in the pipeline restores the order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/key_ops.h"
#include "engine/result.h"
#include "formats/atomic_file.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"

namespace persoflow::formats {

class XofWriter {
 public:
  // Validates the header and writes it (counts zero, patched by finish()) to a temporary
  // file in the directory of final_path. kNotFound when the directory does not exist.
  static Result<XofWriter> create(const std::string& final_path, XofHeader header);

  XofWriter(XofWriter&&) noexcept = default;
  XofWriter& operator=(XofWriter&&) noexcept = default;
  XofWriter(const XofWriter&) = delete;
  XofWriter& operator=(const XofWriter&) = delete;
  ~XofWriter() = default;  // an unfinished file is abandoned by AtomicFile

  // Appends the next segment: its number must be segments_written(). kInternal for a
  // segment out of order or after a failed write.
  Status append(const EncodedSegment& segment);

  // Sets record_count (must equal the cards appended) and reject_count in the header,
  // writes the footer (tag by `integrity`, whose KCV must be the header's) and trailer,
  // and publishes the file. On error nothing is published.
  Status finish(MacKey& integrity, std::uint64_t record_count, std::uint64_t reject_count);

  const XofHeader& header() const { return header_; }
  std::uint32_t segments_written() const { return static_cast<std::uint32_t>(table_.size()); }
  std::uint64_t cards_written() const { return cards_; }
  const std::string& final_path() const { return file_.final_path(); }
  const std::string& temp_path() const { return file_.temp_path(); }

 private:
  XofWriter(AtomicFile file, XofHeader header, Bytes header_bytes)
      : file_(std::move(file)),
        header_(std::move(header)),
        header_bytes_(std::move(header_bytes)) {}
  Error state_error(const std::string& what) const;

  AtomicFile file_;
  XofHeader header_;
  Bytes header_bytes_;  // as written; patched in memory too, to hash the final header
  std::vector<XofSegmentEntry> table_;
  std::uint64_t cards_ = 0;
  bool broken_ = false;  // a write failed: only destruction is left
  bool finished_ = false;
};

}  // namespace persoflow::formats
