// The SE registry on SQLite (formats/se_registry.h, docs/registry.md): schema, lookups,
// counter reservations and their states. The CSV parser is in se_registry_csv.cpp.
#include "formats/se_registry.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <unordered_map>
#include <utility>

namespace persoflow::formats {
namespace {

// PRAGMA user_version of the schema below; a database with a higher one was written by a
// newer persoflow and is refused rather than misread.
constexpr int kSchemaVersion = 2;

// `next_counter` may reach max_counter + 1: that is how an exhausted key set is stored.
// counter_range rows are never deleted: they are the proof of which values are spent.
constexpr const char* kSchemaSql = R"sql(
CREATE TABLE se (
  row          INTEGER PRIMARY KEY,
  se_id        TEXT    NOT NULL UNIQUE,
  msi          TEXT    UNIQUE,
  iccid        TEXT    NOT NULL DEFAULT '',
  kdd          BLOB    NOT NULL CHECK (length(kdd) = 10),
  isd_aid      BLOB    NOT NULL CHECK (length(isd_aid) BETWEEN 5 AND 16),
  scp          INTEGER NOT NULL CHECK (scp IN (2, 3)),
  i            INTEGER NOT NULL CHECK (i BETWEEN 0 AND 255),
  kvn          INTEGER NOT NULL CHECK (kvn BETWEEN 0 AND 255),
  next_counter INTEGER NOT NULL CHECK (next_counter BETWEEN 0 AND 16777216),
  max_counter  INTEGER NOT NULL CHECK (max_counter BETWEEN 0 AND 16777215),
  product      TEXT    NOT NULL
);
CREATE TABLE reservation (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id        TEXT    NOT NULL,
  product       TEXT    NOT NULL,
  created_utc   TEXT    NOT NULL,
  state         TEXT    NOT NULL CHECK (state IN ('reserved', 'published', 'burnt')),
  counters      INTEGER NOT NULL DEFAULT 0,
  output_digest TEXT,
  operator      TEXT    NOT NULL DEFAULT '',
  source_digest TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE counter_range (
  reservation_id INTEGER NOT NULL REFERENCES reservation (id),
  batch          INTEGER NOT NULL DEFAULT 0,
  se_row         INTEGER NOT NULL REFERENCES se (row),
  kvn            INTEGER NOT NULL,
  first          INTEGER NOT NULL,
  last           INTEGER NOT NULL,
  CHECK (first <= last),
  PRIMARY KEY (reservation_id, batch, se_row)
) WITHOUT ROWID;
CREATE INDEX counter_range_by_se ON counter_range (se_row, first);
PRAGMA user_version = 2;
)sql";

// Version 1 -> 2: counter_range gains `batch` (a streamed run reserves in several
// transactions under one reservation id, one batch each); existing rows are batch 0.
constexpr const char* kMigrateV1Sql = R"sql(
CREATE TABLE counter_range_v2 (
  reservation_id INTEGER NOT NULL REFERENCES reservation (id),
  batch          INTEGER NOT NULL DEFAULT 0,
  se_row         INTEGER NOT NULL REFERENCES se (row),
  kvn            INTEGER NOT NULL,
  first          INTEGER NOT NULL,
  last           INTEGER NOT NULL,
  CHECK (first <= last),
  PRIMARY KEY (reservation_id, batch, se_row)
) WITHOUT ROWID;
INSERT INTO counter_range_v2 (reservation_id, batch, se_row, kvn, first, last)
  SELECT reservation_id, 0, se_row, kvn, first, last FROM counter_range;
DROP TABLE counter_range;
ALTER TABLE counter_range_v2 RENAME TO counter_range;
CREATE INDEX counter_range_by_se ON counter_range (se_row, first);
PRAGMA user_version = 2;
)sql";

constexpr const char* kSeColumns =
    "row, se_id, msi, iccid, kdd, isd_aid, scp, i, kvn, next_counter, max_counter, product";

// A prepared statement, finalized when it goes.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// SQLite's own message with the registry path and what was being done. A file that is not
// a database is bad input (kParse); a locked one usually means another run holds it.
Error db_error(sqlite3* db, const std::string& path, std::string_view what, int rc) {
  ErrorCode code = ErrorCode::kIo;
  const int primary = rc & 0xFF;
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) code = ErrorCode::kParse;
  if (primary == SQLITE_CONSTRAINT) code = ErrorCode::kInvalidArgument;
  std::string message = "SE registry " + path + ": " + std::string(what) + ": " +
                        (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (primary == SQLITE_BUSY)
    message += " (another process holds the registry; retry when it is done)";
  return Error(code, std::move(message));
}

class Db {
 public:
  Db(sqlite3* db, const std::string& path) : db_(db), path_(path) {}

