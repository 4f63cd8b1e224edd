// Fuzz target: key component files of the key ceremony (formats/key_component_file.h).
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/secure_bytes.h"
#include "formats/key_component_file.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const SecureBytes text(std::span<const std::uint8_t>(data, size));
  (void)formats::parse_key_component(text, "fuzz.component");
  return 0;
}
