// One card's script from the profile's <prep><script> (engine/prep_spec.h): values
// encoded from the card's attributes, GP commands built (engine/gp_commands.h,
// engine/gp_store_data.h), sensitive DGIs encrypted for the SE, and every command
// wrapped in the card's offline secure-channel session (engine/offline_session.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hex.h"
#include "engine/offline_session.h"
#include "engine/prep_spec.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

struct ScriptApdu {
  Bytes bytes;                          // as sent
  std::uint16_t expected_sw = 0x9000;
  std::string label;                    // never holds a value
  Bytes expected_data;                  // the response data the SE must give (empty: not checked)
};

// The clear value of a card attribute by name; nullptr when the card has none (an
// optional attribute left empty).
using AttributeLookup = std::function<Result<const SecureBytes*>(std::string_view attribute)>;

// The value of a DGI that is not made from the card's clear values (DgiSource other than
// kProfile): computed by the caller, usually in the HSM. `encrypted`: already encrypted
// for the SE (under the card's K-DEK), sent with the encrypted-data signal as is.
struct ProvidedDgi {
  Bytes value;
  bool encrypted = false;
};
using DgiProvider = std::function<Result<ProvidedDgi>(const DgiSpec& dgi)>;

// A PUT KEY's data field (new KVN || one key component per key, the keys already
// encrypted under the session's DEK) and the response the SE must give (KVN || KCVs),
// computed by the caller in the HSM.
struct ProvidedPutKey {
  Bytes data;
  Bytes expected_response;
  std::size_t keys = 0;
};
using PutKeyProvider = std::function<Result<ProvidedPutKey>(const CommandSpec& command)>;

// What a session's commands are built for: its SCP, i and security level (the STORE DATA
// block size depends on them).
struct SessionShape {
  std::uint8_t scp = 3;
  std::uint8_t i = 0x70;
  std::uint8_t level = 0x03;
};

// `spec` encoded per its encoding (docs/profile.md "Values").
Result<SecureBytes> encode_value(const ValueSpec& spec, const AttributeLookup& lookup);

// The largest STORE DATA data block that still fits a short APDU once wrapped at this
// session's level (padding for C-DECRYPTION, then the C-MAC).
std::size_t store_data_block_size(std::uint8_t scp, std::uint8_t i, std::uint8_t level);

// The wrapped commands of the script, in order (INITIALIZE UPDATE and EXTERNAL
// AUTHENTICATE excluded: they come with the session). `i`: the session's SCP "i" (S8/S16).
// `provider` gives the DGIs of other sources; without one, such a DGI is kUnsupported.
Result<std::vector<ScriptApdu>> build_card_script(const PrepSpec& prep, const AttributeLookup& lookup,
                                                  OfflineSession& session, std::uint8_t i,
                                                  const DgiProvider& provider = {});

// The labels of a command list's APDUs that are the same for every card ("SELECT
// A0000000041010 (profile line 12)", the DGI list of a STORE DATA), made once per profile
// instead of once per card. One entry per command, in order.
struct ScriptLabels {
  struct Command {
    std::string label;  // the whole label; STORE DATA: " (DGI 0101 0102) (profile line 9)",
                        // appended to "STORE DATA block k/n"; PUT KEY: empty (per key set)
    std::string at;     // " (profile line 9)"
  };
  std::vector<Command> commands;
  static ScriptLabels of(std::span<const CommandSpec> commands);
};

// The wrapped commands of one session of the script (`commands`: PrepSpec::script or a
// SessionSpec's), for a session of `shape`. A kPutKey command needs `key_provider`.
// `labels`: ScriptLabels::of(commands), made once by a caller that builds many scripts
// (nullptr: made here).
Result<std::vector<ScriptApdu>> build_session_script(std::span<const CommandSpec> commands, const SessionShape& shape,
                                                     const AttributeLookup& lookup, OfflineSession& session,
                                                     const DgiProvider& provider = {},
                                                     const PutKeyProvider& key_provider = {},
                                                     const ScriptLabels* labels = nullptr);

}  // namespace persoflow