  Result<Stmt> prepare(const char* sql) const {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v2(db_, sql, -1, &s, nullptr);
    if (rc != SQLITE_OK) return db_error(db_, path_, "preparing a statement", rc);
    return Stmt(s);
  }

  Status exec(const char* sql, std::string_view what) const {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return db_error(db_, path_, what, rc);
    return ok_status();
  }

  // One step of a statement: true for a row, false when done.
  Result<bool> step(const Stmt& s, std::string_view what) const {
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_error(db_, path_, what, rc);
  }

  // Runs a statement that returns no row, then resets it for the next use.
  Status run(const Stmt& s, std::string_view what) const {
    const int rc = sqlite3_step(s.get());
    sqlite3_reset(s.get());
    sqlite3_clear_bindings(s.get());
    if (rc != SQLITE_DONE) return db_error(db_, path_, what, rc);
    return ok_status();
  }

  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_;
  const std::string& path_;
};

void bind_text(const Stmt& s, int index, std::string_view text) {
  sqlite3_bind_text(s.get(), index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

// An empty optional text (msi) is stored as NULL so that UNIQUE only applies to real values.
void bind_text_or_null(const Stmt& s, int index, std::string_view text) {
  if (text.empty()) {
    sqlite3_bind_null(s.get(), index);
  } else {
    bind_text(s, index, text);
  }
}

void bind_blob(const Stmt& s, int index, const Bytes& bytes) {
  sqlite3_bind_blob(s.get(), index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
}

void bind_int(const Stmt& s, int index, std::int64_t value) {
  sqlite3_bind_int64(s.get(), index, value);
}

std::string column_text(const Stmt& s, int index) {
  const unsigned char* p = sqlite3_column_text(s.get(), index);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<std::size_t>(sqlite3_column_bytes(s.get(), index)));
}

Bytes column_blob(const Stmt& s, int index) {
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s.get(), index));
  const auto n = static_cast<std::size_t>(sqlite3_column_bytes(s.get(), index));
  return p == nullptr ? Bytes{} : Bytes(p, p + n);
}

std::int64_t column_int(const Stmt& s, int index) { return sqlite3_column_int64(s.get(), index); }

// Reads a row selected with kSeColumns; the table's CHECKs bound every value.
SeRecord se_from_row(const Stmt& s) {
  SeRecord r;
  r.se_id = column_text(s, 1);
  r.msi = column_text(s, 2);
  r.iccid = column_text(s, 3);
  r.kdd = column_blob(s, 4);
  r.isd_aid = column_blob(s, 5);
  r.scp = static_cast<std::uint8_t>(column_int(s, 6));
  r.i = static_cast<std::uint8_t>(column_int(s, 7));
  r.kvn = static_cast<std::uint8_t>(column_int(s, 8));
  r.next_counter = static_cast<std::uint32_t>(column_int(s, 9));
  r.max_counter = static_cast<std::uint32_t>(column_int(s, 10));
  r.product = column_text(s, 11);
  return r;
}

// BEGIN IMMEDIATE takes the write lock up front, so two runs reserving at once are
// serialized instead of both reading the same next_counter. Rolled back unless committed.
class Transaction {
 public:
  explicit Transaction(const Db& db) : db_(db) {}
  ~Transaction() {
    if (open_) sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status begin() {
    PF_TRY(db_.exec("BEGIN IMMEDIATE", "starting a write transaction"));
    open_ = true;
    return ok_status();
  }
  Status commit() {
    PF_TRY(db_.exec("COMMIT", "committing"));
    open_ = false;
    return ok_status();
  }

 private:
  const Db& db_;
  bool open_ = false;
};

std::string counter_hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%06X", v);
  return buf;
}

Result<ReservationState> state_from_name(std::string_view name, const std::string& path) {
  if (name == "reserved") return ReservationState::kReserved;
  if (name == "published") return ReservationState::kPublished;
  if (name == "burnt") return ReservationState::kBurnt;
  return Error(ErrorCode::kParse,
               "SE registry " + path + ": unknown reservation state '" + std::string(name) + "'");
}

bool is_hex_digest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

// A fresh file gets the schema; an existing one must carry our user_version.
Status apply_schema(const Db& db) {
  PF_ASSIGN_OR_RETURN(Stmt version, db.prepare("PRAGMA user_version"));
  PF_TRY(db.step(version, "reading the schema version"));
  const std::int64_t have = column_int(version, 0);
  sqlite3_reset(version.get());  // an open statement would lock the tables a migration drops
  if (have == kSchemaVersion) return ok_status();
  if (have > kSchemaVersion) {
    return Error(ErrorCode::kUnsupported, "SE registry " + db.path() + ": schema version " +
                                              std::to_string(have) +
                                              " is newer than this persoflow understands (" +
                                              std::to_string(kSchemaVersion) + ")");
  }
  if (have == 1) {
    Transaction txn(db);
    PF_TRY(txn.begin());
    PF_TRY(db.exec(kMigrateV1Sql, "upgrading the schema from version 1 to 2"));
    return txn.commit();
  }
  PF_ASSIGN_OR_RETURN(Stmt tables, db.prepare("SELECT count(*) FROM sqlite_master"));
  PF_TRY(db.step(tables, "reading the schema"));
  if (column_int(tables, 0) != 0) {
    return Error(ErrorCode::kParse, "SE registry " + db.path() +
                                        ": an SQLite database, but not a persoflow SE registry "
                                        "(tables present, user_version 0)");
  }
  Transaction txn(db);
  PF_TRY(txn.begin());
  PF_TRY(db.exec(kSchemaSql, "creating the schema"));
  return txn.commit();
}

}  // namespace

