// The static keys of one SE key set (K-ENC, K-MAC, K-DEK), wherever they live. The
// offline secure-channel code (engine/offline_session.h) needs only three operations on
// them, so that the same code runs on clear keys (`scp wrap --test-keys`, known-answer
// tests, the `host` key-handling mode) and on HSM session objects (hsm/hsm_card_keys.h,
// the default `strict` mode). Results that are keys (SCP session keys) come back as
// SecureBytes: they live in host memory for one card (domain.md key hierarchy).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "engine/aes_cmac.h"
#include "engine/hex.h"
#include "engine/key_diversification.h"
#include "engine/key_types.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

enum class CardKeyRole : std::uint8_t { kEnc, kMac, kDek };

class CardKeys {
 public:
  virtual ~CardKeys() = default;

  virtual KeyType type() const = 0;  // the same for the three keys

  // AES-CMAC under the role's key (AES key sets only): the PRF of the SCP03 KDF.
  virtual Result<SecureBytes> aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) = 0;

  // CBC encryption with a zero IV and no padding (data a multiple of the block size):
  // SCP02 session keys (3DES) and SCP03 K-DEK encryption of padded data and keys (AES).
  virtual Result<SecureBytes> cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) = 0;

  // KCV (DES: 3DES(00x8), AES: AES(01x16); first 3 bytes).
  virtual Result<Bytes> kcv(CardKeyRole role) = 0;
};

// Clear keys in host memory (zeroized on release). For test cards, known-answer tests and
// the `host` key-handling mode only.
class ClearCardKeys final : public CardKeys {
 public:
  // The three keys must have the same length: AES 16/24/32 bytes, DES 16 (2-key) or 24
  // (3-key). The family is given because 16 and 24 bytes fit both. kInvalidArgument
  // otherwise, naming the key, never its value.
  static Result<ClearCardKeys> create(StaticKeySet keys, KeyFamily family);
  KeyType type() const override { return type_; }
  Result<SecureBytes> aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) override;
  Result<SecureBytes> cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) override;
  Result<Bytes> kcv(CardKeyRole role) override;
  const StaticKeySet& keys() const { return keys_; }

 private:
  ClearCardKeys(StaticKeySet keys, KeyType type) : keys_(std::move(keys)), type_(type) {}
  const SecureBytes& key(CardKeyRole role) const;
  // The role's AES key expanded at its first use and kept for the others (a card's KDF
  // blocks under K-ENC, its DGIs under K-DEK); cleansed with the object.
  Result<AesKeySchedule*> schedule(CardKeyRole role);
  StaticKeySet keys_;
  KeyType type_;
  std::array<std::optional<AesKeySchedule>, 3> schedules_;
};

}  // namespace persoflow
