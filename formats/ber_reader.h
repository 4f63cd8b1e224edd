// Streaming reader of BER (ITU-T X.690) elements over a ByteSource, for parsers whose input
// may be larger than memory (CMS envelopes). engine/tlv.h parses whole buffers of definite
// lengths; this reader also takes indefinite lengths (80 ... 00 00), reads one header at a
// time and never holds more than the caller asks for.
//
// The reader keeps a stack of the constructed elements it is inside ("frames"). Every header
// is checked against the nearest enclosing definite length, so no length can run past its
// parent; every frame is closed with leave(), which checks that nothing is left in it.
// Errors are kParse and read "<context>: byte <offset>: <reason>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"
#include "formats/byte_source.h"

namespace persoflow::formats {

// Identifier octets read big-endian, as engine/tlv.h's Tag: "30" is 0x30, "A0" is 0xA0.
using BerTag = std::uint32_t;

inline constexpr BerTag kBerEndOfContents = 0x00;

struct BerElement {
  BerTag tag = 0;
  bool constructed = false;
  std::uint64_t offset = 0;             // of the first identifier byte
  std::size_t header_size = 0;          // identifier and length bytes
  std::optional<std::uint64_t> length;  // nullopt: indefinite (constructed only)

  std::uint64_t value_offset() const { return offset + header_size; }
};

struct BerReaderOptions {
  std::string context = "BER";  // prefix of every message
  std::size_t max_depth = 32;   // frames open at once
  bool definite_only = false;   // refuse indefinite lengths (parts that must be DER)
};

// "0x30", "0x9F1F": a tag as messages show it.
std::string format_ber_tag(BerTag tag);

class BerReader {
 public:
  explicit BerReader(ByteSource& source, BerReaderOptions options = {});

  // The tag of the next element in the open frame, without consuming anything; nullopt where
  // the frame ends (its definite end, or its end-of-contents 00 00) or, outside any frame,
  // where the input ends.
  Result<std::optional<BerTag>> peek_tag();

  // Reads the header of the next element in the open frame. `what` names what the caller
  // expects there ("recipientInfos SET"); messages quote it.
  Result<BerElement> next(std::string_view what);

  // next(), then "expected <what>, found tag 0xNN" unless the tag is `tag`.
  Result<BerElement> expect(BerTag tag, std::string_view what);

  // Opens a constructed element that next() returned: its children come next. `name` is
  // quoted by messages about the frame ("EncryptedContentInfo").
  Status enter(const BerElement& element, std::string name);

  // Closes the open frame: it must have nothing left; an indefinite one's 00 00 is consumed.
  Status leave();

  // The value bytes of a definite-length element that next() returned, min_length to
  // max_length of them. For a constructed element these are its children's encodings, raw.
  Result<Bytes> read_value(const BerElement& element, std::size_t min_length,
                           std::size_t max_length, std::string_view what);

  // Skips an element that next() returned. Constructed elements are walked, not jumped, so
  // their children are checked too (and nesting stays within max_depth).
  Status skip(const BerElement& element, std::string_view what);

  // Consumes up to `max` bytes of the value of a primitive element that is being read piece by
  // piece; a short read is reported as truncation "inside <what>".
  Result<std::span<const std::uint8_t>> read_piece(std::size_t max, std::string_view what);

  // True when the input has no byte left (after the last frame was left).
  Result<bool> at_end_of_input() { return source_->at_end(); }

  std::size_t depth() const { return frames_.size(); }
  std::uint64_t offset() const { return source_->offset(); }
  std::string_view context() const { return options_.context; }

  // "<context>: byte <offset>: <reason>", kParse.
  Error error_at(std::uint64_t offset, std::string_view reason) const;

  // "<context>: byte <end of input>: truncated: the input ends <where>", kParse.
  Error truncated(std::uint64_t end_offset, std::string_view where) const;

 private:
  struct Frame {
    std::string name;
    std::uint64_t start = 0;
    std::optional<std::uint64_t> end;  // definite frames only
    std::uint64_t limit = 0;           // nearest definite end, this frame's or an ancestor's
    std::string limit_name;            // the frame that sets `limit`
  };

  std::uint64_t limit() const;
  std::string_view limit_name() const;
  std::string where_in_frame() const;  // " (inside X, started at byte N)" or ""

  ByteSource* source_;
  BerReaderOptions options_;
  std::vector<Frame> frames_;
};

}  // namespace persoflow::formats
