// What `persoflow prep` does for a product: the <prep> part of a product profile
// (docs/profile.md "Prep"). Plain immutable data, read and validated by
// config/profile_parser.h; pipeline/prep_* carries it out card by card.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dgi.h"
#include "engine/emv_icc_keys.h"
#include "engine/hex.h"
#include "engine/key_diversification.h"
#include "engine/key_types.h"
#include "engine/tlv.h"

namespace persoflow {

// Where card-level keys live during prep (docs/profile.md "Key handling"). `strict`: card
// static keys are HSM session objects; only what the module cannot compute (SCP session
// keys: SoftHSM has no SP 800-108 KDF) reaches host memory, for one card, and the run
// report says so. `host`: the card's static keys (and ICC master keys, key sets) are
// computed by the HSM from the master keys, which never leave it, and returned into
// SecureBytes; session keys, MACs and encryption under the card's DEK run on the host
// for one card, then everything is wiped. Same bytes as `strict`, far fewer HSM calls.
enum class KeyHandling : std::uint8_t { kStrict, kHost };

// How the SE of a card is found in the registry: by the SE id or by the MSI held in one
// of the card's attributes (the patent's MSI lookup).
enum class SeKeyKind : std::uint8_t { kSeId, kMsi };

struct SeLookupSpec {
  SeKeyKind kind = SeKeyKind::kSeId;
  std::string attribute;  // a declared, required, non-field-encrypted attribute
};

// How a value placed in a command is encoded.
enum class ValueEncoding : std::uint8_t {
  kAscii,    // the attribute's characters as bytes (an, ans formats)
  kBcd,      // cn format: digits packed two per byte, an odd count padded with F (PAN in 5A)
  kNumeric,  // n format: digits packed right-aligned, left-padded with 0 to `length` bytes
  kHex,      // the attribute holds hex digits: their bytes
};

// A value computed from several attributes (docs/profile.md "Derived values").
enum class ValueDerivation : std::uint8_t {
  kNone,
  // EMV Track 2 Equivalent Data (tag 57, EMV Book 3 Annex A; ISO/IEC 7813 track 2 without
  // sentinels and LRC): PAN, separator D, expiry YYMM, service code, discretionary data,
  // as nibbles, padded with F to a whole byte. At most 19 bytes.
  kTrack2,
};

// The attributes a kTrack2 value is made of (discretionary may be empty: none).
struct Track2Parts {
  std::string pan, expiry, service_code, discretionary;
};

struct ValueSpec {
  ValueDerivation derivation = ValueDerivation::kNone;
  Track2Parts track2;     // kTrack2
  std::string attribute;  // empty: `constant` alone (or a derivation)
  Bytes constant;         // the value when no attribute is named
  ValueEncoding encoding = ValueEncoding::kAscii;
  std::size_t length = 0;  // kNumeric: the byte length (required); otherwise 0
  Bytes suffix;            // appended to the encoded attribute (5F24 YYMMDD from YYMM + "31")
};

struct TlvSpec {
  Tag tag = 0;
  ValueSpec value;
};

// Where a DGI's value comes from.
enum class DgiSource : std::uint8_t {
  kProfile,         // TLVs or a value from the card's attributes and constants (below)
  kIccMasterKeys,   // MK-AC || MK-SMI || MK-SMC (EMV ICC master keys, <icc-keys>), derived
                    // in the HSM and wrapped key-to-key under the card's K-DEK (DGI 8000)
  kIccKeyKcvs,      // their three KCVs, 3 bytes each (DGI 9000)
  kKeyToKey,        // a field-encrypted attribute (held wrapped in the XOF) moved key-to-key
                    // from its DKep to the card's K-DEK inside the HSM (PIN block, DGI 8010)
};

struct DgiSpec {
  DgiId id = 0;
  DgiSource source = DgiSource::kProfile;
  std::string wrapped_attribute;  // kKeyToKey
  // kIccMasterKeys / kKeyToKey where the card's DEK is a key the module cannot wrap under
  // (SCP02's 3DES S-DEK): the profile opts in (via="host") to the value being read into
  // host memory and encrypted there; the run report lists it.
  bool via_host = false;
  bool encrypted = false;           // value encrypted for the SE (SCP03: K-DEK; SCP02: S-DEK)
  std::optional<Tag> template_tag;  // e.g. 70: the TLVs are wrapped in this template
  std::vector<TlvSpec> tlvs;        // the DGI's content as BER-TLVs ...
  std::optional<ValueSpec> value;   // ... or as one raw value
  std::size_t line = 0;             // in the profile, for messages
};

enum class CommandKind : std::uint8_t {
  kSelect,                     // SELECT by AID (wrapped like every command of the session)
  kInstallForPersonalization,  // INSTALL [for personalization] of `aid`
  kStoreData,                  // STORE DATA of `dgis`, split in blocks
  kSetStatus,                  // SET STATUS of `aid` (or of the ISD) to `state`
  kApdu,                       // a constant plain command, wrapped like the others
  // INSTALL [for install] (or [for install and make selectable] with `make_selectable`):
  // instance `aid` of module `module_aid` from load file `load_file_aid`, with `privileges`,
  // the install parameters and `token`. An SD (a service provider's SD) is an instance
  // whose privileges have the Security Domain bit.
  kInstallForInstall,
  kInstallForMakeSelectable,   // INSTALL [for make selectable] of `aid` with `privileges`
  kInstallForExtradition,      // INSTALL [for extradition] of `aid` to the SD `sd_aid`
  kDelete,                     // DELETE of `aid` (and its related objects: `delete_related`)
  // PUT KEY of the key set `key_set` (a <key-set> of the profile, derived per SE from its
  // master key), encrypted under the session's DEK, with the KCVs the SE must answer.
  // `old_kvn` 00 adds a key set, otherwise it is the KVN replaced (P1).
  kPutKey,
};

struct CommandSpec {
  CommandKind kind = CommandKind::kApdu;
  std::size_t line = 0;
  Bytes aid;
  std::vector<DgiSpec> dgis;
  std::uint8_t status_scope = 0x40;  // SetStatusScope: 80 ISD, 40 application or SD, 60 SD + apps
  std::uint8_t state = 0;
  Bytes apdu;
  // Content management (kInstallForInstall, kInstallForMakeSelectable, kInstallForExtradition,
  // kDelete): constants of the profile, the same for every card, never a card's value.
  Bytes load_file_aid;  // kInstallForInstall: the executable load file, 5-16 bytes
  Bytes module_aid;     // kInstallForInstall: the executable module, 5-16 bytes
  Bytes privileges;     // kInstallForInstall, kInstallForMakeSelectable: 1 or 3 bytes
  // kInstallForInstall: the install parameters field (GPC Table 11-49), C9 then EF.
  Bytes application_parameters;            // value of C9 (empty: C9 00)
  std::optional<Bytes> system_parameters;  // value of EF, TLVs (C7, C8, CF...); none: no EF
  Bytes token;                             // kInstallForInstall: empty = none (LEN 00)
  bool make_selectable = false;            // kInstallForInstall: P1 0C instead of 04
  Bytes sd_aid;                            // kInstallForExtradition: the receiving SD, 5-16
  bool delete_related = false;             // kDelete: P2 80, with its related objects
  std::string key_set;                     // kPutKey: the <key-set> name
  std::uint8_t old_kvn = 0x00;             // kPutKey: P1, 00 = add
};

// EMV ICC master keys of the card (EMV Book 2 A1.4), for DGI 8000 / 9000: derived in the
// HSM from the product's issuer master keys with the card's PAN and PSN.
struct IccKeysSpec {
  IccDerivationOption option = IccDerivationOption::kA;
  std::string pan_attribute;
  std::string psn_attribute;  // empty: no PSN (00)
  std::string imk_ac_uri, imk_smi_uri, imk_smc_uri;
  std::size_t line = 0;
};

struct SecureChannelSpec {
  std::uint8_t scp = 3;        // the SCP the product's SEs use (checked against the registry)
  std::uint8_t level = 0x03;   // SCP03: 01 03 11 13 33; SCP02: 01 03
  KeyType key_type = KeyType::kAes128;
  // nullopt: "none", the named keys are the SEs' own static keys (lab key sets only)
  std::optional<DiversificationScheme> diversification;
  std::string master_key_uri;  // with a diversification scheme: the KMC (derive usage)
  std::string enc_key_uri;     // without: the three static keys
  std::string mac_key_uri;
  std::string dek_key_uri;
  std::string host_challenge_key_uri;  // AES key with the sign usage: keyed host challenges
  std::size_t line = 0;                // in the profile, for messages
};

// A key set the script puts on the SE (key rotation, docs/profile.md "Key sets"): the
// static keys of security domain `sd_aid` (empty: the ISD the registry names), derived per
// SE, with the SE's KDD, from the service provider's master key. Sessions opened with it
// are SCP03 with `i` and `level`; its first session uses the counter value the card starts
// a new key set at (SCP03: 000001, gp-reference.md §2.4).
struct KeySetSpec {
  std::string name;
  Bytes sd_aid;                 // 5-16 bytes, or empty: the ISD
  std::uint8_t kvn = 0x01;      // 01-7F
  std::uint8_t i = 0x70;        // SCP03 i (pseudo-random card challenge: b5 set)
  std::uint8_t level = 0x03;    // SCP03 security level of its sessions
  KeyType key_type = KeyType::kAes128;  // aes128 or aes256
  DiversificationScheme diversification = DiversificationScheme::kKdf3;
  std::string master_key_uri;   // the service provider's master key (sign usage, kdf3)
  std::size_t line = 0;
};

// A secure channel of the script after the first (docs/profile.md "Sessions"): SELECT of
// `sd_aid` (empty: the ISD), INITIALIZE UPDATE and EXTERNAL AUTHENTICATE with `key_set`
// (empty: the SE's key set in the registry, which the session draws its counter from),
// then `commands`, wrapped in that channel.
struct SessionSpec {
  Bytes sd_aid;
  std::string key_set;
  std::vector<CommandSpec> commands;
  std::size_t line = 0;
};

struct PrepSpec {
  std::string product;  // the registry's product of every SE this profile prepares
  KeyHandling key_handling = KeyHandling::kStrict;
  SeLookupSpec se;
  SecureChannelSpec channel;
  std::optional<IccKeysSpec> icc_keys;
  std::vector<CommandSpec> script;   // the first session's (the ISD, registry key set), in order
  std::vector<KeySetSpec> key_sets;  // <key-set> elements, in order
  std::vector<SessionSpec> sessions; // the <session> elements of <script>, after the first
  std::size_t bundle_segment_cards = 256;
  int bundle_zstd_level = 1;  // the scripts are mostly ciphertext: 3 compresses no better (docs/profile.md)
  std::size_t line = 0;
};

// The sequence counter values each card takes from its SE's key set in the registry: the
// first session, and every <session> opened with the registry's key set.
inline std::uint32_t registry_counters_per_card(const PrepSpec& prep) {
  std::uint32_t n = 1;
  for (const SessionSpec& s : prep.sessions) n += s.key_set.empty() ? 1 : 0;
  return n;
}

// The <key-set> named `name`, or nullptr.
inline const KeySetSpec* find_key_set(const PrepSpec& prep, std::string_view name) {
  for (const KeySetSpec& k : prep.key_sets) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

// Every command of every session, in order.
template <typename F>
void for_each_command(const PrepSpec& prep, F&& f) {
  for (const CommandSpec& c : prep.script) f(c);
  for (const SessionSpec& s : prep.sessions) {
    for (const CommandSpec& c : s.commands) f(c);
  }
}

}  // namespace persoflow