Status SeRegistry::limit_cache(std::int64_t kib) {
  const Db db(db_, path_);
  const std::string sql = "PRAGMA cache_size=-" + std::to_string(kib);
  return db.exec(sql.c_str(), "setting the cache size");
}

void SeRegistry::release_memory() { sqlite3_db_release_memory(db_); }

std::string_view reservation_state_name(ReservationState state) {
  switch (state) {
    case ReservationState::kReserved:
      return "reserved";
    case ReservationState::kPublished:
      return "published";
    case ReservationState::kBurnt:
      return "burnt";
  }
  return "unknown";
}

Result<SeRegistry> SeRegistry::open(const std::string& path, bool create) {
  // No allocation statistics: they take a global mutex on every SQLite allocation, and
  // persoflow never reads them. Possible only before SQLite initializes; if something else
  // in the process initialized it first, the statistics stay on (slower, not wrong).
  static const int memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)memstatus_off;
  sqlite3* raw = nullptr;
  // A connection is used by one thread at a time (a SeRegistry is not shared between
  // threads): no per-connection mutex around every sqlite3_* call (SQLite's multi-thread
  // mode, https://sqlite.org/threadsafe.html).
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SeRegistry registry(raw, path);  // closes `raw` on every early return below
  if (rc != SQLITE_OK) {
    if (!create && (rc & 0xFF) == SQLITE_CANTOPEN) {
      return Error(ErrorCode::kNotFound,
                   "SE registry " + path + " does not exist (or cannot be opened read-write)");
    }
    return db_error(raw, path, "opening", rc);
  }
  const Db db(raw, registry.path_);
  sqlite3_busy_timeout(raw, 10000);
  sqlite3_extended_result_codes(raw, 1);
  // A rollback journal (not WAL) with full fsyncs: one self-contained file that a copy or
  // .backup captures whole, and a COMMIT that returns only once the reservation is on disk.
  PF_TRY(db.exec("PRAGMA journal_mode=DELETE", "setting the journal mode"));
  PF_TRY(db.exec("PRAGMA synchronous=FULL", "setting synchronous=FULL"));
  PF_TRY(db.exec("PRAGMA foreign_keys=ON", "enabling foreign keys"));
  // A page cache large enough that a million-card reservation or import never spills
  // mid-transaction: with a rollback journal each spill costs a journal fsync. SQLite
  // allocates the pages only as they are used.
  PF_TRY(db.exec("PRAGMA cache_size=-262144", "setting the cache size"));
  PF_TRY(apply_schema(db));
  return registry;
}

SeRegistry::SeRegistry(SeRegistry&& o) noexcept
    : db_(std::exchange(o.db_, nullptr)), path_(std::move(o.path_)) {}

SeRegistry& SeRegistry::operator=(SeRegistry&& o) noexcept {
  if (this != &o) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(o.db_, nullptr);
    path_ = std::move(o.path_);
  }
  return *this;
}

SeRegistry::~SeRegistry() { sqlite3_close_v2(db_); }

Result<std::optional<SeRecord>> SeRegistry::find(const SeLookup& lookup) {
  const Db db(db_, path_);
  const std::string sql = std::string("SELECT ") + kSeColumns + " FROM se WHERE " +
                          (lookup.kind == SeLookupKind::kMsi ? "msi" : "se_id") + " = ?";
  PF_ASSIGN_OR_RETURN(Stmt s, db.prepare(sql.c_str()));
  bind_text(s, 1, lookup.key);
  PF_ASSIGN_OR_RETURN(bool found, db.step(s, "looking up an SE"));
  if (!found) return std::optional<SeRecord>{};
  return std::optional<SeRecord>(se_from_row(s));
}

