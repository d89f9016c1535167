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

// Splits [0, n) into contiguous ranges of at least min_per_thread items over up to `threads`
// threads (0 = all CPUs) and runs body(begin, end) on each; the caller's thread takes the first.
void parallel_for(int64_t n, int64_t min_per_thread, int threads,
                  const std::function<void(int64_t, int64_t)>& body);

}  // namespace plada
