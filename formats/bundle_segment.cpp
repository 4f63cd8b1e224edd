// The bytes of a script bundle's header and segments (docs/formats/bundle.md): encoding
// (prep's workers) and decoding (the reader, the fuzz target). Every length is checked
// against the bytes left and against the caps of bundle.h before anything is allocated.
#include <algorithm>

#include "formats/big_endian_codec.h"
#include "formats/bundle.h"
#include "formats/zstd_codec.h"

namespace persoflow::formats {
namespace {

// Byte offsets of the fixed header fields.
constexpr std::size_t kHeaderLengthOffset = 8;
constexpr std::size_t kFixedHeaderEnd = 100;  // end of zstd_version
constexpr std::size_t kSegmentFixedSize = 4 + 4 + 4 + 4 + 4;
// zstd's densest block (RLE: 3-byte header + 1 byte) yields at most 128 KiB, so a frame
// of n bytes cannot hold more than (n / 4 + 1) * 128 KiB: a larger declared body is a
// lie, refused before the body is allocated.
constexpr std::uint64_t kZstdMaxBlock = 128 * 1024;
// The smallest encodings, to bound counts by the bytes left before reserving.
constexpr std::size_t kMinCardBytes = 2 + 1 + 2 + 2;
constexpr std::size_t kMinSessionBytes = 4 + 4 * 1 + 4 + 4;
constexpr std::size_t kMinApduBytes = 4 + kBundleMinApdu + 2 + 2 + 1;

Error invalid(std::uint32_t segment_number, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument,
               "bundle segment " + std::to_string(segment_number) + ": " + what);
}

// The message of a decoding error, with where it happened appended ("... [card 3, session
// 0]"): the reader's prefix already names the file, segment and offset.
Error located(Error e, const std::string& location) {
  return Error(e.code(), e.message() + " [" + location + "]");
}

std::string card_label(std::size_t index, const std::string& card_id) {
  return "card " + std::to_string(index) + " ('" + card_id + "')";
}

// A u8-length field; the caller has checked its size.
void short_bytes(ByteWriter& w, std::span<const std::uint8_t> b) {
  w.u8(static_cast<std::uint8_t>(b.size()));
  w.bytes(b);
}

// `who()` names the card, session or APDU; it is called only when the size is wrong, so
// that a valid segment (every one prep writes) builds no message at all.
template <class Who>
Status check_size(std::uint32_t n, const Who& who, std::string_view field, std::size_t size, std::size_t min,
                  std::size_t max) {
  if (size < min || size > max) {
    return invalid(n, who() + ": " + std::string(field) + " has " + std::to_string(size) + " bytes (" +
                          std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  return ok_status();
}

Status check_card(std::uint32_t n, std::size_t index, const BundleCard& card) {
  if (card.card_id.empty() || card.card_id.size() > kBundleMaxCardId) {
    return invalid(n, "card " + std::to_string(index) + " has a card id of " +
                          std::to_string(card.card_id.size()) + " bytes (1.." +
                          std::to_string(kBundleMaxCardId) + ")");
  }
  const auto who = [&] { return card_label(index, card.card_id); };
  PF_TRY(check_size(n, who, "SE id", card.se_id.size(), 1, kBundleMaxSeId));
  if (card.sessions.empty() || card.sessions.size() > kBundleMaxSessions) {
    return invalid(n, who() + " has " + std::to_string(card.sessions.size()) + " sessions (1.." +
                          std::to_string(kBundleMaxSessions) + ")");
  }
  for (std::size_t s = 0; s < card.sessions.size(); ++s) {
    const BundleSession& session = card.sessions[s];
    const auto sw = [&] { return who() + ", session " + std::to_string(s); };
    if (session.scp != 2 && session.scp != 3) {
      return invalid(n, sw() + ": SCP" + std::to_string(session.scp) + " (2 or 3)");
    }
    PF_TRY(check_size(n, sw, "KDD", session.kdd.size(), 0, kBundleMaxShortField));
    PF_TRY(check_size(n, sw, "SD AID", session.sd_aid.size(), 0, kBundleMaxAid));
    PF_TRY(check_size(n, sw, "host challenge", session.host_challenge.size(), 0,
                      kBundleMaxShortField));
    PF_TRY(check_size(n, sw, "expected response", session.expected_response.size(), 0, 255));
    if (session.apdus.size() > kBundleMaxApdus) {
      return invalid(n, sw() + " has " + std::to_string(session.apdus.size()) + " APDUs (at most " +
                            std::to_string(kBundleMaxApdus) + ")");
    }
    for (std::size_t a = 0; a < session.apdus.size(); ++a) {
      const BundleApdu& apdu = session.apdus[a];
      const auto aw = [&] { return sw() + ", APDU " + std::to_string(a); };
      PF_TRY(check_size(n, aw, "command", apdu.command.size(), kBundleMinApdu, kBundleMaxApdu));
      PF_TRY(check_size(n, aw, "label", apdu.label.size(), 0, kBundleMaxLabel));
      PF_TRY(check_size(n, aw, "expected response data", apdu.expected_data.size(), 0, 255));  // u8 length
    }
  }
  return ok_status();
}

void encode_card(ByteWriter& w, const BundleCard& card) {
  w.str(card.card_id);
  w.str(card.se_id);
  w.u16(static_cast<std::uint16_t>(card.sessions.size()));
  for (const BundleSession& s : card.sessions) {
    w.u8(s.scp);
    w.u8(s.i);
    w.u8(s.level);
    w.u8(s.kvn);
    short_bytes(w, s.kdd);
    short_bytes(w, s.sd_aid);
    w.u32(s.counter);
    short_bytes(w, s.host_challenge);
    short_bytes(w, s.expected_response);
    w.u32(static_cast<std::uint32_t>(s.apdus.size()));
    for (const BundleApdu& a : s.apdus) {
      w.u32(static_cast<std::uint32_t>(a.command.size()));
      w.bytes(a.command);
      w.u16(a.expected_sw);
      w.str(a.label);
      short_bytes(w, a.expected_data);
    }
  }
}

// A u8-length field of at most `max` bytes.
Result<Bytes> read_short(ByteReader& r, std::string_view what, std::size_t max) {
  const std::uint64_t at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint8_t len, r.u8(std::string(what) + " length"));
  if (len > max) {
    return r.error_at(at, std::string(what) + " of " + std::to_string(len) + " bytes (at most " +
                              std::to_string(max) + ")");
  }
  PF_ASSIGN_OR_RETURN(auto b, r.bytes(len, what));
  return Bytes(b.begin(), b.end());
}

// A u16-length string of min..max bytes.
Result<std::string> read_str(ByteReader& r, std::string_view what, std::size_t min,
                             std::size_t max) {
  const std::uint64_t at = r.offset();
  PF_ASSIGN_OR_RETURN(std::string s, r.str(what));
  if (s.size() < min || s.size() > max) {
    return r.error_at(at, std::string(what) + " of " + std::to_string(s.size()) + " bytes (" +
                              std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  return s;
}

Result<BundleSession> decode_session(ByteReader& r) {
  BundleSession s;
  const std::uint64_t scp_at = r.offset();
  PF_ASSIGN_OR_RETURN(s.scp, r.u8("SCP"));
  if (s.scp != 2 && s.scp != 3) return r.error_at(scp_at, "SCP" + std::to_string(s.scp) + " (2 or 3)");
  PF_ASSIGN_OR_RETURN(s.i, r.u8("i parameter"));
  PF_ASSIGN_OR_RETURN(s.level, r.u8("security level"));
  PF_ASSIGN_OR_RETURN(s.kvn, r.u8("key version"));
  PF_ASSIGN_OR_RETURN(s.kdd, read_short(r, "KDD", kBundleMaxShortField));
  PF_ASSIGN_OR_RETURN(s.sd_aid, read_short(r, "SD AID", kBundleMaxAid));
  PF_ASSIGN_OR_RETURN(s.counter, r.u32("sequence counter"));
  PF_ASSIGN_OR_RETURN(s.host_challenge, read_short(r, "host challenge", kBundleMaxShortField));
  PF_ASSIGN_OR_RETURN(s.expected_response, read_short(r, "expected response", 255));
  const std::uint64_t count_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t apdu_count, r.u32("APDU count"));
  if (apdu_count > kBundleMaxApdus || apdu_count > r.remaining() / kMinApduBytes) {
    return r.error_at(count_at, std::to_string(apdu_count) + " APDUs: more than " +
                                    (apdu_count > kBundleMaxApdus
                                         ? "the " + std::to_string(kBundleMaxApdus) + " allowed"
                                         : "the " + std::to_string(r.remaining()) +
                                               " bytes left can hold"));
  }
  s.apdus.reserve(apdu_count);
  for (std::uint32_t k = 0; k < apdu_count; ++k) {
    BundleApdu a;
    const std::uint64_t len_at = r.offset();
    PF_ASSIGN_OR_RETURN(std::uint32_t len, r.u32("APDU length"));
    if (len < kBundleMinApdu || len > kBundleMaxApdu) {
      return r.error_at(len_at, "APDU " + std::to_string(k) + " of " + std::to_string(len) +
                                    " bytes (" + std::to_string(kBundleMinApdu) + ".." +
                                    std::to_string(kBundleMaxApdu) + ")");
    }
    PF_ASSIGN_OR_RETURN(auto command, r.bytes(len, "APDU " + std::to_string(k)));
    a.command.assign(command.begin(), command.end());
    PF_ASSIGN_OR_RETURN(a.expected_sw, r.u16("expected SW"));
    PF_ASSIGN_OR_RETURN(a.label, read_str(r, "APDU label", 0, kBundleMaxLabel));
    PF_ASSIGN_OR_RETURN(a.expected_data, read_short(r, "expected response data", 255));
    s.apdus.push_back(std::move(a));
  }
  return s;
}

Result<BundleCard> decode_card(ByteReader& r) {
  BundleCard card;
  PF_ASSIGN_OR_RETURN(card.card_id, read_str(r, "card id", 1, kBundleMaxCardId));
  PF_ASSIGN_OR_RETURN(card.se_id, read_str(r, "SE id", 1, kBundleMaxSeId));
  const std::uint64_t count_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint16_t session_count, r.u16("session count"));
  if (session_count == 0 || session_count > kBundleMaxSessions ||
      session_count > r.remaining() / kMinSessionBytes) {
    return r.error_at(count_at, "card '" + card.card_id + "' has " +
                                    std::to_string(session_count) + " sessions (1.." +
                                    std::to_string(kBundleMaxSessions) +
                                    ", and no more than the bytes left can hold)");
  }
  card.sessions.reserve(session_count);
  for (std::uint16_t s = 0; s < session_count; ++s) {
    auto session = decode_session(r);
    if (!session) {
      return located(std::move(session).error(),
                     "card '" + card.card_id + "', session " + std::to_string(s));
    }
    card.sessions.push_back(std::move(session).value());
  }
  return card;
}

}  // namespace

Status validate_bundle_header(const BundleHeader& h) {
  auto bad = [](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, "bundle header: " + what);
  };
  if (h.format_version != kBundleFormatVersion) {
    return bad("format version " + std::to_string(h.format_version) + " (this build writes " +
               std::to_string(kBundleFormatVersion) + ")");
  }
  if (h.xof_sha256.size() != 32) {
    return bad("xof_sha256 has " + std::to_string(h.xof_sha256.size()) + " bytes (32)");
  }
  if (h.profile_sha256.size() != 32) {
    return bad("profile_sha256 has " + std::to_string(h.profile_sha256.size()) + " bytes (32)");
  }
  if (h.segment_cards == 0 || h.segment_cards > kBundleMaxSegmentCards) {
    return bad("segment_cards " + std::to_string(h.segment_cards) + " (1.." +
               std::to_string(kBundleMaxSegmentCards) + ")");
  }
  PF_TRY_CTX(check_zstd_level(h.zstd_level), "bundle header");
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"profile_id", &h.profile_id},
                                    {"product", &h.product},
                                    {"integrity_key_uri", &h.integrity_key_uri}}) {
    if (value->size() > kBundleMaxHeaderText) {
      return bad(std::string(name) + " has " + std::to_string(value->size()) +
                 " bytes (at most " + std::to_string(kBundleMaxHeaderText) + ")");
    }
  }
  if (h.integrity_key_uri.empty()) {
    return bad("integrity_key_uri is empty: name the profile's integrity key, so that readers "
               "know which key verifies the footer");
  }
  if (h.integrity_kcv.size() != 3) {
    return bad("integrity_kcv has " + std::to_string(h.integrity_kcv.size()) +
               " bytes (3: the KCV of the integrity key)");
  }
  return ok_status();
}