Result<SeRecord> SeRegistry::get_row(std::int64_t row) {
  const Db db(db_, path_);
  const std::string sql = std::string("SELECT ") + kSeColumns + " FROM se WHERE row = ?";
  PF_ASSIGN_OR_RETURN(Stmt s, db.prepare(sql.c_str()));
  bind_int(s, 1, row);
  PF_ASSIGN_OR_RETURN(bool found, db.step(s, "reading an SE row"));
  if (!found) {
    return Error(ErrorCode::kNotFound,
                 "SE registry " + path_ + ": no SE row " + std::to_string(row));
  }
  return se_from_row(s);
}

Result<std::vector<SeRecord>> SeRegistry::get_rows(std::span<const std::int64_t> rows) {
  const Db db(db_, path_);
  std::vector<SeRecord> out;
  if (rows.empty()) return out;
  out.reserve(rows.size());
  const std::string sql = std::string("SELECT ") + kSeColumns + " FROM se WHERE row = ?";
  PF_ASSIGN_OR_RETURN(Stmt s, db.prepare(sql.c_str()));
  // One read transaction: without it every step takes and drops the shared lock (and
  // checks the file for changes) again.
  PF_TRY(db.exec("BEGIN", "starting a read transaction"));
  for (const std::int64_t row : rows) {
    bind_int(s, 1, row);
    auto found = db.step(s, "reading an SE row");
    if (found && *found) out.push_back(se_from_row(s));
    sqlite3_reset(s.get());
    if (!found || !*found) {
      (void)db.exec("ROLLBACK", "ending a read transaction");
      if (!found) return found.error();
      return Error(ErrorCode::kNotFound, "SE registry " + path_ + ": no SE row " + std::to_string(row));
    }
  }
  PF_TRY(db.exec("COMMIT", "ending a read transaction"));
  return out;
}

Result<std::size_t> SeRegistry::count() {
  const Db db(db_, path_);
  PF_ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT count(*) FROM se"));
  PF_TRY(db.step(s, "counting SEs"));
  return static_cast<std::size_t>(column_int(s, 0));
}

namespace {

// What reserve() keeps per SE while the transaction runs: lookups hit the database once
// per SE, counters advance in memory, and the UPDATEs are written once per SE at the end.
struct SeState {
  std::int64_t row = 0;
  SeRecord record;          // the row as the transaction read it
  std::uint32_t first = 0;  // next_counter when the transaction began
  std::uint32_t next = 0;
  std::uint32_t max = 0;
  std::size_t last_card = static_cast<std::size_t>(-1);  // the last card of the batch reserved on it
};

constexpr std::size_t kUnknown = static_cast<std::size_t>(-1);
// From a row selected with kSeColumns.
SeState state_from(const Stmt& s) {
  SeState st;
  st.row = column_int(s, 0);
  st.record = se_from_row(s);
  st.first = st.next = st.record.next_counter;
  st.max = st.record.max_counter;
  return st;
}

// One counter_range row per SE this reservation advanced, then every next_counter from
// those rows in a single UPDATE ... FROM. Multi-row INSERTs and one UPDATE statement keep
// a million-SE reservation to a few seconds: the per-statement cost of SQLite, not the
// B-tree work, dominates when each row is written by its own statement.
Status write_ranges(const Db& db, std::int64_t reservation_id, std::int64_t batch,
                    const std::vector<SeState>& states) {
  constexpr std::size_t kBatch = 150;  // rows per INSERT: 900 parameters, below the old 999 limit
  auto insert_sql = [](std::size_t rows) {
    std::string sql =
        "INSERT INTO counter_range (reservation_id, batch, se_row, kvn, first, last) VALUES ";
    for (std::size_t k = 0; k < rows; ++k) sql += k == 0 ? "(?,?,?,?,?,?)" : ",(?,?,?,?,?,?)";
    return sql;
  };
  PF_ASSIGN_OR_RETURN(Stmt full, db.prepare(insert_sql(kBatch).c_str()));
  std::vector<const SeState*> pending;
  pending.reserve(kBatch);
  auto flush = [&](const Stmt& s) -> Status {
    int p = 1;
    for (const SeState* st : pending) {
      bind_int(s, p++, reservation_id);
      bind_int(s, p++, batch);
      bind_int(s, p++, st->row);
      bind_int(s, p++, st->record.kvn);
      bind_int(s, p++, st->first);
      bind_int(s, p++, st->next - 1);
    }
    pending.clear();
    return db.run(s, "recording counter ranges");
  };
  for (const SeState& st : states) {
    if (st.next == st.first) continue;
    pending.push_back(&st);
    if (pending.size() == kBatch) PF_TRY(flush(full));
  }
  if (!pending.empty()) {
    PF_ASSIGN_OR_RETURN(Stmt tail, db.prepare(insert_sql(pending.size()).c_str()));
    PF_TRY(flush(tail));
  }
  PF_ASSIGN_OR_RETURN(Stmt advance,
                      db.prepare("UPDATE se SET next_counter = r.last + 1 FROM counter_range r "
                                 "WHERE r.reservation_id = ? AND r.batch = ? AND se.row = r.se_row"));
  bind_int(advance, 1, reservation_id);
  bind_int(advance, 2, batch);
  return db.run(advance, "advancing counters");
}

}  // namespace

