// Microbenchmarks of the import pipeline's own structures. Names BM_<Area>_<Op>; items
// are as each says.
//   - BM_CardIdSet_Insert/N: N distinct card ids into one CardIdSet (pipeline/card_id_set.h)
//     with the default options, spilling to an unnamed file in $TMPDIR (or /tmp). Items are
//     inserts; the id text is formatted in the loop ("4" + 15 digits, about 10 ns of the
//     time). Counters: the set's RAM at the end (memory_bytes, and per card), the runs
//     (filters an insert probes) at the end and at most, and the 4 KiB block reads per
//     insert (Bloom false positives: every id is new).
#include <benchmark/benchmark.h>

#include <charconv>
#include <cstdlib>
#include <string>

#include "pipeline/card_id_set.h"

namespace persoflow::pipeline {
namespace {

std::string spill_directory() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

void BM_CardIdSet_Insert(benchmark::State& state) {
  const auto n = static_cast<std::uint64_t>(state.range(0));
  const std::string dir = spill_directory();
  std::size_t memory = 0;
  CardIdSetStats stats;
  std::size_t runs = 0;
  for (auto _ : state) {
    CardIdSet set(dir);
    char id[32] = {'4'};
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto end = std::to_chars(id + 1, id + sizeof id, 100000000000000ULL + i).ptr;
      auto r = set.insert(std::string_view(id, static_cast<std::size_t>(end - id)));
      if (!r || !*r) {
        state.SkipWithError(r ? "a distinct id was taken for a duplicate"
                              : r.error().message().c_str());
        return;
      }
    }
    memory = set.memory_bytes();
    stats = set.stats();
    runs = set.runs();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["memory_bytes"] = static_cast<double>(memory);
  state.counters["bytes_per_card"] = static_cast<double>(memory) / static_cast<double>(n);
  state.counters["runs"] = static_cast<double>(runs);
  state.counters["max_runs"] = static_cast<double>(stats.max_runs);
  state.counters["block_reads_per_insert"] =
      static_cast<double>(stats.block_reads) / static_cast<double>(n);
}
BENCHMARK(BM_CardIdSet_Insert)
    ->Arg(100000)
    ->Arg(1000000)
    ->Arg(10000000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace persoflow::pipeline
BENCHMARK_MAIN();
