// Fuzz target: the plain APDU script of `persoflow scp wrap` (pipeline/scp_wrap_command.h,
// parse_apdu_script): one hex command APDU per line, '#' comments, blank lines. Every error
// starts with "script"; every command parsed comes from a line of the input, in order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "pipeline/scp_wrap_command.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto script = persoflow::pipeline::parse_apdu_script(text);
  if (!script) {
    if (script.error().message().rfind("script", 0) != 0) std::abort();
    return 0;
  }
  if (script->empty()) std::abort();
  int last = 0;
  for (const auto& command : *script) {
    if (command.line <= last || static_cast<std::size_t>(command.line) > size) std::abort();
    last = command.line;
  }
  return 0;
}