namespace {

// The body of reserve() and reserve_more(), inside their transaction: for each lookup in
// order, the SE, the checks, the next counter value; then the ranges of `batch`, every
// SE's next_counter, and the reservation's size.
Status reserve_cards(const Db& db, std::int64_t id, std::int64_t batch,
                     const std::vector<SeLookup>& cards, const ReservationInfo& info,
                     Reservation& out) {
  PF_ASSIGN_OR_RETURN(Stmt by_id, db.prepare((std::string("SELECT ") + kSeColumns + " FROM se WHERE se_id = ?").c_str()));
  PF_ASSIGN_OR_RETURN(Stmt by_msi, db.prepare((std::string("SELECT ") + kSeColumns + " FROM se WHERE msi = ?").c_str()));
  std::vector<SeState> states;
  // Keyed by the lookups' own strings (`cards` outlives this function): no copy per card.
  std::unordered_map<std::string_view, std::size_t> id_index;   // se id -> states index / kUnknown
  std::unordered_map<std::string_view, std::size_t> msi_index;  // msi -> states index / kUnknown
  std::unordered_map<std::int64_t, std::size_t> row_index;     // one state per SE, however found
  states.reserve(cards.size());
  (cards.empty() || cards.front().kind == SeLookupKind::kSeId ? id_index : msi_index).reserve(cards.size());
  row_index.reserve(cards.size());

  auto resolve = [&](const SeLookup& lookup) -> Result<std::size_t> {
    const bool msi = lookup.kind == SeLookupKind::kMsi;
    auto& index = msi ? msi_index : id_index;
    if (auto it = index.find(lookup.key); it != index.end()) return it->second;
    const Stmt& s = msi ? by_msi : by_id;
    bind_text(s, 1, lookup.key);
    auto found = db.step(s, "looking up an SE");
    std::size_t at = kUnknown;
    if (found && *found) {
      const std::int64_t row = column_int(s, 0);
      if (auto r = row_index.find(row); r != row_index.end()) {
        at = r->second;
      } else {
        at = states.size();
        states.push_back(state_from(s));
        row_index.emplace(row, at);
      }
    }
    sqlite3_reset(s.get());
    if (!found) return std::move(found).error();
    index.emplace(lookup.key, at);
    return at;
  };

  const std::uint32_t per_card = info.values_per_card;
  if (per_card == 0 || per_card > 64) {
    return Error(ErrorCode::kInvalidArgument, "values per card " + std::to_string(per_card) + " (1..64)");
  }
  out.cards.reserve(cards.size());
  std::vector<std::size_t> card_state;  // per card: its SE's states index (kUnknown when not reserved)
  card_state.reserve(cards.size());
  for (const SeLookup& lookup : cards) {
    CardReservation card;
    card_state.push_back(kUnknown);
    PF_ASSIGN_OR_RETURN(std::size_t at, resolve(lookup));
    if (at == kUnknown) {
      card.reject_reason =
          (lookup.kind == SeLookupKind::kMsi ? "unknown MSI '" : "unknown SE id '") + lookup.key +
          "'";
      out.cards.push_back(std::move(card));
      continue;
    }
    SeState& st = states[at];
    card.se_row = st.row;
    if (!info.product.empty() && st.record.product != info.product) {
      card.reject_reason = "SE '" + st.record.se_id + "' belongs to product '" + st.record.product + "', not '" +
                           info.product + "'";
    } else if (info.scp != 0 && st.record.scp != info.scp) {
      card.reject_reason = "SE '" + st.record.se_id + "' uses SCP0" + std::to_string(st.record.scp) +
                           ", the run prepares SCP0" + std::to_string(info.scp);
    } else if (st.next > st.max || st.max - st.next < per_card - 1) {
      card.reject_reason = "counter exhausted: SE '" + st.record.se_id + "' next value " +
                           counter_hex(st.next) +
                           (per_card > 1 ? " and the " + std::to_string(per_card - 1) + " after it go" : " is") +
                           " beyond max " + counter_hex(st.max);
    } else {
      card.ok = true;
      card.counter = st.next;
      card_state.back() = at;
      st.last_card = card_state.size() - 1;
      st.next += per_card;
      ++out.reserved;
    }
    out.cards.push_back(std::move(card));
  }

  PF_TRY(write_ranges(db, id, batch, states));
  // Each reserved card gets its SE's row as read: the last card of an SE takes the row
  // itself, any earlier one a copy (most SEs have one card per batch).
  for (std::size_t c = 0; c < card_state.size(); ++c) {
    const std::size_t at = card_state[c];
    if (at == kUnknown) continue;
    if (c == states[at].last_card) {
      out.cards[c].se = std::move(states[at].record);  // no card after this one reads it
    } else {
      out.cards[c].se = states[at].record;
    }
  }
  PF_ASSIGN_OR_RETURN(Stmt set_count,
                      db.prepare("UPDATE reservation SET counters = counters + ? WHERE id = ?"));
  bind_int(set_count, 1, static_cast<std::int64_t>(out.reserved) * per_card);
  bind_int(set_count, 2, id);
  return db.run(set_count, "recording the reservation's size");
}

Result<std::int64_t> insert_reservation(const Db& db, const ReservationInfo& info) {
  PF_ASSIGN_OR_RETURN(
      Stmt insert_reservation,
      db.prepare("INSERT INTO reservation (run_id, product, created_utc, state, counters, "
                 "operator, source_digest) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), "
                 "'reserved', 0, ?, ?)"));
  bind_text(insert_reservation, 1, info.run_id);
  bind_text(insert_reservation, 2, info.product);
  bind_text(insert_reservation, 3, info.operator_name);
  bind_text(insert_reservation, 4, info.source_digest);
  PF_TRY(db.run(insert_reservation, "recording the reservation"));
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db.raw()));
}

}  // namespace

