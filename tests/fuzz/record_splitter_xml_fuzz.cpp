// Fuzz target: the XML record splitter (formats/record_splitter.h), fed in two chunks split
// at a point taken from the input, drained after each feed and after finish().
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
  layout.format = RecordFormat::kXml;
  layout.record_element = "card";
  // Small limits so that the oversized-record and depth paths are reached.
  auto splitter = RecordSplitter::create(layout, SplitterLimits{4096, 8});
  if (!splitter.has_value()) __builtin_trap();
  const std::size_t cut = size == 0 ? 0 : (data[0] * 131U + size) % (size + 1);
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
