// Parsing, decryption and key checks of one XOF segment (every run that reads an XOF).
#include <algorithm>

#include "formats/big_endian_codec.h"
#include "formats/xof_segment.h"
#include "formats/zstd_codec.h"

namespace persoflow::formats {
namespace {

// A block's plaintext never declares more than this (the writer cannot produce more
// within a segment's u32 length at any sane compression ratio).
constexpr std::size_t kMaxBlockPlaintext = std::size_t{1} << 30;

}  // namespace

Result<XofSegment> parse_xof_segment(const XofHeader& h, Bytes bytes, std::uint64_t file_offset,
                                     std::uint32_t expected_number, const std::string& where) {
  XofSegment s;
  s.file_offset = file_offset;
  s.bytes = std::move(bytes);
  ByteReader r(s.bytes, file_offset, where);
  PF_ASSIGN_OR_RETURN(auto magic, r.bytes(kXofSegmentMagic.size(), "segment magic"));
  if (!std::equal(magic.begin(), magic.end(), kXofSegmentMagic.begin(), kXofSegmentMagic.end())) {
    return r.error_at(file_offset, "no segment magic \"PFSG\"");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t length, r.u32("segment length"));
  if (length != r.remaining()) {
    return r.error_at(file_offset + 4, "segment length " + std::to_string(length) +
                                           " but the segment has " + std::to_string(r.remaining()) +
                                           " bytes after it");
  }
  const std::uint64_t number_at = r.offset();
  PF_ASSIGN_OR_RETURN(s.segment_number, r.u32("segment number"));
  if (s.segment_number != expected_number) {
    return Error(ErrorCode::kIntegrity, where + ": offset " + std::to_string(number_at) +
                                            ": segment number " + std::to_string(s.segment_number) +
                                            " at position " + std::to_string(expected_number) +
                                            " (segments reordered)");
  }
  const std::uint64_t count_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t card_count, r.u32("card count"));
  if (card_count > h.segment_cards) {
    return r.error_at(count_at, std::to_string(card_count) + " cards, more than the segment size " +
                                    std::to_string(h.segment_cards));
  }
  s.card_ids.reserve(card_count);
  for (std::uint32_t i = 0; i < card_count; ++i) {
    const std::uint64_t at = r.offset();
    PF_ASSIGN_OR_RETURN(std::string id, r.str("card id"));
    if (id.empty()) return r.error_at(at, "card " + std::to_string(i) + " has an empty card id");
    s.card_ids.push_back(std::move(id));
  }
  const std::vector<std::uint16_t> expected_blocks = h.block_classes();
  const std::uint64_t block_count_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint16_t block_count, r.u16("block count"));
  if (block_count != expected_blocks.size()) {
    return r.error_at(block_count_at, std::to_string(block_count) +
                                          " blocks where the header's attributes make " +
                                          std::to_string(expected_blocks.size()));
  }
  for (std::uint16_t expected_class : expected_blocks) {
    const std::uint64_t at = r.offset();
    PF_ASSIGN_OR_RETURN(std::uint16_t class_index, r.u16("block key class"));
    if (class_index != expected_class) {
      return r.error_at(at, "block of key class " + std::to_string(class_index) + " where class " +
                                std::to_string(expected_class) + " is expected");
    }
    PF_ASSIGN_OR_RETURN(std::uint32_t block_length, r.u32("block length"));
    const std::size_t block_at = r.position();
    PF_ASSIGN_OR_RETURN(auto sealed, r.bytes(block_length, "block"));
    (void)sealed;
    s.blocks.push_back(XofBlock{class_index, block_at, block_length});
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t wrapped_length, r.u32("wrapped length"));
  if (wrapped_length != r.remaining()) {
    return r.error("wrapped section of " + std::to_string(wrapped_length) + " bytes but " +
                   std::to_string(r.remaining()) + " bytes are left in the segment");
  }
  const std::vector<std::size_t> wrapped_fields = h.wrapped_attributes();
  s.wrapped.resize(card_count);
  for (std::uint32_t i = 0; i < card_count; ++i) {
    s.wrapped[i].reserve(wrapped_fields.size());
    for (std::size_t a : wrapped_fields) {
      PF_ASSIGN_OR_RETURN(std::uint16_t len,
                          r.u16([&] { return "wrapped '" + h.attributes[a].name + "' length"; }));
      PF_ASSIGN_OR_RETURN(auto blob, r.bytes(len, [&] { return "wrapped '" + h.attributes[a].name + "'"; }));
      s.wrapped[i].emplace_back(blob.begin(), blob.end());
    }
  }
  PF_TRY(r.expect_end("the wrapped attributes"));
  return s;
}

