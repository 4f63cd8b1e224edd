// placeholder: BM_ benchmarks of prep, filled in by the next commit
#include <benchmark/benchmark.h>
BENCHMARK_MAIN();
