// Run-time ISA selection and a minimal fork-join helper shared by all kernels.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels.h"

namespace plada {

std::vector<std::string> available_simd();  // best first, always ends with "scalar"
std::string simd_level();                    // the level in use (PLADA_EDGE_SIMD can force one)
void set_simd_level(const std::string& level);
EnergyRowsFn energy_rows_fn();
int hardware_threads();  // CPUs this process may run on

// The one fork-join helper: splits [0, n) into `workers` contiguous ranges and runs
// body(worker, begin, end) on each, the caller's thread taking the first; returns when all are done.
void parallel_split(int64_t n, int workers, const std::function<void(int, int64_t, int64_t)>& body);

// How many workers share n items: at least min_per_thread items each, at most `threads`
// (0 = all CPUs), at least 1.
int worker_count(int64_t n, int64_t min_per_thread, int threads);

// parallel_split over worker_count(n, min_per_thread, threads) workers, for bodies that need no
// worker index.
inline void parallel_for(int64_t n, int64_t min_per_thread, int threads,
                         const std::function<void(int64_t, int64_t)>& body) {
  parallel_split(n, worker_count(n, min_per_thread, threads),
                 [&](int, int64_t begin, int64_t end) { body(begin, end); });
}

}  // namespace plada
