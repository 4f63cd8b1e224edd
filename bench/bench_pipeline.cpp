// Microbenchmarks of the import pipeline's own structures. Names BM_<Area>_<Op>; items
// are as each says.
//   - BM_CardIdSet_Insert/N: N distinct card ids into one CardIdSet (pipeline/card_id_set.h)
//     with the default options, spilling to an unnamed file in $TMPDIR (or /tmp). Items are
//     inserts; the id text is formatted in the loop ("4" + 15 digits, about 10 ns of the
//     time). Counters: the set's RAM at the end (memory_bytes, and per card), the runs
//     (filters an insert probes) at the end and at most, and the 4 KiB block reads per
//     insert (Bloom false positives: every id is new).
//   - BM_Records_SplitXml/N: N synthetic records of the acme XML profile without its PIN
//     block (`bench/import_bench.sh N nopin`'s records) split from the decrypted document in
//     64 KiB chunks (formats/record_splitter.h): the import's serial stage less the HSM.
//     Items are records.
//   - BM_Records_ExtractXml/N: the attribute values of the same N records
//     (formats/record_fields.h). Items are records.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "config/profile_parser.h"
#include "formats/record_fields.h"
#include "formats/record_splitter.h"
#include "pipeline/card_id_set.h"
#include "pipeline/synthetic_cards.h"

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

struct XmlDocument {
  Profile profile;
  std::string text;
};

const XmlDocument& xml_document(std::size_t records) {
  static XmlDocument doc;
  static std::size_t made = 0;
  if (made != records) {
    // config/profiles/acme-import-xml.xml without its PIN block (import_bench.sh's "nopin").
    auto profile = config::load_profile(PERSOFLOW_PROFILES_DIR "/acme-import-xml.xml");
    if (!profile) std::abort();
    doc.profile = std::move(profile).value();
    std::erase_if(doc.profile.attributes, [](const AttributeSpec& a) { return a.name == "pin_block"; });
    SyntheticCards cards(doc.profile, SyntheticOptions{});
    doc.text = cards.prolog();
    for (std::size_t i = 0; i < records; ++i) doc.text += cards.render(cards.values(i));
    doc.text += cards.epilog();
    made = records;
  }
  return doc;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<formats::Record> split_all(const XmlDocument& doc, benchmark::State& state) {
  std::vector<formats::Record> out;
  auto splitter = formats::RecordSplitter::create(doc.profile.records);
  if (!splitter) std::abort();
  const auto bytes = bytes_of(doc.text);
  auto drain = [&] {
    while (auto item = splitter->next()) {
      if (auto* r = std::get_if<formats::Record>(&*item)) {
        out.push_back(std::move(*r));
      } else {
        state.SkipWithError("a record did not split");
      }
    }
  };
  for (std::size_t i = 0; i < bytes.size(); i += 64 * 1024) {
    splitter->feed(bytes.subspan(i, std::min<std::size_t>(64 * 1024, bytes.size() - i)));
    drain();
  }
  splitter->finish();
  drain();
  return out;
}

void BM_Records_SplitXml(benchmark::State& state) {
  const XmlDocument& doc = xml_document(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto records = split_all(doc, state);
    benchmark::DoNotOptimize(records.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Records_SplitXml)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_Records_ExtractXml(benchmark::State& state) {
  const XmlDocument& doc = xml_document(static_cast<std::size_t>(state.range(0)));
  const std::vector<formats::Record> records = split_all(doc, state);
  for (auto _ : state) {
    for (const formats::Record& r : records) {
      auto fields = formats::extract_fields(doc.profile, r);
      if (!fields) state.SkipWithError(fields.error().message().c_str());
      benchmark::DoNotOptimize(fields);
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Records_ExtractXml)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace persoflow::pipeline
BENCHMARK_MAIN();
