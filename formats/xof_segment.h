// One XOF segment: encoding (import, in parallel) and parsing + decryption (every later
// run). docs/formats/xof.md has the byte layout.
//
//   "PFSG" u32 length u32 number u32 card_count
//   card index       per card: str card_id                         (clear, for lookups)
//   u16 block_count  per class with kind-0 attributes, ascending:
//                    u16 class, u32 length, AES-GCM(zstd(plaintext)) || tag
//   u32 wrapped_len  per card, per kind-1 attribute: str blob      (wrapped under the DKep)
//
// The block plaintext of class c lists, card after card, each kind-0 attribute of c as
// u8 present (0/1) [+ LEB128 length + value]. Nonce and AAD come from xof_format.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/hex.h"
#include "engine/key_ops.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "formats/xof_format.h"

namespace persoflow::formats {

// A card as the XOF holds it. values[i] belongs to header.attributes[i]: the clear value
// of a kind-0 attribute, or the blob wrapped under the DKep of a kind-1 attribute;
// nullopt when the record had no value. The card id attribute must be present and equal
// card_id.
struct XofCard {
  std::string card_id;
  std::vector<std::optional<SecureBytes>> values;
};

// A segment ready to be appended by XofWriter.
struct EncodedSegment {
  std::uint32_t segment_number = 0;
  std::uint32_t card_count = 0;
  Bytes bytes;  // the whole segment, magic included
};

// Encodes cards[0..n) (n <= header.segment_cards) as segment `segment_number`.
// class_keys[c] is the DKep of header.classes[c] (may be null for a class without kind-0
// attributes). Pure apart from the AeadKey::seal calls: safe to call from many threads
// at once, and the same arguments give the same bytes. kInvalidArgument for cards that
// do not fit the header (value count, card id, sizes).
Result<EncodedSegment> encode_segment(const XofHeader& header, std::uint32_t segment_number,
                                      std::span<const XofCard> cards,
                                      std::span<AeadKey* const> class_keys);

struct XofBlock {
  std::uint16_t class_index = 0;
  std::size_t offset = 0;  // of the sealed bytes within XofSegment::bytes
  std::size_t length = 0;
};

// A segment read back and parsed (not yet decrypted).
struct XofSegment {
  std::uint32_t segment_number = 0;
  std::uint64_t file_offset = 0;
  Bytes bytes;                              // the segment as stored
  std::vector<std::string> card_ids;        // in record order
  std::vector<XofBlock> blocks;             // header.block_classes(), in that order
  std::vector<std::vector<Bytes>> wrapped;  // [card][k-th kind-1 attribute], empty = absent

  std::span<const std::uint8_t> sealed(const XofBlock& block) const {
    return std::span<const std::uint8_t>(bytes).subspan(block.offset, block.length);
  }
};

// Parses the bytes of one segment found at `file_offset`. kParse for malformed bytes
// (message "<where>: offset <absolute>: <reason>"), kIntegrity when the segment carries
// another number than `expected_number` (segments reordered).
Result<XofSegment> parse_xof_segment(const XofHeader& header, Bytes bytes,
                                     std::uint64_t file_offset, std::uint32_t expected_number,
                                     const std::string& where);

// Decrypts and decompresses every block and rebuilds the cards. kIntegrity when a tag
// does not verify (wrong DKep, segment from another file or position, tampering) or the
// card index disagrees with the encrypted card ids.
Result<std::vector<XofCard>> decode_xof_segment(const XofHeader& header, const XofSegment& segment,
                                                std::span<AeadKey* const> class_keys,
                                                const std::string& where);

// decode_xof_segment of some classes only: a class whose key is null is not decrypted and
// its attributes stay empty (kind-1 blobs are copied as always). The index is checked
// against the encrypted card ids when the card-id attribute's class is decoded. For a reader
// that needs a few attributes of every card (prep's planner: each card's SE key).
Result<std::vector<XofCard>> decode_xof_segment_classes(const XofHeader& header, const XofSegment& segment,
                                                        std::span<AeadKey* const> class_keys,
                                                        const std::string& where);

// Checks that class_keys has one key per class and that each key's KCV is the header's:
// kIntegrity names the class and both KCVs. One HSM call per key; run it once per job.
Status check_xof_class_keys(const XofHeader& header, std::span<AeadKey* const> class_keys);

}  // namespace persoflow::formats
