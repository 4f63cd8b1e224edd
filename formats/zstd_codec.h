// zstd compression of one buffer into one frame, with one compression and one
// decompression context per thread, created on first use and reused for the thread's
// life (the import pipeline compresses from many worker threads at once).
//
// Output for the same input, level and library version is byte-identical (single-threaded
// zstd, no checksum, content size recorded): the XOF binds level and version into its file
// id for that reason (docs/formats/xof.md). Input and output are SecureBytes because what
// is compressed is cleartext attribute data; the contexts' own windows still hold
// fragments between calls, which is why the command line disables core dumps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow::formats {

inline constexpr int kZstdDefaultLevel = 3;

// ZSTD_versionNumber() of the library linked at run time (10504 for 1.5.4).
std::uint32_t zstd_library_version();

// kInvalidArgument unless ZSTD_minCLevel() <= level <= ZSTD_maxCLevel() and level != 0.
Status check_zstd_level(int level);

// One zstd frame with the content size recorded.
Result<SecureBytes> zstd_compress(std::span<const std::uint8_t> data, int level);

// Decompresses exactly one frame that must fill `frame` and declare a content size of at
// most `max_size`. kParse on anything else; messages never quote the data.
Result<SecureBytes> zstd_decompress(std::span<const std::uint8_t> frame, std::size_t max_size);

}  // namespace persoflow::formats
