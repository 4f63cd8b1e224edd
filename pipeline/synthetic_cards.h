// Synthetic, valid-looking cards for `persoflow gen-issuer` (demo, tests, benchmarks):
// Luhn-valid PANs from a test BIN, names, future expiry dates, service codes, PIN
// blocks... derived from the profile's attribute types, deterministic per (seed,
// card index) so that any card can be regenerated alone and in parallel.
// Test data only: the values are predictable from the seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/profile.h"
#include "engine/secure_bytes.h"

namespace persoflow::pipeline {

struct SyntheticOptions {
  std::uint64_t seed = 1;
  std::string bin = "476173";  // issuer identification number of the generated PANs
  int expiry_base_year = 28;   // expiry dates fall in 20YY .. 20YY+3
};

// The SE id and MSI of generated card `index` (when the profile's <prep> looks SEs up by
// one of its attributes): "SE0000000001", "208000000000001".
std::string se_id_for(std::uint64_t index);
std::string msi_for(std::uint64_t index);

class SyntheticCards {
 public:
  SyntheticCards(const Profile& profile, SyntheticOptions options);

  // The clear values of card `index` (0-based), one per profile attribute, in profile
  // order. Field-encrypted attributes hold the clear secret as hex (an ISO 9564 format 2
  // PIN block for 8-byte secrets): the caller wraps it under the field key.
  std::vector<std::string> values(std::uint64_t index) const;

  // Record text for one card given its final values (field-encrypted ones already
  // wrapped): an XML element, or a fixed-width line ending in "\n".
  std::string render(const std::vector<std::string>& values) const;

  // What comes before the first and after the last record (XML prolog and root).
  std::string prolog() const;
  std::string epilog() const;

 private:
  const Profile& profile_;
  SyntheticOptions options_;
  std::size_t fixed_width_ = 0;
};

}  // namespace persoflow::pipeline
