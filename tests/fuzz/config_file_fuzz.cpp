// Fuzz target: the persoflow configuration file (config/config_file.h) under its own schema.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config_file.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto file = ConfigFile::parse(text, "fuzz.conf", persoflow_schema());
  if (file.has_value()) (void)file->get("hsm", "module");
  return 0;
}
