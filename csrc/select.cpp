// Selection kernels (paper §3, pruning + Safety-Net quotas): partial selection, multithreaded.
//
// Each row becomes one 64-bit key, (order-preserving score bits << 32) | index, so comparisons
// are single integer compares and ties always go to the lower index. Global top-k is a two-pass
// radix select (histogram of the top 16 key bits, then collect), which needs no N-sized buffer;
// per-class quotas bucket the keys by label (a counting sort) and select within each class.
#include "select.h"

#include <algorithm>
#include <array>

#include "dispatch.h"

namespace plada {
namespace {

constexpr int64_t kMinRowsPerThread = 1 << 16;

inline uint64_t packed(const float* s, int64_t i, bool largest) {
  return (static_cast<uint64_t>(sortable_key(s[i], largest)) << 32) | static_cast<uint64_t>(i);
}

inline uint32_t label_at(const void* labels, int bytes, int64_t i) {
  switch (bytes) {
    case 1: return static_cast<const uint8_t*>(labels)[i];
    case 2: return static_cast<const uint16_t*>(labels)[i];
    default: return static_cast<const uint32_t*>(labels)[i];
  }
}

enum RowKind { kSkip, kBadLabel, kSelectable };

// Whether row i can be selected at all (not excluded, score not NaN) and has a valid label.
inline RowKind classify(const float* scores, const void* labels, int label_bytes, const uint8_t* exclude,
                        int64_t num_classes, int64_t i, uint32_t& label) {
  if ((exclude && exclude[i]) || scores[i] != scores[i]) return kSkip;
  label = label_at(labels, label_bytes, i);
  return label < static_cast<uint64_t>(num_classes) ? kSelectable : kBadLabel;
}

std::vector<int64_t> to_indices(std::vector<uint64_t>& keys) {
  std::sort(keys.begin(), keys.end());
  std::vector<int64_t> out(keys.size());
  for (size_t j = 0; j < keys.size(); ++j) out[j] = static_cast<int64_t>(keys[j] & 0xffffffffu);
  return out;
}

}  // namespace

std::vector<int64_t> topk(const float* scores, int64_t n, int64_t k, const uint8_t* exclude,
                          bool largest, int threads) {
  if (k <= 0 || n <= 0) return {};
  const int workers = worker_count(n, kMinRowsPerThread, threads);
  // pass 1: histogram of the top 16 bits of the sortable score
  std::vector<std::vector<int64_t>> hist(workers, std::vector<int64_t>(1 << 16, 0));
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    int64_t* h = hist[w].data();
    for (int64_t i = b; i < e; ++i) {
      if ((exclude && exclude[i]) || scores[i] != scores[i]) continue;  // NaN is never selectable
      ++h[sortable_key(scores[i], largest) >> 16];
    }
  });
  std::vector<int64_t> total(1 << 16, 0);
  int64_t valid = 0;
  for (const auto& h : hist) {
    for (int j = 0; j < (1 << 16); ++j) total[j] += h[j];
  }
  for (int64_t c : total) valid += c;
  k = std::min(k, valid);
  if (k == 0) return {};
  int64_t bucket = 0, below = 0;
  while (below + total[bucket] < k) below += total[bucket++];
  // pass 2: rows below the bucket are in; rows in it compete for the remaining places
  std::vector<std::vector<uint64_t>> sure(workers), maybe(workers);
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if ((exclude && exclude[i]) || scores[i] != scores[i]) continue;
      const uint64_t key = packed(scores, i, largest);
      const int64_t top = static_cast<int64_t>(key >> 48);
      if (top < bucket) sure[w].push_back(key);
      else if (top == bucket) maybe[w].push_back(key);
    }
  });
  std::vector<uint64_t> keys, cand;
  keys.reserve(static_cast<size_t>(k));
  for (auto& v : sure) keys.insert(keys.end(), v.begin(), v.end());
  for (auto& v : maybe) cand.insert(cand.end(), v.begin(), v.end());
  const int64_t need = k - static_cast<int64_t>(keys.size());
  std::nth_element(cand.begin(), cand.begin() + need, cand.end());
  keys.insert(keys.end(), cand.begin(), cand.begin() + need);
  return to_indices(keys);
}

