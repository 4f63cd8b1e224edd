// `persoflow import`: an issuer file (CMS envelope) into the XOF intermediate, with a
// reject report and a JSON run report (docs/cli.md, docs/formats/xof.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "config/hsm_settings.h"
#include "pipeline/worker_process.h"
#include "engine/result.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

// --max-rejects N or N%: the most rejected records a run may have and still publish.
struct RejectLimit {
  double value = 0;
  bool percent = false;
  static Result<RejectLimit> parse(const std::string& text);
  bool exceeded(std::uint64_t rejects, std::uint64_t records) const;
  std::string to_string() const;
};

struct ImportOptions {
  std::string profile_path;
  std::string input_path;
  std::string output_path;
  std::string rejects_path;  // empty: no reject file (counts still reported)
  std::string report_path;   // empty: no JSON run report file
  std::optional<RejectLimit> max_rejects;
  std::size_t batch_records = 256;
  std::size_t max_batches_in_flight = 0;  // 0: 4 per hardware thread
  int zstd_level = 3;
  std::string audit_log;  // empty: no audit log (docs/audit.md)
  // The run directory holding the journal (docs/formats/journal.md); empty: OUT.run.
  std::string run_dir;
  // --resume DIR: carry on the import journaled in DIR. Every option above except
  // audit_log and max_batches_in_flight comes from the journal.
  std::string resume_dir;
  // Worker processes translating the field-encrypted values (pipeline/import_workers.h):
  // nullopt picks default_import_workers(); 0 translates in this process. They need
  // `hsm` (how the workers open the HSM); output is identical whatever the count.
  std::optional<std::size_t> workers;
  std::uint64_t worker_recycle_cards = kDefaultWorkerRecycleCards;  // a worker is replaced after this many cards; 0: never
  std::optional<config::HsmSettings> hsm;
};

struct ImportResult {
  std::uint64_t records = 0;  // records read from the issuer file
  std::uint64_t cards = 0;    // cards written to the XOF
  std::uint64_t rejects = 0;
  std::map<std::string, std::uint64_t> rejects_by_category;
  std::uint32_t segments = 0;
  double seconds = 0;
  std::string report_json;  // the run report (also written to report_path when given)
  // As journaled (for --resume): where the report goes, and the run directory.
  std::string output_path;
  std::string report_path;
  std::string run_dir;
  std::size_t workers = 0;  // worker processes used
  std::uint64_t worker_processes_started = 0;
};

// Runs the import. On any failure no XOF is published; the reject report is published
// only when the run fails on --max-rejects (it says why); otherwise nothing is;
// the error names the file, offset or record and the reason.
// The run is journaled in its run directory: a kill at any point is finished by
// `options.resume_dir` into the XOF, reject report and run report an uninterrupted run
// writes. The caller writes the run report, then calls finish_journaled_run
// (pipeline/run_journal.h).
Result<ImportResult> run_import(const ImportOptions& options, hsm::KeyStore& keys);


}  // namespace persoflow::pipeline
