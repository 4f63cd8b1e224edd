#include "config/profile_parser.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <pugixml.hpp>
#include <utility>
#include <vector>

#include "engine/attribute_rules.h"
#include "engine/hex.h"
#include "engine/pkcs11_uri.h"
#include "config/profile_parser_internal.h"

namespace persoflow::config {
namespace detail {

Status ProfileParser::check_attributes(const pugi::xml_node& n,
                                       std::initializer_list<std::string_view> known) {
  std::vector<std::string_view> seen;
  for (const auto& a : n.attributes()) {
    const std::string_view name = a.name();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      if (known.size() == 0) {
        return parse_error(loc_.at(a),
                           elem(n) + " takes no attributes (found " + std::string(name) + "=)");
      }
      return parse_error(loc_.at(a), "unknown attribute " + std::string(name) + "= on " + elem(n) +
                                         " (known: " + join(known) + ")");
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      return parse_error(loc_.at(a), std::string(name) + "= repeated on " + elem(n));
    }
    seen.push_back(name);
  }
  return ok_status();
}

Status ProfileParser::check_no_children(const pugi::xml_node& n) {
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_element) {
      return parse_error(loc_.at(c), "unexpected element " + elem(c) + " inside " + elem(n));
    }
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside " + elem(n));
    }
  }
  return ok_status();
}

Result<pugi::xml_attribute> ProfileParser::need(const pugi::xml_node& n, const char* name) {
  const pugi::xml_attribute a = n.attribute(name);
  if (!a) {
    return parse_error(loc_.at(n), "missing required " + std::string(name) + "= on " + elem(n));
  }
  return a;
}

Result<std::string> ProfileParser::identifier(const pugi::xml_attribute& a,
                                              const std::string& ctx) {
  const std::string v = a.value();
  if (!is_identifier(v)) {
    return parse_error(loc_.at(a), ctx + ": " + a.name() + " '" + v +
                                       "' must be 1-64 letters, digits, '_', '.' or '-'");
  }
  return v;
}

Result<std::size_t> ProfileParser::number(const pugi::xml_attribute& a, const std::string& ctx,
                                          std::size_t min, std::size_t max) {
  const std::string_view s = a.value();
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < min || v > max) {
    return parse_error(loc_.at(a), ctx + ": " + a.name() + " must be a whole number from " +
                                       std::to_string(min) + " to " + std::to_string(max));
  }
  return v;
}

Result<bool> ProfileParser::boolean(const pugi::xml_attribute& a, const std::string& ctx) {
  const std::string_view s = a.value();
  if (s == "true") return true;
  if (s == "false") return false;
  return parse_error(loc_.at(a), ctx + ": " + a.name() + " must be \"true\" or \"false\"");
}


// A key named by PKCS#11 URI: it must parse, name one object, and be a secret key.
// The URI is never quoted here; Pkcs11Uri's own messages redact any PIN.
Result<std::string> ProfileParser::key_uri(const pugi::xml_attribute& a, const std::string& ctx) {
  const std::string text = a.value();
  const std::string what = ctx + ": " + a.name();
  auto uri = Pkcs11Uri::parse(text);
  if (!uri) return parse_error(loc_.at(a), what + ": " + uri.error().message());
  if (!uri->names_one_object()) {
    return parse_error(loc_.at(a), what + " must name one key (object= or id=)");
  }
  if (uri->type && *uri->type != Pkcs11ObjectType::kSecretKey) {
    return parse_error(loc_.at(a), what + " must name a secret key (type=secret-key or no type)");
  }
  return text;
}

Result<Profile> ProfileParser::parse(const pugi::xml_document& doc) {
  pugi::xml_node root_node;
  for (const auto& c : doc.children()) {
    if (c.type() == pugi::node_doctype) {
      return parse_error(loc_.at(c), "a DOCTYPE is not allowed in a profile");
    }
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "text outside the root element");
    }
    if (c.type() != pugi::node_element) continue;
    if (root_node) return parse_error(loc_.at(c), "a second root element " + elem(c));
    root_node = c;
  }
  if (!root_node) return parse_error(loc_.at_offset(0), "no root element");
  PF_TRY(root(root_node));
  return std::move(p_);
}

