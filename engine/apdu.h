// Command and response APDUs (ISO/IEC 7816-4 §5.1): the values every GlobalPlatform and
// EMV CPS command is built into, with their byte coding in short and extended form.
//
// Command cases:      short form                      extended form
//   1  no data, no Le  CLA INS P1 P2                   (same)
//   2  Le only         ... Le        (00 = 256)        ... 00 Le1 Le2       (0000 = 65536)
//   3  data only       ... Lc data   (Lc 01-FF)        ... 00 Lc1 Lc2 data  (Lc 0001-FFFF)
//   4  data and Le     ... Lc data Le                  ... 00 Lc1 Lc2 data Le1 Le2
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "engine/hex.h"
#include "engine/result.h"

namespace persoflow {

inline constexpr std::size_t kMaxShortApduData = 255;
inline constexpr std::size_t kMaxExtendedApduData = 65535;
inline constexpr std::uint32_t kMaxShortApduLe = 256;
inline constexpr std::uint32_t kMaxExtendedApduLe = 65536;

enum class ApduCase : std::uint8_t { kCase1 = 1, kCase2 = 2, kCase3 = 3, kCase4 = 4 };

// How Lc and Le are coded. Case 1 has neither and is reported as kShort.
enum class LengthForm : std::uint8_t { kShort, kExtended };

enum class ApduEncoding : std::uint8_t {
  kAuto,           // short form when data <= 255 bytes and Le <= 256, extended otherwise
  kForceExtended,  // extended form whenever there is an Lc or Le to code
};

// A status word as four upper-case hex digits, e.g. "6A88".
std::string format_sw(std::uint16_t sw);

class CommandApdu {
 public:
  // `le` is the number of response bytes expected (Ne), 1..65536: the byte "Le = 00" of
  // the GP command tables is 256 here. Refuses data over 65535 bytes and Le outside that
  // range (kInvalidArgument).
  static Result<CommandApdu> create(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1,
                                    std::uint8_t p2, std::span<const std::uint8_t> data = {},
                                    std::optional<std::uint32_t> le = std::nullopt,
                                    ApduEncoding encoding = ApduEncoding::kAuto);

  // Decodes a command, detecting its case and form; to_bytes() of the result gives `bytes`
  // back. Inconsistent lengths are kParse errors naming the offset of the length field.
  static Result<CommandApdu> parse(std::span<const std::uint8_t> bytes);

  std::uint8_t cla() const { return cla_; }
  std::uint8_t ins() const { return ins_; }
  std::uint8_t p1() const { return p1_; }
  std::uint8_t p2() const { return p2_; }
  const Bytes& data() const { return data_; }
  std::optional<std::uint32_t> le() const { return le_; }
  ApduCase apdu_case() const;
  LengthForm form() const { return form_; }

  Bytes to_bytes() const;
  std::string to_hex() const;

  friend bool operator==(const CommandApdu&, const CommandApdu&) = default;

 private:
  CommandApdu() = default;

  std::uint8_t cla_ = 0;
  std::uint8_t ins_ = 0;
  std::uint8_t p1_ = 0;
  std::uint8_t p2_ = 0;
  Bytes data_;
  std::optional<std::uint32_t> le_;
  LengthForm form_ = LengthForm::kShort;
};

class ResponseApdu {
 public:
  // Refuses data over 65536 bytes (the most an extended Le can ask for).
  static Result<ResponseApdu> create(std::span<const std::uint8_t> data, std::uint16_t sw);

  // data || SW1 SW2; needs at least the two status bytes.
  static Result<ResponseApdu> parse(std::span<const std::uint8_t> bytes);

  const Bytes& data() const { return data_; }
  std::uint16_t sw() const { return sw_; }
  std::uint8_t sw1() const { return static_cast<std::uint8_t>(sw_ >> 8); }
  std::uint8_t sw2() const { return static_cast<std::uint8_t>(sw_); }

  // SW 9000 exactly. 61xx (more data, T=0) and warnings 62xx/63xx are not success here.
  bool is_success() const { return sw_ == 0x9000; }

  Bytes to_bytes() const;
  std::string to_hex() const;

  friend bool operator==(const ResponseApdu&, const ResponseApdu&) = default;

 private:
  ResponseApdu() = default;

  Bytes data_;
  std::uint16_t sw_ = 0;
};

}  // namespace persoflow