Result<Reservation> SeRegistry::reserve(const std::vector<SeLookup>& cards,
                                        const ReservationInfo& info) {
  const Db db(db_, path_);
  Transaction txn(db);
  PF_TRY(txn.begin());
  Reservation out;
  PF_ASSIGN_OR_RETURN(out.id, insert_reservation(db, info));
  PF_TRY(reserve_cards(db, out.id, 0, cards, info, out));
  PF_TRY(txn.commit());
  return out;
}

Result<std::int64_t> SeRegistry::open_reservation(const ReservationInfo& info) {
  const Db db(db_, path_);
  Transaction txn(db);
  PF_TRY(txn.begin());
  PF_ASSIGN_OR_RETURN(const std::int64_t id, insert_reservation(db, info));
  PF_TRY(txn.commit());
  return id;
}

Result<Reservation> SeRegistry::reserve_more(std::int64_t reservation_id,
                                             const std::vector<SeLookup>& cards,
                                             const ReservationInfo& info) {
  const Db db(db_, path_);
  Transaction txn(db);
  PF_TRY(txn.begin());
  PF_ASSIGN_OR_RETURN(Stmt get, db.prepare("SELECT state, product, (SELECT coalesce(max(batch), 0) + 1 "
                                           "FROM counter_range WHERE reservation_id = ?1) "
                                           "FROM reservation WHERE id = ?1"));
  bind_int(get, 1, reservation_id);
  PF_ASSIGN_OR_RETURN(bool found, db.step(get, "reading a reservation"));
  const std::string where = "SE registry " + path_ + ": reservation " + std::to_string(reservation_id);
  if (!found) return Error(ErrorCode::kNotFound, where + " does not exist");
  PF_ASSIGN_OR_RETURN(ReservationState state, state_from_name(column_text(get, 0), path_));
  if (state != ReservationState::kReserved) {
    return Error(ErrorCode::kInvalidArgument, where + " is " + std::string(reservation_state_name(state)) +
                                                  "; no more counters can be added to it");
  }
  if (column_text(get, 1) != info.product) {
    return Error(ErrorCode::kInvalidArgument, where + " is for product '" + column_text(get, 1) + "', not '" +
                                                  info.product + "'");
  }
  const std::int64_t batch = column_int(get, 2);
  sqlite3_reset(get.get());
  Reservation out;
  out.id = reservation_id;
  out.batch = batch;
  PF_TRY(reserve_cards(db, reservation_id, batch, cards, info, out));
  PF_TRY(txn.commit());
  return out;
}

