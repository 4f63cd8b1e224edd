#include "tests/support/vector_file.h"

#include <fstream>
#include <stdexcept>

namespace persoflow::test {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

const std::string& VectorRecord::at(const std::string& name) const {
  auto it = fields.find(name);
  if (it == fields.end()) {
    throw std::out_of_range("vector record at line " + std::to_string(line) + " has no field " + name);
  }
  return it->second;
}

std::vector<VectorRecord> load_vectors(const std::string& name) {
  const std::string path = std::string(PERSOFLOW_TEST_VECTORS_DIR) + "/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open vector file " + path);
  std::vector<VectorRecord> records;
  VectorRecord current;
  std::string section;
  bool has_source = false;
  std::string raw;
  int line_no = 0;
  auto flush = [&] {
    if (!current.fields.empty()) records.push_back(current);
    current = VectorRecord{};
  };
  while (std::getline(in, raw)) {
    ++line_no;
    const std::string line = trim(raw);
    if (line.rfind("# Source:", 0) == 0) has_source = true;
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == '#') continue;
    if (line.front() == '[' && line.back() == ']') {
      flush();
      section = line.substr(1, line.size() - 2);
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      throw std::runtime_error(path + ":" + std::to_string(line_no) + ": expected 'Name = value'");
    }
    if (current.fields.empty()) {
      current.section = section;
      current.line = line_no;
    }
    current.fields[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  flush();
  if (!has_source) throw std::runtime_error(path + ": no '# Source:' line naming the public source");
  if (records.empty()) throw std::runtime_error(path + ": no records");
  return records;
}

}  // namespace persoflow::test
