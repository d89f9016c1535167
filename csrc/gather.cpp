// Memory-mapped gather (paper §3.3, device side): copy the rows a payload names out of the
// reference pack. Rows are read in ascending index order (front to back through the file, so
// cold reads stream and the kernel's readahead helps) and written straight to their place in the
// caller's order, split over threads; no temporaries beyond one (index, position) pair per row.
#include "gather.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "dispatch.h"

namespace plada {

void gather_rows(const uint8_t* src, int64_t row_bytes, const int64_t* indices, int64_t k,
                 uint8_t* out, int threads) {
  std::vector<std::pair<int64_t, int64_t>> order(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) order[j] = {indices[j], j};
  std::sort(order.begin(), order.end());
  // ~256 KiB of rows per task at least: small gathers stay on the calling thread.
  const int64_t min_rows = std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(row_bytes, 1));
  parallel_for(k, min_rows, threads, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      std::memcpy(out + order[j].second * row_bytes, src + order[j].first * row_bytes,
                  static_cast<size_t>(row_bytes));
    }
  });
}

}  // namespace plada
