// The HSM half of prep's `host` key-handling mode (docs/profile.md "Key handling"): card-level
// keys computed by the HSM from master keys that never leave it, and returned into host
// memory (SecureBytes) for the host's software SCP03/SCP02 code. Few calls for many cards:
//
//   kdf3 static keys, keyed host challenges (AES-CMAC under a stored key): with the key's
//     encrypt usage, CMAC is computed as layers of AES-ECB (engine/cmac_batch.h): L is
//     computed once per key (one C_Encrypt of the zero block) and K1, K2 kept in
//     SecureBytes; then a whole batch of cards costs one C_Encrypt per block position of
//     the longest message: ONE for kdf3 (its input is exactly one block). Without the
//     encrypt usage: one C_SignInit/C_Sign per message (the fallback the run report names).
//   EMV CPS / VISA2 static keys (2-key 3DES master): with the encrypt usage, every card's
//     diversification blocks in one C_Encrypt(CKM_DES3_ECB); without, per key a
//     C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA) of a non-sensitive session object, read and
//     destroyed at once.
//   EMV ICC master keys (options A, B: 3DES IMK; C: AES IMK): the same, per IMK: one
//     C_Encrypt(CKM_DES3_ECB / CKM_AES_ECB) over every card's Y || Y xor FF.., or per key a
//     readable C_DeriveKey, read and destroyed.
// The values are exactly those of the strict mode's session objects (same blocks under the
// same keys); DES values get odd parity here, on the host, as hsm::read_icc_master_key does.
//
// Every class here is immutable after create() and safe to use from several threads: each
// call leases its own session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/cmac_batch.h"
#include "engine/emv_icc_keys.h"
#include "engine/key_diversification.h"
#include "engine/key_types.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "hsm/emv_icc_derivation.h"
#include "hsm/key_store.h"

namespace persoflow::hsm {

// ECB encryption of whole blocks (16 bytes AES, 8 bytes 3DES) under a stored key with the
// encrypt usage: C_EncryptInit(CKM_AES_ECB or CKM_DES3_ECB) and C_Encrypt, at most 64 KiB
// per call (larger calls page-fault heavily in SoftHSM, hsm-facts.md). `in` and `out` have
// the same length. `what` names the operation in errors.
Status ecb_encrypt_blocks(KeyStore& keys, const KeyInfo& key, std::span<const std::uint8_t> in,
                          std::span<std::uint8_t> out, std::string_view what);

// AES-CMAC of many messages under one stored AES key.
class HsmBatchCmac {
 public:
  // `key` is an AES key with the encrypt usage (batched: cmac_batch layers of C_Encrypt) or,
  // without it, the sign usage (one C_Sign per message). Batched, this computes L (one
  // C_Encrypt) and keeps K1, K2. kInvalidArgument naming the key otherwise.
  static Result<HsmBatchCmac> create(KeyStore& keys, const KeyInfo& key);

  bool batched() const { return subkeys_ != nullptr; }
  const KeyInfo& key() const { return key_; }

  // The 16-byte CMAC of each message, in order. Batched, with as many C_Encrypt calls as
  // block positions, unless that is more calls than one C_Sign per message (a batch of one
  // multi-block message): then C_Sign, which the key must allow; the result is the same.
  Result<std::vector<SecureBytes>> mac(std::span<const std::span<const std::uint8_t>> messages) const;

 private:
  HsmBatchCmac(KeyStore& keys, KeyInfo key, std::shared_ptr<const CmacSubkeys> subkeys)
      : keys_(&keys), key_(std::move(key)), subkeys_(std::move(subkeys)) {}
  Result<std::vector<SecureBytes>> sign_each(std::span<const std::span<const std::uint8_t>> messages) const;

  KeyStore* keys_;
  KeyInfo key_;
  std::shared_ptr<const CmacSubkeys> subkeys_;  // null: C_Sign per message
};

// A master key's diversification (gp-reference.md §4) of card static keys into host memory.
class HostStaticKeyDeriver {
 public:
  // kdf3: an AES master with encrypt (batched) or sign; `target` the AES type of the
  // master's length. emv / visa2: a CKK_DES2 master with encrypt (batched) or derive;
  // `target` des2. kInvalidArgument / kUnsupported as hsm::derive_static_keys.
  static Result<HostStaticKeyDeriver> create(KeyStore& keys, const KeyInfo& master, DiversificationScheme scheme,
                                             KeyType target);

  // K-ENC, K-MAC, K-DEK of each card (one KDD each), or that card's own error
  // (kInvalidArgument: a KDD that is not 10 bytes). The outer error is the HSM's.
  Result<std::vector<Result<StaticKeySet>>> derive(std::span<const std::span<const std::uint8_t>> kdds) const;

  bool batched() const;
  // How the HSM computes the keys, for the run report.
  std::string method() const;
  const KeyInfo& master() const { return master_; }
  KeyType target() const { return target_; }

 private:
  HostStaticKeyDeriver(KeyStore& keys, KeyInfo master, DiversificationScheme scheme, KeyType target,
                       std::shared_ptr<const HsmBatchCmac> cmac)
      : keys_(&keys), master_(std::move(master)), scheme_(scheme), target_(target), cmac_(std::move(cmac)) {}

  KeyStore* keys_;
  KeyInfo master_;
  DiversificationScheme scheme_;
  KeyType target_;
  std::shared_ptr<const HsmBatchCmac> cmac_;  // kdf3
};

// One card's EMV ICC master keys in host memory (DGI 8000 order), DES keys with odd parity.
struct HostIccKeys {
  KeyType type = KeyType::kDes2;  // des2 for A and B; the IMK's AES type for C
  SecureBytes ac, smi, smc;
};

// The PAN and PSN of a card (ASCII digits, views of its values; PSN empty when absent).
struct IccCardId {
  std::string_view pan;
  std::string_view psn;
};

class HostIccDeriver {
 public:
  // Each IMK as hsm::derive_icc_master_key needs it, except that the encrypt usage alone
  // (batched) also serves; an IMK with neither encrypt nor derive is kInvalidArgument.
  static Result<HostIccDeriver> create(KeyStore& keys, const IccIssuerMasterKeys& imks, IccDerivationOption option);

  // The three master keys of each card, or that card's own error (kInvalidArgument: a PAN
  // or PSN that is not one, never quoting a digit).
  Result<std::vector<Result<HostIccKeys>>> derive(std::span<const IccCardId> cards) const;

  // All three IMKs batched (C_Encrypt); otherwise some are derived key by key.
  bool batched() const;
  std::string method() const;

 private:
  struct Imk {
    KeyInfo info;
    std::size_t length = 16;
  };
  HostIccDeriver(KeyStore& keys, std::vector<Imk> imks, IccDerivationOption option)
      : keys_(&keys), imks_(std::move(imks)), option_(option) {}

  KeyStore* keys_;
  std::vector<Imk> imks_;  // AC, SMI, SMC
  IccDerivationOption option_;
};

}  // namespace persoflow::hsm
