// EMV ICC master keys (MK-AC, MK-SMI, MK-SMC; EMV 4.3 Book 2 Annex A1.4 options A, B, C)
// derived INSIDE the HSM from the issuer master keys (IMK-AC, IMK-SMI, IMK-SMC): each
// master key is a sensitive session object; the host holds its handle and its KCV, and
// gets its value only wrapped under the card's K-DEK (DGI 8000). Same values as
// engine/emv_icc_keys.h (gp-reference.md §6.5); docs/key-derivation.md says what runs where.
//
//   A, B: C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA) over Y || (Y xor FF x 8) under the IMK
//         (CKK_DES2 or CKK_DES3), giving a CKK_DES2 key: two independent 3DES-ECB blocks.
//   C:    C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA) over Y (AES-128 IMK) or Y || (Y xor FF x 16)
//         (AES-192/256 IMK, CKA_VALUE_LEN = the IMK's length, so the leftmost bytes) under
//         the AES IMK, giving a CKK_AES key of the IMK's length.
// The input bytes come from engine's icc_mk_derivation_data, the function the known-answer
// tests run, so both paths encrypt the same bytes.
//
// DES parity. The MK is Z with odd parity forced; DES ignores the parity bits, so KCVs and
// cryptograms are the same either way, but the bytes written into DGI 8000 must be the
// parity-adjusted MK (gp-reference.md §6.5, §9 item 11). Whether a derived DES key's value
// is parity-adjusted is up to the module: SoftHSM 2.6.1 adjusts it (observed: the value of
// a C_DeriveKey CKK_DES2 key is pyemv's MK, not the raw Z; hsm_emv_icc_test). The host
// cannot fix parity after wrapping, so IccMasterKeyWrapper::create first runs a
// known-answer self-test on the module (pyemv's public test IMK and PAN, a public test
// K-DEK): it succeeds only when the wrapped bytes are those of the parity-adjusted MK, and
// only a wrapper that passed it can wrap card keys.
#pragma once

#include <span>
#include <string_view>

#include "engine/emv_icc_keys.h"
#include "engine/hex.h"
#include "engine/key_types.h"
#include "engine/result.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_store.h"

namespace persoflow::hsm {

// One ICC master key as a session object on the token's object session (pooled-session
// closes cannot destroy it), destroyed when this dies. Attributes: CKA_TOKEN=false,
// CKA_PRIVATE, CKA_SENSITIVE (CKA_VALUE is never readable), CKA_EXTRACTABLE=true only so
// that C_WrapKey can put it under the card's K-DEK; usages: encrypt (the KCV) and nothing
// else.
struct IccMasterKey {
  SessionKey key;
  KeyType type = KeyType::kDes2;  // kDes2 for A and B; the IMK's AES type for C
  Bytes kcv;                      // 3 bytes, computed by the HSM (not CKA_CHECK_VALUE)
};

// Derives one ICC master key from `imk` for the card (PAN and PSN: ASCII decimal digits,
// views of the card's values; PSN empty when absent). Requirements, kInvalidArgument
// otherwise (naming the key's label, never the PAN): the IMK has the derive usage
// (CKA_DERIVE) and is CKK_DES2/CKK_DES3 for options A and B, CKK_AES (128/192/256) for C;
// the PAN is 12..19 digits and the PSN absent or 2 digits.
// `host_readable`: the object is not sensitive, so that read_icc_master_key can return its
// value: the host path a profile opts in to (via="host") where the card's DEK is a key the
// module cannot wrap under (SCP02's 3DES S-DEK). Never set otherwise.
Result<IccMasterKey> derive_icc_master_key(KeyStore& keys, const KeyInfo& imk,
                                           IccDerivationOption option, std::string_view pan,
                                           std::string_view psn, bool host_readable = false);

// The issuer master keys of one product, one per ICC master key of DGI 8000.
struct IccIssuerMasterKeys {
  KeyInfo ac;   // application cryptograms
  KeyInfo smi;  // secure messaging integrity
  KeyInfo smc;  // secure messaging confidentiality
};

// The three ICC master keys of a card, in DGI 8000 order.
struct IccMasterKeySet {
  IccMasterKey ac;
  IccMasterKey smi;
  IccMasterKey smc;
};

Result<IccMasterKeySet> derive_icc_master_keys(KeyStore& keys, const IccIssuerMasterKeys& imks,
                                               IccDerivationOption option, std::string_view pan,
                                               std::string_view psn, bool host_readable = false);

// The value of a host-readable master key (C_GetAttributeValue), parity-adjusted for DES:
// the host path only (the run report lists it). A sensitive key is an HSM error.
Result<SecureBytes> read_icc_master_key(KeyStore& keys, const IccMasterKey& mk);

// Wraps ICC master keys under a card's AES K-DEK inside the HSM, for DGI 8000.
class IccMasterKeyWrapper {
 public:
  // Runs the self-test described above on session objects made from public test values
  // (destroyed before returning): derive pyemv's Option A vector (PAN 99012345678901234,
  // PSN 45) and check its KCV, wrap it, and compare with the wrap of the published,
  // parity-adjusted MK. kUnsupported when the module lacks a mechanism or keeps the raw
  // (unadjusted) value; kIntegrity on any other mismatch.
  static Result<IccMasterKeyWrapper> create(KeyStore& keys);

  // C_WrapKey(CKM_AES_CBC, IV 00 x 16) of `mk` under `dek`: the SCP03 form of a key in a
  // sensitive DGI (AES-CBC, zero ICV, under the static K-DEK; gp-reference.md §6.3). The
  // output is AES-CBC(K-DEK, MK) with the MK parity-adjusted (guaranteed by the self-test).
  // `dek` must be an AES key with the wrap usage (kInvalidArgument otherwise; a DES K-DEK
  // is kUnsupported: SoftHSM 2.6.1 wraps with no DES mechanism, and SCP02's S-DEK is a
  // host session key). An MK whose length is not a multiple of 16 (AES-192, option C) is
  // kUnsupported: AES-CBC wraps whole blocks and DGI padding is card-specific.
  Result<Bytes> wrap(const IccMasterKey& mk, const KeyInfo& dek) const;
  // The same with another IV (16 bytes): wrapping MK-AC, MK-SMI, MK-SMC in turn, each
  // with the last ciphertext block of the one before, gives AES-CBC (zero ICV) of the
  // three keys' concatenation, the DGI 8000 value.
  Result<Bytes> wrap(const IccMasterKey& mk, const KeyInfo& dek, std::span<const std::uint8_t> iv) const;

 private:
  explicit IccMasterKeyWrapper(KeyStore& keys) : keys_(&keys) {}
  KeyStore* keys_;
};

}  // namespace persoflow::hsm
