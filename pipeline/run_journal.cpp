#include "pipeline/run_journal.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <utility>

#include "formats/sha256_digest.h"

namespace persoflow::pipeline {
namespace {

namespace fs = std::filesystem;

Error io_error(const std::string& path, const std::string& what, int err) {
  return Error(ErrorCode::kIo, path + ": " + what + ": " + std::strerror(err));
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error(dir, "opening the directory to fsync it", errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error(dir, "fsync of the directory", err);
  return ok_status();
}

Status write_all(int fd, std::span<const std::uint8_t> bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(path, "write", errno);
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  auto d = formats::sha256(bytes);
  if (!d) return {};
  return to_hex(Bytes(d->begin(), d->end()));
}

std::span<const std::uint8_t> as_span(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// A record line: "<length> <sha256 of payload, hex> <payload>\n", the payload a JSON
// object on one line.
std::string encode_record(const std::string& payload) {
  return std::to_string(payload.size()) + " " + sha256_hex(as_span(payload)) + " " + payload + "\n";
}

struct Parsed {
  std::vector<nlohmann::json> records;
  std::uint64_t intact_end = 0;  // where the torn tail (if any) starts
};

Result<Parsed> parse_journal(const std::string& text, const std::string& path) {
  Parsed out;
  std::size_t p = 0;
  while (p < text.size()) {
    const std::size_t start = p;
    // Whether the bad record at `start` is the last thing in the file: a torn append.
    auto bad = [&](std::size_t declared_end, const std::string& why) -> Result<Parsed> {
      const std::size_t nl = text.find('\n', start);
      const bool torn = nl == std::string::npos || declared_end >= text.size() ||
                        (declared_end != 0 && declared_end + 1 >= text.size());
      if (torn) {
        out.intact_end = start;
        return std::move(out);
      }
      return Error(ErrorCode::kIntegrity, path + ": offset " + std::to_string(start) + ": record " +
                                              std::to_string(out.records.size() + 1) + ": " + why +
                                              " (the journal is damaged before its last record)");
    };
    std::size_t q = p;
    while (q < text.size() && q - p < 10 && text[q] >= '0' && text[q] <= '9') ++q;
    if (q == p || q >= text.size() || text[q] != ' ') return bad(0, "malformed length");
    const std::uint64_t length = std::stoull(text.substr(p, q - p));
    const std::size_t hash_at = q + 1;
    const std::size_t payload_at = hash_at + 65;
    const std::size_t end = payload_at + length;  // the newline
    if (end >= text.size()) return bad(end, "record runs past the end of the file");
    if (text[payload_at - 1] != ' ' || text[end] != '\n') return bad(end, "malformed record framing");
    const std::string payload = text.substr(payload_at, length);
    if (sha256_hex(as_span(payload)) != text.substr(hash_at, 64)) return bad(end, "SHA-256 does not match");
    nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("record") || !j["record"].is_string()) {
      return bad(end, "not a journal record");
    }
    out.records.push_back(std::move(j));
    p = end + 1;
  }
  out.intact_end = p;
  return out;
}

Result<std::string> read_whole(int fd, const std::string& path) {
  std::string text;
  char buf[65536];
  if (::lseek(fd, 0, SEEK_SET) < 0) return io_error(path, "seek", errno);
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(path, "read", errno);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

bool ended(const std::vector<nlohmann::json>& records) {
  for (const auto& r : records) {
    if (r["record"] == "finished" || r["record"] == "failed") return true;
  }
  return false;
}

Status lock_journal(int fd, const std::string& path) {
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error(ErrorCode::kAlreadyExists, path + ": in use by another persoflow process");
    }
    return io_error(path, "flock", errno);
  }
  return ok_status();
}

}  // namespace

RunJournal::RunJournal(RunJournal&& other) noexcept
    : dir_(std::move(other.dir_)),
      spool_name_(std::move(other.spool_name_)),
      fd_(std::exchange(other.fd_, -1)),
      spool_fd_(std::exchange(other.spool_fd_, -1)),
      spool_size_(other.spool_size_),
      records_(std::move(other.records_)) {}

RunJournal& RunJournal::operator=(RunJournal&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    if (spool_fd_ >= 0) ::close(spool_fd_);
    dir_ = std::move(other.dir_);
    spool_name_ = std::move(other.spool_name_);
    fd_ = std::exchange(other.fd_, -1);
    spool_fd_ = std::exchange(other.spool_fd_, -1);
    spool_size_ = other.spool_size_;
    records_ = std::move(other.records_);
  }
  return *this;
}

