#include "engine/apdu.h"

#include <utility>

namespace persoflow {
namespace {

constexpr std::size_t kHeaderSize = 4;   // CLA INS P1 P2
constexpr std::size_t kLcOffset = 4;     // the first byte after the header
constexpr std::size_t kExtLcOffset = 5;  // Lc1 Lc2 after the 00 marker
constexpr std::size_t kMaxResponseData = kMaxExtendedApduLe;

Error parse_error(std::string message) {
  return Error(ErrorCode::kParse, "APDU: " + std::move(message));
}

std::string offset_str(std::size_t offset) { return "offset " + std::to_string(offset); }

void push_u16(Bytes& out, std::size_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

std::uint32_t read_u16(std::span<const std::uint8_t> b, std::size_t offset) {
  return (static_cast<std::uint32_t>(b[offset]) << 8) | b[offset + 1];
}

}  // namespace

std::string format_sw(std::uint16_t sw) {
  const std::uint8_t b[2] = {static_cast<std::uint8_t>(sw >> 8), static_cast<std::uint8_t>(sw)};
  return persoflow::to_hex(b);
}

Result<CommandApdu> CommandApdu::create(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1,
                                        std::uint8_t p2, std::span<const std::uint8_t> data,
                                        std::optional<std::uint32_t> le, ApduEncoding encoding) {
  if (data.size() > kMaxExtendedApduData) {
    return Error(ErrorCode::kInvalidArgument, "APDU: command data is " +
                                                  std::to_string(data.size()) +
                                                  " bytes; at most 65535 fit in an extended Lc");
  }
  if (le.has_value() && (*le == 0 || *le > kMaxExtendedApduLe)) {
    return Error(ErrorCode::kInvalidArgument,
                 "APDU: Le " + std::to_string(*le) +
                     " is out of range (the expected byte count, 1..65536; short Le 00 is 256)");
  }
  CommandApdu apdu;
  apdu.cla_ = cla;
  apdu.ins_ = ins;
  apdu.p1_ = p1;
  apdu.p2_ = p2;
  apdu.data_.assign(data.begin(), data.end());
  apdu.le_ = le;
  const bool has_lengths = !data.empty() || le.has_value();
  const bool needs_extended =
      data.size() > kMaxShortApduData || (le.has_value() && *le > kMaxShortApduLe);
  const bool extended = has_lengths && (needs_extended || encoding == ApduEncoding::kForceExtended);
  apdu.form_ = extended ? LengthForm::kExtended : LengthForm::kShort;
  return apdu;
}

Result<CommandApdu> CommandApdu::parse(std::span<const std::uint8_t> bytes) {
  const std::size_t n = bytes.size();
  if (n < kHeaderSize) {
    return parse_error("command of " + std::to_string(n) +
                       " bytes is too short (CLA INS P1 P2 take 4)");
  }
  std::span<const std::uint8_t> data;
  std::optional<std::uint32_t> le;
  ApduEncoding encoding = ApduEncoding::kAuto;

  if (n == kHeaderSize) {
    // Case 1.
  } else if (n == kHeaderSize + 1) {
    // Case 2S.
    le = bytes[kLcOffset] == 0 ? kMaxShortApduLe : bytes[kLcOffset];
  } else if (bytes[kLcOffset] != 0) {
    // Case 3S or 4S.
    const std::size_t lc = bytes[kLcOffset];
    const std::size_t follow = n - kLcOffset - 1;
    if (follow == lc) {
      data = bytes.subspan(kLcOffset + 1, lc);
    } else if (follow == lc + 1) {
      data = bytes.subspan(kLcOffset + 1, lc);
      le = bytes[n - 1] == 0 ? kMaxShortApduLe : bytes[n - 1];
    } else {
      return parse_error("short Lc at " + offset_str(kLcOffset) + " announces " +
                         std::to_string(lc) + " data bytes but " + std::to_string(follow) +
                         " bytes follow it (case 3 needs " + std::to_string(lc) +
                         ", case 4 needs " + std::to_string(lc + 1) + ")");
    }
  } else {
    // 00 at offset 4 opens an extended length: case 2E, 3E or 4E.
    encoding = ApduEncoding::kForceExtended;
    if (n < kHeaderSize + 3) {
      return parse_error(
          "byte 00 at " + offset_str(kLcOffset) + " opens an extended length, but only " +
          std::to_string(n - kLcOffset - 1) + " byte follows it (an extended Le or Lc takes 2)");
    }
    const std::uint32_t v = read_u16(bytes, kExtLcOffset);
    if (n == kHeaderSize + 3) {
      le = v == 0 ? kMaxExtendedApduLe : v;  // case 2E
    } else if (v == 0) {
      return parse_error("extended Lc at " + offset_str(kExtLcOffset) + " is 0000 but " +
                         std::to_string(n - kExtLcOffset - 2) +
                         " bytes follow it (a case 2E command ends after its 2-byte Le)");
    } else {
      const std::size_t lc = v;
      const std::size_t follow = n - kExtLcOffset - 2;
      if (follow == lc) {
        data = bytes.subspan(kExtLcOffset + 2, lc);
      } else if (follow == lc + 2) {
        data = bytes.subspan(kExtLcOffset + 2, lc);
        const std::uint32_t raw_le = read_u16(bytes, n - 2);
        le = raw_le == 0 ? kMaxExtendedApduLe : raw_le;
      } else {
        return parse_error("extended Lc at " + offset_str(kExtLcOffset) + " announces " +
                           std::to_string(lc) + " data bytes but " + std::to_string(follow) +
                           " bytes follow it (case 3E needs " + std::to_string(lc) +
                           ", case 4E needs " + std::to_string(lc + 2) + ")");
      }
    }
  }
  return create(bytes[0], bytes[1], bytes[2], bytes[3], data, le, encoding);
}

ApduCase CommandApdu::apdu_case() const {
  if (data_.empty()) return le_.has_value() ? ApduCase::kCase2 : ApduCase::kCase1;
  return le_.has_value() ? ApduCase::kCase4 : ApduCase::kCase3;
}

Bytes CommandApdu::to_bytes() const {
  const bool extended = form_ == LengthForm::kExtended;
  Bytes out;
  out.reserve(kHeaderSize + 3 + data_.size() + 2);
  out.push_back(cla_);
  out.push_back(ins_);
  out.push_back(p1_);
  out.push_back(p2_);
  if (!data_.empty()) {
    if (extended) {
      out.push_back(0x00);
      push_u16(out, data_.size());
    } else {
      out.push_back(static_cast<std::uint8_t>(data_.size()));
    }
    out.insert(out.end(), data_.begin(), data_.end());
  }
  if (le_.has_value()) {
    if (extended) {
      if (data_.empty()) out.push_back(0x00);
      push_u16(out, *le_ == kMaxExtendedApduLe ? 0 : *le_);
    } else {
      out.push_back(static_cast<std::uint8_t>(*le_ == kMaxShortApduLe ? 0 : *le_));
    }
  }
  return out;
}

std::string CommandApdu::to_hex() const { return persoflow::to_hex(to_bytes()); }

Result<ResponseApdu> ResponseApdu::create(std::span<const std::uint8_t> data, std::uint16_t sw) {
  if (data.size() > kMaxResponseData) {
    return Error(ErrorCode::kInvalidArgument, "APDU: response data is " +
                                                  std::to_string(data.size()) +
                                                  " bytes; at most 65536 can be returned");
  }
  ResponseApdu r;
  r.data_.assign(data.begin(), data.end());
  r.sw_ = sw;
  return r;
}

Result<ResponseApdu> ResponseApdu::parse(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 2) {
    return parse_error("response of " + std::to_string(bytes.size()) +
                       " bytes has no status word (SW1 SW2 take the last 2 bytes)");
  }
  const std::size_t sw_offset = bytes.size() - 2;
  if (sw_offset > kMaxResponseData) {
    return parse_error("response data of " + std::to_string(sw_offset) +
                       " bytes before the status word at " + offset_str(sw_offset) +
                       " exceeds 65536");
  }
  const auto sw = static_cast<std::uint16_t>(read_u16(bytes, sw_offset));
  return create(bytes.first(sw_offset), sw);
}

Bytes ResponseApdu::to_bytes() const {
  Bytes out;
  out.reserve(data_.size() + 2);
  out.insert(out.end(), data_.begin(), data_.end());
  push_u16(out, sw_);
  return out;
}

std::string ResponseApdu::to_hex() const { return persoflow::to_hex(to_bytes()); }

}  // namespace persoflow
