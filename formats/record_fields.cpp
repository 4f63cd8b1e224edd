#include "formats/record_fields.h"

#include <pugixml.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <string_view>
#include <utility>

#include "engine/attribute_rules.h"

namespace persoflow::formats {

const FieldValue* RecordFields::find(std::string_view name) const {
  for (const auto& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const SecureBytes* RecordFields::value(std::string_view name) const {
  const FieldValue* f = find(name);
  return f != nullptr && f->value.has_value() ? &*f->value : nullptr;
}

namespace {

Error record_error(const Record& record, std::string reason) {
  return RecordError{record.number, record.offset, std::move(reason)}.to_error();
}

bool is_xml_space(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// The value without leading and trailing XML whitespace; nullopt when nothing is left.
std::optional<SecureBytes> trimmed(std::span<const std::uint8_t> v) {
  while (!v.empty() && is_xml_space(v.back())) v = v.first(v.size() - 1);
  while (!v.empty() && is_xml_space(v.front())) v = v.subspan(1);
  if (v.empty()) return std::nullopt;
  return SecureBytes(v);
}

std::span<const std::uint8_t> c_string_bytes(const char* s) {
  return {reinterpret_cast<const std::uint8_t*>(s), std::strlen(s)};
}

// ---------------------------------------------------------------------------- XML

// The text of the one child element `name` of the record element.
Result<std::optional<SecureBytes>> element_text(const Record& record, pugi::xml_node element,
                                                const std::string& name) {
  pugi::xml_node found;
  std::size_t count = 0;
  for (pugi::xml_node child : element.children(name.c_str())) {
    found = child;
    ++count;
  }
  if (count == 0) return std::optional<SecureBytes>();
  if (count > 1) {
    return record_error(record, "element <" + name + "> appears " + std::to_string(count) +
                                    " times; at most once is allowed");
  }
  SecureBytes text;
  for (pugi::xml_node part : found.children()) {
    if (part.type() == pugi::node_pcdata || part.type() == pugi::node_cdata) {
      text.append(c_string_bytes(part.value()));
    } else if (part.type() == pugi::node_element) {
      return record_error(record, "element <" + name + "> holds elements instead of text");
    }
  }
  return trimmed(text.reveal());
}

// The value of the record element's attribute `name`.
Result<std::optional<SecureBytes>> attribute_value(const Record& record, pugi::xml_node element,
                                                   const std::string& name) {
  pugi::xml_attribute found;
  std::size_t count = 0;
  for (pugi::xml_attribute a : element.attributes()) {
    if (name == a.name()) {
      found = a;
      ++count;
    }
  }
  if (count == 0) return std::optional<SecureBytes>();
  if (count > 1) {
    return record_error(record, "attribute " + name + " of <" + std::string(element.name()) +
                                    "> appears " + std::to_string(count) + " times");
  }
  return trimmed(c_string_bytes(found.value()));
}

// ------------------------------------------------------ XML of the common shape
//
// Most records are the record element with attributes and children that hold plain text:
//   <card id="C-1" kind="debit"><pan>4000...</pan><name>A B</name><exp/></card>
// SimpleXml reads such a record in one pass, in place (no copy, no DOM), and answers only
// where pugixml is certain to give the same values: names of ASCII letters, digits, '_',
// '-' and '.'; attribute values quoted right after '=' and free of '<', '&', tabs and
// line ends (pugixml decodes or converts those); text free of '&' and '\r'; no comment,
// CDATA section, processing instruction or declaration; children without attributes or
// elements of their own, closed by exactly "</name>"; the record's own end tag exactly
// "</card>" at its end; no source attribute or element present twice. Any other record,
// every malformed one included, goes through pugixml, which gives the same values or the
// precise error. The differential test in record_fields_test.cpp and the fuzz target
// compare the two paths.
class SimpleXml {
 public:
  // False when the record is not of the common shape (or has more than kMaxItems
  // attributes or children).
  bool read(std::span<const std::uint8_t> record, std::string_view record_element) {
    b_ = record.data();
    n_ = record.size();
    std::size_t p = 1;
    std::string_view name;
    if (!read_name(p, name) || name != record_element) return false;
    // Attributes of the record element.
    for (;;) {
      const std::size_t spaces = skip_spaces(p);
      if (p >= n_) return false;
      if (b_[p] == '>') {
        ++p;
        break;
      }
      if (b_[p] == '/') return p + 2 == n_;  // "<card .../>": the whole record
      if (spaces == 0 || attributes_ == kMaxItems) return false;
      std::string_view attribute;
      if (!read_name(p, attribute) || p + 1 >= n_ || b_[p] != '=') return false;
      const std::uint8_t quote = b_[p + 1];
      if (quote != '"' && quote != '\'') return false;
      const std::size_t start = p + 2;
      std::size_t end = start;
      for (; end < n_ && b_[end] != quote; ++end) {
        const std::uint8_t c = b_[end];
        if (c == '<' || c == '&' || c == '\t' || c == '\n' || c == '\r') return false;
      }
      if (end >= n_) return false;
      attribute_[attributes_++] = {attribute, record.subspan(start, end - start)};
      p = end + 1;
    }
    // Content: text (ignored) and children holding text, then the end tag.
    for (;;) {
      std::size_t lt = 0;
      if (!plain_text(p, lt)) return false;
      p = lt + 1;
      if (p >= n_) return false;
      if (b_[p] == '/') {
        ++p;
        return read_name(p, name) && name == record_element && p + 1 == n_;  // b_[n_ - 1] is '>'
      }
      std::string_view child;
      if (children_ == kMaxItems || !read_name(p, child)) return false;
      skip_spaces(p);
      if (p + 1 < n_ && b_[p] == '/' && b_[p + 1] == '>') {
        child_[children_++] = {child, {}};
        p += 2;
        continue;
      }
      if (p >= n_ || b_[p] != '>') return false;
      const std::size_t start = ++p;
      if (!plain_text(p, lt) || lt + 1 >= n_ || b_[lt + 1] != '/') return false;
      child_[children_++] = {child, record.subspan(start, lt - start)};
      p = lt + 2;
      if (!read_name(p, name) || name != child || p >= n_ || b_[p] != '>') return false;
      ++p;
    }
  }

  // The value of the record element's attribute `name` (empty when absent), or false
  // when it appears more than once.
  bool attribute(std::string_view name, std::span<const std::uint8_t>& value) const {
    return find(attribute_, attributes_, name, value);
  }
  // The text of the child element `name`, the same way.
  bool child(std::string_view name, std::span<const std::uint8_t>& value) const {
    return find(child_, children_, name, value);
  }

 private:
  static constexpr std::size_t kMaxItems = 32;
  struct Item {
    std::string_view name;
    std::span<const std::uint8_t> value;
  };

  static bool find(const std::array<Item, kMaxItems>& items, std::size_t count, std::string_view name,
                   std::span<const std::uint8_t>& value) {
    value = {};
    bool found = false;
    for (std::size_t i = 0; i < count; ++i) {
      if (items[i].name != name) continue;
      if (found) return false;
      found = true;
      value = items[i].value;
    }
    return true;
  }

  static bool name_start(std::uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  static bool name_char(std::uint8_t c) { return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }

  // A name at b_[p] (p moves past it); false when none starts there. The character after
  // it is the caller's to check.
  bool read_name(std::size_t& p, std::string_view& name) const {
    if (p >= n_ || !name_start(b_[p])) return false;
    const std::size_t start = p;
    while (p < n_ && name_char(b_[p])) ++p;
    name = std::string_view(reinterpret_cast<const char*>(b_) + start, p - start);
    return p < n_ && (b_[p] == '>' || b_[p] == '/' || b_[p] == '=' || is_xml_space(b_[p]));
  }

  std::size_t skip_spaces(std::size_t& p) const {
    const std::size_t start = p;
    while (p < n_ && is_xml_space(b_[p])) ++p;
    return p - start;
  }

  // Text from b_[p] to the next '<' (its index in lt), without '&' or '\r'.
  bool plain_text(std::size_t p, std::size_t& lt) const {
    for (; p < n_; ++p) {
      const std::uint8_t c = b_[p];
      if (c == '<') {
        lt = p;
        return true;
      }
      if (c == '&' || c == '\r') return false;
    }
    return false;
  }

  const std::uint8_t* b_ = nullptr;
  std::size_t n_ = 0;
  std::array<Item, kMaxItems> attribute_{};
  std::array<Item, kMaxItems> child_{};
  std::size_t attributes_ = 0;
  std::size_t children_ = 0;
};

// The profile's values from a record of the common shape; nullopt when it is not of that
// shape (pugixml decides).
std::optional<RecordFields> extract_simple_xml(const Profile& profile, const Record& record) {
  SimpleXml xml;
  if (!xml.read(record.bytes.reveal(), profile.records.record_element)) return std::nullopt;
  RecordFields out{record.number, record.offset, {}};
  out.fields.reserve(profile.attributes.size());
  for (const auto& spec : profile.attributes) {
    std::span<const std::uint8_t> value;
    const bool once = spec.source.front() == '@' ? xml.attribute(std::string_view(spec.source).substr(1), value)
                                                 : xml.child(spec.source, value);
    if (!once) return std::nullopt;  // pugixml's path names the repetition
    out.fields.push_back(FieldValue{spec.name, trimmed(value)});
  }
  return out;
}

// Errors found before any parsing: a profile attribute without a source (kInvalidArgument),
// a record that does not begin and end as an element, a NUL byte.
Status check_xml_record(const Profile& profile, const Record& record) {
  for (const auto& spec : profile.attributes) {
    if (spec.source.empty() || spec.source == "@") {
      return Error(ErrorCode::kInvalidArgument,
                   "profile attribute " + spec.name + ": no source element or attribute");
    }
  }
  const std::span<const std::uint8_t> bytes = record.bytes.reveal();
  // pugixml silently drops text outside the document element; the splitter never yields
  // any, and a record that does not begin and end as an element is refused here.
  if (bytes.empty() || bytes.front() != '<' || bytes.back() != '>') {
    return record_error(record, "the record is not one <" + profile.records.record_element + "> element");
  }
  if (const void* nul = std::memchr(bytes.data(), 0, bytes.size()); nul != nullptr) {
    const auto at = static_cast<const std::uint8_t*>(nul) - bytes.data();
    return record_error(record, "a NUL byte at byte " + std::to_string(at) + " of the record");
  }
  return ok_status();
}

// Through pugixml's DOM: any well-formed record, and the precise error for the others.
// check_xml_record has passed.
Result<RecordFields> extract_xml_dom(const Profile& profile, const Record& record) {
  const std::string& record_element = profile.records.record_element;
  // pugixml parses in place (it decodes entities and line ends inside the buffer), so
  // it gets a copy of the record in SecureBytes, wiped on return. With encoding_utf8 and
  // an in-place buffer pugixml copies no content: every name and value it returns points
  // into `buffer`. Residual, accepted: pugixml's node storage (the first page inside
  // `doc` on this stack, further pages from its global allocator) is released without
  // being wiped; it holds node types and pointers into `buffer` only, which reveal the
  // record's shape (how many elements and attributes), never its bytes. A wiping
  // pugi::set_memory_management_functions was not used: it is global, not thread-safe to
  // install, and would also be handed blocks allocated before it was installed.
  SecureBytes buffer(record.bytes.reveal());
  std::span<std::uint8_t> bytes = buffer.reveal_mutable();
  const std::string not_one_element = "the record is not one <" + record_element + "> element";
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed =
      doc.load_buffer_inplace(bytes.data(), bytes.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!parsed) {
    return record_error(record, std::string("not well-formed XML: ") + parsed.description() +
                                    " at byte " + std::to_string(parsed.offset) + " of the record");
  }
  std::size_t elements = 0;
  for (pugi::xml_node n : doc.children()) {
    if (n.type() == pugi::node_element) ++elements;
  }
  const pugi::xml_node element = doc.document_element();
  if (elements != 1 || record_element != element.name()) {
    return record_error(record, not_one_element);
  }

  RecordFields out{record.number, record.offset, {}};
  out.fields.reserve(profile.attributes.size());
  for (const auto& spec : profile.attributes) {
    Result<std::optional<SecureBytes>> value =
        spec.source.front() == '@' ? attribute_value(record, element, spec.source.substr(1))
                                   : element_text(record, element, spec.source);
    if (!value.has_value()) return std::move(value).error();
    out.fields.push_back(FieldValue{spec.name, std::move(value).value()});
  }
  return out;
}

Result<RecordFields> extract_xml(const Profile& profile, const Record& record) {
  PF_TRY(check_xml_record(profile, record));
  if (auto simple = extract_simple_xml(profile, record)) return std::move(*simple);
  return extract_xml_dom(profile, record);
}

// -------------------------------------------------------------------- fixed width

Result<RecordFields> extract_fixed_width(const Profile& profile, const Record& record) {
  const std::span<const std::uint8_t> bytes = record.bytes.reveal();
  RecordFields out{record.number, record.offset, {}};
  out.fields.reserve(profile.attributes.size());
  for (const auto& spec : profile.attributes) {
    if (spec.length == 0) {
      return Error(ErrorCode::kInvalidArgument, "profile attribute " + spec.name + ": no width");
    }
    std::optional<SecureBytes> value;
    if (spec.offset < bytes.size()) {
      const std::size_t len = std::min(spec.length, bytes.size() - spec.offset);
      const std::string_view kept = trim_fixed_width(
          std::string_view(reinterpret_cast<const char*>(bytes.data()) + spec.offset, len));
      if (!kept.empty()) {
        value = SecureBytes(std::span<const std::uint8_t>(
            reinterpret_cast<const std::uint8_t*>(kept.data()), kept.size()));
      }
    }
    out.fields.push_back(FieldValue{spec.name, std::move(value)});
  }
  return out;
}

}  // namespace

Result<RecordFields> extract_xml_fields_with_dom(const Profile& profile, const Record& record) {
  if (profile.records.format != RecordFormat::kXml) {
    return Error(ErrorCode::kInvalidArgument, "not an XML records profile");
  }
  PF_TRY(check_xml_record(profile, record));
  return extract_xml_dom(profile, record);
}

bool xml_record_has_common_shape(const Profile& profile, const Record& record) {
  return profile.records.format == RecordFormat::kXml && check_xml_record(profile, record).has_value() &&
         extract_simple_xml(profile, record).has_value();
}

Result<RecordFields> extract_fields(const Profile& profile, const Record& record) {
  switch (profile.records.format) {
    case RecordFormat::kXml:
      return extract_xml(profile, record);
    case RecordFormat::kFixedWidth:
      return extract_fixed_width(profile, record);
  }
  return Error(ErrorCode::kInvalidArgument, "unknown record format");
}

}  // namespace persoflow::formats