RunJournal::~RunJournal() {
  if (spool_fd_ >= 0) ::close(spool_fd_);
  if (fd_ >= 0) ::close(fd_);
}

std::string RunJournal::journal_path() const { return (fs::path(dir_) / kJournalFileName).string(); }
std::string RunJournal::spool_path() const { return (fs::path(dir_) / spool_name_).string(); }

Result<RunJournal> RunJournal::create(const std::string& dir, const std::string& spool_name) {
  std::error_code ec;
  const fs::path d(dir);
  if (!fs::exists(d, ec)) {
    const fs::path parent = d.has_parent_path() ? d.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec)) {
      return Error(ErrorCode::kNotFound, dir + ": the directory of the run directory does not exist");
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return io_error(dir, "creating the run directory", errno);
    PF_TRY(fsync_dir(parent.string()));
  } else if (!fs::is_directory(d, ec)) {
    return Error(ErrorCode::kAlreadyExists, dir + ": exists and is not a directory (--run-dir)");
  }
  const std::string jpath = (d / kJournalFileName).string();
  const int fd = ::open(jpath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(jpath, "opening the journal", errno);
  RunJournal j(fs::absolute(d).lexically_normal().string(), fd, spool_name);
  PF_TRY(lock_journal(fd, jpath));
  PF_ASSIGN_OR_RETURN(const std::string text, read_whole(fd, jpath));
  if (!text.empty()) {
    auto parsed = parse_journal(text, jpath);
    if (parsed && !parsed->records.empty() && !ended(parsed->records)) {
      const auto& first = parsed->records.front();
      return Error(ErrorCode::kAlreadyExists,
                   dir + ": holds the journal of run '" + first.value("run_id", std::string("?")) +
                       "', which did not finish: resume it (persoflow " +
                       first.value("command", std::string("prep")) + " --resume " + dir +
                       ") or choose another --run-dir");
    }
    if (!parsed) return parsed.error();
    // A run that ended (or never wrote a record): its journal and spool are replaced.
    // Truncated, and written from its start again (read_whole left the offset at the old end:
    // the first record would follow a hole of NUL bytes).
    if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
      return io_error(jpath, "truncating an ended journal", errno);
    }
    for (const char* name : {kSpoolFileName, kXofSpoolFileName}) ::unlink((d / name).string().c_str());
  }
  if (::fsync(fd) != 0) return io_error(jpath, "fsync", errno);
  PF_TRY(fsync_dir(dir));
  PF_TRY(j.open_spool(true));
  return j;
}

Result<RunJournal> RunJournal::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Error(ErrorCode::kNotFound, dir + ": no such run directory (--resume)");
  }
  const std::string jpath = (fs::path(dir) / kJournalFileName).string();
  const int fd = ::open(jpath.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error(ErrorCode::kNotFound, dir + ": no journal in this directory: not a persoflow run directory (--resume)");
    return io_error(jpath, "opening the journal", errno);
  }
  RunJournal j(fs::absolute(dir).lexically_normal().string(), fd, kSpoolFileName);
  PF_TRY(lock_journal(fd, jpath));
  PF_ASSIGN_OR_RETURN(const std::string text, read_whole(fd, jpath));
  PF_ASSIGN_OR_RETURN(Parsed parsed, parse_journal(text, jpath));
  if (parsed.intact_end != text.size()) {
    // A torn last record: never acted on, cut off so the next record follows an intact one.
    if (::ftruncate(fd, static_cast<off_t>(parsed.intact_end)) != 0 || ::fsync(fd) != 0) {
      return io_error(jpath, "cutting a torn last record", errno);
    }
  }
  if (parsed.records.empty()) {
    return Error(ErrorCode::kNotFound, jpath + ": the journal holds no intact record: the run never started");
  }
  j.records_ = std::move(parsed.records);
  const std::string command = j.records_.front().value("command", std::string());
  if (command == "import") j.spool_name_ = kXofSpoolFileName;
  if (command == "run") j.spool_name_ = kRunSpoolFileName;
  if (::lseek(fd, 0, SEEK_END) < 0) return io_error(jpath, "seek", errno);
  PF_TRY(j.open_spool(false));
  return j;
}

