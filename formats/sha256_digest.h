// SHA-256 through OpenSSL, one shot or over several parts (derivations written as
// "label || a || b"). Used for file digests, segment hashes and the XOF derivations.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

#include "engine/result.h"

namespace persoflow::formats {

using Sha256Digest = std::array<std::uint8_t, 32>;

// The bytes of a string literal or label, as a span (no terminating NUL).
inline std::span<const std::uint8_t> as_bytes_view(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// SHA-256 of the concatenation of `parts`. kInternal only if OpenSSL fails (it does not
// with the default provider unless memory runs out).
Result<Sha256Digest> sha256(std::initializer_list<std::span<const std::uint8_t>> parts);

inline Result<Sha256Digest> sha256(std::span<const std::uint8_t> data) { return sha256({data}); }

}  // namespace persoflow::formats
