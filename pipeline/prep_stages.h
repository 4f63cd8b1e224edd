// What `persoflow prep` and `persoflow run` share to turn one card into its secure-channel
// script: the keys a prep resolves once, the keyed host challenge, and CardPreparer, the
// per-card work of the parallel stage (card static keys in the HSM, offline session, the
// profile's script wrapped). Used by prep_command.cpp and run_command.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/card_script.h"
#include "engine/key_ops.h"
#include "engine/profile.h"
#include "engine/result.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"
#include "hsm/emv_icc_derivation.h"
#include "hsm/hsm_keys.h"
#include "hsm/host_key_derivation.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

// The keys prep uses, resolved once (by URI, through the key store's cache).
struct PrepKeys {
  hsm::KeyInfo integrity_info;
  std::unique_ptr<hsm::HsmMacKey> integrity;
  std::vector<std::unique_ptr<hsm::HsmAeadKey>> class_keys;  // DKeps, by XOF key class
  std::vector<AeadKey*> class_ptrs;
  std::vector<hsm::KeyInfo> class_infos;     // the same DKeps (key-to-key DGIs unwrap under them)
  std::optional<hsm::KeyInfo> master;        // diversified channels
  std::optional<hsm::KeyInfo> enc, mac, dek; // static-key channels
  std::unique_ptr<hsm::HsmMacKey> host_challenge;
  std::optional<hsm::IccIssuerMasterKeys> imks;     // <icc-keys>
  std::optional<hsm::IccMasterKeyWrapper> icc_wrapper;  // made (self-tested) when <icc-keys> is there
  std::vector<hsm::KeyInfo> key_set_masters;  // the master key of each <key-set>, in order
  // key-handling="host" only (docs/profile.md "Key handling"): the HSM computations whose
  // results come back into host memory, made once per run (the CMAC subkeys of AES masters
  // are computed here).
  struct Host {
    std::optional<hsm::HostStaticKeyDeriver> channel;  // the <secure-channel> master
    std::vector<hsm::HostStaticKeyDeriver> key_sets;   // each <key-set>'s master, in order
    std::optional<hsm::HostIccDeriver> icc;            // <icc-keys>
    std::optional<hsm::HsmBatchCmac> host_challenge;
  };
  std::optional<Host> host;
};

// Resolves the channel keys and the host-challenge key of the profile's <prep>, and the
// DKep of every key class of `header`. A missing key is an error naming the profile
// file, line and element it came from ("P.xml:49: <secure-channel> master-key: ...").
Result<PrepKeys> resolve_prep_keys(const Profile& profile, const std::string& profile_path,
                                   const formats::XofHeader& header, hsm::KeyStore& keys,
                                   std::unique_ptr<hsm::HsmMacKey> integrity, hsm::KeyInfo integrity_info);

// Checks that every attribute the <prep> script and SE lookup use is a clear value of
// the XOF described by `header`; returns the index of the SE lookup attribute.
// `profile_path` and `source` (the XOF, or the issuer file of a run) name the files.
Result<std::size_t> check_prep_attributes(const PrepSpec& prep, const formats::XofHeader& header,
                                          const std::string& profile_path, const std::string& source);

// Host challenges are keyed (an HSM CMAC) and deterministic: a rerun with the same
// reserved counter reproduces the same session bytes, and nobody without the key can
// predict them.
// `context` (empty for the SE's key set in the registry) and `kvn` (default the registry's)
// distinguish the sessions of key sets the script puts: such a session's counter is the
// card's starting value, so the challenge is keyed on the session that loaded the keys.
Result<Bytes> host_challenge(MacKey& key, const formats::SeRecord& se, std::uint32_t counter, std::size_t length,
                             std::span<const std::uint8_t> context = {},
                             std::optional<std::uint8_t> kvn = std::nullopt);
// The message host_challenge() MACs: "persoflow host challenge v1" 00 SE-id 00 KVN
// counter(4) [00 context]. The host mode MACs many at once (hsm::HsmBatchCmac).
Bytes host_challenge_input(const formats::SeRecord& se, std::uint32_t counter, std::span<const std::uint8_t> context = {},
                           std::optional<std::uint8_t> kvn = std::nullopt);

// The sequence counter a card uses in the first session of a key set it was just given
// (PUT KEY resets the counter to zero; INITIALIZE UPDATE increments it before use:
// gp-reference.md §2.4).
inline constexpr std::uint32_t kFirstCounterOfANewKeySet = 1;

// The SE lookup key (SE id or MSI) a card names: its clear value of attribute `index`.
std::string se_key_of(const formats::XofCard& card, std::size_t index);

