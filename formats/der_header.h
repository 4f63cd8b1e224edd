// DER identifier-and-length headers with 64-bit lengths, for writers of structures whose
// content streams (CMS envelopes). engine/tlv.h encodes lengths up to 16 MiB only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/hex.h"

namespace persoflow::formats {

// Bytes of the DER length field for `length`: 1 below 0x80, else 1 + the bytes of the value.
inline std::size_t der_length_size(std::uint64_t length) {
  if (length < 0x80) return 1;
  std::size_t n = 1;
  for (std::uint64_t v = length; v != 0; v >>= 8) ++n;
  return n;
}

// Appends a one-byte tag and the minimal DER length.
inline void append_der_header(Bytes& out, std::uint8_t tag, std::uint64_t length) {
  out.push_back(tag);
  const std::size_t size = der_length_size(length);
  if (size == 1) {
    out.push_back(static_cast<std::uint8_t>(length));
    return;
  }
  out.push_back(static_cast<std::uint8_t>(0x80 | (size - 1)));
  for (std::size_t i = size - 1; i-- > 0;)
    out.push_back(static_cast<std::uint8_t>(length >> (8 * i)));
}

// Size of a whole element with a one-byte tag and a value of `length` bytes.
inline std::uint64_t der_element_size(std::uint64_t length) {
  return 1 + der_length_size(length) + length;
}

}  // namespace persoflow::formats
