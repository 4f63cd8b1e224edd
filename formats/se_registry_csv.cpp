// The registry CSV (docs/registry.md): parsing and validating every row before anything
// is written, then SeRegistry::import_csv. Errors read "FILE:LINE: column C: reason".
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "engine/text.h"
#include "formats/se_registry.h"

namespace persoflow::formats {
namespace {

enum Column : std::size_t {
  kSeId,
  kMsi,
  kIccid,
  kKdd,
  kIsdAid,
  kScp,
  kI,
  kKvn,
  kNextCounter,
  kMaxCounter,
  kProduct,
  kColumnCount,
};

constexpr std::string_view kColumnNames[kColumnCount] = {
    "se_id", "msi", "iccid",        "kdd",         "isd_aid", "scp",
    "i",     "kvn", "next_counter", "max_counter", "product"};

constexpr bool kRequired[kColumnCount] = {true, false, false, true,  true, true,
                                          true, true,  true,  false, true};

constexpr std::size_t kMaxTextLength = 64;
constexpr std::size_t kKddLength = 10;
constexpr std::size_t kMinAidLength = 5;
constexpr std::size_t kMaxAidLength = 16;
// SCP03 i.b5 and SCP02 i.b7: the pseudo-random card challenge that offline preparation needs.
constexpr std::uint8_t kScp03PseudoRandom = 0x10;
constexpr std::uint8_t kScp02PseudoRandom = 0x40;

// A value quoted in an error: the registry holds no secrets, but a long or odd value is
// cut so that one message stays one readable line.
std::string quoted(std::string_view v) {
  constexpr std::size_t kShown = 40;
  if (v.size() <= kShown) return "'" + std::string(v) + "'";
  return "'" + std::string(v.substr(0, kShown)) + "...'";
}

std::string byte_hex(unsigned v) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  return {kDigits[(v >> 4) & 0xF], kDigits[v & 0xF]};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict hex: pairs of digits only, no blanks, no 0x (from_hex allows blanks for pasted
// values; a CSV column does not need them).
std::optional<Bytes> strict_hex(std::string_view v) {
  if (v.size() % 2 != 0) return std::nullopt;
  Bytes out;
  out.reserve(v.size() / 2);
  for (std::size_t k = 0; k < v.size(); k += 2) {
    const int hi = hex_value(v[k]);
    const int lo = hex_value(v[k + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
  }
  return out;
}

// Decimal, or hex after 0x; nullopt when malformed or above 2^32 - 1.
std::optional<std::uint32_t> parse_counter(std::string_view v) {
  unsigned base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v.remove_prefix(2);
  }
  if (v.empty() || v.size() > 10) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v) {
    const int d = base == 16 ? hex_value(c) : (c >= '0' && c <= '9' ? c - '0' : -1);
    if (d < 0) return std::nullopt;
    n = n * base + static_cast<unsigned>(d);
  }
  if (n > 0xFFFFFFFFu) return std::nullopt;
  return static_cast<std::uint32_t>(n);
}

// Splits a line on commas; fields keep their blanks (trimmed later).
std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

// Values are ASCII even though the file is UTF-8: SE ids, MSIs, ICCIDs, hex and product
// ids never need more, and a look-alike character in an id would be a silent mismatch.
std::optional<std::string> ascii_problem(std::string_view v) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') {
      return std::string(
          "a quote character; fields are not quoted (values never contain "
          "commas), remove the quotes");
    }
    if (c < 0x20 || c > 0x7E) {
      return "byte 0x" + byte_hex(c) + " is not printable ASCII (values are ASCII)";
    }
  }
  return std::nullopt;
}

std::optional<std::string> identifier_problem(std::string_view v, bool may_be_empty) {
  if (v.empty()) {
    if (may_be_empty) return std::nullopt;
    return std::string("empty; a value is required");
  }
  if (v.size() > kMaxTextLength) {
    return "longer than " + std::to_string(kMaxTextLength) + " characters";
  }
  if (v.find(' ') != std::string_view::npos || v.find('\t') != std::string_view::npos) {
    return quoted(v) + " contains a blank";
  }
  return std::nullopt;
}

