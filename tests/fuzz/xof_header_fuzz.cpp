// Fuzz target: the XOF header as XofReader::open reads it (formats/xof_format.h,
// parse_xof_header), the bytes from the magic to integrity_kcv. A header that parses must
// serialize back to exactly the input (serialize_xof_header).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "formats/xof_format.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const std::span<const std::uint8_t> input(data, size);
  auto header = formats::parse_xof_header(input, "fuzz.xof");
  if (!header) return 0;
  const Bytes again = formats::serialize_xof_header(*header);
  if (!std::equal(again.begin(), again.end(), input.begin(), input.end())) {
    std::fprintf(stderr, "a %zu-byte header parses but serializes to %zu other bytes\n", size,
                 again.size());
    std::abort();
  }
  return 0;
}
