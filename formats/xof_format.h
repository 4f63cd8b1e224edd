// The XOF intermediate file: its constants, its header, its footer and the derivations
// of file id, block nonces and block AAD (docs/formats/xof.md has the byte layout and
// the argument why a nonce never encrypts two different plaintexts under one DKep).
//
//   header    magic, counts, file id, source and profile digests, key classes and
//             attributes
//   segments  "PFSG": card ids in clear, one AES-GCM block per key class, wrapped blobs
//   footer    "PFFT": segment table (offset, length, cards, SHA-256), header SHA-256,
//             CMAC tag under the integrity key
//   trailer   u64 footer offset, "PFXOFEND"
//
// Encoding and decoding of segments: xof_segment.h. Files: xof_writer.h, xof_reader.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hex.h"
#include "engine/profile.h"
#include "engine/result.h"
#include "formats/sha256_digest.h"
#include "formats/zstd_codec.h"

namespace persoflow::formats {

inline constexpr std::array<std::uint8_t, 8> kXofMagic{0x89, 'P', 'F', 'X', 'O', 'F', '\r', '\n'};
inline constexpr std::string_view kXofSegmentMagic = "PFSG";
inline constexpr std::string_view kXofFooterMagic = "PFFT";
inline constexpr std::string_view kXofTrailerMagic = "PFXOFEND";
inline constexpr std::uint16_t kXofFormatVersion = 1;

// Byte offsets of the fixed header fields (the writer patches the counts at finish()).
inline constexpr std::size_t kXofHeaderLengthOffset = 8;
inline constexpr std::size_t kXofRecordCountOffset = 16;
inline constexpr std::size_t kXofRejectCountOffset = 24;
inline constexpr std::size_t kXofSegmentCountOffset = 32;
inline constexpr std::size_t kXofFileIdOffset = 48;
inline constexpr std::size_t kXofFixedHeaderEnd = 96;  // end of source_sha256
inline constexpr std::size_t kXofTrailerSize = 16;
inline constexpr std::size_t kXofSegmentEntrySize = 8 + 4 + 4 + 32;
inline constexpr std::size_t kXofTagSize = 16;
inline constexpr std::size_t kXofNonceSize = 12;

using XofFileId = std::array<std::uint8_t, 16>;
using XofKcv = std::array<std::uint8_t, 3>;
using XofNonce = std::array<std::uint8_t, kXofNonceSize>;

enum class XofAttributeKind : std::uint8_t {
  kValue = 0,    // clear value, stored inside its class's AES-GCM block
  kWrapped = 1,  // field-encrypted secret, stored per card as a blob wrapped under its DKep
};

struct XofKeyClass {
  std::string name;
  std::string dkep_uri;
  XofKcv kcv{};
};

struct XofAttribute {
  std::string name;
  std::uint16_t class_index = 0;
  XofAttributeKind kind = XofAttributeKind::kValue;
};

struct XofHeader {
  std::uint16_t format_version = kXofFormatVersion;
  std::uint16_t flags = 0;
  std::uint64_t record_count = 0;  // cards in the file (sum of the segments' card counts)
  std::uint64_t reject_count = 0;  // records of the source rejected by validation
  std::uint32_t segment_count = 0;
  std::uint32_t segment_cards = 0;              // most cards in one segment
  std::int32_t zstd_level = kZstdDefaultLevel;  // both bound into file_id: they shape the
  std::uint32_t zstd_version = 0;               // compressed plaintext that is encrypted
  XofFileId file_id{};
  Sha256Digest source_sha256{};
  std::string profile_id;
  std::string profile_version;
  Sha256Digest profile_sha256{};
  std::vector<XofKeyClass> classes;
  std::vector<XofAttribute> attributes;  // in profile order
  std::string card_id_attribute;
  std::string integrity_key_uri;
  XofKcv integrity_kcv{};

  // Index of the attribute called `name`, or attributes.size().
  std::size_t attribute_index(std::string_view name) const;
  // Kind-0 attributes of one class, in attribute order: the fields of its block.
  std::vector<std::size_t> value_attributes(std::uint16_t class_index) const;
  // Kind-1 attributes, in attribute order: the blobs stored per card.
  std::vector<std::size_t> wrapped_attributes() const;
  // Classes with at least one kind-0 attribute, ascending: one block each per segment.
  std::vector<std::uint16_t> block_classes() const;
};

// The header of a new XOF for `profile` (its classes, attributes and segment size), the
// SHA-256 of the source envelope, the KCV of each class's DKep (profile.key_classes order)
// and of the integrity key. Counts are zero (the writer sets them); zstd_version is the
// running library's; file_id is derived. kInvalidArgument names what does not fit.
Result<XofHeader> make_xof_header(const Profile& profile, Bytes source_sha256,
                                  std::vector<Bytes> class_kcvs, Bytes integrity_kcv,
                                  int zstd_level = kZstdDefaultLevel);

// Structural rules every header obeys (sizes fit their fields, indexes in range, names
// unique, the card id attribute a kind-0 attribute). kInvalidArgument.
Status validate_xof_header(const XofHeader& header);

// file_id = SHA-256("persoflow-xof-file-v1" || source_sha256 || profile_sha256
//           || u32 segment_cards || u16 format_version || kcv of each class
//           || i32 zstd_level || u32 zstd_version)[0:16]
Result<XofFileId> derive_xof_file_id(const XofHeader& header);

// nonce = SHA-256("persoflow-xof-nonce-v1" || file_id || u32 segment || u16 class)[0:12]
Result<XofNonce> xof_block_nonce(const XofFileId& file_id, std::uint32_t segment_number,
                                 std::uint16_t class_index);
// AAD = "PFXOF1" || file_id || u32 segment || u16 class || u32 card_count
Bytes xof_block_aad(const XofFileId& file_id, std::uint32_t segment_number,
                    std::uint16_t class_index, std::uint32_t card_count);

// The header bytes, magic included. The header must be valid (validate_xof_header).
Bytes serialize_xof_header(const XofHeader& header);
// Parses and validates a whole header (magic to integrity_kcv, nothing after). kParse for
// malformed bytes; kIntegrity when the stored file id is not the one its fields derive.
Result<XofHeader> parse_xof_header(std::span<const std::uint8_t> bytes, const std::string& where);

// One row of the footer's segment table.
struct XofSegmentEntry {
  std::uint64_t offset = 0;  // of the segment's magic
  std::uint32_t length = 0;  // whole segment, magic included
  std::uint32_t card_count = 0;
  Sha256Digest sha256{};  // of the segment's bytes
};

// u32 segment_count || each entry: the "segment table bytes" the footer tag covers.
Bytes serialize_xof_segment_table(std::span<const XofSegmentEntry> table);
// "persoflow-xof-footer-v1" || file_id || header_sha256 || segment table bytes.
Bytes xof_footer_mac_input(const XofFileId& file_id, const Sha256Digest& header_sha256,
                           std::span<const std::uint8_t> segment_table_bytes);

}  // namespace persoflow::formats
