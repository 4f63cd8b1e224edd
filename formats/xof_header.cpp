// The XOF header: validation, construction from a profile, bytes and parsing.
#include <algorithm>
#include <set>

#include "formats/big_endian_codec.h"
#include "formats/xof_format.h"

namespace persoflow::formats {
namespace {

constexpr std::size_t kMaxU16 = 0xFFFF;

Error invalid(const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, "XOF header: " + what);
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> fixed(const Bytes& b, const std::string& what) {
  if (b.size() != N) {
    return invalid(what + " must be " + std::to_string(N) + " bytes, got " +
                   std::to_string(b.size()));
  }
  std::array<std::uint8_t, N> out{};
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> read_fixed(ByteReader& r, std::string_view what) {
  PF_ASSIGN_OR_RETURN(auto b, r.bytes(N, what));
  std::array<std::uint8_t, N> out{};
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

Status check_str(std::string_view s, const std::string& what) {
  if (s.size() > kMaxU16) return invalid(what + " is longer than 65535 bytes");
  return ok_status();
}

}  // namespace

std::size_t XofHeader::attribute_index(std::string_view name) const {
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    if (attributes[i].name == name) return i;
  }
  return attributes.size();
}

std::vector<std::size_t> XofHeader::value_attributes(std::uint16_t class_index) const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    if (attributes[i].class_index == class_index && attributes[i].kind == XofAttributeKind::kValue)
      out.push_back(i);
  }
  return out;
}

std::vector<std::size_t> XofHeader::wrapped_attributes() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    if (attributes[i].kind == XofAttributeKind::kWrapped) out.push_back(i);
  }
  return out;
}

std::vector<std::uint16_t> XofHeader::block_classes() const {
  std::vector<std::uint16_t> out;
  for (std::size_t c = 0; c < classes.size(); ++c) {
    if (!value_attributes(static_cast<std::uint16_t>(c)).empty())
      out.push_back(static_cast<std::uint16_t>(c));
  }
  return out;
}

Status validate_xof_header(const XofHeader& h) {
  if (h.format_version != kXofFormatVersion) {
    return invalid("format version " + std::to_string(h.format_version) +
                   " (this build writes and reads " + std::to_string(kXofFormatVersion) + ")");
  }
  if (h.flags != 0) return invalid("flags must be 0 in format version 1");
  if (h.segment_cards == 0) return invalid("segment size (cards per segment) must be at least 1");
  PF_TRY(check_zstd_level(h.zstd_level));
  PF_TRY(check_str(h.profile_id, "profile id"));
  PF_TRY(check_str(h.profile_version, "profile version"));
  PF_TRY(check_str(h.card_id_attribute, "card id attribute"));
  PF_TRY(check_str(h.integrity_key_uri, "integrity key URI"));
  if (h.classes.size() > kMaxU16) return invalid("more than 65535 key classes");
  if (h.attributes.size() > kMaxU16) return invalid("more than 65535 attributes");
  std::set<std::string_view> names;
  for (const auto& c : h.classes) {
    if (c.name.empty()) return invalid("a key class has an empty name");
    if (!names.insert(c.name).second) return invalid("key class '" + c.name + "' appears twice");
    PF_TRY(check_str(c.name, "key class name"));
    PF_TRY(check_str(c.dkep_uri, "DKep URI of key class '" + c.name + "'"));
  }
  names.clear();
  for (const auto& a : h.attributes) {
    if (a.name.empty()) return invalid("an attribute has an empty name");
    if (!names.insert(a.name).second) return invalid("attribute '" + a.name + "' appears twice");
    PF_TRY(check_str(a.name, "attribute name"));
    if (a.class_index >= h.classes.size()) {
      return invalid("attribute '" + a.name + "' has key class index " +
                     std::to_string(a.class_index) + " of " + std::to_string(h.classes.size()));
    }
    if (a.kind != XofAttributeKind::kValue && a.kind != XofAttributeKind::kWrapped) {
      return invalid("attribute '" + a.name + "' has unknown kind " +
                     std::to_string(static_cast<int>(a.kind)));
    }
  }
  const std::size_t id = h.attribute_index(h.card_id_attribute);
  if (id == h.attributes.size())
    return invalid("card id attribute '" + h.card_id_attribute + "' is not an attribute");
  if (h.attributes[id].kind != XofAttributeKind::kValue) {
    return invalid("card id attribute '" + h.card_id_attribute +
                   "' is field-encrypted; card ids are stored in clear");
  }
  return ok_status();
}

