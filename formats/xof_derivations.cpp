// The XOF derivations (file id, block nonce and AAD) and the footer's tagged bytes.
#include <algorithm>

#include "formats/big_endian_codec.h"
#include "formats/xof_format.h"

namespace persoflow::formats {

Result<XofFileId> derive_xof_file_id(const XofHeader& h) {
  ByteWriter w;
  w.bytes("persoflow-xof-file-v1");
  w.bytes(h.source_sha256);
  w.bytes(h.profile_sha256);
  w.u32(h.segment_cards);
  w.u16(h.format_version);
  for (const auto& c : h.classes) w.bytes(c.kcv);
  w.u32(static_cast<std::uint32_t>(h.zstd_level));  // two's complement
  w.u32(h.zstd_version);
  PF_ASSIGN_OR_RETURN(Sha256Digest d, sha256(w.data()));
  XofFileId id{};
  std::copy_n(d.begin(), id.size(), id.begin());
  return id;
}

Result<XofNonce> xof_block_nonce(const XofFileId& file_id, std::uint32_t segment_number,
                                 std::uint16_t class_index) {
  ByteWriter w;
  w.bytes("persoflow-xof-nonce-v1");
  w.bytes(file_id);
  w.u32(segment_number);
  w.u16(class_index);
  PF_ASSIGN_OR_RETURN(Sha256Digest d, sha256(w.data()));
  XofNonce nonce{};
  std::copy_n(d.begin(), nonce.size(), nonce.begin());
  return nonce;
}

Bytes xof_block_aad(const XofFileId& file_id, std::uint32_t segment_number,
                    std::uint16_t class_index, std::uint32_t card_count) {
  ByteWriter w;
  w.bytes("PFXOF1");
  w.bytes(file_id);
  w.u32(segment_number);
  w.u16(class_index);
  w.u32(card_count);
  return w.take();
}

Bytes serialize_xof_segment_table(std::span<const XofSegmentEntry> table) {
  ByteWriter w;
  w.u32(static_cast<std::uint32_t>(table.size()));
  for (const auto& e : table) {
    w.u64(e.offset);
    w.u32(e.length);
    w.u32(e.card_count);
    w.bytes(e.sha256);
  }
  return w.take();
}

Bytes xof_footer_mac_input(const XofFileId& file_id, const Sha256Digest& header_sha256,
                           std::span<const std::uint8_t> segment_table_bytes) {
  ByteWriter w;
  w.bytes("persoflow-xof-footer-v1");
  w.bytes(file_id);
  w.bytes(header_sha256);
  w.bytes(segment_table_bytes);
  return w.take();
}

}  // namespace persoflow::formats