namespace {

// Per-class quotas by counting sort: every row of a class with a quota is keyed, then each class
// selects with nth_element. Memory: one 64-bit key per row. Used when C is too large for the
// per-class histograms of class_topk_radix.
std::vector<int64_t> class_topk_sort(const float* scores, const void* labels, int label_bytes, int64_t n,
                                     const int64_t* quotas, int64_t num_classes, const uint8_t* exclude,
                                     bool largest, int threads, int64_t* bad_label) {
  *bad_label = -1;
  const int workers = worker_count(n, kMinRowsPerThread, threads);
  // counting sort by label: per-worker counts, then per-worker write offsets
  std::vector<std::vector<int64_t>> counts(workers, std::vector<int64_t>(num_classes, 0));
  std::vector<int64_t> bad(workers, -1);
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    int64_t* c = counts[w].data();
    for (int64_t i = b; i < e; ++i) {
      uint32_t l;
      const RowKind kind = classify(scores, labels, label_bytes, exclude, num_classes, i, l);
      if (kind == kBadLabel && bad[w] < 0) bad[w] = i;
      if (kind == kSelectable && quotas[l] > 0) ++c[l];
    }
  });
  for (int64_t b : bad) {
    if (b >= 0) {
      *bad_label = b;
      return {};
    }
  }
  std::vector<int64_t> start(num_classes + 1, 0);
  std::vector<std::vector<int64_t>> offset(workers, std::vector<int64_t>(num_classes, 0));
  for (int64_t c = 0; c < num_classes; ++c) {
    int64_t at = start[c];
    for (int w = 0; w < workers; ++w) {
      offset[w][c] = at;
      at += counts[w][c];
    }
    start[c + 1] = at;
  }
  std::vector<uint64_t> keys(static_cast<size_t>(start[num_classes]));
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    int64_t* off = offset[w].data();
    for (int64_t i = b; i < e; ++i) {
      uint32_t l;
      if (classify(scores, labels, label_bytes, exclude, num_classes, i, l) == kSelectable && quotas[l] > 0) {
        keys[off[l]++] = packed(scores, i, largest);
      }
    }
  });
  // select within each class, classes spread over threads
  std::vector<int64_t> take(num_classes), out_start(num_classes + 1, 0);
  for (int64_t c = 0; c < num_classes; ++c) {
    take[c] = std::min(quotas[c], start[c + 1] - start[c]);
    out_start[c + 1] = out_start[c] + take[c];
  }
  std::vector<int64_t> out(static_cast<size_t>(out_start[num_classes]));
  parallel_for(num_classes, 1, threads, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      if (take[c] == 0) continue;
      auto first = keys.begin() + start[c], last = keys.begin() + start[c + 1];
      std::nth_element(first, first + (take[c] - 1), last);
      std::sort(first, first + take[c]);
      for (int64_t j = 0; j < take[c]; ++j) {
        out[out_start[c] + j] = static_cast<int64_t>(first[j] & 0xffffffffu);
      }
    }
  });
  return out;
}

constexpr int kClassBins = 2048;

