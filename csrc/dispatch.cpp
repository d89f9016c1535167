// Run-time choice of instruction set, and the thread pool every kernel shares.
#include "dispatch.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace plada {
namespace {

bool cpu_has(const std::string& level) {
  if (level == "scalar") return true;
#if defined(__x86_64__) || defined(_M_X64)
  if (level == "avx512") {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  }
  if (level == "avx2") {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }
#endif
#if defined(__aarch64__)
  if (level == "neon") return true;  // NEON is mandatory on AArch64
#endif
  return false;
}

std::string best_level() {
  const char* forced = std::getenv("PLADA_EDGE_SIMD");
  if (forced != nullptr && forced[0] != '\0') {
    if (cpu_has(forced)) return forced;  // unknown or unsupported values fall back to auto
  }
  for (const auto& level : available_simd()) {
    if (level != "scalar") return level;
  }
  return "scalar";
}

std::string& current_level() {
  static std::string level = best_level();
  return level;
}

}  // namespace

std::vector<std::string> available_simd() {
  std::vector<std::string> out;
  for (const char* level : {"avx512", "avx2", "neon"}) {
    if (cpu_has(level)) out.emplace_back(level);
  }
  out.emplace_back("scalar");
  return out;
}

std::string simd_level() { return current_level(); }

void set_simd_level(const std::string& level) {
  if (!cpu_has(level)) throw std::invalid_argument("SIMD level '" + level + "' is not available on this CPU");
  current_level() = level;
}

EnergyRowsFn energy_rows_fn() {
  const std::string& level = current_level();
#if defined(__x86_64__) || defined(_M_X64)
  if (level == "avx512") return energy_rows_avx512;
  if (level == "avx2") return energy_rows_avx2;
#endif
#if defined(__aarch64__)
  if (level == "neon") return energy_rows_neon;
#endif
  return energy_rows_scalar;
}

int hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

int worker_count(int64_t n, int64_t min_per_thread, int threads) {
  if (threads <= 0) threads = hardware_threads();
  const int64_t per = min_per_thread > 0 ? min_per_thread : 1;
  int64_t workers = (n + per - 1) / per;
  if (workers > threads) workers = threads;
  return workers < 1 ? 1 : static_cast<int>(workers);
}

void parallel_split(int64_t n, int workers, const std::function<void(int, int64_t, int64_t)>& body) {
  if (n <= 0) return;
  if (workers <= 1) {
    body(0, 0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers - 1));
  const int64_t per = (n + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    const int64_t begin = w * per;
    const int64_t end = begin + per < n ? begin + per : n;
    if (begin < end) pool.emplace_back(body, w, begin, end);
  }
  body(0, 0, per < n ? per : n);
  for (auto& t : pool) t.join();
}

}  // namespace plada
