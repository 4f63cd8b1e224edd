// GlobalPlatform SCP02 (GPC v2.3.1 Appendix E; gp-reference.md §3), host side, explicit
// mode: session keys, card/host cryptograms, the pseudo-random card challenge (i = 55),
// INITIALIZE UPDATE / EXTERNAL AUTHENTICATE, and command wrapping with C-MAC and
// C-DECRYPTION, plus sensitive-data encryption under S-DEK.
//
// Byte layouts (details in docs/scp02.md):
//   session key  = 3DES-CBC(static key, 00*8, constant(2) || seq(2) || 00*12)
//                  constant 0182 S-ENC (K-ENC), 0101 C-MAC (K-MAC), 0102 R-MAC (K-MAC),
//                  0181 S-DEK (K-DEK)
//   card cgram   = full 3DES MAC(S-ENC, 00*8, host_chal(8) || seq(2) || card_chal(6))
//   host cgram   = full 3DES MAC(S-ENC, 00*8, seq(2) || card_chal(6) || host_chal(8))
//   i = 55 card challenge = retail MAC(S-MAC, 00*8, AID)[0:6]
//   C-MAC        = retail MAC(S-MAC, ICV, CLA'|04 INS P1 P2 (Lc+8) plaintext data)
//                  ICV = 00*8 for EXTERNAL AUTHENTICATE, afterwards the previous C-MAC,
//                  DES-ECB(S-MAC[0:8])-encrypted when i.b5 = 1 (i = 15, 55)
//   C-DEC        = 3DES-CBC(S-ENC, 00*8, pad80(data)) after the C-MAC over the plaintext
//   sensitive    = 3DES-ECB(S-DEK, data), no padding
//
// Supported "i" values: explicit initiation (b3 = 1), C-MAC on the modified APDU (b2 = 0),
// ICV zero (b4 = 0): 04, 05, 14, 15, 44, 45, 54, 55 (b6 R-MAC support is accepted, but
// security levels asking for R-MAC are not implemented). All operations are pure
// functions of their inputs; the block operations live in engine/des_mac.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/apdu.h"
#include "engine/hex.h"
#include "engine/key_diversification.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

inline constexpr std::uint16_t kScp02ConstSEnc = 0x0182;
inline constexpr std::uint16_t kScp02ConstCMac = 0x0101;
inline constexpr std::uint16_t kScp02ConstRMac = 0x0102;
inline constexpr std::uint16_t kScp02ConstDek = 0x0181;

inline constexpr std::size_t kScp02HostChallengeLength = 8;
inline constexpr std::size_t kScp02CardChallengeLength = 6;
inline constexpr std::size_t kScp02CryptogramLength = 8;
inline constexpr std::size_t kScp02InitUpdateResponseLength = 28;

// Security levels (EXTERNAL AUTHENTICATE P1, Table E-11) this implementation serves.
inline constexpr std::uint8_t kScp02LevelNone = 0x00;
inline constexpr std::uint8_t kScp02LevelCMac = 0x01;
inline constexpr std::uint8_t kScp02LevelCDecCMac = 0x03;

struct Scp02SessionKeys {
  SecureBytes enc;   // S-ENC
  SecureBytes cmac;  // C-MAC (S-MAC)
  SecureBytes rmac;  // R-MAC
  SecureBytes dek;   // S-DEK
};

// One session key from a 16-byte static key.
Result<SecureBytes> scp02_derive_session_key(const SecureBytes& static_key, std::uint16_t constant,
                                             std::uint16_t sequence_counter);
Result<Scp02SessionKeys> scp02_session_keys(const StaticKeySet& static_keys,
                                            std::uint16_t sequence_counter);

Result<Bytes> scp02_card_cryptogram(const SecureBytes& s_enc, std::span<const std::uint8_t> host_challenge,
                                    std::uint16_t sequence_counter,
                                    std::span<const std::uint8_t> card_challenge);
Result<Bytes> scp02_host_cryptogram(const SecureBytes& s_enc, std::span<const std::uint8_t> host_challenge,
                                    std::uint16_t sequence_counter,
                                    std::span<const std::uint8_t> card_challenge);

// The well-known pseudo-random card challenge (i.b7 = 1, E.4.2.3): 6 bytes from the
// C-MAC session key and the AID of the application opening the channel.
Result<Bytes> scp02_pseudo_random_card_challenge(const SecureBytes& s_mac,
                                                 std::span<const std::uint8_t> invoking_aid);

// 80 50 KVN 00 08 host_challenge 00.
Result<CommandApdu> scp02_initialize_update(std::uint8_t key_version,
                                            std::span<const std::uint8_t> host_challenge);

// The 28 bytes of the INITIALIZE UPDATE response (without SW).
struct Scp02InitUpdateResponse {
  Bytes key_diversification_data;  // 10
  std::uint8_t key_version = 0;
  std::uint8_t scp_identifier = 0;  // 02
  std::uint16_t sequence_counter = 0;
  Bytes card_challenge;   // 6
  Bytes card_cryptogram;  // 8

