// BER-TLV coding as used by ISO/IEC 7816-4 and EMV Book 3 Annex B: tags of 1 to 3 bytes,
// lengths in short form (00-7F) and long forms 81/82/83. Encodes (tag, value) pairs and
// parses buffers into TLV lists, flat or as a tree of constructed templates.
//
// Parsed TLVs do not own their bytes: `value` points into the buffer that was parsed, which
// must outlive them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"

namespace persoflow {

// A tag as its bytes read big-endian: "9F70" is 0x9F70, "5F2D" is 0x5F2D, "70" is 0x70.
using Tag = std::uint32_t;

// The largest value length this module encodes or accepts (long form 83 xx xx xx).
inline constexpr std::size_t kMaxTlvLength = 0xFFFFFF;

// Deepest template nesting parse_tlv_tree() follows before refusing the input.
inline constexpr int kMaxTlvDepth = 32;

// Where a TLV's header was found and what it says; read without touching the value.
struct TlvHeader {
  Tag tag = 0;
  bool constructed = false;      // b6 of the first tag byte
  std::size_t header_size = 0;   // tag bytes + length bytes
  std::size_t value_length = 0;  // as stated by the length field
};

struct Tlv {
  Tag tag = 0;
  bool constructed = false;
  std::size_t offset = 0;       // of the first tag byte, in the outermost parsed buffer
  std::size_t header_size = 0;  // tag bytes + length bytes
  std::span<const std::uint8_t> value;
  std::vector<Tlv> children;  // filled by parse_tlv_tree() for constructed TLVs only

  std::size_t value_offset() const { return offset + header_size; }
  std::size_t encoded_size() const { return header_size + value.size(); }
};

struct TlvParseOptions {
  // EMV Book 3 Annex B (and ISO/IEC 7816-4) let '00' bytes without meaning appear before,
  // between and after TLV objects, e.g. where a record was erased. When true, such bytes are
  // skipped at every level. 'FF' is never skipped: although ISO/IEC 7816-4:2005 also names it
  // as filler, EMV does not, and GlobalPlatform uses FF as the first byte of real tags
  // (private constructed, e.g. FF40 in the Secure Element Access Control rules).
  bool skip_zero_padding = true;
};

// True for tags whose first byte has b6 set (a template holding further TLVs).
bool tag_is_constructed(Tag tag);

// Number of bytes the tag occupies (1 to 4 for any uint32_t, 0 for tag 0).
std::size_t tag_size(Tag tag);

// Upper-case hex of the tag bytes, e.g. "9F70".
std::string format_tag(Tag tag);

// The tag's bytes, after checking that they form one well-formed 1-3 byte BER tag
// (continuation bits consistent with the length); kInvalidArgument otherwise.
Result<Bytes> encode_tag(Tag tag);

// Minimal BER length: 00-7F, 81 xx, 82 xxxx, 83 xxxxxx. kInvalidArgument above kMaxTlvLength.
Result<Bytes> encode_tlv_length(std::size_t length);

// tag || length || value.
Result<Bytes> encode_tlv(Tag tag, std::span<const std::uint8_t> value);

// Appends tag || length || value to `out`; `out` is unchanged on failure. `value` must not
// point into `out`.
Status append_tlv(Bytes& out, Tag tag, std::span<const std::uint8_t> value);

// Reads the tag and length starting at `offset`. Only the header has to be in `data`: the
// value may continue elsewhere (a STORE DATA block split a TLV), so callers compare
// value_length with what they have. Does not skip padding. kParse errors name the offset.
Result<TlvHeader> read_tlv_header(std::span<const std::uint8_t> data, std::size_t offset);

// Splits `data` into its top-level TLVs (values of constructed TLVs are not looked into).
Result<std::vector<Tlv>> parse_tlvs(std::span<const std::uint8_t> data,
                                    const TlvParseOptions& options = {});

// As parse_tlvs(), and parses the value of every constructed TLV into `children`, down to
// kMaxTlvDepth levels. A constructed TLV whose value is not valid BER-TLV is an error.
Result<std::vector<Tlv>> parse_tlv_tree(std::span<const std::uint8_t> data,
                                        const TlvParseOptions& options = {});

// Parsed TLVs point into `data`, so parsing a temporary buffer is refused at compile time.
Result<std::vector<Tlv>> parse_tlvs(const Bytes&& data,
                                    const TlvParseOptions& options = {}) = delete;
Result<std::vector<Tlv>> parse_tlv_tree(const Bytes&& data,
                                        const TlvParseOptions& options = {}) = delete;

// The first TLV with `tag`, searching depth-first in document order (a template before its
// children, children before the template's next sibling); nullptr when absent.
const Tlv* find_tlv(std::span<const Tlv> tlvs, Tag tag);

}  // namespace persoflow
