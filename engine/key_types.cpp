#include "engine/key_types.h"

#include <bit>

namespace persoflow {

Result<KeyType> parse_key_type(std::string_view name) {
  if (name == "aes128") return KeyType::kAes128;
  if (name == "aes192") return KeyType::kAes192;
  if (name == "aes256") return KeyType::kAes256;
  if (name == "des2") return KeyType::kDes2;
  if (name == "des3") return KeyType::kDes3;
  return Error(ErrorCode::kInvalidArgument,
               "unknown key type '" + std::string(name) + "' (expected aes128, aes192, aes256, des2 or des3)");
}

std::string_view key_type_name(KeyType type) {
  switch (type) {
    case KeyType::kAes128: return "aes128";
    case KeyType::kAes192: return "aes192";
    case KeyType::kAes256: return "aes256";
    case KeyType::kDes2: return "des2";
    case KeyType::kDes3: return "des3";
  }
  return "?";
}

KeyFamily key_family(KeyType type) {
  return (type == KeyType::kDes2 || type == KeyType::kDes3) ? KeyFamily::kDes : KeyFamily::kAes;
}

std::size_t key_length_bytes(KeyType type) {
  switch (type) {
    case KeyType::kAes128: return 16;
    case KeyType::kAes192: return 24;
    case KeyType::kAes256: return 32;
    case KeyType::kDes2: return 16;
    case KeyType::kDes3: return 24;
  }
  return 0;
}

std::size_t key_bits(KeyType type) {
  switch (type) {
    case KeyType::kAes128: return 128;
    case KeyType::kAes192: return 192;
    case KeyType::kAes256: return 256;
    case KeyType::kDes2: return 112;
    case KeyType::kDes3: return 168;
  }
  return 0;
}

std::optional<KeyType> key_type_for(KeyFamily family, std::size_t length_bytes) {
  if (family == KeyFamily::kDes) {
    if (length_bytes == 16) return KeyType::kDes2;
    if (length_bytes == 24) return KeyType::kDes3;
    return std::nullopt;
  }
  if (length_bytes == 16) return KeyType::kAes128;
  if (length_bytes == 24) return KeyType::kAes192;
  if (length_bytes == 32) return KeyType::kAes256;
  return std::nullopt;
}

std::vector<std::uint8_t> kcv_block(KeyFamily family) {
  if (family == KeyFamily::kDes) return std::vector<std::uint8_t>(8, 0x00);
  return std::vector<std::uint8_t>(16, 0x01);
}

Result<KeyUsage> parse_key_usage(std::string_view list) {
  KeyUsage usage;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    std::string_view item = list.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item == "encrypt") usage.encrypt = true;
    else if (item == "decrypt") usage.decrypt = true;
    else if (item == "sign") usage.sign = true;
    else if (item == "verify") usage.verify = true;
    else if (item == "wrap") usage.wrap = true;
    else if (item == "unwrap") usage.unwrap = true;
    else if (item == "derive") usage.derive = true;
    else if (!item.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "unknown key usage '" + std::string(item) +
                       "' (expected encrypt, decrypt, sign, verify, wrap, unwrap, derive)");
    }
    start = end + 1;
  }
  return usage;
}

std::string key_usage_list(const KeyUsage& usage) {
  std::string out;
  auto add = [&](bool on, std::string_view name) {
    if (!on) return;
    if (!out.empty()) out.push_back(',');
    out += name;
  };
  add(usage.encrypt, "encrypt");
  add(usage.decrypt, "decrypt");
  add(usage.sign, "sign");
  add(usage.verify, "verify");
  add(usage.wrap, "wrap");
  add(usage.unwrap, "unwrap");
  add(usage.derive, "derive");
  return out;
}

void set_odd_parity(std::uint8_t* data, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) {
    const std::uint8_t high7 = data[i] & 0xFE;
    data[i] = static_cast<std::uint8_t>(high7 | ((std::popcount(high7) % 2 == 0) ? 1 : 0));
  }
}

}  // namespace persoflow
