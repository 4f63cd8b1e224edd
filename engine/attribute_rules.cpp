#include "engine/attribute_rules.h"

namespace persoflow {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }
bool is_printable(char c) { return c >= 0x20 && c <= 0x7E; }
bool is_name_char(char c) {
  return is_alpha(c) || is_digit(c) || c == ' ' || c == '.' || c == ',' || c == '\'' || c == '-' ||
         c == '/';
}

// Whether c may appear in a value of this type, and how to say that it may not.
bool allowed(AttributeType type, char c) {
  switch (type) {
    case AttributeType::kDigits:
    case AttributeType::kYymm:
      return is_digit(c);
    case AttributeType::kAlphanumeric:
      return is_alpha(c) || is_digit(c);
    case AttributeType::kHex:
      return is_hex(c);
    case AttributeType::kName:
      return is_name_char(c);
    case AttributeType::kText:
      return is_printable(c);
  }
  return false;
}

std::string_view not_allowed_reason(AttributeType type) {
  switch (type) {
    case AttributeType::kDigits:
    case AttributeType::kYymm:
      return "not digits";
    case AttributeType::kAlphanumeric:
      return "not alphanumeric";
    case AttributeType::kHex:
      return "not hex";
    case AttributeType::kName:
      return "not allowed in a name";
    case AttributeType::kText:
      return "not printable ASCII";
  }
  return "not allowed";
}

std::string str(std::size_t n) { return std::to_string(n); }

}  // namespace

bool luhn_valid(std::string_view digits) {
  if (digits.empty()) return false;
  unsigned sum = 0;
  bool twice =
      false;  // every second digit from the right, starting with the one before the check digit
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (!is_digit(*it)) return false;
    unsigned d = static_cast<unsigned>(*it - '0');
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

std::string mask_pan(std::string_view pan) {
  std::string out(pan.size(), '*');
  if (pan.size() < kMaskPanMinLength) return out;
  out.replace(0, 6, pan.substr(0, 6));
  out.replace(pan.size() - 4, 4, pan.substr(pan.size() - 4));
  return out;
}

std::string_view trim_fixed_width(std::string_view field) {
  while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
  return field;
}

std::optional<std::string> check_attribute(const AttributeSpec& spec, std::string_view value) {
  if (value.empty()) {
    if (spec.required) return "missing required value";
    return std::nullopt;
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (!allowed(spec.type, value[i])) {
      return std::string(not_allowed_reason(spec.type)) + " (character " + str(i + 1) + ")";
    }
  }
  const std::size_t n = value.size();
  if (n < spec.min_length) return "length " + str(n) + " below minimum " + str(spec.min_length);
  if (spec.max_length != 0 && n > spec.max_length) {
    return "length " + str(n) + " above maximum " + str(spec.max_length);
  }
  if (spec.type == AttributeType::kHex && n % 2 != 0) {
    return "odd number of hex digits (" + str(n) + ")";
  }
  if (spec.type == AttributeType::kYymm) {
    if (n != 4) return "length " + str(n) + " is not 4 (YYMM)";
    const int month = (value[2] - '0') * 10 + (value[3] - '0');
    // Quoting a month that is not one (00, 13-99) reveals no valid expiry date.
    if (month < 1 || month > 12) return "month " + std::string(value.substr(2)) + " is not 01-12";
  }
  if (spec.luhn && !luhn_valid(value)) return "fails the Luhn check";
  if (spec.field_encryption == FieldEncryption::kAesKwp) {
    // RFC 5649: the output is n+1 semiblocks of 8 bytes, n >= 1.
    const std::size_t bytes = n / 2;
    if (n % 2 != 0 || bytes % 8 != 0 || bytes < 16) {
      return "wrapped value of " + str(bytes) +
             " bytes is not an AES key wrap with padding (a multiple of 8 bytes, at least 16)";
    }
  }
  return std::nullopt;
}

std::string revealed(const AttributeSpec& spec, std::string_view value) {
  switch (spec.reveal) {
    case Reveal::kNever:
      return "";
    case Reveal::kMaskPan:
      return mask_pan(value);
    case Reveal::kClear:
      return std::string(value);
  }
  return "";
}

std::string_view attribute_type_name(AttributeType type) {
  switch (type) {
    case AttributeType::kDigits:
      return "digits";
    case AttributeType::kAlphanumeric:
      return "alphanumeric";
    case AttributeType::kHex:
      return "hex";
    case AttributeType::kYymm:
      return "yymm";
    case AttributeType::kName:
      return "name";
    case AttributeType::kText:
      return "text";
  }
  return "?";
}

std::string_view field_encryption_name(FieldEncryption encryption) {
  switch (encryption) {
    case FieldEncryption::kNone:
      return "none";
    case FieldEncryption::kAesKwp:
      return "aes-kwp";
  }
  return "?";
}

std::string_view reveal_name(Reveal reveal) {
  switch (reveal) {
    case Reveal::kNever:
      return "never";
    case Reveal::kMaskPan:
      return "mask-pan";
    case Reveal::kClear:
      return "clear";
  }
  return "?";
}

}  // namespace persoflow
