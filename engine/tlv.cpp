#include "engine/tlv.h"

#include <string_view>
#include <utility>

namespace persoflow {
namespace {

constexpr std::uint8_t kTagNumberMask = 0x1F;    // b5-b1 of the first tag byte
constexpr std::uint8_t kConstructedBit = 0x20;   // b6 of the first tag byte
constexpr std::uint8_t kMoreTagBytesBit = 0x80;  // b8 of a subsequent tag byte
constexpr std::size_t kMaxTagBytes = 3;
constexpr std::size_t kMaxLengthBytes = 3;  // after the 8x byte: 81, 82, 83

std::string hex_byte(std::uint8_t b) { return to_hex(std::span<const std::uint8_t>(&b, 1)); }

// The tag's bytes, most significant first, without leading zero bytes.
Bytes tag_bytes(Tag tag) {
  Bytes b;
  for (Tag t = tag; t != 0; t >>= 8) b.insert(b.begin(), static_cast<std::uint8_t>(t));
  return b;
}

Error parse_error(std::string message) {
  return Error(ErrorCode::kParse, "BER-TLV: " + std::move(message));
}

// The bytes [begin, end) of `data` being parsed, and how to name their end in errors.
struct Scope {
  std::span<const std::uint8_t> data;
  std::size_t end;
  std::string_view end_name;  // "the data" or "the value of template E3 at offset 0"
};

// Reads the header at `offset`; with check_value, also requires the value to end in scope.
Result<TlvHeader> read_header(const Scope& scope, std::size_t offset, bool check_value) {
  const auto& data = scope.data;
  const std::string at = " at offset " + std::to_string(offset);
  if (offset >= scope.end) {
    return parse_error("no tag at offset " + std::to_string(offset) + " (end of " +
                       std::string(scope.end_name) + ")");
  }

  TlvHeader h;
  std::uint8_t b = data[offset];
  h.tag = b;
  h.constructed = (b & kConstructedBit) != 0;
  std::size_t n = 1;
  bool more = (b & kTagNumberMask) == kTagNumberMask;
  while (more) {
    if (n == kMaxTagBytes) {
      return parse_error("tag" + at + " is longer than 3 bytes (" +
                         to_hex(data.subspan(offset, n)) + " continues)");
    }
    if (offset + n >= scope.end) {
      return parse_error("tag" + at + " is truncated (" + to_hex(data.subspan(offset, n)) +
                         " announces another byte, but " + std::string(scope.end_name) + " ends)");
    }
    b = data[offset + n];
    h.tag = (h.tag << 8) | b;
    ++n;
    more = (b & kMoreTagBytesBit) != 0;
  }

  const std::size_t pos = offset + n;
  const std::string len_at = " at offset " + std::to_string(pos);
  if (pos >= scope.end) {
    return parse_error("length missing" + len_at + " (" + std::string(scope.end_name) +
                       " ends after tag " + format_tag(h.tag) + ")");
  }
  const std::uint8_t l0 = data[pos];
  std::size_t length_bytes = 1;
  std::size_t length = 0;
  if (l0 < 0x80) {
    length = l0;
  } else if (l0 == 0x80) {
    return parse_error("indefinite length (80)" + len_at +
                       " is not allowed (EMV and GlobalPlatform use definite lengths only)");
  } else if (l0 > 0x80 + kMaxLengthBytes) {
    return parse_error("length" + len_at + " starts with " + hex_byte(l0) +
                       ": more than 3 length bytes are not supported (at most 83)");
  } else {
    const std::size_t k = l0 & 0x7Fu;
    const std::size_t left = scope.end - pos - 1;
    if (k > left) {
      return parse_error("length" + len_at + " is truncated (" + hex_byte(l0) + " needs " +
                         std::to_string(k) + " length bytes after it, " + std::to_string(left) +
                         " left)");
    }
    for (std::size_t i = 0; i < k; ++i) length = (length << 8) | data[pos + 1 + i];
    length_bytes += k;
  }

  const std::size_t value_start = pos + length_bytes;
  const std::size_t left = scope.end - value_start;
  if (check_value && length > left) {
    return parse_error("length" + len_at + " runs past the end of " + std::string(scope.end_name) +
                       " (needs " + std::to_string(length) + " bytes, " + std::to_string(left) +
                       " left)");
  }
  h.header_size = n + length_bytes;
  h.value_length = length;
  return h;
}

// Parses the TLVs in [begin, scope.end); recurses into constructed values when depth >= 0.
Status parse_range(const Scope& scope, std::size_t begin, const TlvParseOptions& options,
                   bool recurse, int depth, std::vector<Tlv>& out) {
  std::size_t pos = begin;
  while (pos < scope.end) {
    if (scope.data[pos] == 0x00) {
      if (options.skip_zero_padding) {
        ++pos;
        continue;
      }
      return parse_error("padding byte 00 at offset " + std::to_string(pos) +
                         " where a tag is expected (padding skipping is off)");
    }
    PF_ASSIGN_OR_RETURN(TlvHeader h, read_header(scope, pos, /*check_value=*/true));
    Tlv tlv;
    tlv.tag = h.tag;
    tlv.constructed = h.constructed;
    tlv.offset = pos;
    tlv.header_size = h.header_size;
    tlv.value = scope.data.subspan(pos + h.header_size, h.value_length);
    if (recurse && tlv.constructed) {
      if (depth >= kMaxTlvDepth) {
        return parse_error("template " + format_tag(tlv.tag) + " at offset " + std::to_string(pos) +
                           " is nested deeper than " + std::to_string(kMaxTlvDepth) + " levels");
      }
      const std::string name =
          "the value of template " + format_tag(tlv.tag) + " at offset " + std::to_string(pos);
      const Scope inner{scope.data, tlv.value_offset() + tlv.value.size(), name};
      PF_TRY(parse_range(inner, tlv.value_offset(), options, recurse, depth + 1, tlv.children));
    }
    pos += tlv.encoded_size();
    out.push_back(std::move(tlv));
  }
  return ok_status();
}

Result<std::vector<Tlv>> parse(std::span<const std::uint8_t> data, const TlvParseOptions& options,
                               bool recurse) {
  std::vector<Tlv> out;
  const Scope scope{data, data.size(), "the data"};
  PF_TRY(parse_range(scope, 0, options, recurse, 0, out));
  return out;
}

}  // namespace

bool tag_is_constructed(Tag tag) {
  const std::size_t n = tag_size(tag);
  if (n == 0) return false;
  const auto first = static_cast<std::uint8_t>(tag >> (8 * (n - 1)));
  return (first & kConstructedBit) != 0;
}

std::size_t tag_size(Tag tag) {
  std::size_t n = 0;
  for (Tag t = tag; t != 0; t >>= 8) ++n;
  return n;
}

std::string format_tag(Tag tag) { return tag == 0 ? std::string("00") : to_hex(tag_bytes(tag)); }

Result<Bytes> encode_tag(Tag tag) {
  const std::size_t n = tag_size(tag);
  if (n == 0) {
    return Error(ErrorCode::kInvalidArgument, "BER-TLV: tag 00 is padding, not a tag");
  }
  if (n > kMaxTagBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 "BER-TLV: tag " + format_tag(tag) + " is longer than 3 bytes");
  }
  Bytes b = tag_bytes(tag);
  const bool multi_byte = (b[0] & kTagNumberMask) == kTagNumberMask;
  bool ok = multi_byte == (n > 1);
  for (std::size_t i = 1; ok && i < n; ++i) {
    const bool continues = (b[i] & kMoreTagBytesBit) != 0;
    ok = continues == (i + 1 < n);
  }
  if (!ok) {
    return Error(ErrorCode::kInvalidArgument,
                 "BER-TLV: " + format_tag(tag) +
                     " is not a well-formed tag (b5-b1 = 11111 of the first byte and b8 of "
                     "each later byte must announce exactly the bytes that follow)");
  }
  return b;
}