Status ProfileParser::root(const pugi::xml_node& n) {
  if (std::string_view(n.name()) != "profile") {
    return parse_error(loc_.at(n), "root element is " + elem(n) + ", expected <profile>");
  }
  PF_TRY(check_attributes(n, {"id", "version"}));
  PF_ASSIGN_OR_RETURN(const auto id, need(n, "id"));
  PF_ASSIGN_OR_RETURN(p_.id, identifier(id, "<profile>"));
  PF_ASSIGN_OR_RETURN(const auto version, need(n, "version"));
  PF_ASSIGN_OR_RETURN(p_.version, identifier(version, "<profile>"));

  // Each child element of <profile> once (key-class and transport-key: once or more),
  // in any order; read in dependency order (records before attributes).
  std::map<std::string, std::vector<pugi::xml_node>, std::less<>> children;
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside <profile>");
    }
    if (c.type() != pugi::node_element) continue;
    const std::string_view name = c.name();
    if (std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end()) {
      return parse_error(
          loc_.at(c), "unknown element " + elem(c) + " in <profile> (known: " + join(kKnown) + ")");
    }
    auto& list = children[std::string(name)];
    if (!list.empty() && name != "key-class" && name != "transport-key") {
      return parse_error(loc_.at(c), elem(c) + " repeated (first at line " +
                                         std::to_string(loc_.line(list.front())) + ")");
    }
    list.push_back(c);
  }
  for (const char* required : {"issuer", "transport-key", "records", "key-class", "integrity-key",
                               "attributes", "card-id"}) {
    if (children.find(required) == children.end()) {
      return parse_error(loc_.at(n), "<profile> has no <" + std::string(required) + "> element");
    }
  }
  PF_TRY(issuer(children["issuer"].front()));
  for (const auto& tk : children["transport-key"]) PF_TRY(transport_key(tk));
  PF_TRY(records(children["records"].front()));
  for (const auto& kc : children["key-class"]) PF_TRY(key_class(kc));
  PF_TRY(integrity_key(children["integrity-key"].front()));
  if (auto it = children.find("xof"); it != children.end()) PF_TRY(xof(it->second.front()));
  PF_TRY(attributes(children["attributes"].front()));
  PF_TRY(card_id(children["card-id"].front()));
  PF_TRY(cross_references());
  if (auto it = children.find("prep"); it != children.end()) PF_TRY(prep(it->second.front()));
  return ok_status();
}

Status ProfileParser::issuer(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {}));
  std::string text;
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_element) {
      return parse_error(loc_.at(c), "unexpected element " + elem(c) + " inside <issuer>");
    }
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) text += c.value();
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return parse_error(loc_.at(n), "<issuer> is empty");
  p_.issuer = text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
  return ok_status();
}

