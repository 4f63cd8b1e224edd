// Fuzz target: field extraction from one XML record (formats/record_fields.h) under the
// shipped profile config/profiles/acme-import-xml.xml, loaded once. Differential: the
// one-pass reader of the common shape and the pugixml path must agree (the same values,
// or the same error); a disagreement aborts.
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
  const auto fast = formats::extract_fields(profile, record);
  const auto dom = formats::extract_xml_fields_with_dom(profile, record);
  bool same = fast.has_value() == dom.has_value();
  if (same && !fast) same = fast.error().code() == dom.error().code() && fast.error().message() == dom.error().message();
  if (same && fast) {
    for (std::size_t i = 0; same && i < fast->fields.size(); ++i) {
      const auto& a = fast->fields[i].value;
      const auto& b = dom->fields[i].value;
      same = a.has_value() == b.has_value() && (!a || a->equals(*b));
    }
  }
  if (!same) {
    std::fprintf(stderr, "extract_fields and the pugixml path disagree\n");
    std::abort();
  }
  return 0;
}
