// Encoding of one XOF segment (the import's parallel workers).
#include "formats/xof_segment.h"

#include <algorithm>

#include "formats/big_endian_codec.h"
#include "formats/zstd_codec.h"

namespace persoflow::formats {
namespace {

constexpr std::size_t kMaxU16 = 0xFFFF;
constexpr std::size_t kMaxU32 = 0xFFFFFFFFu;

Error invalid(std::uint32_t segment_number, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument,
               "XOF segment " + std::to_string(segment_number) + ": " + what);
}

std::string card_label(std::size_t index, const std::string& card_id) {
  return "card " + std::to_string(index) + " ('" + card_id + "')";
}

void append_varint(SecureBytes& out, std::uint32_t v) {
  std::uint8_t buf[5];
  std::size_t n = 0;
  do {
    std::uint8_t b = static_cast<std::uint8_t>(v & 0x7F);
    v >>= 7;
    if (v != 0) b = static_cast<std::uint8_t>(b | 0x80);
    buf[n++] = b;
  } while (v != 0);
  out.append(std::span<const std::uint8_t>(buf, n));
}

Status check_cards(const XofHeader& h, std::uint32_t segment_number,
                   std::span<const XofCard> cards) {
  if (cards.size() > h.segment_cards) {
    return invalid(segment_number, std::to_string(cards.size()) +
                                       " cards, more than the segment size " +
                                       std::to_string(h.segment_cards));
  }
  const std::size_t id_index = h.attribute_index(h.card_id_attribute);
  for (std::size_t i = 0; i < cards.size(); ++i) {
    const XofCard& card = cards[i];
    if (card.card_id.empty() || card.card_id.size() > kMaxU16) {
      return invalid(segment_number, "card " + std::to_string(i) + " has a card id of " +
                                         std::to_string(card.card_id.size()) + " bytes (1..65535)");
    }
    if (card.values.size() != h.attributes.size()) {
      return invalid(segment_number, card_label(i, card.card_id) + " has " +
                                         std::to_string(card.values.size()) + " values for " +
                                         std::to_string(h.attributes.size()) + " attributes");
    }
    const auto& id_value = card.values[id_index];
    const auto id_bytes = as_bytes_view(card.card_id);
    if (!id_value || !std::equal(id_value->reveal().begin(), id_value->reveal().end(),
                                 id_bytes.begin(), id_bytes.end())) {
      return invalid(segment_number, card_label(i, card.card_id) + ": the card id attribute '" +
                                         h.card_id_attribute +
                                         "' is absent or differs from the card id");
    }
    for (std::size_t a = 0; a < h.attributes.size(); ++a) {
      const auto& v = card.values[a];
      if (!v) continue;
      if (h.attributes[a].kind == XofAttributeKind::kWrapped &&
          (v->empty() || v->size() > kMaxU16)) {
        return invalid(segment_number, card_label(i, card.card_id) + ": wrapped attribute '" +
                                           h.attributes[a].name + "' has " +
                                           std::to_string(v->size()) + " bytes (1..65535)");
      }
      if (v->size() > kMaxU32) {
        return invalid(segment_number, card_label(i, card.card_id) + ": attribute '" +
                                           h.attributes[a].name + "' is longer than 4 GiB");
      }
    }
  }
  return ok_status();
}

// The cleartext of one block: for each card, for each kind-0 attribute of the class.
SecureBytes block_plaintext(std::span<const XofCard> cards,
                            const std::vector<std::size_t>& fields) {
  SecureBytes out;
  const std::uint8_t absent = 0, present = 1;
  for (const XofCard& card : cards) {
    for (std::size_t a : fields) {
      const auto& v = card.values[a];
      if (!v) {
        out.append(std::span<const std::uint8_t>(&absent, 1));
        continue;
      }
      out.append(std::span<const std::uint8_t>(&present, 1));
      append_varint(out, static_cast<std::uint32_t>(v->size()));
      out.append(v->reveal());
    }
  }
  return out;
}

}  // namespace

Result<EncodedSegment> encode_segment(const XofHeader& h, std::uint32_t segment_number,
                                      std::span<const XofCard> cards,
                                      std::span<AeadKey* const> class_keys) {
  if (h.zstd_version != zstd_library_version()) {
    return invalid(segment_number,
                   "the header was made for zstd " + std::to_string(h.zstd_version) +
                       " but this process runs zstd " + std::to_string(zstd_library_version()) +
                       ": make the header in this process");
  }
  if (class_keys.size() != h.classes.size()) {
    return invalid(segment_number, std::to_string(class_keys.size()) + " DKeps for " +
                                       std::to_string(h.classes.size()) + " key classes");
  }
  PF_TRY(check_cards(h, segment_number, cards));
  const auto card_count = static_cast<std::uint32_t>(cards.size());

  ByteWriter w;
  w.bytes(kXofSegmentMagic);
  w.u32(0);  // segment_length, patched at the end
  w.u32(segment_number);
  w.u32(card_count);
  for (const XofCard& card : cards) w.str(card.card_id);

  const std::vector<std::uint16_t> block_classes = h.block_classes();
  w.u16(static_cast<std::uint16_t>(block_classes.size()));
  for (std::uint16_t c : block_classes) {
    AeadKey* key = class_keys[c];
    if (key == nullptr)
      return invalid(segment_number, "no DKep for key class '" + h.classes[c].name + "'");
    const SecureBytes plaintext = block_plaintext(cards, h.value_attributes(c));
    PF_ASSIGN_OR_RETURN(SecureBytes compressed, zstd_compress(plaintext.reveal(), h.zstd_level));
    PF_ASSIGN_OR_RETURN(XofNonce nonce, xof_block_nonce(h.file_id, segment_number, c));
    const Bytes aad = xof_block_aad(h.file_id, segment_number, c, card_count);
    auto sealed_or = key->seal(nonce, aad, compressed.reveal());
    if (!sealed_or) {
      Error e = std::move(sealed_or).error();
      e.add_context("XOF segment " + std::to_string(segment_number) + ", key class '" +
                    h.classes[c].name + "'");
      return e;
    }
    const Bytes sealed = std::move(sealed_or).value();
    if (sealed.size() > kMaxU32) return invalid(segment_number, "a block is larger than 4 GiB");
    w.u16(c);
    w.u32(static_cast<std::uint32_t>(sealed.size()));
    w.bytes(sealed);
  }

  ByteWriter wrapped;
  const std::vector<std::size_t> wrapped_fields = h.wrapped_attributes();
  for (const XofCard& card : cards) {
    for (std::size_t a : wrapped_fields) {
      const auto& v = card.values[a];
      wrapped.u16(v ? static_cast<std::uint16_t>(v->size()) : std::uint16_t{0});
      if (v) wrapped.bytes(v->reveal());  // already wrapped under the DKep: not clear
    }
  }
  if (wrapped.size() > kMaxU32) return invalid(segment_number, "wrapped attributes exceed 4 GiB");
  w.u32(static_cast<std::uint32_t>(wrapped.size()));
  w.bytes(wrapped.data());

  if (w.size() > kMaxU32)
    return invalid(segment_number, "the segment is larger than 4 GiB; use smaller segments");
  w.patch_u32(4, static_cast<std::uint32_t>(w.size() - 8));
  return EncodedSegment{segment_number, card_count, w.take()};
}

}  // namespace persoflow::formats
