// Fuzz target: the SE registry CSV parser and validator (formats/se_registry.h,
// parse_registry_csv) over text held in memory; no database is touched.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "formats/se_registry.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow::formats;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto rows = parse_registry_csv(text, "fuzz.csv");
  if (!rows) {
    // Every error names the file and a line.
    if (rows.error().message().rfind("fuzz.csv", 0) != 0) std::abort();
    return 0;
  }
  // What the parser accepts must satisfy what the database's CHECKs demand.
  for (const RegistryCsvRow& row : *rows) {
    const SeRecord& r = row.record;
    const std::uint32_t top = r.scp == 2 ? kScp02MaxCounter : kScp03MaxCounter;
    if (r.kdd.size() != 10 || r.isd_aid.size() < 5 || r.isd_aid.size() > 16 ||
        (r.scp != 2 && r.scp != 3) || r.next_counter > r.max_counter || r.max_counter > top ||
        r.se_id.empty() || r.product.empty() || row.line == 0) {
      std::abort();
    }
  }
  return 0;
}