namespace {

// Moves a reservation from `reserved` to `to`; repeating the same move is harmless, any
// other transition (burning a published one, publishing a burnt one) is refused.
Status change_state(const Db& db, std::int64_t id, ReservationState to, std::string_view digest) {
  Transaction txn(db);
  PF_TRY(txn.begin());
  PF_ASSIGN_OR_RETURN(Stmt get,
                      db.prepare("SELECT state, output_digest FROM reservation WHERE id = ?"));
  bind_int(get, 1, id);
  PF_ASSIGN_OR_RETURN(bool found, db.step(get, "reading a reservation"));
  const std::string where = "SE registry " + db.path() + ": reservation " + std::to_string(id);
  if (!found) return Error(ErrorCode::kNotFound, where + " does not exist");
  PF_ASSIGN_OR_RETURN(ReservationState state, state_from_name(column_text(get, 0), db.path()));
  const std::string old_digest = column_text(get, 1);
  if (state == to) {
    if (to == ReservationState::kPublished && old_digest != digest) {
      return Error(ErrorCode::kAlreadyExists,
                   where + " is already published with another output digest (" + old_digest + ")");
    }
    return ok_status();
  }
  if (state != ReservationState::kReserved) {
    return Error(ErrorCode::kInvalidArgument,
                 where + " is " + std::string(reservation_state_name(state)) +
                     "; it cannot become " + std::string(reservation_state_name(to)));
  }
  PF_ASSIGN_OR_RETURN(
      Stmt set, db.prepare("UPDATE reservation SET state = ?, output_digest = ? WHERE id = ?"));
  bind_text(set, 1, reservation_state_name(to));
  bind_text_or_null(set, 2, digest);
  bind_int(set, 3, id);
  PF_TRY(db.run(set, "changing a reservation's state"));
  return txn.commit();
}

}  // namespace

Status SeRegistry::mark_published(std::int64_t reservation_id, std::string_view output_digest_hex) {
  if (!is_hex_digest(output_digest_hex)) {
    return Error(ErrorCode::kInvalidArgument,
                 "SE registry " + path_ + ": reservation " + std::to_string(reservation_id) +
                     ": the output digest must be 64 hex digits (SHA-256)");
  }
  return change_state(Db(db_, path_), reservation_id, ReservationState::kPublished,
                      output_digest_hex);
}

Status SeRegistry::mark_burnt(std::int64_t reservation_id) {
  return change_state(Db(db_, path_), reservation_id, ReservationState::kBurnt, {});
}

