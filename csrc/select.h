#pragma once
#include <cstdint>
#include <vector>

namespace plada {

// Order-preserving map of a float32 score to uint32 (ascending), reversed when `largest`.
// Build without -ffast-math: the += 0.0f below must not be folded away.
inline uint32_t sortable_key(float f, bool largest) {
  f += 0.0f;  // -0.0 == +0.0: one key, so the tie goes to the lower index
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return largest ? ~u : u;
}

// The k best rows (smallest score, or largest when `largest`), ties to the lower index, rows with
// exclude[i] != 0 or a NaN score skipped (exclude may be null). Rows must number < 2^32.
// Returns indices in rank order.
std::vector<int64_t> topk(const float* scores, int64_t n, int64_t k, const uint8_t* exclude,
                          bool largest, int threads);

// For every class c, the quotas[c] best rows labelled c (same order and tie rules), grouped by
// class in ascending c. labels are uint8/16/32 per label_bytes; a label >= num_classes is an error
// reported through bad_label (set to the first offending row, else -1).
std::vector<int64_t> class_topk(const float* scores, const void* labels, int label_bytes, int64_t n,
                                const int64_t* quotas, int64_t num_classes, const uint8_t* exclude,
                                bool largest, int threads, int64_t* bad_label);

}  // namespace plada