Bytes serialize_bundle_header(const BundleHeader& h) {
  ByteWriter w;
  w.bytes(kBundleMagic);
  w.u32(0);  // header_length, patched below
  w.u16(h.format_version);
  w.u16(0);  // flags
  w.bytes(h.xof_sha256);
  w.bytes(h.profile_sha256);
  w.u64(static_cast<std::uint64_t>(h.reservation_id));
  w.u32(h.segment_cards);
  w.u32(static_cast<std::uint32_t>(h.zstd_level));
  w.u32(h.zstd_version);
  w.str(h.profile_id);
  w.str(h.product);
  w.str(h.integrity_key_uri);
  w.bytes(h.integrity_kcv);
  w.patch_u32(kHeaderLengthOffset, static_cast<std::uint32_t>(w.size() - 12));
  return w.take();
}

Result<BundleHeader> parse_bundle_header(std::span<const std::uint8_t> bytes,
                                         const std::string& where) {
  ByteReader r(bytes, 0, where);
  PF_ASSIGN_OR_RETURN(auto magic, r.bytes(kBundleMagic.size(), "magic"));
  if (!std::equal(magic.begin(), magic.end(), kBundleMagic.begin(), kBundleMagic.end())) {
    return r.error_at(0, "not a script bundle (no magic \"PFBUNDLE\")");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t length, r.u32("header length"));
  if (length != r.remaining() || bytes.size() < kFixedHeaderEnd) {
    return r.error_at(kHeaderLengthOffset, "header length " + std::to_string(length) + " but " +
                                               std::to_string(r.remaining()) +
                                               " header bytes follow");
  }
  BundleHeader h;
  PF_ASSIGN_OR_RETURN(h.format_version, r.u16("format version"));
  if (h.format_version != kBundleFormatVersion) {
    return Error(ErrorCode::kUnsupported,
                 where + ": offset 12: bundle format version " + std::to_string(h.format_version) +
                     "; this persoflow reads version " + std::to_string(kBundleFormatVersion));
  }
  PF_ASSIGN_OR_RETURN(std::uint16_t flags, r.u16("flags"));
  if (flags != 0) return r.error_at(14, "flags " + std::to_string(flags) + " (version 2: 0)");
  PF_ASSIGN_OR_RETURN(auto xof, r.bytes(32, "xof_sha256"));
  h.xof_sha256.assign(xof.begin(), xof.end());
  PF_ASSIGN_OR_RETURN(auto profile, r.bytes(32, "profile_sha256"));
  h.profile_sha256.assign(profile.begin(), profile.end());
  PF_ASSIGN_OR_RETURN(std::uint64_t reservation, r.u64("reservation id"));
  h.reservation_id = static_cast<std::int64_t>(reservation);
  const std::uint64_t cards_at = r.offset();
  PF_ASSIGN_OR_RETURN(h.segment_cards, r.u32("segment_cards"));
  if (h.segment_cards == 0 || h.segment_cards > kBundleMaxSegmentCards) {
    return r.error_at(cards_at, "segment_cards " + std::to_string(h.segment_cards) + " (1.." +
                                    std::to_string(kBundleMaxSegmentCards) + ")");
  }
  const std::uint64_t level_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t level, r.u32("zstd level"));
  h.zstd_level = static_cast<std::int32_t>(level);
  if (Status ok = check_zstd_level(h.zstd_level); !ok) return r.error_at(level_at, ok.error().message());
  PF_ASSIGN_OR_RETURN(h.zstd_version, r.u32("zstd version"));
  PF_ASSIGN_OR_RETURN(h.profile_id, read_str(r, "profile id", 0, kBundleMaxHeaderText));
  PF_ASSIGN_OR_RETURN(h.product, read_str(r, "product", 0, kBundleMaxHeaderText));
  PF_ASSIGN_OR_RETURN(h.integrity_key_uri,
                      read_str(r, "integrity key URI", 1, kBundleMaxHeaderText));
  PF_ASSIGN_OR_RETURN(auto kcv, r.bytes(3, "integrity KCV"));
  h.integrity_kcv.assign(kcv.begin(), kcv.end());
  PF_TRY(r.expect_end("the header"));
  return h;
}