// One data line against the header's column order.
class RowParser {
 public:
  RowParser(std::string_view file, std::size_t line,
            const std::array<std::optional<std::size_t>, kColumnCount>& at,
            const std::vector<std::string_view>& fields)
      : where_(std::string(file) + ":" + std::to_string(line)), at_(at), fields_(fields) {}

  Error error(Column c, const std::string& reason) const {
    return Error(ErrorCode::kParse,
                 where_ + ": column " + std::string(kColumnNames[c]) + ": " + reason);
  }

  // The trimmed field of column c, or empty when the (optional) column is absent.
  std::string_view field(Column c) const {
    return at_[c] ? trim_blanks(fields_[*at_[c]]) : std::string_view{};
  }

  Result<std::uint8_t> byte(Column c) const {
    const std::string_view v = field(c);
    auto b = strict_hex(v);
    if (v.size() != 2 || !b)
      return error(c, quoted(v) + " is not one hex byte (two hex digits, e.g. 70)");
    return (*b)[0];
  }

  Result<Bytes> hex(Column c, std::size_t min, std::size_t max) const {
    const std::string_view v = field(c);
    auto b = strict_hex(v);
    if (!b) return error(c, quoted(v) + " is not hex (an even number of hex digits, no blanks)");
    if (b->size() < min || b->size() > max) {
      const std::string want = min == max
                                   ? std::to_string(min) + " bytes"
                                   : std::to_string(min) + " to " + std::to_string(max) + " bytes";
      return error(c, std::to_string(b->size()) + " bytes; must be " + want);
    }
    return std::move(*b);
  }

  Result<std::uint32_t> counter(Column c, std::uint8_t scp, std::uint32_t fallback) const {
    const std::string_view v = field(c);
    if (v.empty() && !kRequired[c]) return fallback;
    auto n = parse_counter(v);
    if (!n) return error(c, quoted(v) + " is not a counter (decimal, or hex after 0x)");
    const std::uint32_t top = scp == 2 ? kScp02MaxCounter : kScp03MaxCounter;
    if (*n > top) {
      return error(c, quoted(v) + " is above 0x" + (scp == 2 ? std::string("FFFF") : "FFFFFF") +
                          ", the largest SCP0" + std::to_string(scp) + " sequence counter");
    }
    return *n;
  }

  Result<RegistryCsvRow> parse(std::size_t line) const {
    for (std::size_t c = 0; c < kColumnCount; ++c) {
      if (auto problem = ascii_problem(field(static_cast<Column>(c)))) {
        return error(static_cast<Column>(c), *problem);
      }
    }
    RegistryCsvRow row;
    row.line = line;
    SeRecord& r = row.record;
    r.se_id = std::string(field(kSeId));
    if (auto p = identifier_problem(r.se_id, false)) return error(kSeId, *p);
    r.msi = std::string(field(kMsi));
    if (auto p = identifier_problem(r.msi, true)) return error(kMsi, *p);
    r.iccid = std::string(field(kIccid));
    if (auto p = identifier_problem(r.iccid, true)) return error(kIccid, *p);
    r.product = std::string(field(kProduct));
    if (auto p = identifier_problem(r.product, false)) return error(kProduct, *p);
    PF_ASSIGN_OR_RETURN(r.kdd, hex(kKdd, kKddLength, kKddLength));
    PF_ASSIGN_OR_RETURN(r.isd_aid, hex(kIsdAid, kMinAidLength, kMaxAidLength));

    const std::string_view scp = field(kScp);
    if (scp == "02" || scp == "2") {
      r.scp = 2;
    } else if (scp == "03" || scp == "3") {
      r.scp = 3;
    } else {
      return error(kScp, quoted(scp) + " is not a supported SCP version (02 or 03)");
    }
    PF_ASSIGN_OR_RETURN(r.i, byte(kI));
    if (r.scp == 3 && (r.i & kScp03PseudoRandom) == 0) {
      return error(kI, byte_hex(r.i) +
                           " lacks b5 (0x10), the pseudo-random card challenge "
                           "that offline SCP03 preparation needs");
    }
    if (r.scp == 2 && (r.i & kScp02PseudoRandom) == 0) {
      return error(kI, byte_hex(r.i) +
                           " lacks b7 (0x40), the pseudo-random card challenge "
                           "that offline SCP02 preparation needs (e.g. 55)");
    }
    PF_ASSIGN_OR_RETURN(r.kvn, byte(kKvn));
    const std::uint32_t top = r.scp == 2 ? kScp02MaxCounter : kScp03MaxCounter;
    PF_ASSIGN_OR_RETURN(r.max_counter, counter(kMaxCounter, r.scp, top));
    PF_ASSIGN_OR_RETURN(r.next_counter, counter(kNextCounter, r.scp, 0));
    if (r.next_counter > r.max_counter) {
      return error(kNextCounter, std::to_string(r.next_counter) + " is above max_counter " +
                                     std::to_string(r.max_counter));
    }
    return row;
  }

