// Card static keys (K-ENC / K-MAC / K-DEK) diversified from a product master key (KMC)
// INSIDE the HSM: the derived keys are sensitive, non-extractable session objects; the
// host holds only handles and KCVs. Same values as engine/key_diversification.h
// (gp-reference.md §4); docs/key-derivation.md says what runs where.
//
//   EMV CPS / VISA2: C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA) over the 16-byte
//     diversification block (engine's diversification_input), producing a CKK_DES2
//     session key: exactly the two independent 3DES-ECB blocks the engine computes.
//   KDF3 (AES-CMAC counter KDF): SoftHSM 2.6.1 has no CKM_SP800_108_COUNTER_KDF nor any
//     CMAC-based derive, so the CMAC blocks are C_Sign calls on the master (sign usage)
//     and the value goes at once into a sensitive session object: it transits host
//     memory (SecureBytes), which prep's run report lists as a host exposure.
#pragma once

#include <cstdint>
#include <span>

#include "engine/hex.h"
#include "engine/key_diversification.h"
#include "engine/key_types.h"
#include "engine/result.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_store.h"

namespace persoflow::hsm {

// One derived static key: the session object and its KCV (3 bytes, computed in the HSM;
// empty when DeriveOptions::kcvs was false).
struct DerivedKey {
  SessionKey key;
  Bytes kcv;
};

// The card's static key set as HSM session objects, created on the token's object
// session (pooled-session closes cannot destroy them) and destroyed when this dies.
// Usages: encrypt, decrypt, sign, verify, derive (SCP02 session-key derivation,
// DEK encryption of key values, MACs); the DEK also wrap (values moved key-to-key into
// DGIs under it: ICC master keys, PIN blocks); no unwrap.
struct DerivedKeySet {
  DerivedKey enc;
  DerivedKey mac;
  DerivedKey dek;
};

// Derives ENC, MAC and DEK from `master` for the card whose KDD (10 bytes) is `kdd`.
//   kEmvCps / kVisa2: `master` must be a CKK_DES2 key with the derive usage and
//     `target` must be KeyType::kDes2 (the engine defines these schemes for 2-key 3DES
//     only); otherwise kInvalidArgument (wrong master or KDD) or kUnsupported (target).
//   kKdf3: `master` an AES key with the sign usage, `target` the AES type of the same
//     length; computed by CMAC calls (see above).
struct DeriveOptions {
  // The keys are also extractable (still sensitive), so that C_WrapKey can put them under
  // another key inside the HSM: a key set the script loads with PUT KEY.
  bool wrappable = false;
  // Each key's KCV computed in the HSM (two calls per key); without, DerivedKey::kcv stays
  // empty: prep's card keys, whose KCVs nothing reads.
  bool kcvs = true;
};
Result<DerivedKeySet> derive_static_keys(KeyStore& keys, const KeyInfo& master, DiversificationScheme scheme,
                                         std::span<const std::uint8_t> kdd, KeyType target,
                                         const DeriveOptions& options = {});

// `key` (`key_length` bytes, a whole number of AES blocks) encrypted with AES-CBC and `iv`
// under `wrapping` (an AES key with the wrap usage), inside the HSM: C_WrapKey(CKM_AES_CBC).
// A PUT KEY component under the session's K-DEK (Amd D §7.2.2).
Result<Bytes> wrap_key_aes_cbc(KeyStore& keys, const SessionKey& key, std::size_t key_length,
                               const KeyInfo& wrapping, std::span<const std::uint8_t> iv);

// KCV of a session key of `type`, computed by the HSM (the key needs the encrypt usage).
Result<Bytes> session_key_kcv(KeyStore& keys, const SessionKey& key, KeyType type);

}  // namespace persoflow::hsm
