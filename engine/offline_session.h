// An offline secure-channel session (gp-reference.md §8): from an SE's static keys
// (engine/card_keys.h), its channel parameters and the sequence counter reserved for
// it, everything the perso station will send is computed in advance: INITIALIZE
// UPDATE, the response the SE must give, EXTERNAL AUTHENTICATE and every wrapped
// command (C-MAC chain, C-DECRYPTION with its counter), plus the encryption of
// sensitive data and keys (SCP03: static K-DEK; SCP02: S-DEK).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "engine/apdu.h"
#include "engine/card_keys.h"
#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

struct ChannelParams {
  std::uint8_t scp = 3;        // 2 or 3
  std::uint8_t i = 0x70;       // SCP03: 10 30 70 (S8), 11 71 (S16) pseudo-random, or any
                               // with card_challenge; SCP02: 55 (or 15 with card_challenge)
  std::uint8_t level = 0x03;   // SCP03: 01 03 11 13 33; SCP02: 01 03
  std::uint8_t kvn = 0x30;     // key version the SE answers with
  std::uint8_t requested_kvn = 0x00;  // P1 of INITIALIZE UPDATE (00: default key set)
  Bytes kdd;                   // 10 bytes
  Bytes aid;                   // invoking application / SD AID (pseudo-random challenge)
  std::uint32_t counter = 0;   // SCP03: 3 bytes; SCP02: 2 bytes
  Bytes host_challenge;        // 8 (SCP02, SCP03 S8) or 16 (SCP03 S16)
  std::optional<Bytes> card_challenge;  // given: overrides the pseudo-random challenge
};

class OfflineSession {
 public:
  virtual ~OfflineSession() = default;

  const CommandApdu& initialize_update() const { return initialize_update_; }
  const Bytes& expected_response() const { return expected_response_; }  // without SW
  const CommandApdu& external_authenticate() const { return external_authenticate_; }

  // Wraps one command at the session's security level (C-MAC, C-DEC).
  virtual Result<CommandApdu> wrap(const CommandApdu& plain) = 0;

  // A command whose data field does not fit one APDU once wrapped (INSTALL, PUT KEY,
  // DELETE): split in segments chained with P1 b8 ("more commands"), the C-MAC computed
  // over the unsegmented command and appended to the last segment only, C-DEC over the
  // unsegmented data (GPC v2.3.1 §11.1.5.1). Commands that fit come back as one APDU,
  // identical to wrap().
  virtual Result<std::vector<CommandApdu>> wrap_chained(const CommandApdu& plain) = 0;

  // Sensitive data (e.g. a DGI's value), padded as the SCP requires; SCP03: AES-CBC under
  // the static K-DEK, zero ICV (data a multiple of 16 or padded with 80 00..); SCP02:
  // 3DES-ECB under S-DEK (data a multiple of 8).
  virtual Result<Bytes> encrypt_sensitive(std::span<const std::uint8_t> data) = 0;

 protected:
  // CommandApdu has no empty state: the handshake is built before the session object.
  OfflineSession(CommandApdu initialize_update, Bytes expected_response,
                 CommandApdu external_authenticate)
      : initialize_update_(std::move(initialize_update)),
        expected_response_(std::move(expected_response)),
        external_authenticate_(std::move(external_authenticate)) {}

  CommandApdu initialize_update_;
  Bytes expected_response_;
  CommandApdu external_authenticate_;
};

// The static keys' operations are called here only (card challenge, session keys, K-DEK).
// An SCP03 session keeps `keys` for encrypt_sensitive(): they must outlive it. Calls per
// open (docs/scp03.md, docs/scp02.md "Offline sessions"): SCP03 AES-128 3 aes_cmac
// (4 with R-MAC), AES-192/256 5 (7); SCP02 3 cbc_encrypt.
Result<std::unique_ptr<OfflineSession>> open_offline_session(CardKeys& keys, const ChannelParams& params);

}  // namespace persoflow