Status ProfileParser::transport_key(const pugi::xml_node& n) {
  const std::string ctx = "<transport-key>";
  PF_TRY(check_attributes(n, {"kek-id", "uri"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto kek_id, need(n, "kek-id"));
  PF_ASSIGN_OR_RETURN(const auto uri, need(n, "uri"));
  TransportKey tk;
  auto bytes = from_hex(kek_id.value());
  if (!bytes) return parse_error(loc_.at(kek_id), ctx + ": kek-id: " + bytes.error().message());
  if (bytes->empty()) return parse_error(loc_.at(kek_id), ctx + ": kek-id is empty");
  tk.kek_id = std::move(bytes).value();
  for (std::size_t i = 0; i < p_.transport_keys.size(); ++i) {
    if (p_.transport_keys[i].kek_id == tk.kek_id) {
      return parse_error(loc_.at(kek_id), ctx + ": kek-id " + to_hex(tk.kek_id) +
                                              " repeated (first at line " +
                                              std::to_string(tk_lines_[i]) + ")");
    }
  }
  PF_ASSIGN_OR_RETURN(tk.uri, key_uri(uri, ctx));
  p_.transport_keys.push_back(std::move(tk));
  tk_lines_.push_back(loc_.line(n));
  return ok_status();
}

Status ProfileParser::records(const pugi::xml_node& n) {
  const std::string ctx = "<records>";
  PF_TRY(check_attributes(n, {"element", "format", "record-length"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto format, need(n, "format"));
  PF_ASSIGN_OR_RETURN(p_.records.format, one_of(format, ctx, kFormats, format_name));
  const auto element = n.attribute("element");
  const auto length = n.attribute("record-length");
  if (p_.records.format == RecordFormat::kXml) {
    if (length) {
      return parse_error(loc_.at(length),
                         ctx + ": record-length applies to format=\"fixed-width\" only");
    }
    if (element) {
      p_.records.record_element = element.value();
      if (!is_xml_name(p_.records.record_element)) {
        return parse_error(loc_.at(element), ctx + ": element '" + p_.records.record_element +
                                                 "' is not an XML element name");
      }
    }
  } else {
    if (element) {
      return parse_error(loc_.at(element), ctx + ": element applies to format=\"xml\" only");
    }
    p_.records.record_element.clear();
    if (length) {
      PF_ASSIGN_OR_RETURN(p_.records.record_length, number(length, ctx, 0, kMaxFieldBytes));
    }
  }
  return ok_status();
}

Status ProfileParser::key_class(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"dkep", "name"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto name_attr, need(n, "name"));
  PF_ASSIGN_OR_RETURN(const auto dkep, need(n, "dkep"));
  KeyClass kc;
  PF_ASSIGN_OR_RETURN(kc.name, identifier(name_attr, "<key-class>"));
  for (std::size_t i = 0; i < p_.key_classes.size(); ++i) {
    if (p_.key_classes[i].name == kc.name) {
      return parse_error(loc_.at(name_attr), "key class '" + kc.name +
                                                 "' repeated (first at line " +
                                                 std::to_string(key_class_at_[i].first) + ")");
    }
  }
  PF_ASSIGN_OR_RETURN(kc.dkep_uri, key_uri(dkep, "key class '" + kc.name + "'"));
  p_.key_classes.push_back(std::move(kc));
  key_class_at_.emplace_back(loc_.line(n), loc_.at(n));
  return ok_status();
}

Status ProfileParser::integrity_key(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"uri"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto uri, need(n, "uri"));
  PF_ASSIGN_OR_RETURN(p_.integrity_key_uri, key_uri(uri, "<integrity-key>"));
  return ok_status();
}

Status ProfileParser::xof(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"segment-cards"}));
  PF_TRY(check_no_children(n));
  if (const auto cards = n.attribute("segment-cards")) {
    PF_ASSIGN_OR_RETURN(p_.segment_cards, number(cards, "<xof>", 1, kMaxSegmentCards));
  }
  return ok_status();
}

Status ProfileParser::attributes(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {}));
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside <attributes>");
    }
    if (c.type() != pugi::node_element) continue;
    if (std::string_view(c.name()) != "attribute") {
      return parse_error(loc_.at(c),
                         "unknown element " + elem(c) + " in <attributes> (known: attribute)");
    }
    PF_TRY(attribute(c));
  }
  if (p_.attributes.empty()) return parse_error(loc_.at(n), "<attributes> declares no <attribute>");
  return ok_status();
}

