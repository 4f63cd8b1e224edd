#include "engine/secure_bytes.h"

#include <openssl/crypto.h>

#include <stdexcept>

namespace persoflow {

namespace detail {
void secure_wipe(void* data, std::size_t size) {
  if (data != nullptr && size > 0) OPENSSL_cleanse(data, size);
}
}  // namespace detail

void SecureBytes::wipe() {
  detail::secure_wipe(bytes_.data(), bytes_.size());
  bytes_.clear();
}

bool SecureBytes::equals(const SecureBytes& other) const {
  return constant_time_equal(bytes_, other.bytes_);
}

void SecureBytes::xor_with(std::span<const std::uint8_t> other) {
  if (other.size() != bytes_.size()) {
    // A programming error, not an input error: callers check component sizes first.
    throw std::logic_error("SecureBytes::xor_with: size mismatch");
  }
  for (std::size_t i = 0; i < bytes_.size(); ++i) bytes_[i] ^= other[i];
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace persoflow
