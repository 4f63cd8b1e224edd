// SCP03 secure channel, host side (GPC v2.2 Amendment D v1.1.1; S16 mode from v1.2):
// session keys, challenges and cryptograms, INITIALIZE UPDATE / EXTERNAL AUTHENTICATE,
// C-MAC and C-DECRYPTION wrapping, and sensitive data under the static K-DEK.
// Byte layouts: gp-reference.md §2 and docs/scp03.md.
//
// Pure and offline: every value is computed from the keys and inputs it is given, so a
// script for a card in pseudo-random challenge mode can be prepared without the card
// (gp-reference.md §8). Keys arrive as SecureBytes; all key use goes through
// engine/aes_cmac.h and engine/aes_cbc.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "engine/aes_cmac.h"
#include "engine/apdu.h"
#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

// S8: 8-byte challenges, cryptograms and C-MACs. S16 (i.b1 = 1): 16 bytes each.
enum class Scp03Mode : std::uint8_t { kS8, kS16 };

// 8 (S8) or 16 (S16): the length of a challenge, a cryptogram and a C-MAC.
std::size_t scp03_block_length(Scp03Mode mode);

// The "i" parameter (Amd D Table 5-1, b1 from Amd D v1.2).
inline constexpr std::uint8_t kScp03IS16 = 0x01;
inline constexpr std::uint8_t kScp03IPseudoRandom = 0x10;
inline constexpr std::uint8_t kScp03IRMac = 0x20;
inline constexpr std::uint8_t kScp03IREnc = 0x40;  // with kScp03IRMac
inline Scp03Mode scp03_mode_of(std::uint8_t i) {
  return (i & kScp03IS16) != 0 ? Scp03Mode::kS16 : Scp03Mode::kS8;
}

// Security level bits (P1 of EXTERNAL AUTHENTICATE, Amd D Table 7-3).
inline constexpr std::uint8_t kScp03CMac = 0x01;
inline constexpr std::uint8_t kScp03CDec = 0x02;
inline constexpr std::uint8_t kScp03RMac = 0x10;
inline constexpr std::uint8_t kScp03REnc = 0x20;

// kInvalidArgument unless `level` is one of 00 01 03 11 13 33.
Status check_scp03_security_level(std::uint8_t level);

struct Scp03SessionKeys {
  SecureBytes s_enc;
  SecureBytes s_mac;
  SecureBytes s_rmac;
};

// S-ENC = KDF(K-ENC, 04, keybits, hc || cc); S-MAC = KDF(K-MAC, 06, ...); S-RMAC =
// KDF(K-MAC, 07, ...). K-ENC and K-MAC must have the same length; the challenges are both
// 8 (S8) or both 16 (S16) bytes.
Result<Scp03SessionKeys> scp03_derive_session_keys(const SecureBytes& k_enc,
                                                   const SecureBytes& k_mac,
                                                   std::span<const std::uint8_t> host_challenge,
                                                   std::span<const std::uint8_t> card_challenge);

// KDF(S-MAC, 00 / 01, 64 or 128 bits, hc || cc); as long as one challenge.
Result<Bytes> scp03_card_cryptogram(const SecureBytes& s_mac,
                                    std::span<const std::uint8_t> host_challenge,
                                    std::span<const std::uint8_t> card_challenge);
Result<Bytes> scp03_host_cryptogram(const SecureBytes& s_mac,
                                    std::span<const std::uint8_t> host_challenge,
                                    std::span<const std::uint8_t> card_challenge);

// Pseudo-random card challenge (Amd D §6.2.2.1): KDF(static K-ENC, 02, 64 / 128 bits,
// sequence counter (3 bytes) || AID of the invoking application (5..16 bytes)).
// `sequence_counter` is the value the card uses, i.e. after its increment (< 2^24).
Result<Bytes> scp03_pseudo_random_card_challenge(const SecureBytes& k_enc,
                                                 std::uint32_t sequence_counter,
                                                 std::span<const std::uint8_t> aid, Scp03Mode mode);

// INITIALIZE UPDATE: 80 50 KVN 00 Lc host-challenge 00. The challenge is 8 or 16 bytes.
Result<CommandApdu> scp03_initialize_update(std::uint8_t kvn,
                                            std::span<const std::uint8_t> host_challenge);

// The response data of INITIALIZE UPDATE (SW stripped), Amd D Table 7-2:
// KDD (10) || KVN || 03 || i || card challenge (8/16) || card cryptogram (8/16)
// [|| sequence counter (3), only when i.b5 (pseudo-random) is set].
struct Scp03InitUpdateResponse {
  Bytes kdd;  // 10 bytes
  std::uint8_t kvn = 0;
  std::uint8_t i = 0;
  Bytes card_challenge;
  Bytes card_cryptogram;
  std::optional<std::uint32_t> sequence_counter;

