#include "tests/support/reference_crypto.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace persoflow::test {

ByteVec reference_kcv(const std::string& type, const ByteVec& key) {
  const EVP_CIPHER* cipher = nullptr;
  ByteVec block;
  if (type == "des2") {
    cipher = EVP_des_ede_ecb();
    block.assign(8, 0x00);
  } else if (type == "des3") {
    cipher = EVP_des_ede3_ecb();
    block.assign(8, 0x00);
  } else if (key.size() == 16) {
    cipher = EVP_aes_128_ecb();
    block.assign(16, 0x01);
  } else if (key.size() == 24) {
    cipher = EVP_aes_192_ecb();
    block.assign(16, 0x01);
  } else if (key.size() == 32) {
    cipher = EVP_aes_256_ecb();
    block.assign(16, 0x01);
  } else {
    throw std::invalid_argument("reference_kcv: unsupported key");
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  ByteVec out(block.size() + 32);
  int len = 0;
  if (EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, block.data(), static_cast<int>(block.size())) != 1) {
    throw std::runtime_error("reference_kcv: OpenSSL failed");
  }
  out.resize(3);
  return out;
}

ByteVec hex_bytes(const std::string& hex) {
  ByteVec out;
  int hi = -1;
  for (char c : hex) {
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else if (c == ' ') continue;
    else throw std::invalid_argument("hex_bytes: bad character");
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(hi * 16 + v));
      hi = -1;
    }
  }
  if (hi >= 0) throw std::invalid_argument("hex_bytes: odd digits");
  return out;
}

std::string hex_upper(const ByteVec& bytes) {
  static const char* kDigits = "0123456789ABCDEF";
  std::string s;
  for (auto b : bytes) {
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

ByteVec xor_bytes(const ByteVec& a, const ByteVec& b) {
  if (a.size() != b.size()) throw std::invalid_argument("xor_bytes: sizes differ");
  ByteVec out(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

}  // namespace persoflow::test
