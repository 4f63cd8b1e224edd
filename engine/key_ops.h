// The key operations the engine and the file formats need, as interfaces that hsm/
// implements over PKCS#11 (keys never leave the HSM). A software implementation exists
// only in tests, to run published known-answer vectors through the same code.
#pragma once

#include <cstdint>
#include <span>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

// AES-GCM with a 12-byte nonce and a 16-byte tag, under one key.
class AeadKey {
 public:
  virtual ~AeadKey() = default;
  // ciphertext || tag
  virtual Result<Bytes> seal(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                             std::span<const std::uint8_t> plaintext) = 0;
  // kIntegrity when the tag does not verify. The plaintext is secret: SecureBytes.
  virtual Result<SecureBytes> open(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                             std::span<const std::uint8_t> ciphertext_and_tag) = 0;
  // KCV of the key (3 bytes), for headers and reports.
  virtual Result<Bytes> kcv() = 0;
};

// A MAC (AES-CMAC, 16 bytes) under one key.
class MacKey {
 public:
  virtual ~MacKey() = default;
  virtual Result<Bytes> mac(std::span<const std::uint8_t> data) = 0;
  // kIntegrity when the tag does not match (compared in constant time).
  virtual Status verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag) = 0;
  virtual Result<Bytes> kcv() = 0;
};

}  // namespace persoflow