Status ProfileParser::attribute(const pugi::xml_node& n) {
  PF_TRY(check_attributes(
      n, {"field-encryption", "field-key", "key-class", "length", "luhn", "max-length",
          "min-length", "name", "offset", "required", "reveal", "source", "type"}));
  PF_TRY(check_no_children(n));
  AttributeSpec spec;
  AttributeWhere where{loc_.line(n), loc_.at(n), {}, {}};
  PF_ASSIGN_OR_RETURN(const auto name_attr, need(n, "name"));
  PF_ASSIGN_OR_RETURN(spec.name, identifier(name_attr, "<attribute>"));
  for (std::size_t i = 0; i < p_.attributes.size(); ++i) {
    if (p_.attributes[i].name == spec.name) {
      return parse_error(loc_.at(name_attr), "attribute '" + spec.name +
                                                 "' repeated (first at line " +
                                                 std::to_string(attribute_where_[i].line) + ")");
    }
  }
  const std::string ctx = "attribute '" + spec.name + "'";
  PF_TRY(attribute_position(n, spec, where));

  PF_ASSIGN_OR_RETURN(const auto type, need(n, "type"));
  PF_ASSIGN_OR_RETURN(spec.type, one_of(type, ctx, kTypes, attribute_type_name));
  if (const auto a = n.attribute("required")) {
    PF_ASSIGN_OR_RETURN(spec.required, boolean(a, ctx));
  }
  const auto min_attr = n.attribute("min-length");
  const auto max_attr = n.attribute("max-length");
  if (min_attr) {
    PF_ASSIGN_OR_RETURN(spec.min_length, number(min_attr, ctx, 0, kMaxFieldBytes));
  }
  if (max_attr) {
    PF_ASSIGN_OR_RETURN(spec.max_length, number(max_attr, ctx, 0, kMaxFieldBytes));
  }
  if (spec.max_length != 0 && spec.min_length > spec.max_length) {
    return parse_error(loc_.at(min_attr), ctx + ": min-length " + std::to_string(spec.min_length) +
                                              " exceeds max-length " +
                                              std::to_string(spec.max_length));
  }
  const auto luhn = n.attribute("luhn");
  if (luhn) {
    PF_ASSIGN_OR_RETURN(spec.luhn, boolean(luhn, ctx));
  }
  PF_ASSIGN_OR_RETURN(const auto key_class_attr, need(n, "key-class"));
  PF_ASSIGN_OR_RETURN(spec.key_class, identifier(key_class_attr, ctx));
  where.at_key_class = loc_.at(key_class_attr);
  const auto encryption = n.attribute("field-encryption");
  const auto field_key = n.attribute("field-key");
  if (encryption) {
    PF_ASSIGN_OR_RETURN(spec.field_encryption,
                        one_of(encryption, ctx, kFieldEncryptions, field_encryption_name));
  }
  const auto reveal = n.attribute("reveal");
  if (reveal) {
    PF_ASSIGN_OR_RETURN(spec.reveal, one_of(reveal, ctx, kReveals, reveal_name));
  }

  // The rules that tie the attribute's settings together.
  if (spec.luhn && spec.type != AttributeType::kDigits) {
    return parse_error(loc_.at(luhn), ctx + ": luhn=\"true\" needs type=\"digits\"");
  }
  if (spec.luhn && spec.reveal == Reveal::kClear) {
    return parse_error(loc_.at(reveal), ctx +
                                            ": a Luhn-checked value (a PAN) must not have "
                                            "reveal=\"clear\" (use mask-pan or never)");
  }
  if (spec.reveal == Reveal::kMaskPan && spec.type != AttributeType::kDigits) {
    return parse_error(loc_.at(reveal), ctx + ": reveal=\"mask-pan\" needs type=\"digits\"");
  }
  if (spec.field_encryption == FieldEncryption::kNone) {
    if (field_key) {
      return parse_error(loc_.at(field_key),
                         ctx + ": field-key without field-encryption=\"aes-kwp\"");
    }
  } else {
    if (!field_key) {
      return parse_error(
          loc_.at(encryption),
          ctx + ": field-encryption=\"" + std::string(encryption.value()) + "\" needs a field-key");
    }
    PF_ASSIGN_OR_RETURN(spec.field_key_uri, key_uri(field_key, ctx));
    if (spec.type != AttributeType::kHex) {
      return parse_error(loc_.at(type),
                         ctx + ": a field-encrypted attribute must have type=\"hex\"");
    }
    if (spec.reveal != Reveal::kNever) {
      return parse_error(loc_.at(reveal), ctx +
                                              ": a field-encrypted attribute must have "
                                              "reveal=\"never\"");
    }
  }
  if (p_.records.format == RecordFormat::kFixedWidth) {
    if (spec.min_length > spec.length) {
      return parse_error(loc_.at(min_attr),
                         ctx + ": min-length " + std::to_string(spec.min_length) +
                             " exceeds the field length " + std::to_string(spec.length));
    }
    if (spec.max_length > spec.length) {
      return parse_error(loc_.at(max_attr),
                         ctx + ": max-length " + std::to_string(spec.max_length) +
                             " exceeds the field length " + std::to_string(spec.length));
    }
  }
  p_.attributes.push_back(std::move(spec));
  attribute_where_.push_back(std::move(where));
  return ok_status();
}