Result<Bytes> encode_tlv_length(std::size_t length) {
  if (length > kMaxTlvLength) {
    return Error(ErrorCode::kInvalidArgument,
                 "BER-TLV: value length " + std::to_string(length) +
                     " exceeds the 3-byte long form (at most 16777215)");
  }
  if (length < 0x80) return Bytes{static_cast<std::uint8_t>(length)};
  Bytes b;
  std::size_t k = 1;
  while (k < kMaxLengthBytes && (length >> (8 * k)) != 0) ++k;
  b.push_back(static_cast<std::uint8_t>(0x80 + k));
  for (std::size_t i = k; i > 0; --i)
    b.push_back(static_cast<std::uint8_t>(length >> (8 * (i - 1))));
  return b;
}

Result<Bytes> encode_tlv(Tag tag, std::span<const std::uint8_t> value) {
  Bytes out;
  PF_TRY(append_tlv(out, tag, value));
  return out;
}

Status append_tlv(Bytes& out, Tag tag, std::span<const std::uint8_t> value) {
  PF_ASSIGN_OR_RETURN(Bytes encoded_tag, encode_tag(tag));
  PF_ASSIGN_OR_RETURN(Bytes encoded_length, encode_tlv_length(value.size()));
  out.reserve(out.size() + encoded_tag.size() + encoded_length.size() + value.size());
  out.insert(out.end(), encoded_tag.begin(), encoded_tag.end());
  out.insert(out.end(), encoded_length.begin(), encoded_length.end());
  out.insert(out.end(), value.begin(), value.end());
  return ok_status();
}

Result<TlvHeader> read_tlv_header(std::span<const std::uint8_t> data, std::size_t offset) {
  return read_header(Scope{data, data.size(), "the data"}, offset, /*check_value=*/false);
}

Result<std::vector<Tlv>> parse_tlvs(std::span<const std::uint8_t> data,
                                    const TlvParseOptions& options) {
  return parse(data, options, /*recurse=*/false);
}

Result<std::vector<Tlv>> parse_tlv_tree(std::span<const std::uint8_t> data,
                                        const TlvParseOptions& options) {
  return parse(data, options, /*recurse=*/true);
}

const Tlv* find_tlv(std::span<const Tlv> tlvs, Tag tag) {
  for (const Tlv& tlv : tlvs) {
    if (tlv.tag == tag) return &tlv;
    if (const Tlv* hit = find_tlv(tlv.children, tag)) return hit;
  }
  return nullptr;
}

}  // namespace persoflow
