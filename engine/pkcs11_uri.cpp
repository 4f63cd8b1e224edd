#include "engine/pkcs11_uri.h"


namespace persoflow {
namespace {

constexpr std::string_view kScheme = "pkcs11:";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The URI as it may appear in a message: the value of any attribute (path or query) whose
// name mentions a PIN (pin-value, and near misses such as PIN_VALUE) is replaced,
// never quoted. pin-source (where a PIN file lives) is not a secret and is kept.
std::string redacted(std::string_view text) {
  std::string out;
  auto redact_part = [&](std::string_view part, char sep) {
    std::size_t start = 0;
    while (start <= part.size()) {
      std::size_t end = part.find(sep, start);
      if (end == std::string_view::npos) end = part.size();
      const std::string_view attr = part.substr(start, end - start);
      const std::size_t eq = attr.find('=');
      std::string name(attr.substr(0, eq));
      for (char& c : name) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
      if (eq != std::string_view::npos && name.find("pin") != std::string::npos &&
          name != "pin-source") {
        out += attr.substr(0, eq + 1);
        out += "<redacted>";
      } else {
        out += attr;
      }
      if (end < part.size()) out.push_back(sep);
      start = end + 1;
    }
  };
  const std::size_t q = text.find('?');
  redact_part(text.substr(0, q), ';');
  if (q != std::string_view::npos) {
    out.push_back('?');
    redact_part(text.substr(q + 1), '&');
  }
  return out;
}

Error uri_error(std::string_view text, std::size_t offset, std::string_view reason) {
  return Error(ErrorCode::kParse, "PKCS#11 URI '" + redacted(text) + "': " + std::string(reason) +
                                      " at offset " + std::to_string(offset));
}

// Percent-decodes value (which starts at `base` within the whole URI, for messages).
Result<std::string> decode(std::string_view uri, std::string_view value, std::size_t base) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '%') {
      if (i + 2 >= value.size()) return uri_error(uri, base + i, "truncated percent escape");
      const int hi = hex_value(value[i + 1]);
      const int lo = hex_value(value[i + 2]);
      if (hi < 0 || lo < 0) return uri_error(uri, base + i, "invalid percent escape");
      out.push_back(static_cast<char>((hi << 4) | lo));
      i += 2;
    } else {
      out.push_back(value[i]);
    }
  }
  return out;
}

// RFC 7512 pchar without the attribute separators; everything else is escaped.
bool is_plain(unsigned char c) {
  const bool ascii_alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return ascii_alnum || c == '-' || c == '.' || c == '_' || c == '~' || c == ':' ||
         c == '[' || c == ']' || c == '@' || c == '!' || c == '$' || c == '\'' || c == '(' ||
         c == ')' || c == '*' || c == '+' || c == ',' || c == '&';
}

// In the query ('in_query'), '/' may stay plain but '&' separates attributes and is escaped.
std::string encode(std::string_view value, bool escape_all, bool in_query = false) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    const bool plain = in_query ? (c == '/' || (is_plain(c) && c != '&')) : is_plain(c);
    if (!escape_all && plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

std::optional<Pkcs11ObjectType> parse_type(std::string_view v) {
  if (v == "public") return Pkcs11ObjectType::kPublic;
  if (v == "private") return Pkcs11ObjectType::kPrivate;
  if (v == "cert") return Pkcs11ObjectType::kCert;
  if (v == "secret-key") return Pkcs11ObjectType::kSecretKey;
  if (v == "data") return Pkcs11ObjectType::kData;
  return std::nullopt;
}

std::string_view type_name(Pkcs11ObjectType t) {
  switch (t) {
    case Pkcs11ObjectType::kPublic: return "public";
    case Pkcs11ObjectType::kPrivate: return "private";
    case Pkcs11ObjectType::kCert: return "cert";
    case Pkcs11ObjectType::kSecretKey: return "secret-key";
    case Pkcs11ObjectType::kData: return "data";
  }
  return "";
}

}  // namespace

