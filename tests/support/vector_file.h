// Reader for known-answer vector files under tests/vectors/ (format in
// tests/vectors/README.md): '#' comments (the first ones name the public source),
// optional "[section]" headers, records of "Name = value" lines separated by blank
// lines.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace persoflow::test {

struct VectorRecord {
  std::string section;
  int line = 0;  // line of the record's first field, for failure messages
  std::map<std::string, std::string> fields;

  const std::string& at(const std::string& name) const;
  bool has(const std::string& name) const { return fields.count(name) != 0; }
};

// Loads tests/vectors/<name>; throws on a malformed file or a file without a
// "# Source:" line.
std::vector<VectorRecord> load_vectors(const std::string& name);

}  // namespace persoflow::test
