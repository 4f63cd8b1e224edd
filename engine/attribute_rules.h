// Checking one attribute value against its AttributeSpec, and showing it in reports
// (docs/profile.md). Pure: no I/O. Every reason returned here names what is wrong
// (a position, a length, a rule) and never quotes the value, so that it can go into a
// reject report or a log as it is.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "engine/profile.h"

namespace persoflow {

// Values shorter than this are masked completely by mask_pan: with first 6 and last 4
// shown, a shorter value would reveal all or nearly all of its digits.
inline constexpr std::size_t kMaskPanMinLength = 13;

// The Luhn (ISO/IEC 7812-1 annex B) check over a string of decimal digits. False for an
// empty string or any non-digit.
bool luhn_valid(std::string_view digits);

// First 6 and last 4 characters kept, '*' for each character between. A value shorter
// than kMaskPanMinLength becomes '*' throughout (same length).
std::string mask_pan(std::string_view pan);

// A fixed-width field without its right padding (trailing spaces). Leading characters
// are kept: zero-padded numbers stay as they are.
std::string_view trim_fixed_width(std::string_view field);

// Why `value` does not satisfy `spec`, or nullopt when it does. An empty value is
// "absent": an error for a required attribute, accepted for an optional one. Checks,
// in order: the characters allowed by the type, min-length/max-length, then the
// type's structure (even hex digit count, YYMM month, the Luhn check, the length of an
// RFC 5649 wrapped value). The reason never contains the value.
std::optional<std::string> check_attribute(const AttributeSpec& spec, std::string_view value);

// The value as a report may show it: "" for Reveal::kNever, mask_pan(value) for
// kMaskPan, the value itself for kClear.
std::string revealed(const AttributeSpec& spec, std::string_view value);

// The profile's spelling of each enum ("digits", "aes-kwp", "mask-pan", ...).
std::string_view attribute_type_name(AttributeType type);
std::string_view field_encryption_name(FieldEncryption encryption);
std::string_view reveal_name(Reveal reveal);

}  // namespace persoflow