Result<Pkcs11Uri> Pkcs11Uri::parse(std::string_view text) {
  // RFC 3986: the scheme is case-insensitive.
  bool scheme_ok = text.size() >= kScheme.size();
  for (std::size_t i = 0; scheme_ok && i < kScheme.size(); ++i) {
    const char c = text[i];
    scheme_ok = ((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c) == kScheme[i];
  }
  if (!scheme_ok) {
    return uri_error(text, 0, "does not start with 'pkcs11:'");
  }
  Pkcs11Uri uri;
  const std::size_t qpos = text.find('?');
  const std::string_view path =
      text.substr(kScheme.size(), (qpos == std::string_view::npos ? text.size() : qpos) - kScheme.size());
  const std::string_view query = qpos == std::string_view::npos ? std::string_view{} : text.substr(qpos + 1);

  auto for_each_attr = [&](std::string_view part, std::size_t part_base, char sep,
                           auto&& handle) -> Status {
    std::size_t start = 0;
    while (start <= part.size()) {
      std::size_t end = part.find(sep, start);
      if (end == std::string_view::npos) end = part.size();
      const std::string_view attr = part.substr(start, end - start);
      if (!attr.empty()) {
        const std::size_t eq = attr.find('=');
        if (eq == std::string_view::npos || eq == 0) {
          return uri_error(text, part_base + start, "expected 'name=value'");
        }
        PF_ASSIGN_OR_RETURN(std::string value,
                            decode(text, attr.substr(eq + 1), part_base + start + eq + 1));
        PF_TRY(handle(attr.substr(0, eq), std::move(value), part_base + start));
      }
      start = end + 1;
    }
    return ok_status();
  };

  auto set_once = [&](auto& field, auto value, std::string_view name, std::size_t at) -> Status {
    if (field.has_value()) return uri_error(text, at, "attribute '" + std::string(name) + "' repeated");
    field = std::move(value);
    return ok_status();
  };

  PF_TRY(for_each_attr(path, kScheme.size(), ';',
                       [&](std::string_view name, std::string value, std::size_t at) -> Status {
    if (name == "token") return set_once(uri.token, std::move(value), name, at);
    if (name == "object") return set_once(uri.object, std::move(value), name, at);
    if (name == "manufacturer") return set_once(uri.manufacturer, std::move(value), name, at);
    if (name == "serial") return set_once(uri.serial, std::move(value), name, at);
    if (name == "model") return set_once(uri.model, std::move(value), name, at);
    if (name == "id") {
      if (value.empty()) return uri_error(text, at, "empty id");
      return set_once(uri.id, std::vector<std::uint8_t>(value.begin(), value.end()), name, at);
    }
    if (name == "type") {
      auto t = parse_type(value);
      if (!t) return uri_error(text, at, "unknown object type '" + value + "'");
      return set_once(uri.type, *t, name, at);
    }
    if (name.substr(0, 2) == "x-") return ok_status();
    if (name == "library-manufacturer" || name == "library-description" ||
        name == "library-version" || name == "slot-manufacturer" || name == "slot-description" ||
        name == "slot-id") {
      return ok_status();  // RFC 7512 attributes that select modules/slots; not needed here.
    }
    return uri_error(text, at, "unknown attribute '" + std::string(name) + "'");
  }));

  const std::size_t query_base = qpos == std::string_view::npos ? text.size() : qpos + 1;
  PF_TRY(for_each_attr(query, query_base, '&',
                       [&](std::string_view name, std::string value, std::size_t at) -> Status {
    if (name == "pin-value") {
      return uri_error(text, at, "pin-value is refused: a PIN never travels in a URI "
                                 "(use --pin-env or --pin-file)");
    }
    if (name == "module-path") return set_once(uri.module_path, std::move(value), name, at);
    if (name == "pin-source" || name == "module-name" || name.substr(0, 2) == "x-") return ok_status();
    return uri_error(text, at, "unknown query attribute '" + std::string(name) + "'");
  }));
  return uri;
}

std::string Pkcs11Uri::to_string() const {
  std::string out(kScheme);
  bool first = true;
  auto add = [&](std::string_view name, const std::string& value, bool escape_all) {
    if (!first) out.push_back(';');
    first = false;
    out += name;
    out.push_back('=');
    out += encode(value, escape_all);
  };
  if (manufacturer) add("manufacturer", *manufacturer, false);
  if (model) add("model", *model, false);
  if (serial) add("serial", *serial, false);
  if (token) add("token", *token, false);
  if (object) add("object", *object, false);
  if (id) add("id", std::string(id->begin(), id->end()), true);
  if (type) add("type", std::string(type_name(*type)), false);
  if (module_path) {
    out += "?module-path=";
    out += encode(*module_path, false, /*in_query=*/true);
  }
  return out;
}

}  // namespace persoflow