namespace {

constexpr const char* kReservationColumns =
    "id, run_id, product, created_utc, state, counters, output_digest FROM reservation";

Result<ReservationRecord> reservation_from_row(const Stmt& s, const std::string& path) {
  ReservationRecord r;
  r.id = column_int(s, 0);
  r.run_id = column_text(s, 1);
  r.product = column_text(s, 2);
  r.created_utc = column_text(s, 3);
  PF_ASSIGN_OR_RETURN(r.state, state_from_name(column_text(s, 4), path));
  r.counters = static_cast<std::size_t>(column_int(s, 5));
  r.output_digest = column_text(s, 6);
  return r;
}

Result<std::vector<CounterRange>> read_ranges(const Db& db, const char* where_clause,
                                              const std::function<void(const Stmt&)>& bind) {
  const std::string sql = std::string(
                              "SELECT r.reservation_id, s.se_id, r.kvn, r.first, r.last, r.batch "
                              "FROM counter_range r JOIN se s ON s.row = r.se_row WHERE ") +
                          where_clause + " ORDER BY r.reservation_id, s.se_id, r.first";
  PF_ASSIGN_OR_RETURN(Stmt s, db.prepare(sql.c_str()));
  bind(s);
  std::vector<CounterRange> out;
  while (true) {
    PF_ASSIGN_OR_RETURN(bool row, db.step(s, "reading counter ranges"));
    if (!row) break;
    CounterRange r;
    r.reservation_id = column_int(s, 0);
    r.se_id = column_text(s, 1);
    r.kvn = static_cast<std::uint8_t>(column_int(s, 2));
    r.first = static_cast<std::uint32_t>(column_int(s, 3));
    r.last = static_cast<std::uint32_t>(column_int(s, 4));
    r.batch = column_int(s, 5);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

Result<std::optional<ReservationRecord>> SeRegistry::reservation(std::int64_t id) {
  const Db db(db_, path_);
  PF_ASSIGN_OR_RETURN(
      Stmt s, db.prepare((std::string("SELECT ") + kReservationColumns + " WHERE id = ?").c_str()));
  bind_int(s, 1, id);
  PF_ASSIGN_OR_RETURN(bool found, db.step(s, "reading a reservation"));
  if (!found) return std::optional<ReservationRecord>{};
  PF_ASSIGN_OR_RETURN(ReservationRecord r, reservation_from_row(s, path_));
  return std::optional<ReservationRecord>(std::move(r));
}

Result<std::vector<ReservationRecord>> SeRegistry::reservations() {
  const Db db(db_, path_);
  PF_ASSIGN_OR_RETURN(
      Stmt s, db.prepare((std::string("SELECT ") + kReservationColumns + " ORDER BY id").c_str()));
  std::vector<ReservationRecord> out;
  while (true) {
    PF_ASSIGN_OR_RETURN(bool row, db.step(s, "reading reservations"));
    if (!row) break;
    PF_ASSIGN_OR_RETURN(ReservationRecord r, reservation_from_row(s, path_));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<CounterRange>> SeRegistry::ranges_of(std::int64_t reservation_id) {
  return read_ranges(Db(db_, path_), "r.reservation_id = ?",
                     [&](const Stmt& s) { bind_int(s, 1, reservation_id); });
}

Result<std::vector<CounterRange>> SeRegistry::ranges_for_se(std::string_view se_id) {
  return read_ranges(Db(db_, path_), "s.se_id = ?", [&](const Stmt& s) { bind_text(s, 1, se_id); });
}

Result<CsvImportSummary> SeRegistry::write_rows(const std::vector<RegistryCsvRow>& rows,
                                                std::string_view file_name) {
  const Db db(db_, path_);
  Transaction txn(db);
  PF_TRY(txn.begin());
  PF_ASSIGN_OR_RETURN(
      Stmt get,
      db.prepare((std::string("SELECT ") + kSeColumns + " FROM se WHERE se_id = ?").c_str()));
  PF_ASSIGN_OR_RETURN(Stmt msi_owner,
                      db.prepare("SELECT se_id FROM se WHERE msi = ? AND se_id <> ?"));
  PF_ASSIGN_OR_RETURN(
      Stmt insert,
      db.prepare("INSERT INTO se (se_id, msi, iccid, kdd, isd_aid, scp, i, kvn, next_counter, "
                 "max_counter, product) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  PF_ASSIGN_OR_RETURN(
      Stmt update,
      db.prepare("UPDATE se SET msi = ?2, iccid = ?3, kdd = ?4, isd_aid = ?5, scp = ?6, i = ?7, "
                 "kvn = ?8, next_counter = ?9, max_counter = ?10, product = ?11 WHERE se_id = ?1"));
  CsvImportSummary summary;
  for (const RegistryCsvRow& row : rows) {
    SeRecord want = row.record;
    const std::string where = std::string(file_name) + ":" + std::to_string(row.line);
    if (!want.msi.empty()) {
      bind_text(msi_owner, 1, want.msi);
      bind_text(msi_owner, 2, want.se_id);
      auto owned = db.step(msi_owner, "checking an MSI");
      const std::string owner = owned && *owned ? column_text(msi_owner, 0) : std::string();
      sqlite3_reset(msi_owner.get());
      if (!owned) return std::move(owned).error();
      if (*owned) {
        return Error(ErrorCode::kParse, where + ": column msi: '" + want.msi +
                                            "' already belongs to SE '" + owner +
                                            "' in the registry");
      }
    }
    bind_text(get, 1, want.se_id);
    auto found = db.step(get, "reading an SE");
    std::optional<SeRecord> have;
    if (found && *found) have = se_from_row(get);
    sqlite3_reset(get.get());
    if (!found) return std::move(found).error();
    if (have) {
      // A counter never goes back: a CSV exported before the last run must not hand out
      // values that run already used.
      want.next_counter = std::max(want.next_counter, have->next_counter);
      const bool same = have->msi == want.msi && have->iccid == want.iccid &&
                        have->kdd == want.kdd && have->isd_aid == want.isd_aid &&
                        have->scp == want.scp && have->i == want.i && have->kvn == want.kvn &&
                        have->next_counter == want.next_counter &&
                        have->max_counter == want.max_counter && have->product == want.product;
      if (same) {
        ++summary.unchanged;
        continue;
      }
    }
    const Stmt& s = have ? update : insert;
    bind_text(s, 1, want.se_id);
    bind_text_or_null(s, 2, want.msi);
    bind_text(s, 3, want.iccid);
    bind_blob(s, 4, want.kdd);
    bind_blob(s, 5, want.isd_aid);
    bind_int(s, 6, want.scp);
    bind_int(s, 7, want.i);
    bind_int(s, 8, want.kvn);
    bind_int(s, 9, want.next_counter);
    bind_int(s, 10, want.max_counter);
    bind_text(s, 11, want.product);
    Status written = db.run(s, have ? "updating an SE" : "inserting an SE");
    if (!written) return Error(written.error().code(), where + ": " + written.error().message());
    ++(have ? summary.updated : summary.inserted);
  }
  PF_TRY(txn.commit());
  return summary;
}

}  // namespace persoflow::formats