Result<BundleEncodedSegment> encode_bundle_segment(const BundleHeader& header,
                                                   std::uint32_t segment_number,
                                                   std::span<const BundleCard> cards) {
  if (cards.empty() || cards.size() > header.segment_cards) {
    return invalid(segment_number, std::to_string(cards.size()) + " cards (1.." +
                                       std::to_string(header.segment_cards) +
                                       ", the header's segment_cards)");
  }
  PF_TRY_CTX(check_zstd_level(header.zstd_level), "bundle segment " + std::to_string(segment_number));
  for (std::size_t i = 0; i < cards.size(); ++i) PF_TRY(check_card(segment_number, i, cards[i]));

  ByteWriter body;
  for (const BundleCard& card : cards) encode_card(body, card);
  if (body.size() > kBundleMaxSegmentBody) {
    return invalid(segment_number, "the cards take " + std::to_string(body.size()) +
                                       " bytes, more than the " +
                                       std::to_string(kBundleMaxSegmentBody) +
                                       " a segment may hold: use smaller segments");
  }
  // The body is the script as it goes to the card: no key or clear secret DGI is in it
  // (those are wrapped under the card's DEK or the session), so plain Bytes suffice.
  PF_ASSIGN_OR_RETURN(SecureBytes frame, zstd_compress(body.data(), header.zstd_level));

  BundleEncodedSegment out;
  out.segment_number = segment_number;
  out.card_count = static_cast<std::uint32_t>(cards.size());
  out.card_ids.reserve(cards.size());
  for (const BundleCard& card : cards) out.card_ids.push_back(card.card_id);
  ByteWriter w;
  w.bytes(kBundleSegmentMagic);
  w.u32(segment_number);
  w.u32(out.card_count);
  w.u32(static_cast<std::uint32_t>(body.size()));
  w.u32(static_cast<std::uint32_t>(frame.size()));
  w.bytes(frame.reveal());
  out.bytes = w.take();
  PF_ASSIGN_OR_RETURN(out.sha256, sha256(out.bytes));
  return out;
}