Result<XofHeader> make_xof_header(const Profile& profile, Bytes source_sha256,
                                  std::vector<Bytes> class_kcvs, Bytes integrity_kcv,
                                  int zstd_level) {
  XofHeader h;
  if (profile.segment_cards == 0 || profile.segment_cards > 0xFFFFFFFFu) {
    return invalid("segment size " + std::to_string(profile.segment_cards) +
                   " is outside 1..4294967295");
  }
  h.segment_cards = static_cast<std::uint32_t>(profile.segment_cards);
  h.zstd_level = zstd_level;
  h.zstd_version = zstd_library_version();
  PF_ASSIGN_OR_RETURN(h.source_sha256, fixed<32>(source_sha256, "source SHA-256"));
  PF_ASSIGN_OR_RETURN(h.profile_sha256, fixed<32>(profile.sha256, "profile SHA-256"));
  h.profile_id = profile.id;
  h.profile_version = profile.version;
  if (class_kcvs.size() != profile.key_classes.size()) {
    return invalid(std::to_string(class_kcvs.size()) + " KCVs for " +
                   std::to_string(profile.key_classes.size()) + " key classes");
  }
  for (std::size_t i = 0; i < profile.key_classes.size(); ++i) {
    const KeyClass& k = profile.key_classes[i];
    PF_ASSIGN_OR_RETURN(XofKcv kcv, fixed<3>(class_kcvs[i], "KCV of key class '" + k.name + "'"));
    h.classes.push_back(XofKeyClass{k.name, k.dkep_uri, kcv});
  }
  for (const AttributeSpec& a : profile.attributes) {
    const auto it = std::find_if(profile.key_classes.begin(), profile.key_classes.end(),
                                 [&](const KeyClass& k) { return k.name == a.key_class; });
    if (it == profile.key_classes.end()) {
      return invalid("attribute '" + a.name + "' names key class '" + a.key_class +
                     "', which the profile lacks");
    }
    const auto index = static_cast<std::size_t>(it - profile.key_classes.begin());
    if (index > kMaxU16) return invalid("more than 65535 key classes");
    h.attributes.push_back(XofAttribute{a.name, static_cast<std::uint16_t>(index),
                                        a.field_encryption == FieldEncryption::kNone
                                            ? XofAttributeKind::kValue
                                            : XofAttributeKind::kWrapped});
  }
  h.card_id_attribute = profile.card_id_attribute;
  h.integrity_key_uri = profile.integrity_key_uri;
  PF_ASSIGN_OR_RETURN(h.integrity_kcv, fixed<3>(integrity_kcv, "integrity key KCV"));
  PF_TRY(validate_xof_header(h));
  PF_ASSIGN_OR_RETURN(h.file_id, derive_xof_file_id(h));
  return h;
}

Bytes serialize_xof_header(const XofHeader& h) {
  ByteWriter w;
  w.bytes(kXofMagic);
  w.u32(0);  // header_length, patched below
  w.u16(h.format_version);
  w.u16(h.flags);
  w.u64(h.record_count);
  w.u64(h.reject_count);
  w.u32(h.segment_count);
  w.u32(h.segment_cards);
  w.u32(static_cast<std::uint32_t>(h.zstd_level));
  w.u32(h.zstd_version);
  w.bytes(h.file_id);
  w.bytes(h.source_sha256);
  w.str(h.profile_id);
  w.str(h.profile_version);
  w.bytes(h.profile_sha256);
  w.u16(static_cast<std::uint16_t>(h.classes.size()));
  for (const auto& c : h.classes) {
    w.str(c.name);
    w.str(c.dkep_uri);
    w.bytes(c.kcv);
  }
  w.u16(static_cast<std::uint16_t>(h.attributes.size()));
  for (const auto& a : h.attributes) {
    w.str(a.name);
    w.u16(a.class_index);
    w.u8(static_cast<std::uint8_t>(a.kind));
  }
  w.str(h.card_id_attribute);
  w.str(h.integrity_key_uri);
  w.bytes(h.integrity_kcv);
  w.patch_u32(kXofHeaderLengthOffset,
              static_cast<std::uint32_t>(w.size() - kXofHeaderLengthOffset - 4));
  return w.take();
}

