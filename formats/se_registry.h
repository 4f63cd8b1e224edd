// The SE registry (docs/registry.md): one SQLite database holding, for every secure
// element a bureau or TSM may prepare scripts for, what the offline secure channel needs
// (KDD, ISD AID, SCP version, i, KVN) and the next sequence counter of its key set, plus
// every counter reservation ever made. Counter values handed out by reserve() are
// never handed out again (domain.md invariant 5): a reservation is committed before any
// script is written, and a run that dies leaves its values burnt, never returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"

struct sqlite3;

namespace persoflow::formats {

// One SE key set as the registry knows it.
struct SeRecord {
  std::string se_id;    // the registry key: unique, 1-64 printable ASCII, no spaces
  std::string msi;      // mobile subscriber identity (the patent's lookup key); may be empty,
                        // unique when present
  std::string iccid;    // ICCID (UICC) or CIN/serial; informational, may be empty
  Bytes kdd;            // key diversification data, 10 bytes
  Bytes isd_aid;        // the security domain the channel is opened to, 5-16 bytes
  std::uint8_t scp = 3;           // 2 or 3
  std::uint8_t i = 0x70;          // the SCP "i" parameter
  std::uint8_t kvn = 0x30;        // key version number of the key set
  std::uint32_t next_counter = 1; // the sequence counter the next prepared session uses
  std::uint32_t max_counter = 0;  // last usable value: 0xFFFFFF (SCP03), 0xFFFF (SCP02) by default
  std::string product;            // product (profile id) this SE belongs to
};

enum class SeLookupKind : std::uint8_t { kSeId, kMsi };

struct SeLookup {
  SeLookupKind kind = SeLookupKind::kSeId;
  std::string key;  // the SE id or MSI taken from the card's record
};

// The counter reserved for one card, or why none was.
struct CardReservation {
  bool ok = false;
  std::int64_t se_row = 0;     // registry row id of the SE (for SeRegistry::get_row)
  std::uint32_t counter = 0;   // the reserved sequence counter value (the first, with
                               // ReservationInfo::values_per_card > 1)
  std::string reject_reason;   // when !ok: "unknown SE id 'X'", "counter exhausted: ...", ...
  // When ok and reserved by reserve() / reserve_more(): the SE's row as the reservation's
  // transaction read it (next_counter: before this reservation), so that prep need not
  // read it again. Empty for a reservation rebuilt from its ranges (read the row by se_row).
  std::optional<SeRecord> se;
};

struct ReservationInfo {
  std::string run_id;          // the run that asked (journal / report id)
  std::string product;         // cards whose SE belongs to another product are rejected
  std::uint8_t scp = 0;        // 0: any; otherwise the SCP version the profile prepares for
  std::string operator_name;   // who ran it (audit)
  std::string source_digest;   // hex SHA-256 of the XOF the cards come from
  // Consecutive counter values each card takes (a script with several sessions on the
  // SE's key set): the card's `counter` is the first of them.
  std::uint32_t values_per_card = 1;
};

struct Reservation {
  std::int64_t id = 0;                   // reservation id (> 0), recorded in the bundle header
  std::vector<CardReservation> cards;    // one per SeLookup, same order
  std::size_t reserved = 0;              // number of ok cards
  std::int64_t batch = 0;                // the counter_range batch (0 for reserve())
};

enum class ReservationState : std::uint8_t { kReserved, kPublished, kBurnt };

struct ReservationRecord {
  std::int64_t id = 0;
  std::string run_id;
  std::string product;
  std::string created_utc;     // ISO 8601, for operators only
  ReservationState state = ReservationState::kReserved;
  std::size_t counters = 0;    // values reserved
  std::string output_digest;   // hex SHA-256 of the published bundle (when published)
};

// One contiguous range of counter values reserved for one SE by one reservation.
struct CounterRange {
  std::int64_t reservation_id = 0;
  std::string se_id;
  std::uint8_t kvn = 0;
  std::uint32_t first = 0;
  std::uint32_t last = 0;  // inclusive
  std::int64_t batch = 0;  // the reserve_more batch (0 for reserve())
};

struct CsvImportSummary {
  std::size_t inserted = 0;
  std::size_t updated = 0;  // existing SE ids with a changed field (a raised next_counter counts)
  std::size_t unchanged = 0;
};

// The largest sequence counter of each SCP version (3 bytes for SCP03, 2 for SCP02), the
// default max_counter when the CSV gives none.
inline constexpr std::uint32_t kScp03MaxCounter = 0xFFFFFF;
inline constexpr std::uint32_t kScp02MaxCounter = 0xFFFF;

// One validated row of a registry CSV, with the line it came from.
struct RegistryCsvRow {
  SeRecord record;          // max_counter already defaulted when the column is absent or empty
  std::size_t line = 0;     // 1-based line number in the file
};

// Parses and validates the text of a registry CSV (docs/registry.md) without touching a
// database: the first error is returned as kParse "FILE:LINE: column C: reason"
// (`file_name` is only used in messages). import_csv uses it; so does the fuzz target.
Result<std::vector<RegistryCsvRow>> parse_registry_csv(std::string_view text,
                                                       std::string_view file_name);

class SeRegistry {
 public:
  // Opens (create = true: creates if missing) the database; applies the schema; WAL off,
  // synchronous=FULL, foreign keys on. Errors name the path.
  static Result<SeRegistry> open(const std::string& path, bool create);