 private:
  std::string where_;
  const std::array<std::optional<std::size_t>, kColumnCount>& at_;
  const std::vector<std::string_view>& fields_;
};

}  // namespace

Result<std::vector<RegistryCsvRow>> parse_registry_csv(std::string_view text,
                                                       std::string_view file_name) {
  const std::string file(file_name);
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 BOM
  std::array<std::optional<std::size_t>, kColumnCount> at{};
  std::size_t header_fields = 0;
  bool have_header = false;
  std::vector<RegistryCsvRow> rows;
  std::unordered_map<std::string, std::size_t> se_id_line;
  std::unordered_map<std::string, std::size_t> msi_line;

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const std::string where = file + ":" + std::to_string(line_no);
    const std::string_view line = trim_blanks(raw);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<std::string_view> fields = split_fields(line);

    if (!have_header) {
      for (std::size_t k = 0; k < fields.size(); ++k) {
        const std::string_view name = trim_blanks(fields[k]);
        if (auto problem = ascii_problem(name)) {
          return Error(ErrorCode::kParse,
                       where + ": header field " + std::to_string(k + 1) + ": " + *problem);
        }
        std::size_t c = 0;
        while (c < kColumnCount && kColumnNames[c] != name) ++c;
        if (c == kColumnCount) {
          return Error(ErrorCode::kParse,
                       where + ": column " + quoted(name) +
                           ": unknown column (known: se_id, msi, iccid, kdd, isd_aid, scp, i, "
                           "kvn, next_counter, max_counter, product)");
        }
        if (at[c]) {
          return Error(ErrorCode::kParse,
                       where + ": column " + std::string(name) + ": named twice in the header");
        }
        at[c] = k;
      }
      for (std::size_t c = 0; c < kColumnCount; ++c) {
        if (kRequired[c] && !at[c]) {
          return Error(ErrorCode::kParse, where + ": column " + std::string(kColumnNames[c]) +
                                              ": required column missing from the header");
        }
      }
      header_fields = fields.size();
      have_header = true;
      continue;
    }

    if (fields.size() != header_fields) {
      return Error(ErrorCode::kParse, where + ": " + std::to_string(fields.size()) +
                                          " fields, the header names " +
                                          std::to_string(header_fields) + " columns");
    }
    const RowParser parser(file_name, line_no, at, fields);
    PF_ASSIGN_OR_RETURN(RegistryCsvRow row, parser.parse(line_no));
    if (auto [it, fresh] = se_id_line.emplace(row.record.se_id, line_no); !fresh) {
      return parser.error(
          kSeId, quoted(row.record.se_id) + " already on line " + std::to_string(it->second));
    }
    if (!row.record.msi.empty()) {
      if (auto [it, fresh] = msi_line.emplace(row.record.msi, line_no); !fresh) {
        return parser.error(
            kMsi, quoted(row.record.msi) + " already on line " + std::to_string(it->second));
      }
    }
    rows.push_back(std::move(row));
  }
  if (!have_header) {
    return Error(ErrorCode::kParse, file +
                                        ": no header line (the first line that is not blank "
                                        "or a # comment names the columns)");
  }
  return rows;
}

Result<CsvImportSummary> SeRegistry::import_csv(const std::string& csv_path) {
  std::ifstream in(csv_path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open registry CSV " + csv_path + ": " + std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return Error(ErrorCode::kIo,
                 "cannot read registry CSV " + csv_path + ": " + std::strerror(errno));
  }
  PF_ASSIGN_OR_RETURN(std::vector<RegistryCsvRow> rows, parse_registry_csv(text.str(), csv_path));
  return write_rows(rows, csv_path);
}

}  // namespace persoflow::formats
