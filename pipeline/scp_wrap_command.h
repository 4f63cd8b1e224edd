// `persoflow scp wrap`: a plain APDU script (one hex command per line, '#' comments) turned
// into a whole secure-channel session for one SE: INITIALIZE UPDATE, the response the card
// is expected to give, EXTERNAL AUTHENTICATE and every command wrapped (C-MAC, and
// C-DECRYPTION at level 03). SCP03 and SCP02 through engine/offline_session.h, the code prep
// uses, over clear test keys or HSM keys (hsm/hsm_card_keys.h). Commands too long for one
// APDU once wrapped are chained (GPC v2.3.1 §11.1.5.1). docs/cli.md "scp wrap".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/apdu.h"
#include "engine/card_keys.h"
#include "engine/hex.h"
#include "engine/key_diversification.h"
#include "engine/result.h"

namespace persoflow::pipeline {

// One command of the plain script and the (1-based) line it came from.
struct ScriptCommand {
  int line = 0;
  CommandApdu apdu;
};

// Parses the script: per line, everything from '#' on is a comment; blank lines are
// skipped; the rest is one command APDU in hex (spaces between byte pairs allowed).
// kParse errors start with "script line N: " (invalid hex, malformed APDU), or
// "script: " for a script without any command.
Result<std::vector<ScriptCommand>> parse_apdu_script(std::string_view text);

enum class ScpProtocol : std::uint8_t { kScp02 = 2, kScp03 = 3 };

// Everything the session needs; lengths are checked by scp_wrap() too (kInvalidArgument,
// naming the option).
struct ScpWrapRequest {
  ScpProtocol scp = ScpProtocol::kScp03;
  std::uint8_t i = 0;
  std::uint8_t level = 0;
  std::uint8_t kvn = 0;            // the key set's version, as the card answers it
  std::uint8_t requested_kvn = 0;  // P1 of INITIALIZE UPDATE (00 = first available key set)
  Bytes kdd;                       // 10 bytes
  Bytes aid;                       // invoking application (pseudo-random challenge)
  Bytes host_challenge;            // 8 (SCP02, SCP03 S8) or 16 (SCP03 S16)
  std::uint32_t sequence_counter = 0;  // SCP03: 3 bytes, after the card's increment; SCP02: 2 bytes
  std::optional<Bytes> card_challenge;  // overrides the pseudo-random one
  bool s16 = false;
  StaticKeySet keys;  // clear K-ENC, K-MAC, K-DEK (--test-keys; K-DEK is only checked, not used)
};

struct ScpWrapOutput {
  Bytes initialize_update;
  Bytes expected_response;  // response data, without the SW 9000
  Bytes external_authenticate;
  std::vector<Bytes> commands;  // in script order; a chained command gives several
  std::vector<int> lines;       // the script line of each APDU
};

// Builds the session and wraps every command. kInvalidArgument for inconsistent options
// (wrong lengths, --card-challenge missing for an i without pseudo-random challenge,
// unsupported level); kParse "script line N: ..." for a command that cannot be wrapped.
// With the clear keys of request.keys (--test-keys; lengths checked, naming the option).
Result<ScpWrapOutput> scp_wrap(const ScpWrapRequest& request,
                               const std::vector<ScriptCommand>& script);
// With keys held elsewhere (HSM); request.keys is not used. SCP03 needs AES keys, SCP02
// 2-key 3DES (kInvalidArgument).
Result<ScpWrapOutput> scp_wrap(const ScpWrapRequest& request, CardKeys& keys,
                               const std::vector<ScriptCommand>& script);

// "INITIALIZE UPDATE: HEX" / "EXPECTED RESPONSE: HEX" / "EXTERNAL AUTHENTICATE: HEX" /
// "COMMAND n (line L): HEX", one per line.
std::string format_scp_wrap_text(const ScpWrapOutput& output);
// {"initialize_update", "expected_response", "external_authenticate", "commands": [...]}.
std::string format_scp_wrap_json(const ScpWrapOutput& output);

}  // namespace persoflow::pipeline
