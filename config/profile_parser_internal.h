// Internal to config/: the reading machinery of product profiles (profile_parser.cpp,
// prep_parser.cpp). Not part of the config library's interface.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <functional>
#include <initializer_list>
#include <map>
#include <pugixml.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/profile.h"
#include "engine/result.h"

namespace persoflow::config::detail {

inline constexpr std::size_t kMaxProfileBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxFieldBytes = 1048576;  // offsets, lengths, record-length
inline constexpr std::size_t kMaxSegmentCards = 65536;
inline constexpr std::size_t kMaxIdentifier = 64;

inline constexpr std::array kTypes = {AttributeType::kDigits, AttributeType::kAlphanumeric,
                               AttributeType::kHex,    AttributeType::kYymm,
                               AttributeType::kName,   AttributeType::kText};
inline constexpr std::array kReveals = {Reveal::kNever, Reveal::kMaskPan, Reveal::kClear};
inline constexpr std::array kFieldEncryptions = {FieldEncryption::kNone, FieldEncryption::kAesKwp};

inline std::string_view format_name(RecordFormat f) {
  return f == RecordFormat::kXml ? "xml" : "fixed-width";
}
inline constexpr std::array kFormats = {RecordFormat::kXml, RecordFormat::kFixedWidth};

// The children of <profile>, sorted for messages.
constexpr std::array<std::string_view, 9> kKnown = {"attributes", "card-id",       "integrity-key",
                                                    "issuer",     "key-class",     "prep",
                                                    "records",    "transport-key", "xof"};

template <typename Range>
inline std::string join(const Range& items) {
  std::string out;
  for (auto s : items) (out += out.empty() ? "" : ", ") += s;
  return out;
}

inline Error parse_error(const std::string& at, const std::string& reason) {
  return Error(ErrorCode::kParse, at + reason);
}

// Turns positions in the parsed buffer into "name:line: ". The buffer is parsed in
// place, so every element and attribute name points into it at its original offset.
class Locator {
 public:
  Locator(std::string_view text, const char* buffer, std::string name)
      : text_(text), buffer_(buffer), name_(std::move(name)) {
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::size_t line(std::ptrdiff_t offset) const {
    if (offset < 0) return 0;
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(),
                                     static_cast<std::size_t>(offset));
    return static_cast<std::size_t>(it - line_starts_.begin());
  }
  std::size_t line(const pugi::xml_node& n) const { return line(n.offset_debug()); }

  std::string at_offset(std::ptrdiff_t offset) const {
    const std::size_t l = line(offset);
    return l == 0 ? name_ + ": " : name_ + ":" + std::to_string(l) + ": ";
  }
  std::string at(const pugi::xml_node& n) const { return at_offset(n.offset_debug()); }
  std::string at_line(std::size_t l) const { return name_ + ":" + std::to_string(l) + ": "; }
  std::string at(const pugi::xml_attribute& a) const { return at_offset(offset_of(a.name())); }
  // Text nodes start with the whitespace before the text: name the line of the text.
  std::string at_text(const pugi::xml_node& n) const {
    const std::ptrdiff_t start = n.offset_debug();
    if (start < 0) return at_offset(start);
    const std::size_t text = text_.find_first_not_of(" \t\r\n", static_cast<std::size_t>(start));
    return at_offset(text == std::string_view::npos ? start : static_cast<std::ptrdiff_t>(text));
  }

 private:
  std::ptrdiff_t offset_of(const char* p) const {
    const std::less_equal<const char*> le;
    if (p == nullptr || !le(buffer_, p) || !le(p, buffer_ + text_.size())) return -1;
    return p - buffer_;
  }

  std::string_view text_;
  const char* buffer_;
  std::string name_;
  std::vector<std::size_t> line_starts_{0};
};

inline std::string elem(const pugi::xml_node& n) { return "<" + std::string(n.name()) + ">"; }

inline bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdentifier) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

inline bool is_xml_name(std::string_view s) {
  if (s.empty()) return false;
  auto start = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto rest = [&](char c) {
    return start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':';
  };
  return start(s.front()) && std::all_of(s.begin() + 1, s.end(), rest);
}

