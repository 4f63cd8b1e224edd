// EMV CPS Data Grouping Identifier (DGI) coding, the unit of personalization data sent by
// STORE DATA: a 2-byte DGI, a length, then the value.
//
// Length (EMV CPS v1.1 "Data Grouping"; GPC v2.3.1 §11.1.12 referring to the GP Scripting
// Language Annex B): one byte 00-FE for 0-254 bytes, or FF followed by two bytes for
// 255-65535. Some implementations stop at 65534 (skythen/gobalplatform); 65535 is accepted
// here, as in CPS and GlobalPlatformPro. The encoder always writes the shortest form; the
// parser also accepts the 3-byte form for lengths under 255, which it reports through
// header_size.
//
// Parsed DGIs do not own their bytes: `value` points into the buffer that was parsed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"

namespace persoflow {

// The two DGI bytes read big-endian: DGI "8000" is 0x8000, record DGI "0101" is 0x0101.
using DgiId = std::uint16_t;

inline constexpr std::size_t kMaxDgiLength = 0xFFFF;

// Header of a DGI; the value may continue past the buffer (a DGI split across STORE DATA
// commands keeps its full length in the first one).
struct DgiHeader {
  DgiId id = 0;
  std::size_t header_size = 0;   // 3, or 5 with the FF form
  std::size_t value_length = 0;  // as stated by the length field
};

struct Dgi {
  DgiId id = 0;
  std::size_t offset = 0;       // of the first DGI byte in the parsed buffer
  std::size_t header_size = 0;  // 3, or 5 with the FF form
  std::span<const std::uint8_t> value;

  std::size_t value_offset() const { return offset + header_size; }
  std::size_t encoded_size() const { return header_size + value.size(); }
};

// Four upper-case hex digits, e.g. "9000".
std::string format_dgi_id(DgiId id);

// 1 byte for 0-254, FF hi lo for 255-65535; kInvalidArgument above kMaxDgiLength.
Result<Bytes> encode_dgi_length(std::size_t length);

// DGI || length || value.
Result<Bytes> encode_dgi(DgiId id, std::span<const std::uint8_t> value);

// Appends DGI || length || value to `out`; `out` is unchanged on failure. `value` must not
// point into `out`.
Status append_dgi(Bytes& out, DgiId id, std::span<const std::uint8_t> value);

// Reads the DGI and its length at `offset`. Only the header has to be in `data`.
Result<DgiHeader> read_dgi_header(std::span<const std::uint8_t> data, std::size_t offset);

// Splits `data` into consecutive complete DGIs. No padding is allowed between them (CPS has
// none); an empty buffer gives an empty list. kParse errors name the offset and the reason.
Result<std::vector<Dgi>> parse_dgis(std::span<const std::uint8_t> data);

// Parsed DGIs point into `data`, so parsing a temporary buffer is refused at compile time.
Result<std::vector<Dgi>> parse_dgis(const Bytes&& data) = delete;

// The first DGI with `id`, nullptr when absent.
const Dgi* find_dgi(std::span<const Dgi> dgis, DgiId id);

}  // namespace persoflow