namespace {

// `partial`: blocks of classes without a key are skipped (decode_xof_segment_classes).
Result<std::vector<XofCard>> decode_blocks(const XofHeader& h, const XofSegment& s,
                                           std::span<AeadKey* const> class_keys, const std::string& where,
                                           bool partial) {
  if (class_keys.size() != h.classes.size()) {
    return Error(ErrorCode::kInvalidArgument, where + ": " + std::to_string(class_keys.size()) +
                                                  " DKeps for " + std::to_string(h.classes.size()) +
                                                  " key classes");
  }
  const auto card_count = static_cast<std::uint32_t>(s.card_ids.size());
  std::vector<XofCard> cards(card_count);
  for (std::size_t i = 0; i < card_count; ++i) {
    cards[i].card_id = s.card_ids[i];
    cards[i].values.resize(h.attributes.size());
  }
  for (const XofBlock& block : s.blocks) {
    const XofKeyClass& cls = h.classes[block.class_index];
    const std::string block_where = where + ": block of key class '" + cls.name + "' at offset " +
                                    std::to_string(s.file_offset + block.offset);
    AeadKey* key = class_keys[block.class_index];
    if (key == nullptr && partial) continue;
    if (key == nullptr)
      return Error(ErrorCode::kInvalidArgument, block_where + ": no DKep given for this class");
    PF_ASSIGN_OR_RETURN(XofNonce nonce,
                        xof_block_nonce(h.file_id, s.segment_number, block.class_index));
    const Bytes aad = xof_block_aad(h.file_id, s.segment_number, block.class_index, card_count);
    auto compressed = key->open(nonce, aad, s.sealed(block));
    if (!compressed) {
      Error e = std::move(compressed).error();
      if (e.code() == ErrorCode::kIntegrity) {
        return Error(ErrorCode::kIntegrity,
                     block_where +
                         ": the AES-GCM tag does not verify (wrong DKep, or a "
                         "block moved from another file, segment or class): " +
                         e.message());
      }
      e.add_context(block_where);
      return e;
    }
    auto plaintext = zstd_decompress(compressed->reveal(), kMaxBlockPlaintext);
    if (!plaintext)
      return Error(ErrorCode::kParse, block_where + ": " + plaintext.error().message());
    ByteReader r(plaintext->reveal(), 0, block_where + " (decrypted plaintext)");
    const std::vector<std::size_t> fields = h.value_attributes(block.class_index);
    for (std::size_t i = 0; i < card_count; ++i) {
      for (std::size_t a : fields) {
        const std::uint64_t at = r.offset();
        PF_ASSIGN_OR_RETURN(std::uint8_t present, r.u8("presence flag"));
        if (present > 1) return r.error_at(at, "presence flag is neither 0 nor 1");
        if (present == 0) continue;
        PF_ASSIGN_OR_RETURN(std::uint32_t len, r.varint("value length"));
        PF_ASSIGN_OR_RETURN(auto value, r.bytes(len, [&] { return "value of '" + h.attributes[a].name + "'"; }));
        cards[i].values[a] = SecureBytes(value);
      }
    }
    PF_TRY(r.expect_end("the last card"));
  }
  const std::vector<std::size_t> wrapped_fields = h.wrapped_attributes();
  for (std::size_t i = 0; i < card_count; ++i) {
    for (std::size_t k = 0; k < wrapped_fields.size(); ++k) {
      const Bytes& blob = s.wrapped[i][k];
      if (!blob.empty()) cards[i].values[wrapped_fields[k]] = SecureBytes(blob);
    }
  }
  // The index is outside the encryption: it must name the cards the blocks hold.
  const std::size_t id_index = h.attribute_index(h.card_id_attribute);
  if (partial && (id_index >= h.attributes.size() || class_keys[h.attributes[id_index].class_index] == nullptr)) {
    return cards;  // the card ids' block was not decoded
  }
  for (std::size_t i = 0; i < card_count; ++i) {
    const auto& v = cards[i].values[id_index];
    const auto id = as_bytes_view(cards[i].card_id);
    if (!v || !std::equal(v->reveal().begin(), v->reveal().end(), id.begin(), id.end())) {
      return Error(ErrorCode::kIntegrity, where + ": card " + std::to_string(i) +
                                              " of the index ('" + cards[i].card_id +
                                              "') is not the card the encrypted blocks hold");
    }
  }
  return cards;
}

}  // namespace

Result<std::vector<XofCard>> decode_xof_segment(const XofHeader& h, const XofSegment& s,
                                                std::span<AeadKey* const> class_keys, const std::string& where) {
  return decode_blocks(h, s, class_keys, where, false);
}

Result<std::vector<XofCard>> decode_xof_segment_classes(const XofHeader& h, const XofSegment& s,
                                                        std::span<AeadKey* const> class_keys,
                                                        const std::string& where) {
  return decode_blocks(h, s, class_keys, where, true);
}

Status check_xof_class_keys(const XofHeader& h, std::span<AeadKey* const> class_keys) {
  if (class_keys.size() != h.classes.size()) {
    return Error(ErrorCode::kInvalidArgument, std::to_string(class_keys.size()) + " DKeps for " +
                                                  std::to_string(h.classes.size()) +
                                                  " key classes");
  }
  const std::vector<std::uint16_t> needed = h.block_classes();
  for (std::size_t c = 0; c < class_keys.size(); ++c) {
    if (class_keys[c] == nullptr) {
      if (std::find(needed.begin(), needed.end(), c) != needed.end()) {
        return Error(ErrorCode::kInvalidArgument,
                     "no DKep given for key class '" + h.classes[c].name + "'");
      }
      continue;
    }
    PF_ASSIGN_OR_RETURN(Bytes kcv, class_keys[c]->kcv());
    if (!std::equal(kcv.begin(), kcv.end(), h.classes[c].kcv.begin(), h.classes[c].kcv.end())) {
      return Error(ErrorCode::kIntegrity,
                   "key class '" + h.classes[c].name + "': the DKep given has KCV " + to_hex(kcv) +
                       ", the file was written under KCV " + to_hex(h.classes[c].kcv) + " (" +
                       h.classes[c].dkep_uri + ")");
    }
  }
  return ok_status();
}

}  // namespace persoflow::formats
