// Fuzz target: XOF segment parsing (formats/xof_segment.h). The input is the bytes of
// segment 0 under a fixed, valid header made once from the shipped profile
// config/profiles/acme-import-xml.xml (placeholder digest and KCVs).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "config/profile_parser.h"
#include "engine/hex.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"

namespace {

const persoflow::formats::XofHeader& acme_xof_header() {
  using namespace persoflow;
  static const formats::XofHeader header = [] {
    auto profile = config::load_profile(PERSOFLOW_PROFILES_DIR "/acme-import-xml.xml");
    if (!profile.has_value()) {
      std::fprintf(stderr, "cannot load the profile: %s\n", profile.error().message().c_str());
      std::abort();
    }
    std::vector<Bytes> class_kcvs(profile->key_classes.size(), Bytes{0x01, 0x02, 0x03});
    auto h = formats::make_xof_header(*profile, Bytes(32, 0x5A), std::move(class_kcvs),
                                      Bytes{0x04, 0x05, 0x06});
    if (!h.has_value()) {
      std::fprintf(stderr, "cannot make the XOF header: %s\n", h.error().message().c_str());
      std::abort();
    }
    return std::move(h).value();
  }();
  return header;
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  const formats::XofHeader& header = acme_xof_header();
  (void)formats::parse_xof_segment(header, Bytes(data, data + size), 4096, 0, "fuzz.xof");
  return 0;
}
