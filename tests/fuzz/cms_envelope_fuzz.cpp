// Fuzz target: the CMS issuer-file envelope reader (formats/cms_envelope.h). Parses the
// header, streams the ciphertext out in data-sized pieces and parses the trailer. The
// source's window is made small by the first input byte so that peeks cross its edge.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/byte_source.h"
#include "formats/cms_envelope.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow::formats;
  const std::span<const std::uint8_t> input(data, size);
  // Window sizes from 64 bytes (FdByteSource's minimum) up, or unlimited.
  const std::size_t max_peek =
      size == 0 || data[0] >= 0x80 ? MemoryByteSource::kUnlimited : 64 + data[0];
  MemoryByteSource source(input, max_peek);
  auto header = read_cms_header(source);
  if (!header.has_value()) return 0;
  std::array<std::uint8_t, 256> buffer{};
  const std::size_t piece = 1 + (size % buffer.size());
  for (;;) {
    auto n = header->content.read(std::span<std::uint8_t>(buffer).first(piece));
    if (!n.has_value() || *n == 0) break;
  }
  (void)header->content.finish();
  return 0;
}
