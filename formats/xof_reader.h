// Reads an XOF written by XofWriter. open() checks, before returning, everything that
// does not need the DKeps: magic, trailer, footer bounds and layout, the header's SHA-256
// against the footer, and the footer's tag under the integrity key (an HSM MAC). Segments
// are then read on demand, each checked against its SHA-256 in the authenticated segment
// table before it is parsed; decode_segment() decrypts with the DKeps (AES-GCM, AAD bound
// to file, segment and class).
//
// Errors: kIntegrity for tampering, a hash or tag mismatch, wrong keys, segments
// reordered, removed or spliced from another file; kParse for malformed or truncated
// bytes. Messages read "<path>: [segment <n>: ]offset <byte>: <reason>" and never quote
// an attribute value.
//
// open(), header() and the const members are safe to use from several threads at once
// (reads use pread); find_card() and verify_all() build the card index and are not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/key_ops.h"
#include "engine/result.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"

namespace persoflow::formats {

class XofReader {
 public:
  // kNotFound when the file does not exist, kIo when it cannot be read.
  static Result<XofReader> open(const std::string& path, MacKey& integrity);

  XofReader(XofReader&& other) noexcept;
  XofReader& operator=(XofReader&& other) noexcept;
  XofReader(const XofReader&) = delete;
  XofReader& operator=(const XofReader&) = delete;
  ~XofReader();

  const XofHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  std::size_t segment_count() const { return table_.size(); }
  const std::vector<XofSegmentEntry>& segment_table() const { return table_; }

  // The DKeps' KCVs against the header (check_xof_class_keys): a wrong key named before
  // any decryption fails.
  Status check_keys(std::span<AeadKey* const> class_keys) const;

  // Reads every segment, checks its hash and structure, and (re)builds the card index.
  Status verify_all();

  // Segment i, hash-checked and parsed. kInvalidArgument when i >= segment_count().
  Result<XofSegment> read_segment(std::size_t i) const;

  // The cards of a segment read by read_segment(), decrypted with the class DKeps
  // (class_keys[c] for header().classes[c]).
  Result<std::vector<XofCard>> decode_segment(const XofSegment& segment,
                                              std::span<AeadKey* const> class_keys) const;
  // The same for the classes whose key is not null only (decode_xof_segment_classes).
  Result<std::vector<XofCard>> decode_segment_classes(const XofSegment& segment,
                                                      std::span<AeadKey* const> class_keys) const;

  // (segment, position in the segment) of the first card with this id, nullopt if none.
  // The first call reads every segment (verify_all) to build the index.
  Result<std::optional<std::pair<std::size_t, std::size_t>>> find_card(std::string_view card_id);

 private:
  XofReader(int fd, std::string path, std::uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  Result<Bytes> read_at(std::uint64_t offset, std::size_t length, std::string_view what) const;
  Status load(MacKey& integrity);
  std::string segment_where(std::size_t i) const;

  int fd_ = -1;
  std::string path_;
  std::uint64_t size_ = 0;
  XofHeader header_;
  std::vector<XofSegmentEntry> table_;
  std::optional<std::map<std::string, std::pair<std::size_t, std::size_t>, std::less<>>> index_;
};

}  // namespace persoflow::formats
