#include "engine/hex.h"

namespace persoflow {
namespace {

constexpr char kDigits[] = "0123456789ABCDEF";

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Calls sink(byte) for each decoded byte. The error never contains the input
// text, so the same routine serves secret values.
template <typename Sink>
Status decode(std::string_view text, Sink&& sink) {
  int high = -1;
  std::size_t high_offset = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t') {
      if (high >= 0) {
        return Error(ErrorCode::kParse,
                     "hex: separator inside a byte at offset " + std::to_string(i));
      }
      continue;
    }
    const int v = nibble(c);
    if (v < 0) {
      return Error(ErrorCode::kParse, "hex: invalid character at offset " + std::to_string(i));
    }
    if (high < 0) {
      high = v;
      high_offset = i;
    } else {
      sink(static_cast<std::uint8_t>((high << 4) | v));
      high = -1;
    }
  }
  if (high >= 0) {
    return Error(ErrorCode::kParse,
                 "hex: odd number of digits (unpaired digit at offset " +
                     std::to_string(high_offset) + ")");
  }
  return ok_status();
}

}  // namespace

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0F];
  }
  return out;
}

Result<Bytes> from_hex(std::string_view text) {
  Bytes out;
  out.reserve(text.size() / 2);
  PF_TRY(decode(text, [&](std::uint8_t b) { out.push_back(b); }));
  return out;
}

Result<SecureBytes> secure_from_hex(std::string_view text) {
  SecureBytes out;
  // Reserve up front through resize so the buffer never reallocates with secrets in it.
  std::size_t digits = 0;
  for (char c : text) digits += (c != ' ' && c != '\t') ? 1 : 0;
  out.resize(digits / 2);
  std::size_t n = 0;
  auto dst = out.reveal_mutable();
  PF_TRY(decode(text, [&](std::uint8_t b) {
    if (n < dst.size()) dst[n] = b;
    ++n;
  }));
  return out;
}

}  // namespace persoflow