Result<std::vector<BundleCard>> decode_bundle_segment(const BundleHeader& header,
                                                      std::span<const std::uint8_t> bytes,
                                                      std::uint32_t expected_number,
                                                      const std::string& where,
                                                      std::uint64_t file_offset) {
  ByteReader r(bytes, file_offset, where);
  PF_ASSIGN_OR_RETURN(auto magic, r.bytes(kBundleSegmentMagic.size(), "segment magic"));
  if (!std::equal(magic.begin(), magic.end(), kBundleSegmentMagic.begin(),
                  kBundleSegmentMagic.end())) {
    return r.error_at(file_offset, "no segment magic \"PFBS\"");
  }
  const std::uint64_t number_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t number, r.u32("segment number"));
  if (number != expected_number) {
    return Error(ErrorCode::kIntegrity, where + ": offset " + std::to_string(number_at) +
                                            ": segment number " + std::to_string(number) +
                                            " at position " + std::to_string(expected_number) +
                                            " (segments reordered or copied)");
  }
  const std::uint64_t count_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t card_count, r.u32("card count"));
  if (card_count == 0 || card_count > header.segment_cards) {
    return r.error_at(count_at, std::to_string(card_count) + " cards (1.." +
                                    std::to_string(header.segment_cards) +
                                    ", the header's segment_cards)");
  }
  const std::uint64_t body_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t body_length, r.u32("uncompressed length"));
  const std::uint64_t frame_at = r.offset();
  PF_ASSIGN_OR_RETURN(std::uint32_t frame_length, r.u32("compressed length"));
  if (frame_length != r.remaining()) {
    return r.error_at(frame_at, "compressed length " + std::to_string(frame_length) +
                                    " but the segment has " + std::to_string(r.remaining()) +
                                    " bytes after it");
  }
  if (body_length > kBundleMaxSegmentBody ||
      body_length > (std::uint64_t{frame_length} / 4 + 1) * kZstdMaxBlock ||
      body_length < std::uint64_t{card_count} * kMinCardBytes) {
    return r.error_at(body_at, "uncompressed length " + std::to_string(body_length) +
                                   " is impossible for " + std::to_string(card_count) +
                                   " cards in a " + std::to_string(frame_length) +
                                   "-byte zstd frame (at most " +
                                   std::to_string(kBundleMaxSegmentBody) + ")");
  }
  PF_ASSIGN_OR_RETURN(auto frame, r.bytes(frame_length, "compressed body"));
  auto body = zstd_decompress(frame, body_length);
  if (!body) {
    return Error(ErrorCode::kParse, where + ": offset " + std::to_string(file_offset + kSegmentFixedSize) +
                                        ": compressed body: " + body.error().message());
  }
  if (body->size() != body_length) {
    return r.error_at(body_at, "uncompressed length " + std::to_string(body_length) +
                                   " but the frame holds " + std::to_string(body->size()) +
                                   " bytes");
  }
  ByteReader br(body->reveal(), 0, where + ": decompressed body");
  std::vector<BundleCard> cards;
  cards.reserve(std::min<std::size_t>(card_count, body_length / kMinCardBytes));
  for (std::uint32_t i = 0; i < card_count; ++i) {
    auto card = decode_card(br);
    if (!card) return located(std::move(card).error(), "card " + std::to_string(i) + " of the segment");
    cards.push_back(std::move(card).value());
  }
  PF_TRY(br.expect_end("the last card"));
  return cards;
}

}  // namespace persoflow::formats