Status RunJournal::open_spool(bool truncate) {
  const std::string path = spool_path();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
  if (fd < 0) return io_error(path, "opening the spool", errno);
  spool_fd_ = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(path, "stat", errno);
  spool_size_ = static_cast<std::uint64_t>(st.st_size);
  if (::fsync(fd) != 0) return io_error(path, "fsync", errno);
  return fsync_dir(dir_);
}

const nlohmann::json* RunJournal::last(std::string_view kind) const {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if ((*it)["record"] == kind) return &*it;
  }
  return nullptr;
}

std::vector<const nlohmann::json*> RunJournal::all(std::string_view kind) const {
  std::vector<const nlohmann::json*> out;
  for (const auto& r : records_) {
    if (r["record"] == kind) out.push_back(&r);
  }
  return out;
}

Status RunJournal::append(nlohmann::ordered_json record, bool sync) {
  const std::string payload = record.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  const std::string line = encode_record(payload);
  const std::string path = journal_path();
  PF_TRY(write_all(fd_, as_span(line), path));
  if (sync) PF_TRY(this->sync());
  records_.push_back(nlohmann::json::parse(payload));
  return ok_status();
}

Status RunJournal::sync() {
  if (::fdatasync(fd_) != 0) return io_error(journal_path(), "fsync", errno);
  return ok_status();
}

Result<std::uint64_t> RunJournal::append_spool(std::span<const std::uint8_t> bytes, bool sync) {
  const std::string path = spool_path();
  const std::uint64_t at = spool_size_;
  if (::lseek(spool_fd_, static_cast<off_t>(at), SEEK_SET) < 0) return io_error(path, "seek", errno);
  PF_TRY(write_all(spool_fd_, bytes, path));
  if (sync && ::fdatasync(spool_fd_) != 0) return io_error(path, "fsync", errno);
  spool_size_ += bytes.size();
  return at;
}

Status RunJournal::sync_spool() {
  if (::fdatasync(spool_fd_) != 0) return io_error(spool_path(), "fsync", errno);
  return ok_status();
}

