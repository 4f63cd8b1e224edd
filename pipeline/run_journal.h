// The run journal of a resumable `persoflow prep` (docs/formats/journal.md): a run
// directory holding an append-only file of records, each one line fsynced before the run
// goes on, and a spool of the bundle segments already written (the same bytes the bundle
// holds, fsynced before the record that names them). After `kill -9` or a power cut,
// `persoflow prep --resume DIR` reads the intact records (a torn last record is dropped),
// skips the cards whose segments are spooled, and finishes the run with the same
// reservation: no counter value is reserved twice and the bundle is byte-identical to an
// uninterrupted run's. The journal holds no card value: options, digests, reservation id,
// card positions, reject lines and segment offsets only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/hex.h"
#include "engine/result.h"
#include "formats/se_registry.h"
#include "pipeline/reject_report.h"

namespace persoflow::pipeline {

inline constexpr const char* kJournalFileName = "journal";
inline constexpr const char* kSpoolFileName = "bundle.spool";      // prep
inline constexpr const char* kXofSpoolFileName = "xof.spool";      // import
inline constexpr const char* kRunSpoolFileName = "run.spool";      // run: XOF and bundle segments

class RunJournal {
 public:
  // Starts a new run in `dir` (created if missing, its parent fsynced). A journal already
  // there is replaced only when its run ended (a `finished` or `failed` record, or no
  // intact record at all); one that did not is refused with kAlreadyExists: it can still
  // be resumed.
  // `spool_name`: the spool's file name (prep: bundle.spool, import: xof.spool).
  static Result<RunJournal> create(const std::string& dir, const std::string& spool_name = kSpoolFileName);
  // Opens the journal of `dir` for resuming: kNotFound when the directory or its journal
  // is missing, kIntegrity for a damaged record before the last one; a torn last record
  // (a power cut while appending it) is cut off. kAlreadyExists when another process holds
  // the journal (flock). The spool is the one of the command the `started` record names.
  static Result<RunJournal> open(const std::string& dir);

  RunJournal(RunJournal&& other) noexcept;
  RunJournal& operator=(RunJournal&& other) noexcept;
  RunJournal(const RunJournal&) = delete;
  RunJournal& operator=(const RunJournal&) = delete;
  ~RunJournal();

  // Intact records in order (each a JSON object with "record" naming its kind).
  const std::vector<nlohmann::json>& records() const { return records_; }
  // The last record of a kind, or null.
  const nlohmann::json* last(std::string_view kind) const;
  std::vector<const nlohmann::json*> all(std::string_view kind) const;

  // One record: written with one write(2), then fsynced. The run goes on only after.
  // sync=false leaves the fsync to sync(), once for several records: a record written but
  // not yet fsynced survives a killed process, and a power loss leaves an intact prefix
  // of the records (the torn tail is cut on open).
  Status append(nlohmann::ordered_json record, bool sync = true);
  Status sync();

  // The spool: bundle segment bytes. append_spool writes at the end and fsyncs; returns the
  // offset. read_spool checks the bytes against their SHA-256 (hex). cut_spool truncates
  // what no record names (a kill between the spool write and its record).
  // sync=false leaves the fsync to sync_spool(), once for several pieces, before the
  // record that names them.
  Result<std::uint64_t> append_spool(std::span<const std::uint8_t> bytes, bool sync = true);
  Status sync_spool();
  Result<Bytes> read_spool(std::uint64_t offset, std::uint64_t length, const std::string& sha256_hex) const;
  Status cut_spool(std::uint64_t end);
  // Removes the spool once the run has ended (its bytes are in the bundle, or worthless).
  void remove_spool();

  const std::string& dir() const { return dir_; }
  std::string journal_path() const;
  std::string spool_path() const;

 private:
  RunJournal(std::string dir, int fd, std::string spool_name)
      : dir_(std::move(dir)), spool_name_(std::move(spool_name)), fd_(fd) {}
  Status open_spool(bool truncate);