// One card's bundle entry: SELECT of the ISD, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE
// and the profile's script wrapped in an offline session opened with the card's static
// keys (HSM session objects, destroyed when the card is done). Thread-safe: one instance
// serves every worker. kInvalidArgument / kParse: this card's data cannot make a script
// (the card alone is rejected); any other error stops the run.
//
// Transient HSM errors (hsm::rv_is_transient: a device error or a lost session) are retried:
// the whole card is prepared again, up to kAttempts times in all, on fresh sessions. A
// card's bytes depend only on its values, keys and counter, so a retried card is identical
// to one that never failed. A persistent error, or the last attempt's, is returned.
//
// key-handling="host" (docs/profile.md "Key handling"): the card's static keys, its key
// sets' keys, its ICC master keys and its host challenges are computed by the HSM from
// the master keys (which never leave it) for the whole batch and held in SecureBytes
// until the card is done, then wiped; the offline session, the DEK encryptions and PUT KEY
// run on the host (engine's SCP03/SCP02 code over ClearCardKeys). The bytes are those of
// `strict`. prepare_batch() makes the HSM work of a whole batch a few calls
// (hsm/host_key_derivation.h); prepare() is a batch of one.
class CardPreparer {
 public:
  static constexpr int kAttempts = 3;

  CardPreparer(const Profile& profile, const formats::XofHeader& header, hsm::KeyStore& keys, PrepKeys& k);

  Result<formats::BundleCard> prepare(const formats::XofCard& card, const formats::SeRecord& se,
                                      std::uint32_t counter);

  // Several cards (one XOF segment's): one result per card, in order, each as prepare()
  // would give it (an error of a whole batch is every card's). In `strict` mode this is
  // prepare() per card; in `host` mode the HSM computes the batch's card keys and host
  // challenges in a few calls: one C_Encrypt per master key and batch for kdf3 (and for
  // EMV CPS / VISA2 and ICC master keys) when the master has the encrypt usage, one per
  // block position of the host-challenge input.
  std::vector<Result<formats::BundleCard>> prepare_batch(std::span<const formats::XofCard* const> cards,
                                                         std::span<const formats::SeRecord> ses,
                                                         std::span<const std::uint32_t> counters);

  // Cards prepared again after a transient HSM error (the run report's hsm_retries).
  std::uint64_t retries() const { return retries_.load(std::memory_order_relaxed); }

  // One secure channel of a card's script, before any key is used: where it goes, its
  // parameters, the counter it consumes and what its host challenge is keyed on.
  struct ChannelPlan {
    const std::vector<CommandSpec>* commands = nullptr;
    const ScriptLabels* labels = nullptr;  // of `commands`, made once by the preparer
    Bytes sd_aid;
    std::uint8_t scp = 3, i = 0x70, level = 0x03, kvn = 0, requested_kvn = 0;
    std::uint32_t counter = 0;
    Bytes challenge_context;  // empty for the registry's key set
    const std::string* key_set_name = nullptr;  // a <key-set>'s name; null: the SE's key set in the registry
    std::size_t challenge_length = 8;
  };

  // What the host mode computed for one card in the HSM: values in host memory, wiped
  // when the card is done.
  struct HostCard {
    StaticKeySet isd;                                 // the SE's key set in the registry
    std::vector<std::optional<StaticKeySet>> key_sets;  // by <key-set>, those the script uses
    std::optional<hsm::HostIccKeys> icc;              // when a DGI needs them
    std::vector<Bytes> challenges;                    // one per channel, in plan order
  };

 private:
  std::vector<ChannelPlan> plan_channels(const formats::SeRecord& se, std::uint32_t counter) const;
  Result<formats::BundleCard> prepare_once(const formats::XofCard& card, const formats::SeRecord& se,
                                           std::uint32_t counter, HostCard* host);
  // Host mode: the HSM part of a batch (static keys, key sets, ICC keys, challenges).
  Result<std::vector<Result<HostCard>>> host_material(std::span<const formats::XofCard* const> cards,
                                                      std::span<const formats::SeRecord> ses,
                                                      std::span<const std::uint32_t> counters);
  std::atomic<std::uint64_t> retries_{0};
  bool icc_host_readable_ = false;  // a via="host" DGI 8000: ICC master keys derived readable
  bool uses_icc_keys_ = false;      // a DGI of source icc-master-keys or icc-key-kcvs
  std::vector<bool> key_set_used_;  // by <key-set>: a PUT KEY or a session uses it
  ScriptLabels script_labels_;                 // of prep_.script
  std::vector<ScriptLabels> session_labels_;   // of each prep_.sessions[k].commands

  const PrepSpec& prep_;
  const formats::XofHeader& header_;
  hsm::KeyStore& keys_;
  PrepKeys& k_;
};

// The run report's "key_handling" object: the mode and every value that transits host
// memory, and why (docs/cli.md "The run report"). Given the run's keys, in `host` mode it
// also says how the HSM computed each kind of card key (batched, or the per-key fallback
// of a master without the encrypt usage).
nlohmann::ordered_json key_handling_report(const PrepSpec& prep, const PrepKeys* keys = nullptr);

// "strict" | "host".
std::string_view key_handling_name(KeyHandling mode);

// The run.start "keys" entries of a prep's keys: channel keys (master or static), host
// challenge key, issuer master keys, each by URI with its KCV (null where the module
// cannot compute one for that key).
nlohmann::ordered_json prep_keys_audit(const PrepSpec& prep, const PrepKeys& k, hsm::KeyStore& keys);

// SHA-256 of a whole file, hex.
Result<std::string> sha256_file_hex(const std::string& path);

// "<prefix>-20261122T061500Z-<pid>": a run id when the operator gives none.
std::string default_run_id(const std::string& prefix);
// $USER, or "unknown".
std::string default_operator();

}  // namespace persoflow::pipeline
