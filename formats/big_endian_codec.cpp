#include "formats/big_endian_codec.h"

#include <stdexcept>
#include <string>

namespace persoflow::formats {

void store_be(std::uint8_t* p, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    p[n - 1 - i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
}

std::uint64_t load_be(const std::uint8_t* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

void ByteWriter::u16(std::uint16_t v) {
  std::uint8_t b[2];
  store_be(b, v, 2);
  bytes(b);
}

void ByteWriter::u32(std::uint32_t v) {
  std::uint8_t b[4];
  store_be(b, v, 4);
  bytes(b);
}

void ByteWriter::u64(std::uint64_t v) {
  std::uint8_t b[8];
  store_be(b, v, 8);
  bytes(b);
}

void ByteWriter::bytes(std::string_view s) { out_.insert(out_.end(), s.begin(), s.end()); }

void ByteWriter::str(std::string_view s) {
  // A longer string would be written with a wrapped length: a bug in the caller, which
  // must check first (every format writer does), never a silently corrupt file.
  if (s.size() > 0xFFFF) throw std::logic_error("ByteWriter::str: " + std::to_string(s.size()) + " bytes (u16 length)");
  u16(static_cast<std::uint16_t>(s.size()));
  bytes(s);
}

void ByteWriter::patch_u32(std::size_t at, std::uint32_t v) { store_be(out_.data() + at, v, 4); }

Error ByteReader::error_at(std::uint64_t offset, std::string_view reason) const {
  return Error(ErrorCode::kParse,
               where_ + ": offset " + std::to_string(offset) + ": " + std::string(reason));
}

Result<std::uint64_t> ByteReader::integer(std::size_t n, std::string_view what) {
  PF_ASSIGN_OR_RETURN(auto b, bytes(n, what));
  return load_be(b.data(), n);
}

Result<std::uint8_t> ByteReader::u8(std::string_view what) {
  PF_ASSIGN_OR_RETURN(std::uint64_t v, integer(1, what));
  return static_cast<std::uint8_t>(v);
}

Result<std::uint16_t> ByteReader::u16(std::string_view what) {
  PF_ASSIGN_OR_RETURN(std::uint64_t v, integer(2, what));
  return static_cast<std::uint16_t>(v);
}

Result<std::uint32_t> ByteReader::u32(std::string_view what) {
  PF_ASSIGN_OR_RETURN(std::uint64_t v, integer(4, what));
  return static_cast<std::uint32_t>(v);
}

Result<std::uint64_t> ByteReader::u64(std::string_view what) { return integer(8, what); }

Result<std::span<const std::uint8_t>> ByteReader::bytes(std::size_t n, std::string_view what) {
  if (n > remaining()) {
    return error(std::string(what) + " is truncated (needs " + std::to_string(n) + " bytes, " +
                 std::to_string(remaining()) + " left)");
  }
  auto out = data_.subspan(pos_, n);
  pos_ += n;
  return out;
}

Result<std::string> ByteReader::str(std::string_view what) {
  PF_ASSIGN_OR_RETURN(std::uint16_t len, u16(what));
  PF_ASSIGN_OR_RETURN(auto b, bytes(len, what));
  return std::string(b.begin(), b.end());
}

Result<std::uint32_t> ByteReader::varint(std::string_view what) {
  const std::uint64_t start = offset();
  std::uint64_t v = 0;
  for (int i = 0; i < 5; ++i) {
    PF_ASSIGN_OR_RETURN(std::uint8_t b, u8(what));
    v |= static_cast<std::uint64_t>(b & 0x7F) << (7 * i);
    if ((b & 0x80) == 0) {
      if (v > 0xFFFFFFFFu) return error_at(start, std::string(what) + " does not fit in 32 bits");
      if (i > 0 && b == 0) return error_at(start, std::string(what) + " is not minimally encoded");
      return static_cast<std::uint32_t>(v);
    }
  }
  return error_at(start, std::string(what) + " is longer than 5 bytes");
}

Status ByteReader::expect_end(std::string_view what) const {
  if (remaining() != 0) {
    return error(std::to_string(remaining()) + " unexpected bytes after " + std::string(what));
  }
  return ok_status();
}

}  // namespace persoflow::formats
