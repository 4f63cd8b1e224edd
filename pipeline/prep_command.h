// `persoflow prep`: from an XOF to a script bundle (docs/cli.md "prep"). Per card: the
// SE found in the registry, a sequence counter reserved for it (one committed transaction
// per batch of cards, before any of their scripts is written), the card's static keys
// diversified in the HSM, an offline secure-channel session and the profile's script
// wrapped in it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/hsm_settings.h"
#include "pipeline/worker_process.h"
#include "engine/result.h"
#include "hsm/key_store.h"
#include "pipeline/import_command.h"

namespace persoflow::pipeline {

// --cards: which cards of the XOF to prepare.
struct CardSelection {
  enum class Kind : std::uint8_t { kAll, kIds, kRange };
  Kind kind = Kind::kAll;
  std::vector<std::string> ids;  // kIds: card ids, in any order (output keeps XOF order)
  std::uint64_t first = 0;       // kRange: 1-based positions in the XOF, inclusive
  std::uint64_t last = 0;

  // "ID,ID,...", "@FILE" (one id per line, # comments), or "FIRST-LAST" (positions).
  static Result<CardSelection> parse(const std::string& text);
};

// The first reservation batch's selected cards; each next batch holds twice as many, up to
// PrepOptions::reserve_batch (the batch ends with the XOF segment that reaches its size).
inline constexpr std::uint64_t kFirstReserveBatch = 1024;

struct PrepOptions {
  std::string profile_path;
  std::string xof_path;
  std::string registry_path;
  std::string output_path;
  std::string rejects_path;  // empty: no reject file
  std::string report_path;   // empty: no JSON run report file
  CardSelection cards;
  std::optional<RejectLimit> max_rejects;
  // Selected cards per reservation batch: each batch's counters are reserved in one
  // committed transaction before its scripts exist, and prep's memory is a batch's, not
  // the run's (XOF segments are not split: a batch ends with the segment that reaches it).
  std::uint64_t reserve_batch = 16384;  // the first batches ramp up to it from kFirstReserveBatch
  std::string run_id;        // empty: made from the time and pid
  std::string operator_name; // empty: $USER
  std::size_t max_in_flight = 0;  // XOF segments in flight; 0: 2 per hardware thread (workers + 1 with workers)
  // Worker processes for the HSM-bound stage (pipeline/prep_workers.h): nullopt picks
  // default_prep_workers() for the module; 0 prepares in this process's threads. Workers
  // need `hsm` (how they open the HSM themselves); without it prep runs in-process.
  std::optional<std::size_t> workers;
  // Threads of this process for the pipeline (TBB); 0: one per hardware thread.
  std::size_t threads = 0;
  std::uint64_t worker_recycle_cards = kDefaultWorkerRecycleCards;  // a worker is replaced after this many cards; 0: never
  std::optional<config::HsmSettings> hsm;
  std::string audit_log;          // empty: no audit log (docs/audit.md)
  // The run directory holding the journal and the spooled bundle segments
  // (docs/formats/journal.md); empty: output_path + ".run".
  std::string run_dir;
  // --resume DIR: carry on the run journaled in DIR. Every option above except audit_log,
  // max_in_flight and the worker options is then taken from the journal (the given ones
  // are ignored).
  std::string resume_dir;
};

struct PrepResult {
  std::uint64_t selected = 0;  // cards asked for
  std::uint64_t prepared = 0;  // cards in the bundle
  std::uint64_t rejects = 0;
  std::map<std::string, std::uint64_t> rejects_by_category;
  std::int64_t reservation_id = 0;
  std::uint64_t counters_reserved = 0;
  std::uint64_t counters_burnt = 0;  // reserved for cards that were then rejected
  std::uint64_t apdus = 0;
  double seconds = 0;
  std::string bundle_sha256;
  std::string report_json;
  // Where the run's outputs go (as journaled, for --resume) and its run directory.
  std::string output_path;
  std::string report_path;
  std::string run_dir;
};

Result<PrepResult> run_prep(const PrepOptions& options, hsm::KeyStore& keys);


}  // namespace persoflow::pipeline