Result<Bytes> RunJournal::read_spool(std::uint64_t offset, std::uint64_t length, const std::string& sha256_hex_want) const {
  const std::string path = spool_path();
  if (offset + length > spool_size_) {
    return Error(ErrorCode::kIntegrity, path + ": offset " + std::to_string(offset) + ": a journaled segment of " +
                                            std::to_string(length) + " bytes runs past the spool's end (" +
                                            std::to_string(spool_size_) + " bytes)");
  }
  Bytes out(length);
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(spool_fd_, out.data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error(path, "read at offset " + std::to_string(offset + done), n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  if (sha256_hex(out) != sha256_hex_want) {
    return Error(ErrorCode::kIntegrity, path + ": offset " + std::to_string(offset) +
                                            ": a spooled segment does not match the SHA-256 its journal record names");
  }
  return out;
}

Status RunJournal::cut_spool(std::uint64_t end) {
  const std::string path = spool_path();
  if (end > spool_size_) {
    return Error(ErrorCode::kIntegrity, path + ": the journal names " + std::to_string(end) +
                                            " spooled bytes, the spool holds " + std::to_string(spool_size_));
  }
  if (end == spool_size_) return ok_status();
  if (::ftruncate(spool_fd_, static_cast<off_t>(end)) != 0 || ::fsync(spool_fd_) != 0) {
    return io_error(path, "truncating bytes no record names", errno);
  }
  spool_size_ = end;
  return ok_status();
}

void RunJournal::remove_spool() {
  if (spool_fd_ >= 0) ::close(spool_fd_);
  spool_fd_ = -1;
  ::unlink(spool_path().c_str());
  (void)fsync_dir(dir_);
}

void crash_point_after_segment(std::uint64_t segment_records_written) {
  static const long target = [] {
    const char* v = std::getenv("PERSOFLOW_TEST_CRASH_AFTER_SEGMENT");
    return v != nullptr ? std::strtol(v, nullptr, 10) : 0L;
  }();
  if (target > 0 && segment_records_written == static_cast<std::uint64_t>(target)) ::kill(::getpid(), SIGKILL);
}

void crash_point_after_reservation_batch(std::uint64_t batches_committed) {
  static const long target = [] {
    const char* v = std::getenv("PERSOFLOW_TEST_CRASH_AFTER_RESERVE");
    return v != nullptr ? std::strtol(v, nullptr, 10) : 0L;
  }();
  if (target > 0 && batches_committed == static_cast<std::uint64_t>(target)) ::kill(::getpid(), SIGKILL);
}

void crash_point_after_batch_record(std::uint64_t batch_records_written) {
  static const long target = [] {
    const char* v = std::getenv("PERSOFLOW_TEST_CRASH_AFTER_BATCH_RECORD");
    return v != nullptr ? std::strtol(v, nullptr, 10) : 0L;
  }();
  if (target > 0 && batch_records_written == static_cast<std::uint64_t>(target)) ::kill(::getpid(), SIGKILL);
}

nlohmann::ordered_json reject_to_json(const Reject& r) {
  return {{"record", r.record}, {"offset", r.offset}, {"card_id", r.card_id}, {"field", r.field},
          {"category", r.category}, {"reason", r.reason}, {"shown_value", r.shown_value}};
}

Result<Reject> reject_from_json(const nlohmann::json& j, const std::string& where) {
  try {
    Reject r;
    r.record = j.at("record").get<std::uint64_t>();
    r.offset = j.at("offset").get<std::uint64_t>();
    r.card_id = j.at("card_id").get<std::string>();
    r.field = j.at("field").get<std::string>();
    r.category = j.at("category").get<std::string>();
    r.reason = j.at("reason").get<std::string>();
    r.shown_value = j.at("shown_value").get<std::string>();
    return r;
  } catch (const nlohmann::json::exception&) {
    return Error(ErrorCode::kIntegrity, where + ": a reject in the journal is malformed");
  }
}

Result<std::int64_t> last_reservation_id(formats::SeRegistry& registry) {
  PF_ASSIGN_OR_RETURN(auto list, registry.reservations());
  return list.empty() ? std::int64_t{0} : list.back().id;
}

Result<std::optional<formats::ReservationRecord>> find_reservation_of_run(formats::SeRegistry& registry,
                                                                          const std::string& run_id,
                                                                          std::int64_t after_id) {
  PF_ASSIGN_OR_RETURN(auto list, registry.reservations());
  std::optional<formats::ReservationRecord> found;
  for (auto& r : list) {
    if (r.id <= after_id || r.run_id != run_id) continue;
    if (found) {
      return Error(ErrorCode::kIntegrity, "SE registry " + registry.path() + ": reservations " +
                                              std::to_string(found->id) + " and " + std::to_string(r.id) +
                                              " both belong to run '" + run_id + "'");
    }
    found = std::move(r);
  }
  return found;
}

namespace {

std::string counter_hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%06X", v);
  return buf;
}

}  // namespace

Result<formats::Reservation> reservation_from_ranges(formats::SeRegistry& registry,
                                                     const std::vector<formats::SeLookup>& cards,
                                                     const formats::ReservationInfo& info, std::int64_t id,
                                                     std::optional<std::int64_t> batch) {
  PF_ASSIGN_OR_RETURN(std::vector<formats::CounterRange> all_ranges, registry.ranges_of(id));
  std::vector<formats::CounterRange> ranges;
  for (auto& r : all_ranges) {
    if (!batch || r.batch == *batch) ranges.push_back(std::move(r));
  }
  struct Range {
    formats::CounterRange range;
    std::uint64_t used = 0;
  };
  std::unordered_map<std::string, Range> by_se;
  for (auto& r : ranges) {
    auto [it, fresh] = by_se.emplace(r.se_id, Range{r, 0});
    if (!fresh) {
      return Error(ErrorCode::kIntegrity, "SE registry " + registry.path() + ": reservation " + std::to_string(id) +
                                              " has several counter ranges for SE '" + r.se_id +
                                              "': not a prep reservation");
    }
  }
  const std::uint64_t per_card = info.values_per_card;
  if (per_card == 0 || per_card > 64) {
    return Error(ErrorCode::kInvalidArgument, "values per card " + std::to_string(per_card) + " (1..64)");
  }
  // reserve()'s reason for an SE whose next value (and the per_card - 1 after it) is past max.
  auto exhausted = [&](const std::string& se_id, std::uint64_t next, std::uint32_t max) {
    return "counter exhausted: SE '" + se_id + "' next value " + counter_hex(static_cast<std::uint32_t>(next)) +
           (per_card > 1 ? " and the " + std::to_string(per_card - 1) + " after it go" : " is") + " beyond max " +
           counter_hex(max);
  };
  std::unordered_map<std::string, std::optional<formats::SeRecord>> seen[2];
  formats::Reservation out;
  out.id = id;
  out.cards.reserve(cards.size());
  for (const formats::SeLookup& lookup : cards) {
    const bool msi = lookup.kind == formats::SeLookupKind::kMsi;
    auto& cache = seen[msi ? 1 : 0];
    auto at = cache.find(lookup.key);
    if (at == cache.end()) {
      PF_ASSIGN_OR_RETURN(auto rec, registry.find(lookup));
      at = cache.emplace(lookup.key, std::move(rec)).first;
    }
    formats::CardReservation card;
    if (!at->second) {
      card.reject_reason = (msi ? "unknown MSI '" : "unknown SE id '") + lookup.key + "'";
      out.cards.push_back(std::move(card));
      continue;
    }
    const formats::SeRecord& se = *at->second;
    auto range = by_se.find(se.se_id);
    if (range != by_se.end()) {
      Range& r = range->second;
      if (r.range.kvn != se.kvn) {
        return Error(ErrorCode::kIntegrity, "SE registry " + registry.path() + ": SE '" + se.se_id + "' now has KVN " +
                                                std::to_string(se.kvn) + ", reservation " + std::to_string(id) +
                                                " was made for KVN " + std::to_string(r.range.kvn));
      }
      const std::uint64_t value = std::uint64_t{r.range.first} + r.used * per_card;
      if (value + per_card - 1 <= r.range.last) {
        card.ok = true;
        card.counter = static_cast<std::uint32_t>(value);
        ++r.used;
        ++out.reserved;
      } else {
        card.reject_reason = exhausted(se.se_id, value, se.max_counter);
      }
    } else if (!info.product.empty() && se.product != info.product) {
      card.reject_reason = "SE '" + se.se_id + "' belongs to product '" + se.product + "', not '" + info.product + "'";
    } else if (info.scp != 0 && se.scp != info.scp) {
      card.reject_reason = "SE '" + se.se_id + "' uses SCP0" + std::to_string(se.scp) + ", the run prepares SCP0" +
                           std::to_string(info.scp);
    } else {
      // No range, yet servable: exhausted when the reservation was made (its next value is
      // beyond its max; counters never go back), or the ranges are not this selection's.
      if (se.next_counter <= se.max_counter && se.max_counter - se.next_counter >= per_card - 1) {
        return Error(ErrorCode::kIntegrity, "SE registry " + registry.path() + ": reservation " + std::to_string(id) +
                                                " holds no counter for SE '" + se.se_id +
                                                "', which could serve the card: the reservation does not match "
                                                "this run's cards");
      }
      card.reject_reason = exhausted(se.se_id, se.next_counter, se.max_counter);
    }
    out.cards.push_back(std::move(card));
  }
  for (const auto& [se_id, r] : by_se) {
    if (r.used * per_card != std::uint64_t{r.range.last} - r.range.first + 1) {
      return Error(ErrorCode::kIntegrity, "SE registry " + registry.path() + ": reservation " + std::to_string(id) +
                                              ": SE '" + se_id + "' has " +
                                              std::to_string(std::uint64_t{r.range.last} - r.range.first + 1) +
                                              " reserved value(s), this run's cards use " + std::to_string(r.used * per_card) +
                                              ": the reservation does not match this run's cards");
    }
  }
  return out;
}

bool interrupts_run(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kHsm:
    case ErrorCode::kAuth:
    case ErrorCode::kIo:
    case ErrorCode::kNotFound:
      return true;
    default:
      return false;
  }
}

void JournaledRun::record_failure(Error& error, std::string_view command, bool has_reservation) {
  if (!journal || !failure_ends_run) return;
  if (interrupts_run(error)) {
    // As if the process had been killed: the journal, its spool and the reservation stay
    // for --resume. The record says why, for the operator reading the journal.
    (void)journal->append({{"record", "interrupted"}, {"error", error.message()}});
    error.add_context("run interrupted, not failed (once the cause is fixed, `persoflow " + std::string(command) +
                      " --resume " + journal->dir() + "` finishes it" +
                      (has_reservation ? " with its reservation)" : ")"));
    return;
  }
  (void)journal->append({{"record", "failed"}, {"error", error.message()}});
  journal->remove_spool();
}

Status finish_journaled_run(const std::string& run_dir) {
  PF_ASSIGN_OR_RETURN(RunJournal journal, RunJournal::open(run_dir));
  PF_TRY(journal.append({{"record", "finished"}}));
  journal.remove_spool();
  return ok_status();
}

}  // namespace persoflow::pipeline