  std::string dir_;
  std::string spool_name_;
  int fd_ = -1;        // the journal, flocked
  int spool_fd_ = -1;
  std::uint64_t spool_size_ = 0;
  std::vector<nlohmann::json> records_;
};

// A command's journal for one invocation: fresh (created once its inputs are checked) or
// resumed (opened from --resume).
struct JournaledRun {
  std::optional<RunJournal> journal;
  bool resuming = false;
  // An error from now on ends the run (`failed`). False before a fresh run's journal
  // exists, during a resume's checks (a refused resume leaves the run resumable) and once
  // the output is published.
  bool failure_ends_run = false;

  // After an error, if it ends the run: an error that interrupts_run() leaves the run
  // resumable (an `interrupted` record; the message gets how to resume `command`, and,
  // with `has_reservation` (prep, run), that the resume keeps the run's counters);
  // any other gets `failed` and the spool is removed.
  void record_failure(Error& error, std::string_view command, bool has_reservation);
};

// An error that interrupts a journaled run instead of ending it: the HSM (a device error
// that outlived its retries, a removed token, a lost login that could not be restored),
// the login, the disk, or a key or file that went away. Fixed outside persoflow, after
// which --resume finishes the run with its reservation; the reservation is not burnt.
// Data errors (integrity, reject limit, bad input) still end the run.
bool interrupts_run(const Error& error);

// The last record of a run whose outputs and run report are all written: `finished`, and
// the spool removed. The CLI calls it after the run report.
Status finish_journaled_run(const std::string& run_dir);

// Test-only (docs/formats/journal.md): PERSOFLOW_TEST_CRASH_AFTER_SEGMENT=N makes the
// process kill itself (SIGKILL) right after its Nth segment record is durable.
void crash_point_after_segment(std::uint64_t segment_records_written);
// Test-only: PERSOFLOW_TEST_CRASH_AFTER_RESERVE=N kills `persoflow run` right after the
// registry committed its Nth counter batch (this process's), before any journal record
// names it: a resume must take that batch back from the registry, not reserve again.
void crash_point_after_reservation_batch(std::uint64_t batches_committed);
// Test-only: PERSOFLOW_TEST_CRASH_AFTER_BATCH_RECORD=N kills `prep` right after its Nth
// `batch` record is durable (this process's), before the batch's cards enter the pipeline.
void crash_point_after_batch_record(std::uint64_t batch_records_written);

// A reject as a journal object, and back.
nlohmann::ordered_json reject_to_json(const Reject& reject);
Result<Reject> reject_from_json(const nlohmann::json& j, const std::string& where);

// The reservation of run `run_id` made after reservation `after_id` (the largest id the
// registry held when the run started), if the run's registry transaction committed before
// it was killed. kIntegrity when several match.
Result<std::optional<formats::ReservationRecord>> find_reservation_of_run(formats::SeRegistry& registry,
                                                                          const std::string& run_id,
                                                                          std::int64_t after_id);

// The largest reservation id the registry holds (0 when none).
Result<std::int64_t> last_reservation_id(formats::SeRegistry& registry);

// Rebuilds, from reservation `id`'s counter ranges, the per-card outcome reserve() gave
// for `cards` (same order): reserve() walks the cards in order and gives each served card
// its SE's next values, so the k-th card served by an SE got range.first + k *
// info.values_per_card. Cards of an SE
// without a range, or past its range's end, were rejected; their reasons are computed
// again from the registry as it is now (the journal's own reasons are used when it holds
// them). `batch`: only that batch's ranges (a `persoflow run` reserves one batch per
// pipeline batch under one id; see reserve_more). se_row is 0 in the result: the caller finds each SE by its lookup. kIntegrity when
// the ranges do not match the cards (a different selection or registry).
Result<formats::Reservation> reservation_from_ranges(formats::SeRegistry& registry,
                                                     const std::vector<formats::SeLookup>& cards,
                                                     const formats::ReservationInfo& info, std::int64_t id,
                                                     std::optional<std::int64_t> batch = std::nullopt);

}  // namespace persoflow::pipeline
