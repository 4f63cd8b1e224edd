// Fuzz target: product profile XML (config/profile_parser.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/profile_parser.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  (void)persoflow::config::parse_profile(xml, "fuzz.xml");
  return 0;
}
