// Fuzz target: the script bundle header as BundleReader::open reads it (formats/bundle.h,
// parse_bundle_header), the bytes from the magic to integrity_kcv. A header that parses
// must serialize back to exactly the input (serialize_bundle_header).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "formats/bundle.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const std::span<const std::uint8_t> input(data, size);
  auto header = formats::parse_bundle_header(input, "fuzz.bundle");
  if (!header) return 0;
  const Bytes again = formats::serialize_bundle_header(*header);
  if (!std::equal(again.begin(), again.end(), input.begin(), input.end())) {
    std::fprintf(stderr, "a %zu-byte header parses but serializes to %zu other bytes\n", size,
                 again.size());
    std::abort();
  }
  return 0;
}
