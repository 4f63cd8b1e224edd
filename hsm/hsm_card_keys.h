// Card static keys in the HSM as engine CardKeys (engine/card_keys.h): the offline
// secure-channel code (engine/offline_session.h) runs unchanged over keys that never
// leave the module. The three keys are either session objects diversified for one card
// (hsm::derive_static_keys, the `strict` mode of prep) or stored token keys found by URI
// (diversification "none"; `scp wrap --key-enc/--key-mac/--key-dek`).
//
//   aes_cmac     C_SignInit/C_Sign CKM_AES_CMAC (the key needs CKA_SIGN)
//   cbc_encrypt  C_EncryptInit/C_Encrypt CKM_AES_CBC or CKM_DES3_CBC, zero IV (CKA_ENCRYPT)
//   kcv          as KeyStore::kcv
// Results that are keys (SCP session keys) come back into host memory as SecureBytes: the
// domain's key hierarchy lets session keys live in the host for one card.
#pragma once

#include <array>
#include <string>

#include "engine/card_keys.h"
#include "hsm/key_derivation.h"
#include "hsm/key_store.h"

namespace persoflow::hsm {

class HsmCardKeys final : public CardKeys {
 public:
  // Stored keys (e.g. found with KeyStore::find). All three of one type persoflow knows,
  // the same for the three; AES keys: ENC and MAC need the sign usage, DEK encrypt; DES
  // keys: encrypt. kInvalidArgument naming the key's label otherwise.
  static Result<HsmCardKeys> from_token_keys(KeyStore& keys, const KeyInfo& enc, const KeyInfo& mac,
                                             const KeyInfo& dek);

  // Keys diversified for one card (their usages are the derivation's); `type` is the
  // target type given to derive_static_keys. `derived` must outlive this object.
  static Result<HsmCardKeys> from_derived(KeyStore& keys, const DerivedKeySet& derived, KeyType type);

  KeyType type() const override { return type_; }
  Result<SecureBytes> aes_cmac(CardKeyRole role, std::span<const std::uint8_t> data) override;
  Result<SecureBytes> cbc_encrypt(CardKeyRole role, std::span<const std::uint8_t> data) override;
  Result<Bytes> kcv(CardKeyRole role) override;

  // The key behind a role, for key-to-key operations (C_WrapKey under the card's DEK).
  const KeyInfo& key_info(CardKeyRole role) const { return info(role); }

 private:
  HsmCardKeys(KeyStore& keys, KeyType type, std::array<KeyInfo, 3> info)
      : keys_(&keys), type_(type), info_(std::move(info)) {}
  const KeyInfo& info(CardKeyRole role) const { return info_[static_cast<std::size_t>(role)]; }

  KeyStore* keys_;
  KeyType type_;
  std::array<KeyInfo, 3> info_;  // ENC, MAC, DEK; label = the name used in errors
};

}  // namespace persoflow::hsm