  // kParse when not 28 bytes or the SCP identifier is not 02.
  static Result<Scp02InitUpdateResponse> parse(std::span<const std::uint8_t> data);
  Bytes to_bytes() const;
};

// What a card holding `static_keys` returns for this host challenge: the card challenge
// is the pseudo-random one (i.b7 = 1) computed from `invoking_aid`. Offline script
// preparation uses it to know the session before the card answers.
Result<Scp02InitUpdateResponse> scp02_expected_init_update_response(
    const StaticKeySet& static_keys, std::span<const std::uint8_t> kdd, std::uint8_t key_version,
    std::uint16_t sequence_counter, std::span<const std::uint8_t> host_challenge,
    std::span<const std::uint8_t> invoking_aid);

// Sensitive data (keys, DGIs) under S-DEK: 3DES-ECB, length a multiple of 8, no padding.
Result<Bytes> scp02_encrypt_sensitive(const SecureBytes& s_dek, const SecureBytes& data);

struct Scp02Params {
  std::uint8_t i = 0x55;
  std::uint8_t security_level = kScp02LevelCMac;  // 00, 01 or 03
};

// One explicit SCP02 session, host side: EXTERNAL AUTHENTICATE first, then wrap() every
// command in order. The C-MAC chain advances on every wrapped command, whatever the
// card answers (GPC E.4.4). Move-only; the session keys are wiped with it.
class Scp02Session {
 public:
  // From the card's INITIALIZE UPDATE response: verifies the card cryptogram, and for
  // i.b7 = 1 with a non-empty `invoking_aid` the pseudo-random card challenge (kIntegrity
  // on mismatch). kUnsupported for an i or security level not implemented.
  static Result<Scp02Session> open(const StaticKeySet& static_keys, Scp02Params params,
                                   std::span<const std::uint8_t> host_challenge,
                                   const Scp02InitUpdateResponse& response,
                                   std::span<const std::uint8_t> invoking_aid = {});

  // A session from session keys derived elsewhere (engine/offline_session.h, where the
  // static keys may live in an HSM); the card cryptogram is the caller's to check or
  // predict. kUnsupported for an i or level not implemented, as open().
  static Result<Scp02Session> from_session_keys(Scp02SessionKeys keys, Scp02Params params,
                                                std::uint16_t sequence_counter, Bytes host_cryptogram);

  Scp02Session(Scp02Session&&) noexcept = default;
  Scp02Session& operator=(Scp02Session&&) noexcept = default;
  Scp02Session(const Scp02Session&) = delete;
  Scp02Session& operator=(const Scp02Session&) = delete;

  // 84 82 P1 00 10 host_cryptogram C-MAC (ICV zero). Only once, before any wrap().
  Result<CommandApdu> external_authenticate();

  // Wraps a command for the session's security level. kInvalidArgument for a command
  // before EXTERNAL AUTHENTICATE, a CLA of the 40-7F class or with bit 04 already set,
  // or data that would no longer fit a short APDU.
  Result<CommandApdu> wrap(const CommandApdu& command);

  // wrap() for a command that does not fit a short APDU once wrapped: C-MAC over the
  // unsegmented command (P1/P2 of the last segment, Lc + 8 coded on 3 bytes 00 xx xx,
  // the whole plaintext), C-DEC over the whole data, then segments of at most 255 bytes
  // with P1 b8 set on all but the last, which alone carries the C-MAC (GPC v2.3.1
  // §11.1.5.1). The ICV chain advances once. A command that fits comes back alone.
  Result<std::vector<CommandApdu>> wrap_chained(const CommandApdu& command);

  // Inverse of the C-DECRYPTION step for checking a prepared script: the plaintext data
  // field of a wrapped command (ciphertext decrypted, padding removed, C-MAC dropped).
  // Does not verify or advance the C-MAC chain.
  Result<SecureBytes> decrypt_command_data(const CommandApdu& wrapped) const;

  Result<Bytes> encrypt_sensitive(const SecureBytes& data) const;

  const Scp02SessionKeys& session_keys() const { return keys_; }
  const Bytes& host_cryptogram() const { return host_cryptogram_; }
  std::uint16_t sequence_counter() const { return sequence_counter_; }
  // The C-MAC of the last command produced (the next ICV before encryption).
  const Bytes& last_cmac() const { return last_cmac_; }

 private:
  Scp02Session() = default;
  Result<Bytes> next_icv();
  Status check_wrappable(const CommandApdu& command) const;

  Scp02Params params_;
  Scp02SessionKeys keys_;
  std::uint16_t sequence_counter_ = 0;
  Bytes host_cryptogram_;
  Bytes last_cmac_;
  bool authenticated_ = false;
};

}  // namespace persoflow