  SeRegistry(SeRegistry&&) noexcept;
  SeRegistry& operator=(SeRegistry&&) noexcept;
  SeRegistry(const SeRegistry&) = delete;
  SeRegistry& operator=(const SeRegistry&) = delete;
  ~SeRegistry();

  // CSV import (docs/registry.md): header line with named columns, all rows validated
  // first; any bad row fails the whole import with "FILE:LINE: column C: reason" and
  // nothing is written. An existing SE id keeps its next_counter unless the CSV's value is
  // higher (a counter never goes back).
  Result<CsvImportSummary> import_csv(const std::string& csv_path);

  Result<std::optional<SeRecord>> find(const SeLookup& lookup);
  Result<SeRecord> get_row(std::int64_t row);
  // Several rows at once, in the order given: one read transaction and one prepared
  // statement for all of them (prep reads a segment's SEs this way: about 2 us per row
  // against 25 us for get_row, which prepares its statement on every call). kNotFound
  // names the first missing row.
  Result<std::vector<SeRecord>> get_rows(std::span<const std::int64_t> rows);
  Result<std::size_t> count();

  // One transaction (BEGIN IMMEDIATE ... COMMIT, fsynced): for each lookup in order, finds
  // the SE, checks product / SCP, reserves its next counter value (several cards of one SE
  // get consecutive values) and records the ranges. Cards that cannot be served are
  // rejected alone with a reason; the others go on.
  Result<Reservation> reserve(const std::vector<SeLookup>& cards, const ReservationInfo& info);

  // A streamed run (`persoflow run`) reserves in steps under one reservation id:
  // open_reservation records the run (state reserved, no counters yet, committed), then
  // each reserve_more is one transaction like reserve() above, committed before any script
  // of its cards exists, recorded as the next batch of counter ranges. reserve_more refuses
  // a reservation that is no longer `reserved` or belongs to another product.
  Result<std::int64_t> open_reservation(const ReservationInfo& info);
  Result<Reservation> reserve_more(std::int64_t reservation_id, const std::vector<SeLookup>& cards,
                                   const ReservationInfo& info);

  Status mark_published(std::int64_t reservation_id, std::string_view output_digest_hex);
  Status mark_burnt(std::int64_t reservation_id);

  Result<std::optional<ReservationRecord>> reservation(std::int64_t id);
  Result<std::vector<ReservationRecord>> reservations();
  Result<std::vector<CounterRange>> ranges_of(std::int64_t reservation_id);
  Result<std::vector<CounterRange>> ranges_for_se(std::string_view se_id);

  // Memory: the page cache may grow to 256 MiB (open), so that a large transaction never
  // spills mid-way. A connection that only reads, or that works in bounded batches, sets
  // a smaller bound (limit_cache, KiB) or gives back the pages it holds between batches
  // (release_memory): its memory then does not grow with the registry or the run.
  Status limit_cache(std::int64_t kib);
  void release_memory();

  const std::string& path() const { return path_; }

 private:
  SeRegistry(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  // The database half of import_csv (se_registry.cpp): one transaction over validated rows.
  Result<CsvImportSummary> write_rows(const std::vector<RegistryCsvRow>& rows,
                                      std::string_view file_name);
  sqlite3* db_ = nullptr;
  std::string path_;
};

std::string_view reservation_state_name(ReservationState state);

}  // namespace persoflow::formats