// Per-class quotas by radix select: (1) the key range of the selectable rows, (2) a per-class
// histogram of keys over 2,048 range-adaptive bins, giving each class's threshold bin, (3) one
// pass collecting the rows below it (sure) and in it (candidates). Only ~k keys are ever stored.
std::vector<int64_t> class_topk_radix(const float* scores, const void* labels, int label_bytes, int64_t n,
                                      const int64_t* quotas, int64_t num_classes, const uint8_t* exclude,
                                      bool largest, int threads, int64_t* bad_label) {
  *bad_label = -1;
  const int workers = worker_count(n, kMinRowsPerThread, threads);
  auto selectable = [&](int64_t i, uint32_t& l) {
    return classify(scores, labels, label_bytes, exclude, num_classes, i, l) == kSelectable && quotas[l] > 0;
  };
  // pass 1: key range over selectable rows, and the first out-of-range label
  std::vector<uint32_t> lo(workers, 0xFFFFFFFFu), hi(workers, 0);
  std::vector<int64_t> bad(workers, -1);
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    uint32_t mn = 0xFFFFFFFFu, mx = 0;
    for (int64_t i = b; i < e; ++i) {
      uint32_t l;
      const RowKind kind = classify(scores, labels, label_bytes, exclude, num_classes, i, l);
      if (kind == kBadLabel && bad[w] < 0) bad[w] = i;
      if (kind != kSelectable || quotas[l] <= 0) continue;
      const uint32_t k = sortable_key(scores[i], largest);
      mn = k < mn ? k : mn;
      mx = k > mx ? k : mx;
    }
    lo[w] = mn;
    hi[w] = mx;
  });
  for (int64_t b : bad) {
    if (b >= 0) {
      *bad_label = b;
      return {};
    }
  }
  const uint32_t kmin = *std::min_element(lo.begin(), lo.end());
  const uint32_t kmax = *std::max_element(hi.begin(), hi.end());
  if (kmin > kmax) return {};  // nothing selectable
  int shift = 0;
  while (((static_cast<uint64_t>(kmax) - kmin) >> shift) >= kClassBins) ++shift;
  // pass 2: per-class histograms
  std::vector<std::vector<int32_t>> hist(workers, std::vector<int32_t>(static_cast<size_t>(num_classes) * kClassBins, 0));
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    int32_t* h = hist[w].data();
    for (int64_t i = b; i < e; ++i) {
      uint32_t l;
      if (!selectable(i, l)) continue;
      ++h[l * kClassBins + ((sortable_key(scores[i], largest) - kmin) >> shift)];
    }
  });
  std::vector<int32_t> thresh(num_classes, -1);  // bins below are sure, the bin itself competes
  std::vector<int64_t> need(num_classes, 0), take(num_classes, 0);
  for (int64_t c = 0; c < num_classes; ++c) {
    if (quotas[c] <= 0) continue;
    int64_t below = 0;
    for (int bin = 0; bin < kClassBins; ++bin) {
      int64_t cnt = 0;
      for (int w = 0; w < workers; ++w) cnt += hist[w][c * kClassBins + bin];
      if (below + cnt >= quotas[c]) {
        thresh[c] = bin;
        need[c] = quotas[c] - below;
        break;
      }
      below += cnt;
    }
    if (thresh[c] < 0) {  // fewer rows than the quota: take them all
      thresh[c] = kClassBins;
      need[c] = 0;
    }
    take[c] = std::min<int64_t>(quotas[c], below + need[c]);
  }
  hist.clear();
  hist.shrink_to_fit();
  // pass 3: collect (class, key) for rows below or in their class's threshold bin
  struct Item {
    uint32_t cls;
    uint32_t in_bin;
    uint64_t key;
  };
  std::vector<std::vector<Item>> found(workers);
  parallel_split(n, workers, [&](int w, int64_t b, int64_t e) {
    auto& f = found[w];
    for (int64_t i = b; i < e; ++i) {
      uint32_t l;
      if (!selectable(i, l)) continue;
      const uint64_t key = packed(scores, i, largest);
      const int bin = static_cast<int>(((key >> 32) - kmin) >> shift);
      if (bin < thresh[l]) f.push_back({l, 0, key});
      else if (bin == thresh[l]) f.push_back({l, 1, key});
    }
  });
  std::vector<std::vector<uint64_t>> sure(num_classes), cand(num_classes);
  for (auto& f : found) {
    for (const Item& it : f) (it.in_bin ? cand : sure)[it.cls].push_back(it.key);
  }
  found.clear();
  std::vector<int64_t> out_start(num_classes + 1, 0);
  for (int64_t c = 0; c < num_classes; ++c) out_start[c + 1] = out_start[c] + take[c];
  std::vector<int64_t> out(static_cast<size_t>(out_start[num_classes]));
  parallel_for(num_classes, 1, threads, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      if (take[c] == 0) continue;
      auto& keys = sure[c];
      auto& cd = cand[c];
      const int64_t m = std::min<int64_t>(need[c], static_cast<int64_t>(cd.size()));
      std::nth_element(cd.begin(), cd.begin() + m, cd.end());
      keys.insert(keys.end(), cd.begin(), cd.begin() + m);
      std::sort(keys.begin(), keys.end());
      for (int64_t j = 0; j < take[c]; ++j) out[out_start[c] + j] = static_cast<int64_t>(keys[j] & 0xffffffffu);
    }
  });
  return out;
}

}  // namespace

std::vector<int64_t> class_topk(const float* scores, const void* labels, int label_bytes, int64_t n,
                                const int64_t* quotas, int64_t num_classes, const uint8_t* exclude,
                                bool largest, int threads, int64_t* bad_label) {
  // the histograms cost num_classes * 2,048 counters per thread: fine up to a few hundred classes
  const int64_t counters = num_classes * kClassBins * worker_count(n, kMinRowsPerThread, threads);
  if (counters <= (int64_t(1) << 24)) {
    return class_topk_radix(scores, labels, label_bytes, n, quotas, num_classes, exclude, largest, threads, bad_label);
  }
  return class_topk_sort(scores, labels, label_bytes, n, quotas, num_classes, exclude, largest, threads, bad_label);
}

}  // namespace plada
