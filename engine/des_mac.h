// DES-family primitives of GlobalPlatform SCP01/SCP02 and EMV CPS (gp-reference.md §0):
// padding removal (unpad80; pad80 itself is in engine/aes_cbc.h), 2-key/3-key 3DES in ECB and CBC, single DES
// with the first 8 key bytes (K1), the full 3DES MAC (ISO 9797-1 MAC algorithm 1 with
// 3DES, GPC v2.3.1 B.1.2.1) and the retail MAC (ISO 9797-1 MAC algorithm 3, "single DES
// plus final triple DES", GPC v2.3.1 B.1.2.2).
//
// Host-side software (OpenSSL EVP) implementations. Each block operation is one small
// function taking the key as SecureBytes so that the HSM path can later route exactly
// these calls to PKCS#11 (CKM_DES3_ECB/CBC, CKM_DES3_ECB/CBC_ENCRYPT_DATA for the
// "derive" variants whose output is a key, CKM_DES3_MAC with a retail variant).
//
// Keys: 16 bytes (2-key 3DES, K3 = K1) or 24 bytes (3-key) for the 3DES functions; the
// single-DES functions use bytes 0..7 of a key of 8, 16 or 24 bytes. Wrong key sizes,
// data that is not a whole number of 8-byte blocks where no padding is applied, and
// ICVs that are not 8 bytes are kInvalidArgument errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/aes_cbc.h"
#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

inline constexpr std::size_t kDesBlockSize = 8;

// pad80(data, 8) (ISO/IEC 9797-1 padding method 2, always at least one byte added) is the
// one declared in engine/aes_cbc.h and shared with SCP03; it is not redefined here.

// Length of `padded` without its method-2 padding: the trailing 00 bytes and the 80
// before them. kParse when there is no 80 to strip (padding of any length is accepted,
// gp-reference.md §9 item 12).
Result<std::size_t> unpad80_length(std::span<const std::uint8_t> padded);

// ---- Block primitives (no padding: data must be a multiple of 8 bytes) ------------------

Result<Bytes> tdes_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data);
Result<Bytes> tdes_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                               std::span<const std::uint8_t> data);
// Decryption output may be secret (keys, PINs): SecureBytes.
Result<SecureBytes> tdes_cbc_decrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                                     std::span<const std::uint8_t> data);
Result<SecureBytes> tdes_ecb_decrypt(const SecureBytes& key, std::span<const std::uint8_t> data);

// The same encryptions when the result is a key (diversified or session key): the
// output goes straight into SecureBytes (PKCS#11: CKM_DES3_*_ENCRYPT_DATA derivation).
Result<SecureBytes> tdes_ecb_derive(const SecureBytes& key, std::span<const std::uint8_t> data);
Result<SecureBytes> tdes_cbc_derive(const SecureBytes& key, std::span<const std::uint8_t> icv,
                                    std::span<const std::uint8_t> data);

// Single DES under K1 = key[0:8].
Result<Bytes> des_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data);
Result<Bytes> des_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                              std::span<const std::uint8_t> data);

// ---- MACs (these apply pad80 themselves; output 8 bytes) --------------------------------

// Full 3DES MAC: last block of 3DES-CBC(key, icv, pad80(data)).
Result<Bytes> full_3des_mac(const SecureBytes& key, std::span<const std::uint8_t> icv,
                            std::span<const std::uint8_t> data);

// Retail MAC: DES(K1)-CBC from `icv` over every padded block but the last, then 3DES of
// the last block xor'ed with the running value.
Result<Bytes> retail_mac(const SecureBytes& key, std::span<const std::uint8_t> icv,
                         std::span<const std::uint8_t> data);

}  // namespace persoflow
