// `persoflow run`: the nightly job in one streamed pass (docs/cli.md "run"). The import's
// flow graph (decrypt in the HSM, parse, validate, XOF segments under the DKeps) goes on,
// segment by segment, into prep (counters reserved for the segment's cards, keys
// diversified in the HSM, scripts wrapped), so each card is decrypted from the issuer
// file once and prepared while the rest of the file is still being read. The XOF is
// written as by `persoflow import`, and the bundle names its SHA-256 as by `prep`.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "config/hsm_settings.h"
#include "engine/result.h"
#include "hsm/key_store.h"
#include "pipeline/import_command.h"
#include "pipeline/worker_process.h"

namespace persoflow::pipeline {

struct RunOptions {
  std::string profile_path;   // with <prep>
  std::string input_path;     // the issuer file
  std::string registry_path;
  std::string out_dir;        // receives NAME.xof, NAME.bundle, NAME.rejects.jsonl, NAME.report.json
  std::string name;           // empty: the issuer file's name without its last extension
  std::optional<RejectLimit> max_rejects;  // over import and prep rejects, against records read
  std::string run_id;         // empty: made from the time and pid
  std::string operator_name;  // empty: $USER
  std::size_t batch_records = 256;
  std::size_t max_batches_in_flight = 0;  // 0: 4 per hardware thread
  int zstd_level = 3;                     // XOF blocks
  std::string audit_log;                  // empty: no audit log (docs/audit.md)
  // The run directory: journal and spool (docs/formats/journal.md); empty: OUT_DIR/NAME.run.
  std::string run_dir;
  // Non-empty: finish the killed run journaled there; every option above except the
  // audit log and max_batches_in_flight comes from its journal (and those below).
  std::string resume_dir;
  // Worker processes (docs/cli.md#workers): N translating the field-encrypted values (when
  // the profile has some) and N preparing the cards, each with its own PKCS#11 module;
  // nullopt picks the default for the module (default_run_workers); 0 does everything in
  // this process. They need `hsm` (how they open the HSM); output is identical whatever
  // the count.
  std::optional<std::size_t> workers;
  std::uint64_t worker_recycle_cards = kDefaultWorkerRecycleCards;  // per worker process; 0: never
  std::optional<config::HsmSettings> hsm;
};

struct RunResult {
  std::uint64_t records = 0;   // records read from the issuer file
  std::uint64_t imported = 0;  // cards in the XOF
  std::uint64_t prepared = 0;  // cards in the bundle
  std::uint64_t rejects = 0;   // import and prep together
  std::uint64_t import_rejects = 0;
  std::uint64_t prep_rejects = 0;
  std::map<std::string, std::uint64_t> rejects_by_category;
  std::int64_t reservation_id = 0;
  std::uint64_t reservation_batches = 0;
  std::uint64_t counters_reserved = 0;
  std::uint64_t counters_burnt = 0;
  std::uint64_t apdus = 0;
  std::uint32_t xof_segments = 0;
  std::size_t import_workers = 0;  // worker processes used: field values translated
  std::size_t prep_workers = 0;    // cards prepared
  double seconds = 0;
  std::string xof_path, bundle_path, rejects_path, report_path;
  std::string run_dir;
  std::string xof_sha256, bundle_sha256;
  std::string report_json;  // also written to report_path
};

// Runs import and prep as one flow graph. Nothing is published unless the whole run
// succeeds within --max-rejects: then the XOF, the bundle, the reject report and the run
// report, in that order, each atomically. NAME.xof or NAME.bundle already in the output
// directory is refused (kAlreadyExists) before anything is read or reserved.
//
// The run is journaled (docs/formats/journal.md): after every pipeline batch that
// completed XOF segments, their bytes, the bundle segments completed with them and the
// prepared cards not yet in a bundle segment are spooled, and one fsynced record names
// them with the batch's rejects and reservation batch. `resume_dir` finishes a killed
// run from there: the issuer file is read again and the records up to the last
// journaled card skipped; counter batches the registry committed after the last record
// are taken back from their ranges, never reserved again. The outputs are byte-identical
// to an uninterrupted run's with the same reservation.
Result<RunResult> run_full(const RunOptions& options, hsm::KeyStore& keys);

// --workers auto for `run`, for a module that serializes calls within a process
// (SoftHSM) and an issuer file of at least kImportWorkersMinInputBytes: one worker per
// core translating field-encrypted values (when the profile has some), and one per core
// preparing cards in key-handling="strict" (host mode is bound by host crypto, shared best
// by threads in one process). {import, prep}; {0, 0} for any other module or a small file.
std::pair<std::size_t, std::size_t> default_run_workers(const config::HsmSettings& hsm, const Profile& profile,
                                                        std::uint64_t input_bytes);

}  // namespace persoflow::pipeline