Result<XofHeader> parse_xof_header(std::span<const std::uint8_t> bytes, const std::string& where) {
  ByteReader r(bytes, 0, where);
  XofHeader h;
  PF_ASSIGN_OR_RETURN(auto magic, r.bytes(kXofMagic.size(), "magic"));
  if (!std::equal(magic.begin(), magic.end(), kXofMagic.begin())) {
    return r.error_at(0, "not an XOF file (bad magic)");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t header_length, r.u32("header length"));
  if (header_length != r.remaining()) {
    return r.error_at(kXofHeaderLengthOffset, "header length " + std::to_string(header_length) +
                                                  " but " + std::to_string(r.remaining()) +
                                                  " header bytes follow");
  }
  PF_ASSIGN_OR_RETURN(h.format_version, r.u16("format version"));
  if (h.format_version != kXofFormatVersion) {
    return r.error_at(12, "format version " + std::to_string(h.format_version) +
                              " is not supported (this build reads " +
                              std::to_string(kXofFormatVersion) + ")");
  }
  PF_ASSIGN_OR_RETURN(h.flags, r.u16("flags"));
  PF_ASSIGN_OR_RETURN(h.record_count, r.u64("record count"));
  PF_ASSIGN_OR_RETURN(h.reject_count, r.u64("reject count"));
  PF_ASSIGN_OR_RETURN(h.segment_count, r.u32("segment count"));
  PF_ASSIGN_OR_RETURN(h.segment_cards, r.u32("segment size"));
  PF_ASSIGN_OR_RETURN(std::uint32_t level, r.u32("zstd level"));
  h.zstd_level = static_cast<std::int32_t>(level);
  PF_ASSIGN_OR_RETURN(h.zstd_version, r.u32("zstd version"));
  PF_ASSIGN_OR_RETURN(h.file_id, read_fixed<16>(r, "file id"));
  PF_ASSIGN_OR_RETURN(h.source_sha256, read_fixed<32>(r, "source SHA-256"));
  PF_ASSIGN_OR_RETURN(h.profile_id, r.str("profile id"));
  PF_ASSIGN_OR_RETURN(h.profile_version, r.str("profile version"));
  PF_ASSIGN_OR_RETURN(h.profile_sha256, read_fixed<32>(r, "profile SHA-256"));
  PF_ASSIGN_OR_RETURN(std::uint16_t class_count, r.u16("key class count"));
  for (std::uint16_t i = 0; i < class_count; ++i) {
    XofKeyClass c;
    PF_ASSIGN_OR_RETURN(c.name, r.str("key class name"));
    PF_ASSIGN_OR_RETURN(c.dkep_uri, r.str("DKep URI"));
    PF_ASSIGN_OR_RETURN(c.kcv, read_fixed<3>(r, "DKep KCV"));
    h.classes.push_back(std::move(c));
  }
  PF_ASSIGN_OR_RETURN(std::uint16_t attribute_count, r.u16("attribute count"));
  for (std::uint16_t i = 0; i < attribute_count; ++i) {
    XofAttribute a;
    PF_ASSIGN_OR_RETURN(a.name, r.str("attribute name"));
    PF_ASSIGN_OR_RETURN(a.class_index, r.u16("attribute key class"));
    const std::uint64_t kind_at = r.offset();
    PF_ASSIGN_OR_RETURN(std::uint8_t kind, r.u8("attribute kind"));
    if (kind > 1)
      return r.error_at(kind_at, "attribute kind " + std::to_string(kind) + " is neither 0 nor 1");
    a.kind = static_cast<XofAttributeKind>(kind);
    h.attributes.push_back(std::move(a));
  }
  PF_ASSIGN_OR_RETURN(h.card_id_attribute, r.str("card id attribute"));
  PF_ASSIGN_OR_RETURN(h.integrity_key_uri, r.str("integrity key URI"));
  PF_ASSIGN_OR_RETURN(h.integrity_kcv, read_fixed<3>(r, "integrity key KCV"));
  PF_TRY(r.expect_end("the header"));
  if (Status valid = validate_xof_header(h); !valid) {
    return Error(ErrorCode::kParse, where + ": header: " + valid.error().message());
  }
  PF_ASSIGN_OR_RETURN(XofFileId expected, derive_xof_file_id(h));
  if (expected != h.file_id) {
    return Error(ErrorCode::kIntegrity,
                 where + ": offset " + std::to_string(kXofFileIdOffset) +
                     ": the file id is not the one the header's digests, KCVs and "
                     "parameters derive");
  }
  return h;
}

}  // namespace persoflow::formats
