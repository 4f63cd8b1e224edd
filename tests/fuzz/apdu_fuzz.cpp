// Fuzz target: command APDUs (engine/apdu.h). A command that parses must encode back to
// exactly the bytes it came from; response APDUs are parsed too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "engine/apdu.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const std::span<const std::uint8_t> input(data, size);
  (void)ResponseApdu::parse(input);
  auto command = CommandApdu::parse(input);
  if (!command.has_value()) return 0;
  const Bytes encoded = command->to_bytes();
  if (!std::equal(encoded.begin(), encoded.end(), input.begin(), input.end())) {
    std::fprintf(stderr, "%zu input bytes parse, but encode back to %s\n", size,
                 command->to_hex().c_str());
    std::abort();
  }
  return 0;
}
