// Product profiles: reads the XML of docs/profile.md into a validated, immutable
// Profile (engine/profile.h). Strict: an unknown element or attribute, a missing one,
// a malformed value or an inconsistent profile is a kParse error "FILE:LINE: reason"
// naming the line of the element or attribute at fault. Messages quote profile
// values (names, URIs with any PIN redacted) but a profile holds no secret.
#pragma once

#include <string>
#include <string_view>

#include "engine/profile.h"
#include "engine/result.h"

namespace persoflow::config {

// Reads and parses the file at `path`; Profile::sha256 is the SHA-256 of its bytes.
// kNotFound when the file does not exist, kIo when it cannot be read (a directory),
// kParse for everything parse_profile refuses, and for a file over 1 MiB.
Result<Profile> load_profile(const std::string& path);

// Parses profile XML (UTF-8). `name` is the file name used in messages.
// Profile::sha256 is the SHA-256 of `xml`, byte for byte.
Result<Profile> parse_profile(std::string_view xml, const std::string& name);

}  // namespace persoflow::config
