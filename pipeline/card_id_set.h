// The card ids seen so far in one import, to reject duplicates, in a few bytes of RAM per
// card (2.5 at a million cards with the defaults, against 16-32 for the flat hash table
// this replaced); the rest lives on disk in one unnamed temporary file.
//
// What is kept is a 64-bit hash of each id (FNV-1a, then a splitmix64 finalizer; never 0),
// not the id. Two different ids with the same 64-bit hash would make the second look like
// a duplicate (probability about n^2 / 2^65: 3e-8 for a million cards); it would then be
// rejected with its reason, never silently dropped. Every other answer is exact: the
// structures below only decide where to look for a hash, never whether it is there.
//
// Layout:
// - The newest hashes, at most `run_entries` (65,536), in an exact open-addressing table
//   in RAM, at most 3/4 full (683 KiB once grown to full size). When it holds
//   `run_entries` hashes it is sorted in place, appended to the spill file as a sorted run
//   of u64, and emptied.
// - Per run on disk, in RAM: a blocked Bloom filter (one 64-byte cache line per key, from
//   the hash's high 32 bits; 8 bits set in it, one per 64-bit word, from the low 32 bits;
//   `bloom_bits_per_key`, 14 by default: about 0.2% false positives per run probed) and a
//   sparse index, the first hash of each 4 KiB block of the run (1/64 byte per key). A
//   hash that passes a run's filter costs one pread of one block (runs start 4 KiB-aligned
//   in the file) and a binary search; a false positive costs that read and nothing else.
//   The filter is built from the hash already kept, so it adds no new collision case.
// - Tiered merging keeps the runs, the filters an insert probes, logarithmic in the card
//   count: a spilled run is tier 0; when `merge_fanout` (4) runs share a tier they are
//   merged (k-way, streaming through small buffers) into one run of the next tier,
//   appended to the file with a new filter and index, and the old runs' bytes are given
//   back to the file system (FALLOC_FL_PUNCH_HOLE; where unsupported, dead space in the
//   unnamed file). At most fanout - 1 runs per tier: with the defaults at most 6 runs
//   below 1,048,576 cards, 12 below 16.7 million (10 reached by ten million cards). A hash
//   is written once by its spill and once per merge: at most twice below 1,048,576 cards,
//   four times below 16.7 million. On disk: 8 bytes per card, plus a merge's output
//   while it is written.
// - Why merge rather than keep every spilled run: the filters probed, and the false
//   positives they let through, grow with the number of runs; one filter over all runs
//   would neither grow without re-reading its keys nor say which run to read.
// - The table and the filters are anonymous mmap()s, given back with munmap() when they
//   are replaced: RAM follows the live structures, not malloc's high-water mark. A merge
//   frees the merged runs' filters before it builds the new one (nothing is looked up
//   during a merge).
//
// RAM (memory_bytes): the table (8 x 4/3 x run_entries bytes at most), bloom_bits_per_key
// / 8 bytes per spilled hash, the sparse indexes, and fixed I/O buffers (4 KiB for
// lookups, 32 KiB for writing runs, fanout x 16 KiB for merges). Measured with the
// defaults (bench_pipeline, BM_CardIdSet_Insert): 0.8 MiB at 100k cards, 2.4 MiB at one
// million (2.5 bytes per card), 17.5 MiB at ten million (1.8: the filters' 14 bits per
// card dominate). An insert costs a hash, one table probe, one cache line per run's
// filter, rarely a pread, and its share of spills and merges: about 0.15 us on average
// at 100k cards, 0.26 at one million, 0.47 at ten million.
//
// The spill file is created when the table first fills (not at all below `run_entries`
// cards), in `spill_directory` (the import passes its output's directory), with
// O_TMPFILE: it never has a name and disappears with its descriptor, when the set is
// destroyed or the process dies. Where the file system refuses O_TMPFILE, mkostemp +
// unlink gives it a name (".persoflow-card-ids-XXXXXX") for an instant. An I/O error
// (creating, writing or reading it) names the directory and the reason; after one, every
// insert fails with the same error.
//
// Not thread-safe: one serial caller (the import's assemble stage).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace persoflow::pipeline {

struct CardIdSetOptions {
  // Hashes kept exactly in RAM before they are spilled as one sorted run (at least 1).
  std::size_t run_entries = 65536;
  // Bloom filter bits per spilled hash (at least 1).
  std::size_t bloom_bits_per_key = 14;
  // Runs of one tier merged into one run of the next (at least 2).
  std::size_t merge_fanout = 4;
  // false: go straight to the mkostemp + unlink fallback (tests).
  bool use_o_tmpfile = true;
};

struct CardIdSetStats {
  std::uint64_t block_reads = 0;     // 4 KiB reads of a run block (filter positives)
  std::uint64_t spills = 0;          // runs written from the table
  std::uint64_t merges = 0;          // runs written by merging runs
  std::size_t max_runs = 0;          // the most runs (filters one insert probes) so far
  std::uint64_t spill_file_end = 0;  // the spill file's size in bytes (holes included)
};

class CardIdSet {
 public:
  // `spill_directory`: where the unnamed spill file goes; empty means the current directory.
  explicit CardIdSet(std::string spill_directory, CardIdSetOptions options = {});
  ~CardIdSet();
  CardIdSet(CardIdSet&&) noexcept;
  CardIdSet& operator=(CardIdSet&&) noexcept;
  CardIdSet(const CardIdSet&) = delete;
  CardIdSet& operator=(const CardIdSet&) = delete;

  // True when the id was not in the set (and is now); false when it was (or another id
  // with the same 64-bit hash was). kIo when the spill file cannot be created, written or
  // read.
  Result<bool> insert(std::string_view id);

  std::size_t size() const { return size_; }
  // Bytes held in RAM by the set: the table, the filters, the sparse indexes and the I/O
  // buffers (allocated sizes, not only the bytes in use).
  std::size_t memory_bytes() const;
  // Sorted runs in the spill file: the filters an insert may probe.
  std::size_t runs() const;
  CardIdSetStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
  std::size_t size_ = 0;
};

}  // namespace persoflow::pipeline
