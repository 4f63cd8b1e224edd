// Symmetric key types and usages as the key ceremony and profiles name them, and
// the key check value (KCV) convention of each (gp-reference.md §1.2).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"

namespace persoflow {

enum class KeyType : std::uint8_t { kAes128, kAes192, kAes256, kDes2, kDes3 };
enum class KeyFamily : std::uint8_t { kAes, kDes };

// "aes128" | "aes192" | "aes256" | "des2" | "des3".
Result<KeyType> parse_key_type(std::string_view name);
std::string_view key_type_name(KeyType type);
KeyFamily key_family(KeyType type);
std::size_t key_length_bytes(KeyType type);  // 16, 24, 32, 16, 24
std::size_t key_bits(KeyType type);          // 128, 192, 256, 112 (des2), 168 (des3)

// The key type of an AES or DES key of the given length, if any.
std::optional<KeyType> key_type_for(KeyFamily family, std::size_t length_bytes);

// KCV input block: DES/3DES: 00 x 8; AES: 01 x 16 (GPC v2.3.1 B.6, Amd D 7.2.2).
std::vector<std::uint8_t> kcv_block(KeyFamily family);
inline constexpr std::size_t kKcvLength = 3;

// What a key may be used for: the PKCS#11 CKA_ENCRYPT ... CKA_DERIVE flags.
struct KeyUsage {
  bool encrypt = false;
  bool decrypt = false;
  bool sign = false;    // MAC generation (CMAC)
  bool verify = false;  // MAC verification
  bool wrap = false;
  bool unwrap = false;
  bool derive = false;

  bool operator==(const KeyUsage&) const = default;
  bool any() const { return encrypt || decrypt || sign || verify || wrap || unwrap || derive; }
};

// Parses a comma-separated list of "encrypt,decrypt,sign,verify,wrap,unwrap,derive".
Result<KeyUsage> parse_key_usage(std::string_view list);
// The same list, comma-separated, in that fixed order ("" when none).
std::string key_usage_list(const KeyUsage& usage);

// Forces odd parity in every byte (DES keys). DES ignores the parity bits, so this
// changes neither the KCV nor any cryptogram; it keeps strict modules from refusing.
void set_odd_parity(std::uint8_t* data, std::size_t size);

}  // namespace persoflow
