// Independent computations for tests, straight through OpenSSL's EVP API (never
// through persoflow's code), used to check what persoflow computes in the HSM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace persoflow::test {

using ByteVec = std::vector<std::uint8_t>;

// KCV per GPC v2.3.1 B.6: AES keys (16/24/32 bytes) encrypt 01 x 16; DES keys
// ("des2" 16 bytes, "des3" 24 bytes) encrypt 00 x 8; first 3 bytes.
ByteVec reference_kcv(const std::string& type, const ByteVec& key);

ByteVec hex_bytes(const std::string& hex);  // throws on malformed hex
std::string hex_upper(const ByteVec& bytes);
ByteVec xor_bytes(const ByteVec& a, const ByteVec& b);

}  // namespace persoflow::test