// source= for XML records; offset= and length= for fixed-width ones.
Status ProfileParser::attribute_position(const pugi::xml_node& n, AttributeSpec& spec,
                                         AttributeWhere& where) {
  const std::string ctx = "attribute '" + spec.name + "'";
  const auto source = n.attribute("source");
  const auto offset = n.attribute("offset");
  const auto length = n.attribute("length");
  if (p_.records.format == RecordFormat::kXml) {
    for (const auto& a : {offset, length}) {
      if (a) {
        return parse_error(loc_.at(a), ctx + ": " + a.name() +
                                           " is for fixed-width records; "
                                           "XML records use source");
      }
    }
    PF_ASSIGN_OR_RETURN(const auto src, need(n, "source"));
    spec.source = src.value();
    const std::string_view s = spec.source;
    if (!is_xml_name(s.substr(s.starts_with('@') ? 1 : 0))) {
      return parse_error(loc_.at(src), ctx + ": source '" + spec.source +
                                           "' is neither an element name nor @attribute-name");
    }
    if (auto it = source_line_.find(spec.source); it != source_line_.end()) {
      return parse_error(loc_.at(src), ctx + ": source '" + spec.source +
                                           "' is already read by the attribute at line " +
                                           std::to_string(it->second));
    }
    source_line_[spec.source] = where.line;
    return ok_status();
  }
  if (source) {
    return parse_error(loc_.at(source), ctx +
                                            ": source is for XML records; fixed-width records "
                                            "use offset and length");
  }
  PF_ASSIGN_OR_RETURN(const auto off, need(n, "offset"));
  PF_ASSIGN_OR_RETURN(const auto len, need(n, "length"));
  PF_ASSIGN_OR_RETURN(spec.offset, number(off, ctx, 0, kMaxFieldBytes - 1));
  PF_ASSIGN_OR_RETURN(spec.length, number(len, ctx, 1, kMaxFieldBytes));
  where.at_position = loc_.at(off);
  const std::size_t end = spec.offset + spec.length;
  if (p_.records.record_length != 0 && end > p_.records.record_length) {
    return parse_error(loc_.at(off), ctx + ": bytes " + std::to_string(spec.offset) + "-" +
                                         std::to_string(end - 1) + " do not fit in record-length " +
                                         std::to_string(p_.records.record_length));
  }
  return ok_status();
}

Status ProfileParser::card_id(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"attribute"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto a, need(n, "attribute"));
  p_.card_id_attribute = a.value();
  card_id_at_ = loc_.at(a);
  card_id_line_ = loc_.line(n);
  return ok_status();
}