  Scp03Mode mode() const { return scp03_mode_of(i); }

  // kParse on a wrong length for its i, or an SCP identifier other than 03.
  static Result<Scp03InitUpdateResponse> parse(std::span<const std::uint8_t> data);
  Bytes to_bytes() const;
};

// What a card holding these static keys answers to INITIALIZE UPDATE in pseudo-random
// challenge mode (i.b5 set, else kInvalidArgument): the offline expectation of §8.
// `sequence_counter` is the value after the card's increment (first session: 1).
Result<Scp03InitUpdateResponse> scp03_expected_init_update_response(
    const SecureBytes& k_enc, const SecureBytes& k_mac, std::span<const std::uint8_t> kdd,
    std::uint8_t kvn, std::uint8_t i, std::uint32_t sequence_counter,
    std::span<const std::uint8_t> aid, std::span<const std::uint8_t> host_challenge);

// The host side of one SCP03 session: EXTERNAL AUTHENTICATE, then every command wrapped.
//
// C-MAC (Amd D §6.2.4): MAC input = chaining value (16; 00 x 16 before EXTERNAL
// AUTHENTICATE) || CLA|04 (channel bits cleared) || INS P1 P2 || Lc' || data; the C-MAC is
// the first 8 (S8) or 16 (S16) bytes of AES-CMAC(S-MAC, input); the chaining value becomes
// the full 16-byte CMAC. Le is not MACed and is kept as the plain command had it.
// C-DECRYPTION (§6.2.6): counter 1 for the first command after EXTERNAL AUTHENTICATE,
// incremented for every command (also without data); ICV = AES-ECB(S-ENC, counter as a
// 16-byte big-endian block); data = AES-CBC(S-ENC, ICV, pad80(data, 16)); commands without
// data are not encrypted.
// R-MAC / R-ENC levels (11, 13, 33) are accepted and sent to the card, but responses are
// not unwrapped here (a precomputed script never sees them).
class Scp03Session {
 public:
  // Derives the session keys, checks the card cryptogram of `response` in constant time
  // (kIntegrity when it does not match: wrong keys or a forged answer) and computes the
  // host cryptogram. R-MAC / R-ENC levels need the matching i bits (kInvalidArgument).
  static Result<Scp03Session> open(const SecureBytes& k_enc, const SecureBytes& k_mac,
                                   std::span<const std::uint8_t> host_challenge,
                                   const Scp03InitUpdateResponse& response,
                                   std::uint8_t security_level);

  // A session from session keys derived elsewhere (engine/offline_session.h, where the
  // static keys may live in an HSM). The card cryptogram is the caller's to check or
  // predict; `i` and `security_level` are checked as in open().
  static Result<Scp03Session> from_session_keys(Scp03SessionKeys keys, std::uint8_t i,
                                                std::uint8_t security_level, Bytes host_cryptogram);

  // from_session_keys() for a host that predicts the card (offline scripts): the card and
  // host cryptograms of the challenges computed on the session's own S-MAC schedule, so
  // that one key expansion serves them and every C-MAC. The card cryptogram goes to
  // `card_cryptogram`. The challenges are both 8 (S8) or both 16 (S16) bytes, as i says.
  static Result<Scp03Session> from_session_keys_and_challenges(Scp03SessionKeys keys, std::uint8_t i,
                                                               std::uint8_t security_level,
                                                               std::span<const std::uint8_t> host_challenge,
                                                               std::span<const std::uint8_t> card_challenge,
                                                               Bytes& card_cryptogram);

  // 84 82 level 00 Lc host-cryptogram C-MAC; never encrypted, does not advance the
  // encryption counter. Only once, and before any wrap().
  Result<CommandApdu> external_authenticate();

  // The protected form of `plain` (a GP command with CLA 80..83 or 00..03, no secure
  // messaging bits set). Level 00 returns `plain` unchanged.
  Result<CommandApdu> wrap(const CommandApdu& plain);

  // wrap() for a command whose protected data field does not fit a short APDU: split in
  // segments of at most 255 bytes, P1 b8 set on all but the last, C-DEC and C-MAC over
  // the unsegmented command (P1/P2 of the last segment, Lc' coded on 3 bytes 00 xx xx),
  // the C-MAC in the last segment only (GPC v2.3.1 §11.1.5.1). The counter and the MAC
  // chaining value advance once. A command that fits comes back alone, as wrap() makes it.
  Result<std::vector<CommandApdu>> wrap_chained(const CommandApdu& plain);

