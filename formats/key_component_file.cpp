#include "formats/key_component_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "engine/key_types.h"
#include "engine/text.h"

namespace persoflow::formats {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if ((s[i] | 0x20) != (prefix[i] | 0x20)) return false;
  }
  return true;
}

}  // namespace

Result<std::optional<Bytes>> parse_kcv_entry(std::string_view text, const std::string& where) {
  std::string_view s = trim_blanks(text);
  if (s.empty()) return std::optional<Bytes>{};
  if (starts_with_ci(s, "kcv")) {
    s = trim_blanks(s.substr(3));
    if (!s.empty() && (s.front() == ':' || s.front() == '=')) s = trim_blanks(s.substr(1));
  }
  auto kcv = from_hex(s);
  if (!kcv || kcv->size() != kKcvLength) {
    return Error(ErrorCode::kParse, where + ": a KCV is 6 hex digits (3 bytes)");
  }
  return std::optional<Bytes>(std::move(*kcv));
}

Result<KeyComponent> parse_key_component(const SecureBytes& text, const std::string& name) {
  auto bytes = text.reveal();
  const std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  KeyComponent out;
  bool have_value = false;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos < all.size()) {
    std::size_t end = all.find('\n', pos);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view line = trim_blanks(all.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    const std::string where = name + ":" + std::to_string(line_no);
    if (line.empty() || line.front() == '#') continue;
    if (!have_value) {
      auto value = secure_from_hex(line);
      if (!value) {
        return Error(ErrorCode::kParse, where + ": the component must be hex digits (" +
                                            value.error().message() + ")");
      }
      out.value = std::move(value).value();
      have_value = true;
      continue;
    }
    if (out.kcv) return Error(ErrorCode::kParse, where + ": unexpected line after the KCV");
    PF_ASSIGN_OR_RETURN(out.kcv, parse_kcv_entry(line, where));
  }
  if (!have_value) return Error(ErrorCode::kParse, name + ": no key component in the file");
  return out;
}

Result<KeyComponent> read_key_component_file(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open key component file " + path + ": " + std::strerror(errno));
  }
  constexpr std::size_t kMax = 4096;  // a component file is a few lines
  SecureBytes text(kMax + 1);  // one byte more, to tell "exactly kMax" from "larger"
  std::size_t n = 0;
  for (;;) {
    const ssize_t r = read(fd, text.reveal_mutable().data() + n, kMax + 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      close(fd);
      return Error(ErrorCode::kIo, "cannot read key component file " + path + ": " + std::strerror(errno));
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
    if (n > kMax) {
      close(fd);
      return Error(ErrorCode::kParse, path + ": larger than " + std::to_string(kMax) +
                                          " bytes: not a key component file");
    }
  }
  close(fd);
  SecureBytes content(text.reveal().subspan(0, n));
  return parse_key_component(content, path);
}

}  // namespace persoflow::formats
