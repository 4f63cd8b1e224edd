// Fuzz target: field extraction from one XML record (formats/record_fields.h) under the
// shipped profile config/profiles/acme-import-xml.xml, loaded once.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "config/profile_parser.h"
#include "engine/profile.h"
#include "formats/record_fields.h"

namespace {

const persoflow::Profile& acme_xml_profile() {
  static const persoflow::Profile profile = [] {
    auto p = persoflow::config::load_profile(PERSOFLOW_PROFILES_DIR "/acme-import-xml.xml");
    if (!p.has_value()) {
      std::fprintf(stderr, "cannot load the profile: %s\n", p.error().message().c_str());
      std::abort();
    }
    return std::move(p).value();
  }();
  return profile;
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const Profile& profile = acme_xml_profile();
  formats::Record record;
  record.number = 1;
  record.bytes = SecureBytes(std::span<const std::uint8_t>(data, size));
  (void)formats::extract_fields(profile, record);
  return 0;
}
