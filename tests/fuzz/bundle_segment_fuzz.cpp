// Fuzz target: script bundle segment decoding (formats/bundle.h, decode_bundle_segment).
// The input is the bytes of segment 0 under a fixed, valid header (segments of up to 256
// cards). Seeds in corpus/bundle_segment/: ok-* are segments encode_bundle_segment wrote
// (zstd 1.5), bad-* hostile counts and lengths.
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/bundle.h"

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace persoflow;
  static const formats::BundleHeader header = [] {
    formats::BundleHeader h;
    h.xof_sha256 = Bytes(32, 0xA5);
    h.profile_sha256 = Bytes(32, 0x5A);
    h.segment_cards = 256;
    h.integrity_key_uri = "pkcs11:object=bundle-integrity";
    h.integrity_kcv = Bytes{1, 2, 3};
    return h;
  }();
  (void)formats::decode_bundle_segment(header, std::span<const std::uint8_t>(data, size), 0,
                                       "fuzz.bundle: segment 0", 4096);
  return 0;
}
