#include "config/config_file.h"

#include <array>
#include <filesystem>
#include <fstream>

#include "engine/text.h"

namespace persoflow::config {
namespace {

std::string join_names(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

const ConfigFile::Schema& persoflow_schema() {
  static const ConfigFile::Schema kSchema = {
      {"hsm", {"module", "token", "pin_env", "pin_file", "max_sessions"}},
      {"audit", {"log"}},
  };
  return kSchema;
}

Result<ConfigFile> ConfigFile::load(const std::string& path, const Schema& schema) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "configuration file not found: " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kIo, "cannot open configuration file " + path);
  // istream::read turns a read error (a directory, EIO) into badbit; `ss << rdbuf()` would
  // report it like an empty file.
  std::string text;
  std::array<char, 4096> buf{};
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return Error(ErrorCode::kIo, "cannot read configuration file " + path);
  return parse(text, path, schema);
}

Result<ConfigFile> ConfigFile::parse(std::string_view text, const std::string& name, const Schema& schema) {
  ConfigFile cf;
  cf.path_ = name;
  std::string section;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trim_blanks(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    const std::string at = name + ":" + std::to_string(line_no) + ": ";
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return Error(ErrorCode::kParse, at + "section header without ']'");
      section = std::string(trim_blanks(line.substr(1, line.size() - 2)));
      if (schema.find(section) == schema.end()) {
        std::set<std::string> known;
        for (const auto& [s, keys] : schema) known.insert(s);
        return Error(ErrorCode::kParse, at + "unknown section [" + section + "] (known: " + join_names(known) + ")");
      }
      continue;
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) return Error(ErrorCode::kParse, at + "expected 'key = value'");
    if (section.empty()) return Error(ErrorCode::kParse, at + "key outside of any [section]");
    const std::string key(trim_blanks(line.substr(0, eq)));
    const auto& keys = schema.find(section)->second;
    if (keys.count(key) == 0) {
      return Error(ErrorCode::kParse, at + "unknown key '" + key + "' in [" + section +
                                          "] (known: " + join_names(keys) + ")");
    }
    const std::string full = section + "." + key;
    if (cf.entries_.count(full) != 0) {
      return Error(ErrorCode::kParse, at + "'" + key + "' repeated in [" + section + "] (first at line " +
                                          std::to_string(cf.entries_[full].line) + ")");
    }
    cf.entries_[full] = Entry{std::string(trim_blanks(line.substr(eq + 1))), line_no};
    if (pos > text.size()) break;
  }
  return cf;
}

std::optional<std::string> ConfigFile::get(std::string_view section, std::string_view key) const {
  auto it = entries_.find(std::string(section) + "." + std::string(key));
  if (it == entries_.end()) return std::nullopt;
  return it->second.value;
}

std::string ConfigFile::where(std::string_view section, std::string_view key) const {
  auto it = entries_.find(std::string(section) + "." + std::string(key));
  if (it == entries_.end()) return path_;
  return path_ + ":" + std::to_string(it->second.line);
}

}  // namespace persoflow::config
