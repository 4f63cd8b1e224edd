// The persoflow configuration file: INI-style "[section]" headers and "key = value"
// lines, '#' or ';' comments (docs/configuration.md). Strict: an unknown section
// or key, a repeated key or a malformed line is an error naming file and line.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace persoflow::config {

class ConfigFile {
 public:
  // The sections and keys a file may contain, e.g. {"hsm", {"module", "token"}}.
  using Schema = std::map<std::string, std::set<std::string>, std::less<>>;

  static Result<ConfigFile> load(const std::string& path, const Schema& schema);
  static Result<ConfigFile> parse(std::string_view text, const std::string& name, const Schema& schema);

  std::optional<std::string> get(std::string_view section, std::string_view key) const;
  // "file:line" of a key, for messages about its value.
  std::string where(std::string_view section, std::string_view key) const;
  const std::string& path() const { return path_; }

 private:
  struct Entry {
    std::string value;
    int line = 0;
  };
  std::string path_;
  std::map<std::string, Entry, std::less<>> entries_;  // "section.key"
};

// The schema of persoflow's own configuration file.
const ConfigFile::Schema& persoflow_schema();

}  // namespace persoflow::config
