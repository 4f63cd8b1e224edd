// Fuzz target: BER-TLV trees (engine/tlv.h), with and without '00' padding skipped.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/tlv.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const std::span<const std::uint8_t> input(data, size);
  (void)parse_tlv_tree(input);
  (void)parse_tlv_tree(input, TlvParseOptions{.skip_zero_padding = false});
  return 0;
}
