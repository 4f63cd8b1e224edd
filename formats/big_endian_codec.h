// Big-endian integers and length-prefixed strings in memory buffers, for the binary file
// formats (XOF, script bundle). ByteWriter appends; ByteReader consumes a span whose
// absolute position in the file is known, so every error names the byte offset:
//   kParse "<where>: offset <n>: <what> is truncated (needs 4 bytes, 2 left)"
// Readers of secret plaintext use the same class: its messages never quote the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "engine/hex.h"
#include "engine/result.h"

namespace persoflow::formats {

class ByteWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void bytes(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void bytes(std::string_view s);
  // u16 length then the bytes. The caller has checked that s.size() <= 0xFFFF (a longer
  // string throws std::logic_error: a bug, not an input error).
  void str(std::string_view s);
  // Overwrites 4 bytes written earlier (a length known only at the end).
  void patch_u32(std::size_t at, std::uint32_t v);

  std::size_t size() const { return out_.size(); }
  const Bytes& data() const { return out_; }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

// Stores v big-endian at p[0..N).
void store_be(std::uint8_t* p, std::uint64_t v, std::size_t n);
std::uint64_t load_be(const std::uint8_t* p, std::size_t n);

class ByteReader {
 public:
  // `base_offset` is the absolute offset of data[0]; `where` prefixes every message.
  ByteReader(std::span<const std::uint8_t> data, std::uint64_t base_offset, std::string where)
      : data_(data), base_(base_offset), where_(std::move(where)) {}

  Result<std::uint8_t> u8(std::string_view what);
  Result<std::uint16_t> u16(std::string_view what);
  Result<std::uint32_t> u32(std::string_view what);
  Result<std::uint64_t> u64(std::string_view what);
  Result<std::span<const std::uint8_t>> bytes(std::size_t n, std::string_view what);
  // u16 length then the bytes.
  Result<std::string> str(std::string_view what);
  // bytes() and u16() for hot loops: the field's name, `what()`, is built only when the
  // read fails (a per-value "value of 'pan'" would otherwise cost an allocation per value).
  template <class What>
    requires std::is_invocable_r_v<std::string, const What&>
  Result<std::span<const std::uint8_t>> bytes(std::size_t n, const What& what) {
    return n > remaining() ? bytes(n, std::string_view(what())) : bytes(n, std::string_view());
  }
  template <class What>
    requires std::is_invocable_r_v<std::string, const What&>
  Result<std::uint16_t> u16(const What& what) {
    return remaining() < 2 ? u16(std::string_view(what())) : u16(std::string_view());
  }
  // Unsigned LEB128 of at most 5 bytes whose value fits in 32 bits.
  Result<std::uint32_t> varint(std::string_view what);

  std::size_t remaining() const { return data_.size() - pos_; }
  std::size_t position() const { return pos_; }          // within the span
  std::uint64_t offset() const { return base_ + pos_; }  // absolute
  const std::string& where() const { return where_; }

  // kParse "<where>: offset <offset()>: <reason>".
  Error error(std::string_view reason) const { return error_at(offset(), reason); }
  Error error_at(std::uint64_t offset, std::string_view reason) const;
  // kParse unless every byte was consumed.
  Status expect_end(std::string_view what) const;

 private:
  Result<std::uint64_t> integer(std::size_t n, std::string_view what);

  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  std::uint64_t base_;
  std::string where_;
};

}  // namespace persoflow::formats
