#include "formats/audit_entry.h"

#include <nlohmann/json.hpp>

#include "formats/sha256_digest.h"

namespace persoflow::formats::audit_entry {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kHashKey = ",\"hash\":\"";

std::string lower_hex(const Sha256Digest& d) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * d.size());
  for (const std::uint8_t b : d) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0x0F];
  }
  return out;
}

bool is_hash_hex(const Json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// YYYY-MM-DDTHH:MM:SSZ, as append() writes it.
bool is_rfc3339_utc_seconds(const Json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != kShape.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (kShape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kShape[i]) return false;
  }
  return true;
}

// A member name from a damaged line, short enough for a message.
std::string quoted(const std::string& s) {
  return "'" + (s.size() <= 32 ? s : s.substr(0, 32) + "...") + "'";
}

// Why member `name` has the wrong type or value, or empty if it is right.
std::string member_problem(std::string_view name, const Json& v) {
  if (name == "seq") {
    return v.is_number_unsigned() && v.get<std::uint64_t>() > 0 ? "" : "a whole number from 1";
  }
  if (name == "time") return is_rfc3339_utc_seconds(v) ? "" : "a UTC time YYYY-MM-DDTHH:MM:SSZ";
  if (name == "event") {
    return v.is_string() && !v.get_ref<const std::string&>().empty() ? "" : "a non-empty string";
  }
  if (name == "operator" || name == "host") return v.is_string() ? "" : "a string";
  if (name == "pid") return v.is_number_integer() ? "" : "a whole number";
  if (name == "details") return v.is_object() ? "" : "a JSON object";
  return is_hash_hex(v) ? "" : "64 lower-case hex digits";  // prev, hash
}

}  // namespace

Result<Line> write_line(const Json& without_hash) {
  std::string text = without_hash.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() < 2 || text.back() != '}') {
    return Error(ErrorCode::kInternal, "an audit entry did not serialize as a JSON object");
  }
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, sha256(as_bytes_view(text)));
  Line line;
  line.hash = lower_hex(digest);
  text.pop_back();
  text.append(kHashKey).append(line.hash).append("\"}");
  line.text = std::move(text);
  return line;
}

Checked check_line(std::string_view line) {
  Checked c;
  auto bad = [&c](AuditDefect defect, std::string reason) {
    c.defect = defect;
    c.reason = std::move(reason);
    return c;
  };
  if (line.empty()) return bad(AuditDefect::kMalformed, "empty line");
  Json j;
  try {
    j = Json::parse(line.begin(), line.end());
  } catch (const Json::parse_error& e) {
    // The parser's own message quotes the text near the error; the byte offset is enough.
    return bad(AuditDefect::kMalformed, "not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const Json::exception&) {
    return bad(AuditDefect::kMalformed, "not valid JSON");
  }
  if (!j.is_object()) return bad(AuditDefect::kMalformed, "not a JSON object");
  std::size_t i = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++i) {
    if (i == kMembers.size()) {
      return bad(AuditDefect::kMalformed, "unexpected member " + quoted(it.key()));
    }
    if (it.key() != kMembers[i]) {
      return bad(AuditDefect::kMalformed, "member '" + std::string(kMembers[i]) +
                                              "' missing or out of order (found " +
                                              quoted(it.key()) + " in its place)");
    }
    if (const std::string want = member_problem(kMembers[i], it.value()); !want.empty()) {
      return bad(AuditDefect::kMalformed,
                 "member '" + std::string(kMembers[i]) + "' is not " + want);
    }
  }
  if (i < kMembers.size()) {
    return bad(AuditDefect::kMalformed, "member '" + std::string(kMembers[i]) + "' missing");
  }
  c.seq = j["seq"].get<std::uint64_t>();
  c.prev = j["prev"].get<std::string>();
  c.hash = j["hash"].get<std::string>();

  // The hash covers every byte of the line but its own member: `,"hash":"H"}` -> `}`.
  const std::string suffix = std::string(kHashKey) + c.hash + "\"}";
  if (line.size() < suffix.size() || line.substr(line.size() - suffix.size()) != suffix) {
    return bad(AuditDefect::kMalformed,
               "the hash member is not written as persoflow writes it (last, no spaces)");
  }
  std::string content(line.substr(0, line.size() - suffix.size()));
  content += '}';
  auto digest = sha256(as_bytes_view(content));
  if (!digest) return bad(AuditDefect::kMalformed, digest.error().message());
  if (lower_hex(*digest) != c.hash) {
    return bad(AuditDefect::kEdited, "its hash does not match its content: the line was edited");
  }
  return c;
}

std::uint64_t peek_seq(std::string_view line) {
  const Json j = Json::parse(line.begin(), line.end(), nullptr, false);
  if (!j.is_object()) return 0;
  const auto it = j.find("seq");
  return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

}  // namespace persoflow::formats::audit_entry