  Scp03Mode mode() const { return mode_; }
  std::uint8_t security_level() const { return level_; }
  const Bytes& host_cryptogram() const { return host_cryptogram_; }
  const std::array<std::uint8_t, 16>& mac_chaining_value() const { return chaining_; }
  // The counter the next wrapped command will use (1 right after EXTERNAL AUTHENTICATE).
  std::uint64_t encryption_counter() const { return counter_; }
  // For the verifier and the tests; never log.
  const Scp03SessionKeys& session_keys() const { return keys_; }

 private:
  Scp03Session(Scp03SessionKeys keys, Scp03Mode mode, std::uint8_t level, Bytes host_cryptogram)
      : keys_(std::move(keys)),
        mode_(mode),
        level_(level),
        host_cryptogram_(std::move(host_cryptogram)) {}

  Result<CommandApdu> mac_and_build(const CommandApdu& plain, std::span<const std::uint8_t> data);
  Result<AesKeySchedule*> mac_schedule();
  Status check_wrappable(const CommandApdu& plain) const;
  // C-DECRYPTION of `data` with the next counter value (which it consumes).
  Result<Bytes> encrypt_data(std::span<const std::uint8_t> data, std::uint64_t counter);

  Scp03SessionKeys keys_;
  // S-MAC and S-ENC expanded once for the session's commands (made at first use, cleansed
  // when the session ends); shared by copies of the session, which use them in turn.
  std::shared_ptr<AesKeySchedule> mac_schedule_, enc_schedule_;
  Scp03Mode mode_;
  std::uint8_t level_;
  Bytes host_cryptogram_;
  std::array<std::uint8_t, 16> chaining_{};
  std::uint64_t counter_ = 1;
  bool authenticated_ = false;
};

// Splits a protected command (C-MAC already appended over the unsegmented command) into
// the segments of GPC v2.3.1 §11.1.5.1: data fields of at most 255 bytes, the last one
// holding the whole C-MAC of `mac_length` bytes, P1 b8 set on all but the last, Le (if
// any) on the last only. Shared by SCP03 and SCP02 (engine/scp02.h).
Result<std::vector<CommandApdu>> split_chained_command(const CommandApdu& whole,
                                                       std::size_t mac_length);

// ---- Sensitive data under the static K-DEK (Amd D §6.2.8) ----

// AES-CBC(K-DEK, ICV 00 x 16, data); `data` is already padded to a multiple of 16 (the
// padding of other sensitive data is application-specific).
Result<Bytes> scp03_encrypt_sensitive(const SecureBytes& k_dek, std::span<const std::uint8_t> data);

// An AES key encrypted for loading: 16/32-byte keys as they are, 24-byte keys padded with
// 8 bytes of 00 (the spec says "arbitrary"; zeros keep scripts reproducible).
Result<Bytes> scp03_encrypt_key(const SecureBytes& k_dek, const SecureBytes& key);

// AES KCV: AES-ECB(key, 01 x 16)[0:3] (GPC v2.3.1 B.6, Amd D §7.2.2).
Result<Bytes> aes_kcv(const SecureBytes& key);

// The two published layouts of an AES key component in PUT KEY (gp-reference.md §2.9, §9.1).
enum class PutKeyComponentFormat : std::uint8_t {
  kAmdDTable710,  // 88 Lc keylen cipher 03 KCV (GlobalPlatformPro)
  kGpcTable1171,  // 88 10/20 cipher 03 KCV when no padding was needed (kaoh, pySim)
};

// One key component from its parts, for keys encrypted elsewhere (in the HSM, key-to-key):
// the clear key's length (16, 24, 32), its encryption under the K-DEK (the key, padded to
// whole blocks) and its 3-byte KCV.
Result<Bytes> scp03_put_key_component_from(std::size_t key_length, std::span<const std::uint8_t> cipher,
                                           std::span<const std::uint8_t> kcv, PutKeyComponentFormat format);

// One key component: key type 88 (AES), its encrypted value and KCV.
Result<Bytes> scp03_put_key_component(const SecureBytes& k_dek, const SecureBytes& key,
                                      PutKeyComponentFormat format);

// PUT KEY data field for a whole key set: new KVN || component(K-ENC) || component(K-MAC)
// || component(K-DEK). The command is 80 D8 P1 81 (P1 = 00 to add, or the KVN replaced).
Result<Bytes> scp03_put_key_set_data(const SecureBytes& k_dek, std::uint8_t new_kvn,
                                     const SecureBytes& new_enc, const SecureBytes& new_mac,
                                     const SecureBytes& new_dek, PutKeyComponentFormat format);

}  // namespace persoflow