// The reading of one profile document. Each method checks one element completely
// (its attributes, children and values); cross-references are checked at the end.
class ProfileParser {
 public:
  explicit ProfileParser(const Locator& loc) : loc_(loc) {}

  Result<Profile> parse(const pugi::xml_document& doc);

 private:
  // Where an attribute was declared, for the checks that span several elements.
  struct AttributeWhere {
    std::size_t line = 0;
    std::string at;            // the <attribute> element
    std::string at_key_class;  // its key-class=
    std::string at_position;   // fixed width: its offset=
  };

  Status check_attributes(const pugi::xml_node& n, std::initializer_list<std::string_view> known);
  Status check_no_children(const pugi::xml_node& n);
  Result<pugi::xml_attribute> need(const pugi::xml_node& n, const char* name);
  Result<std::string> identifier(const pugi::xml_attribute& a, const std::string& ctx);
  Result<std::size_t> number(const pugi::xml_attribute& a, const std::string& ctx, std::size_t min,
                             std::size_t max);
  Result<bool> boolean(const pugi::xml_attribute& a, const std::string& ctx);
  Result<std::string> key_uri(const pugi::xml_attribute& a, const std::string& ctx);
  template <typename E, std::size_t N, typename NameFn>
  Result<E> one_of(const pugi::xml_attribute& a, const std::string& ctx,
                   const std::array<E, N>& values, NameFn name_of);

  Status root(const pugi::xml_node& n);
  Status issuer(const pugi::xml_node& n);
  Status transport_key(const pugi::xml_node& n);
  Status records(const pugi::xml_node& n);
  Status key_class(const pugi::xml_node& n);
  Status integrity_key(const pugi::xml_node& n);
  Status xof(const pugi::xml_node& n);
  Status attributes(const pugi::xml_node& n);
  Status attribute(const pugi::xml_node& n);
  Status attribute_position(const pugi::xml_node& n, AttributeSpec& spec, AttributeWhere& where);
  Status card_id(const pugi::xml_node& n);
  Status cross_references();

  // <prep> (prep_parser.cpp)
  Result<Bytes> hex_value(const pugi::xml_attribute& a, const std::string& ctx, std::size_t min,
                          std::size_t max);
  Result<std::uint8_t> hex_byte(const pugi::xml_attribute& a, const std::string& ctx);
  Status prep(const pugi::xml_node& n);
  Status prep_channel(const pugi::xml_node& n, SecureChannelSpec& channel);
  Status prep_script(const pugi::xml_node& n, PrepSpec& spec);
  Result<CommandSpec> prep_command(const pugi::xml_node& c);
  Result<KeySetSpec> prep_key_set(const pugi::xml_node& n);
  Status prep_check_channels(const PrepSpec& spec);
  Result<DgiSpec> prep_dgi(const pugi::xml_node& n);
  Status prep_dgi_via(const pugi::xml_node& n, DgiSpec& d, const std::string& ctx);
  Result<ValueSpec> prep_value(const pugi::xml_node& n, const std::string& ctx);
  // `named_by`: the XML attribute that named it (default: n's attribute=), for messages.
  Status prep_value_attribute(const pugi::xml_node& n, const std::string& name, const std::string& what,
                              const pugi::xml_attribute& named_by = pugi::xml_attribute());

  const Locator& loc_;
  Profile p_;
  std::vector<std::size_t> tk_lines_;
  std::vector<std::pair<std::size_t, std::string>> key_class_at_;  // line, "file:line: "
  std::vector<AttributeWhere> attribute_where_;
  std::map<std::string, std::size_t, std::less<>> source_line_;
  std::string card_id_at_;
  std::size_t card_id_line_ = 0;
};

template <typename E, std::size_t N, typename NameFn>
Result<E> ProfileParser::one_of(const pugi::xml_attribute& a, const std::string& ctx,
                                const std::array<E, N>& values, NameFn name_of) {
  const std::string_view s = a.value();
  std::string known;
  for (const E v : values) {
    if (name_of(v) == s) return v;
    (known += known.empty() ? "" : ", ") += name_of(v);
  }
  return parse_error(loc_.at(a), ctx + ": unknown " + a.name() + " '" + std::string(s) +
                                     "' (known: " + known + ")");
}

}  // namespace persoflow::config::detail
