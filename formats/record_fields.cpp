#include "formats/record_fields.h"

#include <pugixml.hpp>

#include <algorithm>
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

Result<RecordFields> extract_xml(const Profile& profile, const Record& record) {
  const std::string& record_element = profile.records.record_element;
  for (const auto& spec : profile.attributes) {
    if (spec.source.empty() || spec.source == "@") {
      return Error(ErrorCode::kInvalidArgument,
                   "profile attribute " + spec.name + ": no source element or attribute");
    }
  }

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
  // pugixml silently drops text outside the document element; the splitter never yields
  // any, and a record that does not begin and end as an element is refused here.
  if (bytes.empty() || bytes.front() != '<' || bytes.back() != '>') {
    return record_error(record, not_one_element);
  }
  if (const void* nul = std::memchr(bytes.data(), 0, bytes.size()); nul != nullptr) {
    const auto at = static_cast<const std::uint8_t*>(nul) - bytes.data();
    return record_error(record, "a NUL byte at byte " + std::to_string(at) + " of the record");
  }
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
