#include "engine/dgi.h"

#include <utility>

namespace persoflow {
namespace {

constexpr std::uint8_t kLongLengthMarker = 0xFF;
constexpr std::size_t kMaxShortLength = 254;

Error parse_error(std::string message) {
  return Error(ErrorCode::kParse, "DGI: " + std::move(message));
}

}  // namespace

std::string format_dgi_id(DgiId id) {
  const std::uint8_t b[2] = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)};
  return to_hex(b);
}

Result<Bytes> encode_dgi_length(std::size_t length) {
  if (length > kMaxDgiLength) {
    return Error(ErrorCode::kInvalidArgument, "DGI: value length " + std::to_string(length) +
                                                  " exceeds the FF xx xx form (at most 65535)");
  }
  if (length <= kMaxShortLength) return Bytes{static_cast<std::uint8_t>(length)};
  return Bytes{kLongLengthMarker, static_cast<std::uint8_t>(length >> 8),
               static_cast<std::uint8_t>(length)};
}

Result<Bytes> encode_dgi(DgiId id, std::span<const std::uint8_t> value) {
  Bytes out;
  PF_TRY(append_dgi(out, id, value));
  return out;
}

Status append_dgi(Bytes& out, DgiId id, std::span<const std::uint8_t> value) {
  PF_ASSIGN_OR_RETURN(Bytes length, encode_dgi_length(value.size()));
  out.reserve(out.size() + 2 + length.size() + value.size());
  out.push_back(static_cast<std::uint8_t>(id >> 8));
  out.push_back(static_cast<std::uint8_t>(id));
  out.insert(out.end(), length.begin(), length.end());
  out.insert(out.end(), value.begin(), value.end());
  return ok_status();
}

Result<DgiHeader> read_dgi_header(std::span<const std::uint8_t> data, std::size_t offset) {
  const std::size_t left = offset < data.size() ? data.size() - offset : 0;
  if (left < 3) {
    return parse_error("header at offset " + std::to_string(offset) + " is truncated (" +
                       std::to_string(left) +
                       " bytes left; a DGI needs 2 identifier bytes and a length)");
  }
  DgiHeader h;
  h.id = static_cast<DgiId>((data[offset] << 8) | data[offset + 1]);
  const std::size_t pos = offset + 2;
  if (data[pos] != kLongLengthMarker) {
    h.header_size = 3;
    h.value_length = data[pos];
    return h;
  }
  if (left < 5) {
    return parse_error("length of DGI " + format_dgi_id(h.id) + " at offset " +
                       std::to_string(pos) + " is truncated (FF needs 2 length bytes after it, " +
                       std::to_string(left - 3) + " left)");
  }
  h.header_size = 5;
  h.value_length = (static_cast<std::size_t>(data[pos + 1]) << 8) | data[pos + 2];
  return h;
}

Result<std::vector<Dgi>> parse_dgis(std::span<const std::uint8_t> data) {
  std::vector<Dgi> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    PF_ASSIGN_OR_RETURN(DgiHeader h, read_dgi_header(data, pos));
    const std::size_t left = data.size() - pos - h.header_size;
    if (h.value_length > left) {
      return parse_error("length of DGI " + format_dgi_id(h.id) + " at offset " +
                         std::to_string(pos + 2) + " runs past the end of the data (needs " +
                         std::to_string(h.value_length) + " bytes, " + std::to_string(left) +
                         " left)");
    }
    Dgi dgi;
    dgi.id = h.id;
    dgi.offset = pos;
    dgi.header_size = h.header_size;
    dgi.value = data.subspan(pos + h.header_size, h.value_length);
    pos += dgi.encoded_size();
    out.push_back(dgi);
  }
  return out;
}

const Dgi* find_dgi(std::span<const Dgi> dgis, DgiId id) {
  for (const Dgi& dgi : dgis) {
    if (dgi.id == id) return &dgi;
  }
  return nullptr;
}

}  // namespace persoflow
