#include "pipeline/card_id_set.h"

#include "formats/atomic_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace persoflow::pipeline {
namespace {

constexpr std::size_t kBlockBytes = 4096;  // runs are read a block at a time
constexpr std::size_t kBlockEntries = kBlockBytes / sizeof(std::uint64_t);
constexpr std::size_t kMergeInputEntries =
    (std::size_t{16} << 10) / sizeof(std::uint64_t);  // per merged run
constexpr std::size_t kWriteEntries = (std::size_t{32} << 10) / sizeof(std::uint64_t);
constexpr std::size_t kInitialSlots = 1024;

// The odd multipliers of the split block Bloom filter (Apache Parquet's): each picks one
// bit of one 64-bit word of the line from the hash's low 32 bits.
constexpr std::uint32_t kBloomSalt[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                                         0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};

std::uint64_t hash_id(std::string_view id) {
  // FNV-1a then a splitmix64 finalizer: fast, well mixed, never 0 (0 marks empty slots).
  std::uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

__extension__ using Uint128 = unsigned __int128;  // GCC and Clang

// floor(x * n / 2^64): an index in [0, n) from all of x's bits, n any size.
std::size_t scale(std::uint64_t x, std::size_t n) {
  return static_cast<std::size_t>((static_cast<Uint128>(x) * n) >> 64);
}

std::string errno_text(int err) { return std::strerror(err); }

// Zeroed anonymous memory in whole pages, from mmap and back with munmap, so that freeing
// a filter gives its pages back to the system (malloc could keep them). Throws
// std::bad_alloc as a vector would.
class Pages {
 public:
  Pages() = default;
  explicit Pages(std::size_t bytes) {
    if (bytes == 0) return;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    bytes = (bytes + page - 1) / page * page;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<std::uint64_t*>(p);
    bytes_ = bytes;
  }
  Pages(Pages&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Pages& operator=(Pages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Pages(const Pages&) = delete;
  Pages& operator=(const Pages&) = delete;
  ~Pages() { release(); }

  std::uint64_t* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  void release() {
    if (data_ != nullptr) ::munmap(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  std::uint64_t* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// A blocked Bloom filter: one 64-byte line per key, chosen by the hash's high 32 bits, in
// which 8 bits are set, one per 64-bit word, chosen by the low 32 bits.
class BloomFilter {
 public:
  BloomFilter() = default;
  BloomFilter(std::uint64_t keys, std::size_t bits_per_key)
      : lines_(
            std::max<std::size_t>(1, static_cast<std::size_t>((keys * bits_per_key + 511) / 512))),
        pages_(lines_ * 64) {}

  void add(std::uint64_t h) {
    std::uint64_t* line = pages_.data() + 8 * line_of(h);
    const auto low = static_cast<std::uint32_t>(h);
    for (int i = 0; i < 8; ++i) line[i] |= std::uint64_t{1} << bit_of(low, i);
  }
  bool may_contain(std::uint64_t h) const {
    const std::uint64_t* line = pages_.data() + 8 * line_of(h);
    const auto low = static_cast<std::uint32_t>(h);
    bool all = true;
    for (int i = 0; i < 8; ++i) all &= ((line[i] >> bit_of(low, i)) & 1U) != 0;
    return all;
  }
  std::size_t bytes() const { return pages_.bytes(); }

 private:
  std::size_t line_of(std::uint64_t h) const {
    return static_cast<std::size_t>(((h >> 32) * static_cast<std::uint64_t>(lines_)) >> 32);
  }
  static unsigned bit_of(std::uint32_t low, int i) {
    return static_cast<std::uint32_t>(low * kBloomSalt[i]) >> 26;
  }

  std::size_t lines_ = 0;
  Pages pages_;
};

std::uint64_t align_block(std::uint64_t offset) {
  return (offset + kBlockBytes - 1) / kBlockBytes * kBlockBytes;
}

}  // namespace

struct CardIdSet::State {
  struct Run {
    std::uint64_t offset = 0;   // in the spill file, 4 KiB-aligned
    std::uint64_t entries = 0;  // sorted ascending, distinct
    std::size_t tier = 0;
    BloomFilter filter;
    std::vector<std::uint64_t> block_first;  // first hash of each kBlockEntries block
  };

  std::string dir;
  CardIdSetOptions options;

  // The table of the newest hashes: open addressing, linear probing, 0 = empty.
  Pages table;
  std::size_t slots = 0;
  std::size_t max_slots = 0;
  std::size_t count = 0;

  int fd = -1;
  std::uint64_t file_end = 0;
  std::vector<Run> runs;                    // oldest first
  std::vector<std::uint64_t> read_buffer;   // one block, for lookups
  std::vector<std::uint64_t> write_buffer;  // spills and merges
  std::vector<std::uint64_t> merge_buffer;  // merge inputs, kMergeInputEntries each
  std::optional<Error> error;
  CardIdSetStats stats;

  State(std::string d, CardIdSetOptions o)
      : dir(d.empty() ? std::string(".") : std::move(d)), options(o) {
    options.run_entries = std::max<std::size_t>(1, options.run_entries);
    options.bloom_bits_per_key = std::max<std::size_t>(1, options.bloom_bits_per_key);
    options.merge_fanout = std::max<std::size_t>(2, options.merge_fanout);
    // At most 3/4 full once full-sized, and always one slot empty.
    max_slots = std::max<std::size_t>(16, (options.run_entries * 4 + 2) / 3 + 1);
    slots = std::min(kInitialSlots, max_slots);
    table = Pages(slots * sizeof(std::uint64_t));
  }
  ~State() {
    if (fd >= 0) ::close(fd);
  }

  Error io_error(const std::string& what, int err) const {
    return Error(ErrorCode::kIo, "duplicate card id check: " + what +
                                     " its spill file (unnamed, in " + dir +
                                     "): " + errno_text(err));
  }

  // The slot holding h, or the empty slot where it would go.
  std::size_t find_slot(std::uint64_t h) const {
    const std::uint64_t* t = table.data();
    std::size_t i = scale(h, slots);
    while (t[i] != 0 && t[i] != h) {
      if (++i == slots) i = 0;
    }
    return i;
  }

  void grow_table() {
    Pages old = std::move(table);
    const std::size_t old_slots = slots;
    slots = std::min(2 * slots, max_slots);
    table = Pages(slots * sizeof(std::uint64_t));
    for (std::size_t i = 0; i < old_slots; ++i) {
      const std::uint64_t h = old.data()[i];
      if (h != 0) table.data()[find_slot(h)] = h;
    }
  }

  // Exact lookup in one run: its filter, then one block.
  Result<bool> run_contains(const Run& run, std::uint64_t h) {
    if (!run.filter.may_contain(h)) return false;
    const auto it = std::upper_bound(run.block_first.begin(), run.block_first.end(), h);
    if (it == run.block_first.begin()) return false;
    const std::size_t block = static_cast<std::size_t>(it - run.block_first.begin()) - 1;
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(kBlockEntries, run.entries - std::uint64_t{block} * kBlockEntries));
    read_buffer.resize(kBlockEntries);
    ++stats.block_reads;
    if (const int err = formats::pread_all(fd, read_buffer.data(), n * sizeof(std::uint64_t),
                                  run.offset + std::uint64_t{block} * kBlockBytes);
        err != 0) {
      return io_error("reading", err);
    }
    return std::binary_search(read_buffer.begin(),
                              read_buffer.begin() + static_cast<std::ptrdiff_t>(n), h);
  }

  // Writes a run of `entries` ascending hashes at the end of the file, building its filter
  // and sparse index as they pass.
  class RunWriter {
   public:
    RunWriter(State& s, std::uint64_t entries, std::size_t tier) : s_(s) {
      run_.offset = align_block(s.file_end);
      run_.entries = entries;
      run_.tier = tier;
      run_.filter = BloomFilter(entries, s.options.bloom_bits_per_key);
      run_.block_first.reserve(
          static_cast<std::size_t>((entries + kBlockEntries - 1) / kBlockEntries));
      s.write_buffer.resize(kWriteEntries);
    }
    Status add(std::uint64_t h) {
      if (written_ % kBlockEntries == 0) run_.block_first.push_back(h);
      run_.filter.add(h);
      s_.write_buffer[pending_++] = h;
      ++written_;
      return pending_ == kWriteEntries ? flush() : ok_status();
    }
    Result<Run> finish() {
      PF_TRY(flush());
      if (written_ != run_.entries)
        return Error(ErrorCode::kInternal, "duplicate card id check: a run's size changed");
      s_.file_end = run_.offset + written_ * sizeof(std::uint64_t);
      return std::move(run_);
    }

   private:
    Status flush() {
      if (pending_ == 0) return ok_status();
      const std::uint64_t at = run_.offset + (written_ - pending_) * sizeof(std::uint64_t);
      if (const int err =
              formats::pwrite_all(s_.fd, s_.write_buffer.data(), pending_ * sizeof(std::uint64_t), at);
          err != 0) {
        return s_.io_error("writing", err);
      }
      pending_ = 0;
      return ok_status();
    }

    State& s_;
    Run run_;
    std::uint64_t written_ = 0;
    std::size_t pending_ = 0;
  };

  // The table, sorted, as a new tier-0 run; then merges while a tier is full.
  Status spill() {
    if (fd < 0) {
      fd = formats::open_unnamed_file(dir, ".persoflow-card-ids", options.use_o_tmpfile);
      if (fd < 0) return io_error("creating", errno);
    }
    std::uint64_t* t = table.data();
    std::size_t n = 0;
    for (std::size_t i = 0; i < slots; ++i) {
      if (t[i] != 0) t[n++] = t[i];
    }
    std::sort(t, t + n);
    RunWriter writer(*this, n, 0);
    for (std::size_t i = 0; i < n; ++i) PF_TRY(writer.add(t[i]));
    PF_ASSIGN_OR_RETURN(Run run, writer.finish());
    std::fill(t, t + slots, std::uint64_t{0});
    count = 0;
    runs.push_back(std::move(run));
    ++stats.spills;
    // Only the tier that just received a run can have become full.
    for (std::size_t tier = 0; runs_in_tier(tier) >= options.merge_fanout; ++tier)
      PF_TRY(merge_tier(tier));
    stats.max_runs = std::max(stats.max_runs, runs.size());  // what the next inserts probe
    stats.spill_file_end = file_end;
    return ok_status();
  }

  std::size_t runs_in_tier(std::size_t tier) const {
    return static_cast<std::size_t>(
        std::count_if(runs.begin(), runs.end(), [&](const Run& r) { return r.tier == tier; }));
  }

  // The runs of `tier` (merge_fanout of them) into one run of tier + 1, appended.
  Status merge_tier(std::size_t tier) {
    std::vector<Run> inputs;
    std::vector<Run> kept;
    for (Run& r : runs) (r.tier == tier ? inputs : kept).push_back(std::move(r));
    runs = std::move(kept);
    std::uint64_t total = 0;
    for (Run& r : inputs) {
      total += r.entries;
      r.filter = BloomFilter();  // not probed during the merge: freed before the new one exists
      r.block_first = {};
    }
    struct Cursor {
      std::uint64_t next = 0;  // entries of the run read so far
      std::size_t pos = 0, len = 0;
    };
    std::vector<Cursor> cursors(inputs.size());
    merge_buffer.resize(inputs.size() * kMergeInputEntries);
    auto refill = [&](std::size_t k) -> Status {
      Cursor& c = cursors[k];
      const std::size_t want = static_cast<std::size_t>(
          std::min<std::uint64_t>(kMergeInputEntries, inputs[k].entries - c.next));
      if (want > 0) {
        if (const int err = formats::pread_all(fd, merge_buffer.data() + k * kMergeInputEntries,
                                      want * sizeof(std::uint64_t),
                                      inputs[k].offset + c.next * sizeof(std::uint64_t));
            err != 0) {
          return io_error("reading", err);
        }
      }
      c.next += want;
      c.pos = 0;
      c.len = want;
      return ok_status();
    };
    for (std::size_t k = 0; k < inputs.size(); ++k) PF_TRY(refill(k));
    RunWriter writer(*this, total, tier + 1);
    std::uint64_t last = 0;
    std::uint64_t written = 0;
    for (;;) {
      std::size_t best = inputs.size();
      std::uint64_t best_h = 0;
      for (std::size_t k = 0; k < inputs.size(); ++k) {
        if (cursors[k].pos == cursors[k].len) continue;
        const std::uint64_t h = merge_buffer[k * kMergeInputEntries + cursors[k].pos];
        if (best == inputs.size() || h < best_h) {
          best = k;
          best_h = h;
        }
      }
      if (best == inputs.size()) break;
      if (++cursors[best].pos == cursors[best].len) PF_TRY(refill(best));
      // Runs are disjoint (a hash enters only when no run has it): strictly ascending.
      if (written > 0 && best_h <= last)
        return Error(ErrorCode::kInternal, "duplicate card id check: merged runs overlap");
      PF_TRY(writer.add(best_h));
      last = best_h;
      ++written;
    }
    PF_ASSIGN_OR_RETURN(Run merged, writer.finish());
    runs.push_back(std::move(merged));
    ++stats.merges;
    // The merged runs' bytes go back to the file system; where holes are not supported they
    // stay as dead space in the unnamed file, which vanishes with it.
    for (const Run& r : inputs) {
#ifdef FALLOC_FL_PUNCH_HOLE
      (void)::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        static_cast<off_t>(r.offset),
                        static_cast<off_t>(align_block(r.entries * sizeof(std::uint64_t))));
#else
      (void)r;
#endif
    }
    return ok_status();
  }

  static std::size_t vector_bytes(const std::vector<std::uint64_t>& v) {
    return v.capacity() * sizeof(std::uint64_t);
  }

  std::size_t memory_bytes() const {
    std::size_t bytes = sizeof(State) + table.bytes() + vector_bytes(read_buffer) +
                        vector_bytes(write_buffer) + vector_bytes(merge_buffer) +
                        runs.capacity() * sizeof(Run) + dir.capacity();
    for (const Run& r : runs) bytes += r.filter.bytes() + vector_bytes(r.block_first);
    return bytes;
  }
};

CardIdSet::CardIdSet(std::string spill_directory, CardIdSetOptions options)
    : s_(std::make_unique<State>(std::move(spill_directory), options)) {}
CardIdSet::~CardIdSet() = default;
CardIdSet::CardIdSet(CardIdSet&&) noexcept = default;
CardIdSet& CardIdSet::operator=(CardIdSet&&) noexcept = default;

Result<bool> CardIdSet::insert(std::string_view id) {
  State& s = *s_;
  if (s.error) return *s.error;
  if (4 * (s.count + 1) > 3 * s.slots && s.slots < s.max_slots) s.grow_table();
  const std::uint64_t h = hash_id(id);
  const std::size_t slot = s.find_slot(h);
  if (s.table.data()[slot] == h) return false;
  for (auto it = s.runs.rbegin(); it != s.runs.rend(); ++it) {
    auto found = s.run_contains(*it, h);
    if (!found) {
      s.error = found.error();
      return std::move(found).error();
    }
    if (*found) return false;
  }
  s.table.data()[slot] = h;
  ++s.count;
  ++size_;
  if (s.count == s.options.run_entries) {
    if (Status spilled = s.spill(); !spilled) {
      s.error = spilled.error();
      return std::move(spilled).error();
    }
  }
  return true;
}

std::size_t CardIdSet::memory_bytes() const { return sizeof(CardIdSet) + s_->memory_bytes(); }
std::size_t CardIdSet::runs() const { return s_->runs.size(); }
CardIdSetStats CardIdSet::stats() const { return s_->stats; }

}  // namespace persoflow::pipeline
