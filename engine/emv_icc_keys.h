// EMV ICC master keys (MK-AC, MK-SMI, MK-SMC, each from its own issuer master key IMK)
// derived from the card's PAN and PAN sequence number (EMV 4.3 Book 2 Annex A1.4, as
// implemented by knovichikhin/pyemv kd.py; gp-reference.md §6.5, vectors §7.9):
//
//   Option A (3DES IMK): X = PAN || PSN (PSN "00" when absent); Y = the rightmost 16
//     digits of X, left-padded with 0 to 16 digits, as 8 BCD bytes.
//   Option B (3DES IMK): PAN of at most 16 digits: Option A. Otherwise X = PAN || PSN,
//     left-padded with one 0 when its length is odd, packed to BCD bytes; H = SHA-1(X);
//     the hex digits of H that are 0..9, in order, then (if fewer than 16) its digits
//     a..f mapped to 0..5, in order; Y = the first 16 of those as 8 BCD bytes.
//   Both:  Z = 3DES-ECB(IMK, Y) || 3DES-ECB(IMK, Y xor FF x 8); MK = Z with odd parity.
//   Option C (AES IMK, EMV 4.3+ A1.4.3): Y = PAN || PSN left-padded with 0 to 32 digits,
//     16 BCD bytes; MK = AES(IMK, Y) for AES-128; for AES-192/256 the leftmost k bits of
//     AES(IMK, Y) || AES(IMK, Y xor FF x 16). No public known-answer vector exists for C.
//
// The derivation data built here (Y, Y xor FF) is what the HSM encrypts with
// C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA / CKM_AES_ECB_ENCRYPT_DATA) in
// hsm/emv_icc_derivation.h: both paths encrypt the same bytes. Y carries PAN digits, so
// it is a SecureBytes; PAN and PSN are read as views of the card's values (ASCII digits)
// and every error names lengths and positions, never a digit of the PAN.
//
// The functions ending in _kat compute keys in host memory. They exist only to run the
// published known-answer vectors through this code (project rule: a pure software key
// provider only for published KATs); production keys are derived inside the HSM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "engine/key_diversification.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

enum class IccDerivationOption : std::uint8_t { kA, kB, kC };

// "A" | "B" | "C", for messages.
std::string_view icc_derivation_option_name(IccDerivationOption option);

inline constexpr std::size_t kIccPanMinDigits = 12;  // ISO/IEC 7812 PAN lengths
inline constexpr std::size_t kIccPanMaxDigits = 19;
inline constexpr std::size_t kIccPsnDigits = 2;

// kInvalidArgument unless `pan` is 12..19 decimal digits and `psn` is empty (absent,
// taken as "00") or 2 decimal digits. The message never quotes a digit.
Status check_icc_card_id(std::string_view pan, std::string_view psn);

// Y: 8 bytes for options A and B, 16 bytes for option C.
Result<SecureBytes> icc_mk_input(IccDerivationOption option, std::string_view pan,
                                 std::string_view psn);

// The bytes the IMK encrypts as independent ECB blocks to give the master key:
//   A, B: Y || (Y xor FF x 8)                                    16 bytes
//   C:    Y (IMK of 16 bytes), Y || (Y xor FF x 16) (24 or 32)   16 or 32 bytes
// The master key is the first `master_key_length` bytes of the encryption (16 for A and
// B, the IMK's length for C). kInvalidArgument for a card id as check_icc_card_id, or an
// IMK length the option does not use (A, B: 16 or 24; C: 16, 24 or 32).
Result<SecureBytes> icc_mk_derivation_data(IccDerivationOption option, std::string_view pan,
                                           std::string_view psn, std::size_t imk_length);

// Length of the ICC master key for an IMK of `imk_length` bytes: 16 for A and B, the
// IMK's length for C.
std::size_t icc_master_key_length(IccDerivationOption option, std::size_t imk_length);

// True when every byte has an odd number of set bits (DES odd parity). The adjustment
// itself is set_odd_parity (engine/key_types.h).
bool has_odd_parity(std::span<const std::uint8_t> key);

// ---- Known-answer tests only (see above) -------------------------------------------------

// The ICC master key in host memory. A and B: DES parity per `parity` (kAdjustOdd gives
// the MK of the specification, kKeepRaw gives Z); C ignores `parity` (AES).
Result<SecureBytes> derive_icc_master_key_kat(IccDerivationOption option, const SecureBytes& imk,
                                              std::string_view pan, std::string_view psn,
                                              DesParity parity = DesParity::kAdjustOdd);

// EMV common session key derivation (Book 2 A1.3.1) for a 16-byte 3DES ICC master key and
// an 8-byte diversification value R (e.g. ATC || 00 x 6 for the AC key):
//   SK = 3DES-ECB(MK, R with R[2] := F0) || 3DES-ECB(MK, R with R[2] := 0F)
// kInvalidArgument for an MK that is not 16 bytes or an R that is not 8 bytes.
Result<SecureBytes> derive_common_session_key_kat(const SecureBytes& mk,
                                                  std::span<const std::uint8_t> r,
                                                  DesParity parity = DesParity::kAdjustOdd);

}  // namespace persoflow
