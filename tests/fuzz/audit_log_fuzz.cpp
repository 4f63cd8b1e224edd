// Fuzz target: audit log verification (formats/audit_log.h) over a log held in memory.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "formats/audit_log.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow::formats;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  AuditVerifyReport report;
  (void)verify_audit_text(text, "fuzz.log", report);
  return 0;
}
