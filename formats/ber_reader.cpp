#include "formats/ber_reader.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

namespace persoflow::formats {
namespace {

constexpr std::uint8_t kConstructedBit = 0x20;
constexpr std::uint8_t kHighTagNumber = 0x1F;
constexpr std::uint8_t kMoreTagBytes = 0x80;
constexpr std::uint8_t kIndefiniteLength = 0x80;
constexpr std::uint8_t kReservedLength = 0xFF;
constexpr std::size_t kMaxTagBytes = 4;     // BerTag is 32 bits
constexpr std::size_t kMaxLengthBytes = 8;  // lengths are 64 bits
constexpr std::size_t kMaxHeaderBytes = kMaxTagBytes + 1 + kMaxLengthBytes;

std::string str(std::string_view s) { return std::string(s); }

// Tag bytes at the start of `bytes`: the tag and how many bytes it takes, or 0 bytes when
// `bytes` ends inside the tag, or kMaxTagBytes + 1 when the tag is longer than BerTag holds.
std::pair<BerTag, std::size_t> decode_tag(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return {0, 0};
  BerTag tag = bytes[0];
  std::size_t n = 1;
  if ((bytes[0] & kHighTagNumber) != kHighTagNumber) return {tag, n};
  while (true) {
    if (n == kMaxTagBytes) return {tag, kMaxTagBytes + 1};
    if (n >= bytes.size()) return {tag, 0};
    const std::uint8_t b = bytes[n++];
    tag = (tag << 8) | b;
    if ((b & kMoreTagBytes) == 0) return {tag, n};
  }
}

}  // namespace

std::string format_ber_tag(BerTag tag) {
  Bytes b;
  for (BerTag t = tag; t != 0; t >>= 8) b.insert(b.begin(), static_cast<std::uint8_t>(t));
  if (b.empty()) b.push_back(0);
  return "0x" + to_hex(b);
}

BerReader::BerReader(ByteSource& source, BerReaderOptions options)
    : source_(&source), options_(std::move(options)) {}

Error BerReader::error_at(std::uint64_t offset, std::string_view reason) const {
  return Error(ErrorCode::kParse,
               options_.context + ": byte " + std::to_string(offset) + ": " + str(reason));
}

Error BerReader::truncated(std::uint64_t end_offset, std::string_view where) const {
  return error_at(end_offset, "truncated: the file ends " + str(where));
}

std::uint64_t BerReader::limit() const {
  return frames_.empty() ? std::numeric_limits<std::uint64_t>::max() : frames_.back().limit;
}

std::string_view BerReader::limit_name() const {
  return frames_.empty() ? std::string_view("the file") : frames_.back().limit_name;
}

std::string BerReader::where_in_frame() const {
  if (frames_.empty()) return "";
  return " (inside " + frames_.back().name + ", started at byte " +
         std::to_string(frames_.back().start) + ")";
}

Result<std::optional<BerTag>> BerReader::peek_tag() {
  const std::uint64_t at = offset();
  const bool in_frame = !frames_.empty();
  if (in_frame && frames_.back().end && at >= *frames_.back().end) return std::optional<BerTag>{};
  PF_ASSIGN_OR_RETURN(auto head, source_->peek(kMaxTagBytes));
  if (head.empty()) {
    if (!in_frame) return std::optional<BerTag>{};
    return truncated(at, "where the next element or the end of " + frames_.back().name +
                             " should be" + where_in_frame());
  }
  if (in_frame && !frames_.back().end && head[0] == kBerEndOfContents) {
    if (head.size() < 2) {
      return truncated(at + head.size(),
                       "inside the end-of-contents of " + frames_.back().name + where_in_frame());
    }
    if (head[1] == 0) return std::optional<BerTag>{};
  }
  const auto [tag, n] = decode_tag(head);
  if (n == 0) return truncated(at + head.size(), "inside a tag" + where_in_frame());
  return std::optional<BerTag>(tag);
}

Result<BerElement> BerReader::next(std::string_view what) {
  const std::uint64_t start = offset();
  if (!frames_.empty() && frames_.back().end && start >= *frames_.back().end) {
    return error_at(start, "expected " + str(what) + ", but " + frames_.back().name + " ends here");
  }
  if (source_->max_peek() < kMaxHeaderBytes) {
    return Error(ErrorCode::kInternal, "BerReader: the source's window is below 13 bytes");
  }
  PF_ASSIGN_OR_RETURN(auto head, source_->peek(kMaxHeaderBytes));
  const std::uint64_t input_end = start + head.size();  // where the input ends, if it does
  if (head.empty()) {
    return truncated(start, "where " + str(what) + " should start" + where_in_frame());
  }

  BerElement e;
  e.offset = start;
  e.constructed = (head[0] & kConstructedBit) != 0;
  const auto [tag, tag_size] = decode_tag(head);
  if (tag_size == 0) return truncated(input_end, "inside the tag of " + str(what));
  if (tag_size > kMaxTagBytes) {
    return error_at(start, "tag longer than 4 bytes where " + str(what) + " was expected");
  }
  e.tag = tag;
  std::size_t pos = tag_size;
  if (pos >= head.size()) return truncated(input_end, "before the length of " + str(what));
  const std::uint8_t l0 = head[pos++];
  if (l0 < kIndefiniteLength) {
    e.length = l0;
  } else if (l0 == kIndefiniteLength) {
    if (!e.constructed) {
      return error_at(start, "indefinite length on primitive tag " + format_ber_tag(tag) +
                                 " where " + str(what) + " was expected");
    }
    if (options_.definite_only) {
      return error_at(start, "indefinite length in " + str(what) + ", which must be DER");
    }
  } else if (l0 == kReservedLength) {
    return error_at(start + pos - 1, "reserved length byte 0xFF in " + str(what));
  } else {
    const std::size_t n = l0 & 0x7F;
    if (n > kMaxLengthBytes) {
      return error_at(start + pos - 1, "length of " + str(what) + " takes " + std::to_string(n) +
                                           " bytes (at most 8 are accepted)");
    }
    if (pos + n > head.size()) return truncated(input_end, "inside the length of " + str(what));
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | head[pos++];
    e.length = v;
  }
  e.header_size = pos;

  const std::uint64_t lim = limit();
  if (e.header_size > lim - start) {
    return error_at(start, "the header of " + str(what) + " runs past the end of " +
                               str(limit_name()) + " at byte " + std::to_string(lim));
  }
  if (e.length && *e.length > lim - e.value_offset()) {
    return error_at(start, "length " + std::to_string(*e.length) + " of " + str(what) + " (tag " +
                               format_ber_tag(tag) + ") runs past the end of " + str(limit_name()) +
                               " at byte " + std::to_string(lim));
  }
  PF_TRY(source_->read(e.header_size));
  return e;
}

Result<BerElement> BerReader::expect(BerTag tag, std::string_view what) {
  PF_ASSIGN_OR_RETURN(BerElement e, next(what));
  if (e.tag != tag) {
    return error_at(e.offset, "expected " + str(what) + ", found tag " + format_ber_tag(e.tag));
  }
  return e;
}

Status BerReader::enter(const BerElement& element, std::string name) {
  if (!element.constructed || offset() != element.value_offset()) {
    return Error(ErrorCode::kInternal, "BerReader: enter() on an element not just read");
  }
  if (frames_.size() >= options_.max_depth) {
    return error_at(element.offset, "nesting deeper than " + std::to_string(options_.max_depth) +
                                        " levels at " + name);
  }
  Frame f;
  f.start = element.offset;
  if (element.length) {
    f.end = element.value_offset() + *element.length;
    f.limit = *f.end;
    f.limit_name = name;
  } else {
    f.limit = limit();
    f.limit_name = str(limit_name());
  }
  f.name = std::move(name);
  frames_.push_back(std::move(f));
  return ok_status();
}

Status BerReader::leave() {
  if (frames_.empty()) return Error(ErrorCode::kInternal, "BerReader: leave() outside any element");
  const Frame& f = frames_.back();
  const std::uint64_t at = offset();
  if (f.end) {
    if (at < *f.end) {
      PF_ASSIGN_OR_RETURN(auto tag, peek_tag());
      return error_at(
          at, "expected the end of " + f.name + ", found tag " + format_ber_tag(tag.value_or(0)));
    }
  } else {
    PF_ASSIGN_OR_RETURN(auto head, source_->peek(2));
    const std::string started = " (started at byte " + std::to_string(f.start) + ")";
    if (head.empty()) return truncated(at, "before the end-of-contents of " + f.name + started);
    if (head.size() == 1 && head[0] == 0) {
      return truncated(at + 1, "inside the end-of-contents of " + f.name + started);
    }
    if (head.size() < 2 || head[0] != 0 || head[1] != 0) {
      const auto tag = decode_tag(head).first;
      return error_at(
          at, "expected the end-of-contents of " + f.name + ", found tag " + format_ber_tag(tag));
    }
    if (2 > f.limit - at) {
      return error_at(at, "the end-of-contents of " + f.name + " runs past the end of " +
                              f.limit_name + " at byte " + std::to_string(f.limit));
    }
    PF_TRY(source_->read(2));
  }
  frames_.pop_back();
  return ok_status();
}

Result<Bytes> BerReader::read_value(const BerElement& element, std::size_t min_length,
                                    std::size_t max_length, std::string_view what) {
  if (!element.length || offset() != element.value_offset()) {
    return Error(ErrorCode::kInternal, "BerReader: read_value() on an element not just read");
  }
  const std::uint64_t n = *element.length;
  if (n > max_length) {
    return error_at(element.offset, str(what) + " of " + std::to_string(n) +
                                        " bytes exceeds the limit of " +
                                        std::to_string(max_length));
  }
  if (n < min_length) {
    return error_at(element.offset, n == 0 ? str(what) + " is empty"
                                           : str(what) + " of " + std::to_string(n) +
                                                 " bytes is below the minimum of " +
                                                 std::to_string(min_length));
  }
  Bytes out;
  out.reserve(static_cast<std::size_t>(n));
  while (out.size() < n) {
    PF_ASSIGN_OR_RETURN(auto piece, read_piece(static_cast<std::size_t>(n) - out.size(),
                                               str(what) + " (started at byte " +
                                                   std::to_string(element.offset) + ")"));
    out.insert(out.end(), piece.begin(), piece.end());
  }
  return out;
}

Result<std::span<const std::uint8_t>> BerReader::read_piece(std::size_t max,
                                                            std::string_view what) {
  PF_ASSIGN_OR_RETURN(auto piece, source_->read_some(max));
  if (piece.empty() && max > 0) return truncated(offset(), "inside " + str(what));
  return piece;
}

Status BerReader::skip(const BerElement& element, std::string_view what) {
  if (!element.constructed) {
    const std::uint64_t n = element.length.value_or(0);
    PF_ASSIGN_OR_RETURN(const std::uint64_t got, source_->skip(n));
    if (got < n) {
      return truncated(offset(), "inside " + str(what) + " (started at byte " +
                                     std::to_string(element.offset) + ")");
    }
    return ok_status();
  }
  // Children are named after the element being skipped, whatever their depth.
  PF_TRY(enter(element, str(what)));
  const std::string child = "an element of " + str(what);
  while (true) {
    PF_ASSIGN_OR_RETURN(auto tag, peek_tag());
    if (!tag) break;
    PF_ASSIGN_OR_RETURN(BerElement e, next(child));
    PF_TRY(skip(e, what));
  }
  return leave();
}

}  // namespace persoflow::formats
