#pragma once
#include <cstdint>

namespace plada {

// out[j] = src[indices[j]] for rows of row_bytes bytes; indices must be in range (checked by the
// binding). Reads in ascending index order, writes in the caller's order.
void gather_rows(const uint8_t* src, int64_t row_bytes, const int64_t* indices, int64_t k,
                 uint8_t* out, int threads);

}  // namespace plada
