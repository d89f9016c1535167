#pragma once
#include <cstdint>
#include <string>

namespace plada {

// Encode k strictly increasing indices and their labels (< c) with the adaptive "model" codec.
// The caller validates the inputs.
std::string model_encode(const int64_t* indices, const int64_t* labels, int64_t k, int64_t c);

// Decode k (index, label) pairs; throws std::runtime_error on any inconsistency (index >= n,
// label >= c, gap class out of range, truncated body).
void model_decode(const uint8_t* data, size_t len, uint64_t n, int64_t c, int64_t k, int64_t* indices,
                  int64_t* labels);

}  // namespace plada
