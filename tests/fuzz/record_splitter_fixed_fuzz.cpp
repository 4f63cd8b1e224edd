// Fuzz target: the fixed-width record splitter (formats/record_splitter.h): one record per
// line, or records of a fixed length taken from the first input byte; fed in two chunks
// split at a point taken from the input, drained after each feed and after finish().
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/profile.h"
#include "formats/record_splitter.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  using namespace persoflow::formats;
  const std::span<const std::uint8_t> input(data, size);
  RecordLayout layout;
  layout.format = RecordFormat::kFixedWidth;
  layout.record_length = size == 0 ? 0 : data[0] % 32;  // 0: one record per line
  auto splitter = RecordSplitter::create(layout, SplitterLimits{256, 8});
  if (!splitter.has_value()) __builtin_trap();
  const std::size_t cut = size < 2 ? 0 : (data[1] * 131U + size) % (size + 1);
  splitter->feed(input.first(cut));
  while (splitter->next()) {
  }
  splitter->feed(input.subspan(cut));
  while (splitter->next()) {
  }
  splitter->finish();
  while (splitter->next()) {
  }
  return 0;
}
