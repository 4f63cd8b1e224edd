// Hexadecimal text <-> bytes. Upper case on output; either case on input.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

using Bytes = std::vector<std::uint8_t>;

std::string to_hex(std::span<const std::uint8_t> bytes);

// Parses hex digits. Spaces and tabs between byte pairs are allowed (operators
// paste "40 41 42"); anything else, or an odd digit count, is a kParse error that
// names the offending character offset.
Result<Bytes> from_hex(std::string_view text);

// Same, for secret values: the parsed bytes go straight into SecureBytes and the
// error never quotes the input.
Result<SecureBytes> secure_from_hex(std::string_view text);

}  // namespace persoflow