Status ProfileParser::cross_references() {
  for (std::size_t i = 0; i < p_.attributes.size(); ++i) {
    const AttributeSpec& a = p_.attributes[i];
    if (p_.key_class(a.key_class) == nullptr) {
      std::string declared;
      for (const auto& k : p_.key_classes) (declared += declared.empty() ? "" : ", ") += k.name;
      return parse_error(attribute_where_[i].at_key_class,
                         "attribute '" + a.name + "': key class '" + a.key_class +
                             "' is not declared (declared: " + declared + ")");
    }
  }
  for (std::size_t i = 0; i < p_.key_classes.size(); ++i) {
    const std::string& name = p_.key_classes[i].name;
    const bool used = std::any_of(p_.attributes.begin(), p_.attributes.end(),
                                  [&](const AttributeSpec& a) { return a.key_class == name; });
    if (!used) {
      return parse_error(key_class_at_[i].second,
                         "key class '" + name + "' is declared but no attribute uses it");
    }
  }
  if (p_.records.format == RecordFormat::kFixedWidth) {
    for (std::size_t i = 0; i < p_.attributes.size(); ++i) {
      const AttributeSpec& a = p_.attributes[i];
      for (std::size_t j = 0; j < i; ++j) {
        const AttributeSpec& b = p_.attributes[j];
        if (a.offset < b.offset + b.length && b.offset < a.offset + a.length) {
          return parse_error(attribute_where_[i].at_position,
                             "attribute '" + a.name + "' (bytes " + std::to_string(a.offset) + "-" +
                                 std::to_string(a.offset + a.length - 1) +
                                 ") overlaps attribute '" + b.name + "' (bytes " +
                                 std::to_string(b.offset) + "-" +
                                 std::to_string(b.offset + b.length - 1) + ", line " +
                                 std::to_string(attribute_where_[j].line) + ")");
        }
      }
    }
  }
  const AttributeSpec* id = p_.attribute(p_.card_id_attribute);
  if (id == nullptr) {
    return parse_error(card_id_at_, "<card-id> names attribute '" + p_.card_id_attribute +
                                        "', which is not declared");
  }
  const auto& where = attribute_where_[static_cast<std::size_t>(id - p_.attributes.data())];
  const std::string what = "attribute '" + id->name + "' is the card id (<card-id> at line " +
                           std::to_string(card_id_line_) + ")";
  if (!id->required) return parse_error(where.at, what + ": it must be required");
  if (id->luhn) {
    return parse_error(where.at, what + ": it must not have luhn=\"true\" (never a PAN)");
  }
  if (id->field_encryption != FieldEncryption::kNone) {
    return parse_error(where.at, what + ": it must not be field-encrypted");
  }
  if (id->reveal != Reveal::kClear) {
    return parse_error(where.at, what + ": it must have reveal=\"clear\"");
  }
  return ok_status();
}

Result<Bytes> sha256(std::string_view data) {
  Bytes out(32);
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size()) {
    return Error(ErrorCode::kInternal, "SHA-256 of the profile failed");
  }
  return out;
}

}  // namespace detail

using detail::Locator;
using detail::ProfileParser;
using detail::parse_error;

Result<Profile> parse_profile(std::string_view xml, const std::string& name) {
  // Parsed in place in a copy: names then point into the buffer at their offsets,
  // which gives every attribute its own line (pugixml has no offset for attributes).
  std::vector<char> buffer(xml.begin(), xml.end());
  buffer.push_back('\0');
  const Locator loc(xml, buffer.data(), name);
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_buffer_inplace(
      buffer.data(), xml.size(), pugi::parse_default | pugi::parse_doctype | pugi::parse_fragment,
      pugi::encoding_utf8);
  if (!parsed) {
    return parse_error(loc.at_offset(parsed.offset),
                       std::string("malformed XML: ") + parsed.description());
  }
  ProfileParser parser(loc);
  PF_ASSIGN_OR_RETURN(Profile profile, parser.parse(doc));
  PF_ASSIGN_OR_RETURN(profile.sha256, detail::sha256(xml));
  return profile;
}

Result<Profile> load_profile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "profile not found: " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kIo, "cannot open profile " + path);
  std::string text;
  std::array<char, 4096> buf{};
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > detail::kMaxProfileBytes) {
      return Error(ErrorCode::kParse, path + ": profile larger than 1 MiB");
    }
  }
  if (in.bad()) return Error(ErrorCode::kIo, "cannot read profile " + path);
  return parse_profile(text, path);
}

}  // namespace persoflow::config
