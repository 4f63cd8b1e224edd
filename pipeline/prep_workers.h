// Prep's HSM-bound stage in worker processes (docs/cli.md#workers;
// the processes, the wire and recycling are pipeline/worker_process.h).
//
// `prep --workers N` starts N `persoflow prep-worker` processes. The parent keeps
// everything that must be serial and durable (the plan, the reservation, the journal, the
// bundle); a worker gets one XOF segment's planned cards at a time (segment number,
// positions, SE rows, counters), reads and decrypts that segment from the XOF itself (or,
// for `run`, decrypts the sealed segment the work carries),
// prepares its cards with prepare_segment() and sends back the prepared cards (a level-1
// bundle segment) and the rejects. The parent merges in XOF order, so the bundle is byte
// for byte the one an in-process prep writes.
//
// 'W' work: u32 JSON length, JSON {seq, segment, cards: [[index, position, se_row,
// counter(, se key)]...]}, then (`run`, whose XOF is not published yet) the segment's
// sealed bytes; without them the worker reads the segment from the XOF.
// 'D' done: u32 JSON length, JSON {seq, outcome ("1"/"0" per card), rejects, apdus,
// retries (the worker's total)}, then the bundle segment's bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config/hsm_settings.h"
#include "engine/profile.h"
#include "engine/result.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/xof_format.h"
#include "pipeline/prep_segment.h"
#include "pipeline/worker_process.h"

namespace persoflow::pipeline {

struct PrepWorkerConfig {
  config::HsmSettings hsm;           // how each worker opens the HSM (the parent's settings)
  std::string profile_path;          // absolute paths: a worker may not share the parent's cwd
  std::string profile_sha256;        // the run's (hex): a worker refuses a profile edited since
  std::string xof_path;              // prep: the published XOF the workers read; run: the one being written (messages)
  // run: the header of the XOF being written; each work then carries its sealed segment.
  std::optional<formats::XofHeader> xof_header;
  std::string registry_path;
  formats::SeLookupKind lookup_kind = formats::SeLookupKind::kSeId;
  formats::BundleHeader transport_header;  // the bundle's header; the cards travel at zstd level 1
  std::uint64_t recycle_cards = 0;         // 0: never recycle
};

// --workers auto: SoftHSM serializes calls per process, so in key-handling="strict" (about
// 20-60 calls per card) one worker per core (at most one per segment to prepare, and none
// when only one segment is). key-handling="host" makes a few calls per segment and is bound
// by host crypto, which threads share best in one process: 0. Any other module gets threads
// in this process (modules that scale across sessions): 0.
std::size_t default_prep_workers(const config::HsmSettings& hsm, std::size_t segments, KeyHandling mode);



class PrepWorkerPool {
 public:
  // Starts `workers` processes and waits until each has opened the HSM, the XOF, the
  // profile's keys and the registry (an error there names the worker and its reason).
  static Result<std::unique_ptr<PrepWorkerPool>> start(PrepWorkerConfig config, std::size_t workers);
  ~PrepWorkerPool();
  PrepWorkerPool(const PrepWorkerPool&) = delete;
  PrepWorkerPool& operator=(const PrepWorkerPool&) = delete;

  // Prepares `work` (its cards, se_keys and xof_segment) in the next idle worker: fills
  // done, rejects, outcome and apdus as prepare_segment() does. Blocks; thread-safe.
  Status prepare(SegmentWork& work);

  std::size_t workers() const { return size_; }
  std::uint64_t retries() const;            // cards prepared again after transient HSM errors
  std::uint64_t processes_started() const;  // workers started, recycled ones included
  // Ends every worker (closing its socket) and waits for them; the destructor does it too.
  Status stop();

 private:
  explicit PrepWorkerPool(PrepWorkerConfig config);
  struct State;
  PrepWorkerConfig config_;
  std::size_t size_ = 0;
  std::unique_ptr<State> state_;
};

// `persoflow prep-worker --fd N`: the worker's side, over the socket on fd N. Returns the
// process exit code.
int run_prep_worker(const config::HsmSettings& hsm, int fd);

}  // namespace persoflow::pipeline
