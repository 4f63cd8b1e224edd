// Fuzz target: PKCS#11 URIs (engine/pkcs11_uri.h). Beyond not crashing, the canonical form
// must round-trip: a URI that parses gives a string that parses back to an equal value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/pkcs11_uri.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using persoflow::Pkcs11Uri;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto uri = Pkcs11Uri::parse(text);
  if (!uri.has_value()) return 0;
  const std::string canonical = uri->to_string();
  auto again = Pkcs11Uri::parse(canonical);
  if (!again.has_value()) {
    std::fprintf(stderr, "to_string() gave %s, which does not parse: %s\n", canonical.c_str(),
                 again.error().message().c_str());
    std::abort();
  }
  if (!(*again == *uri)) {
    std::fprintf(stderr, "to_string() gave %s, which parses to another value\n", canonical.c_str());
    std::abort();
  }
  return 0;
}
