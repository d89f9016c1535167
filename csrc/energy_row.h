// The energy_stats row kernel, written once over an ISA "Ops" policy (scalar, AVX2, AVX-512, NEON).
//
// Paper §3 (energy scoring): E(x) = -T * logsumexp(z / T). Per row we also want the argmax label
// and the softmax entropy, in ONE pass over memory: the row is walked in L1-sized blocks; each
// block is read once from memory for its max/argmax/NaN check and a second time from L1 for the
// exp sums. A running max with rescaling ("online softmax") joins the blocks, so a 21,841-class
// row costs the same memory traffic as a 10-class one per logit.
//
// Everything here sits in an anonymous namespace: each ISA's translation unit gets its own copy,
// compiled with its own flags, and the linker can never swap an AVX2 copy into the scalar path.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels.h"

namespace plada {
namespace {

constexpr int64_t kBlock = 1024;   // floats per block: 4 KiB, comfortably inside L1
constexpr float kExpFloor = -87.0f;  // exp(-87) ~ 1.6e-38: still a normal float, and 0 * -inf is avoided

struct BlockMax {
  float max;        // max over non-NaN entries (-inf if none)
  int64_t argmax;   // first index of that max within the block
  bool nan;         // any NaN in the block
};

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal half: normalise
      int shift = 0;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        ++shift;
      }
      mant &= 0x3ffu;
      bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mant << 13);
    }
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

// exp(y) for y in [kExpFloor, 0] as 2^n * p(f), y*log2(e) = n + f, |f| <= 1/2, with p a degree-5
// near-minimax fit of 2^f (relative error < 2e-7 in float32). Every ISA runs these same steps,
// so all paths round alike on every architecture.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kExp2C1 = 0.6931470036506653f;
constexpr float kExp2C2 = 0.24022242426872253f;
constexpr float kExp2C3 = 0.05550733581185341f;
constexpr float kExp2C4 = 0.009671512991189957f;
constexpr float kExp2C5 = 0.001326472731307149f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: t + it holds rint(t) in its low mantissa bits
constexpr int32_t kPow2Bias = 127 - 0x4B400000;  // the float bits of kRoundMagic, less the exponent bias

inline float exp_poly_scalar(float y) {
  const float t = y * kLog2e;
  const float n = __builtin_rintf(t);
  const float f = t - n;
  float p = kExp2C5;
  p = __builtin_fmaf(p, f, kExp2C4);
  p = __builtin_fmaf(p, f, kExp2C3);
  p = __builtin_fmaf(p, f, kExp2C2);
  p = __builtin_fmaf(p, f, kExp2C1);
  p = __builtin_fmaf(p, f, 1.0f);
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// The SIMD block passes, written once over a vector policy V (AVX2, AVX-512, NEON) providing:
//   F (float vector), kLanes, set1, load, load_tail(p, rem) (-inf beyond rem), zero_tail(v, rem),
//   max(v, acc) (NaN in v keeps acc), add, mul, sub, fmadd, fmsub, pow2_rounded(t + kRoundMagic) (2^rint(t)),
//   NanAcc + nan_init/nan_update(acc, a, b)/nan_any, reduce_max, reduce_add, eq_mask(v, s) (bits),
//   half_to_float(src, dst, len).
template <class V>
struct VecOps {
  using F = typename V::F;
  using Policy = V;
  static constexpr int64_t L = V::kLanes;
  static constexpr bool kGroups = V::kGroups;  // the policy has GroupOps' extra ops (see its ISA files)

  // The steps of exp_poly_scalar, L lanes at a time. rint(t) comes from adding and subtracting
  // 1.5 * 2^23 (exact for |t| < 2^22, round-to-nearest-even like rintf), and 2^n from the low
  // mantissa bits of that sum: two cheap adds instead of a round and a float-to-int conversion.
  static inline F exp_poly(F y) {
    const F t = V::mul(y, V::set1(kLog2e));
    const F tm = V::add(t, V::set1(kRoundMagic));
    const F n = V::sub(tm, V::set1(kRoundMagic));
    const F f = V::sub(t, n);
    F p = V::set1(kExp2C5);
    p = V::fmadd(p, f, V::set1(kExp2C4));
    p = V::fmadd(p, f, V::set1(kExp2C3));
    p = V::fmadd(p, f, V::set1(kExp2C2));
    p = V::fmadd(p, f, V::set1(kExp2C1));
    p = V::fmadd(p, f, V::set1(1.0f));
    return V::mul(p, V::pow2_rounded(tm));
  }

  static void half_to_float(const uint16_t* src, float* dst, int64_t len) { V::half_to_float(src, dst, len); }

  // Max first (two accumulators, NaN test folded in), then a short scan for the first index
  // holding it: cheaper than carrying an index through every compare, and the block is in L1.
  // Per-lane max of x[0, len) (two accumulators, NaN ignored), and whether any entry is NaN.
  static F lane_max(const float* x, int64_t len, bool& nan) {
    F m0 = V::set1(-__builtin_inff()), m1 = m0;
    auto nan_acc = V::nan_init();
    int64_t j = 0;
    for (; j + 2 * L <= len; j += 2 * L) {
      const F v0 = V::load(x + j);
      const F v1 = V::load(x + j + L);
      m0 = V::max(v0, m0);
      m1 = V::max(v1, m1);
      nan_acc = V::nan_update(nan_acc, v0, v1);
    }
    for (; j < len; j += L) {
      const F v = (j + L <= len) ? V::load(x + j) : V::load_tail(x + j, len - j);
      m0 = V::max(v, m0);
      nan_acc = V::nan_update(nan_acc, v, v);
    }
    nan = V::nan_any(nan_acc);
    return V::max(m1, m0);
  }

  static BlockMax block_max(const float* x, int64_t len) {
    bool nan = false;
    BlockMax bm{V::reduce_max(lane_max(x, len, nan)), 0, false};
    bm.nan = nan;
    if (bm.max == -__builtin_inff()) return bm;
    for (int64_t j = 0; j < len; j += L) {
      const F v = (j + L <= len) ? V::load(x + j) : V::load_tail(x + j, len - j);
      const uint64_t hit = V::eq_mask(v, bm.max);
      if (hit) {
        bm.argmax = j + __builtin_ctzll(hit);
        break;
      }
    }
    return bm;
  }

  // One vector per iteration: the exp keeps ~10 constants live, and a second chain would spill
  // the accumulators on 16-register ISAs; out-of-order execution overlaps iterations anyway.
  static void block_expsum(const float* x, int64_t len, float inv_t, float m, double& sum_e,
                           double& sum_ey) {
    const F vt = V::set1(inv_t), vm = V::set1(m), floor = V::set1(kExpFloor);
    F se = V::set1(0.0f), sy = se;
    int64_t j = 0;
    for (; j + L <= len; j += L) {
      const F y = V::max(V::fmsub(V::load(x + j), vt, vm), floor);
      const F e = exp_poly(y);
      se = V::add(se, e);
      sy = V::fmadd(e, y, sy);
    }
    if (j < len) {
      const F y = V::max(V::fmsub(V::load_tail(x + j, len - j), vt, vm), floor);
      const F e = V::zero_tail(exp_poly(y), len - j);
      se = V::add(se, e);
      sy = V::fmadd(e, y, sy);
    }
    sum_e += static_cast<double>(V::reduce_add(se));
    sum_ey += static_cast<double>(V::reduce_add(sy));
  }
};

// Short rows (C <= kGroupMaxC): L rows at a time, one row per vector lane for every
// reduction. Per row, the row path above pays a fixed, latency-bound cost (a horizontal max, a
// scan for the first argmax with a branch miss, two horizontal sums) that at C ~ 100 outweighs
// the memory traffic. Here each row keeps whole-vector accumulators (max, exp sums, first index
// of the max), and one L x L transpose per quantity turns L rows' accumulators into one vector
// whose lane i belongs to row i, so every horizontal reduction becomes L - 1 vertical ops shared
// by L rows. A row's answer depends on its own logits only, never on its group's other rows, so
// thread splits and partial groups cannot change a bit. Rows holding NaN, +inf or only -inf are
// handed back to the row path, which owns those rules.
constexpr int64_t kGroupMaxC = 1024;
alignas(64) constexpr float kZeroRow[kGroupMaxC] = {};  // stands in for the missing rows of a partial group

template <class V>
struct GroupOps {
  using F = typename V::F;
  using Ops = VecOps<V>;
  static constexpr int64_t L = V::kLanes;

  struct Result {
    alignas(64) float sum_e[L];
    alignas(64) float sum_ey[L];
    alignas(64) float first[L];  // first column holding the row's max, as a float (exact below 2^24)
    alignas(64) float m[L];      // max(z) / T per row
    alignas(64) float energy[L];
    alignas(64) float entropy[L];
    bool special[L];             // NaN, +inf or only -inf: the row path decides
  };

  // rows[i]: row i's C logits (kZeroRow for lanes past the end of the pack).
  // next: the next group's rows (row_bytes each, contiguous), prefetched while this group's exps run.
  static void group(const float* const* rows, const char* next, int64_t row_bytes, int64_t C, float temperature,
                    Result& r) {
    const float inv_t = 1.0f / temperature;
    alignas(64) F acc[L];
    for (int64_t i = 0; i < L; ++i) acc[i] = Ops::lane_max(rows[i], C, r.special[i]);
    const F row_max = vertical_max(acc);
    alignas(64) float z_max[L];
    V::store(z_max, row_max);
    V::store(r.m, V::mul(row_max, V::set1(inv_t)));
    for (int64_t i = 0; i < L; ++i) {
      const float m = r.m[i];
      r.special[i] = r.special[i] || m == __builtin_inff() || m == -__builtin_inff();
    }
    alignas(64) F se[L], sy[L], first[L];
    for (int64_t i = 0; i < L; i += 2) {  // two rows at a time: their dependency chains overlap
      for (int64_t k = i * row_bytes; k < (i + 2) * row_bytes; k += 64) __builtin_prefetch(next + k, 0, 2);  // to L2
      expsum_pair(rows[i], rows[i + 1], C, inv_t, r.special[i] ? 0.0f : r.m[i], r.special[i + 1] ? 0.0f : r.m[i + 1],
                  z_max[i], z_max[i + 1], se + i, sy + i, first + i);
    }
    V::store(r.sum_e, vertical_sum(se));
    V::store(r.sum_ey, vertical_sum(sy));
    V::store(r.first, vertical_min(first));
    // energy -T * (m + log S) and entropy log S - sum(e y) / S, all rows at once (S >= 1: the max's e is 1)
    const F sum_e = V::load(r.sum_e), log_s = log_poly(sum_e);
    V::store(r.energy, V::mul(V::set1(-temperature), V::add(V::load(r.m), log_s)));
    V::store(r.entropy, V::sub(log_s, V::div(V::load(r.sum_ey), sum_e)));
  }

  // log(x) for normal x > 0: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), then Cephes' logf
  // polynomial in m - 1 (about 1 ulp) and e * ln 2 in two parts.
  static F log_poly(F x) {
    F e, m;
    V::split_exponent(x, e, m);  // m in [1, 2)
    const F one = V::set1(1.0f);
    const F high = V::set1(1.41421356237f);
    e = V::select_gt(m, high, V::add(e, one), e);
    m = V::select_gt(m, high, V::mul(m, V::set1(0.5f)), m);
    const F f = V::sub(m, one);
    const F z = V::mul(f, f);
    F p = V::set1(7.0376836292e-2f);
    p = V::fmadd(p, f, V::set1(-1.1514610310e-1f));
    p = V::fmadd(p, f, V::set1(1.1676998740e-1f));
    p = V::fmadd(p, f, V::set1(-1.2420140846e-1f));
    p = V::fmadd(p, f, V::set1(1.4249322787e-1f));
    p = V::fmadd(p, f, V::set1(-1.6668057665e-1f));
    p = V::fmadd(p, f, V::set1(2.0000714765e-1f));
    p = V::fmadd(p, f, V::set1(-2.4999993993e-1f));
    p = V::fmadd(p, f, V::set1(3.3333331174e-1f));
    F y = V::mul(V::mul(p, f), z);
    y = V::fmadd(e, V::set1(-2.12194440e-4f), y);
    y = V::fmadd(z, V::set1(-0.5f), y);
    return V::fmadd(e, V::set1(0.693359375f), V::add(f, y));
  }

  // Row a's and row b's exp sums (sum e, sum e*y) and first column equal to their max, per lane.
  static void expsum_pair(const float* xa, const float* xb, int64_t C, float inv_t, float ma, float mb, float za,
                          float zb, F* se, F* sy, F* first) {
    const F vt = V::set1(inv_t), floor = V::set1(kExpFloor);
    const F vma = V::set1(ma), vmb = V::set1(mb), vza = V::set1(za), vzb = V::set1(zb);
    const F step = V::set1(static_cast<float>(L));
    F sa = V::set1(0.0f), sb = sa, ta = sa, tb = sa, fa = V::set1(static_cast<float>(kGroupMaxC)), fb = fa;
    F col = V::iota();
    // one column block of both rows; `tail` zeroes the exps past C
    auto step_both = [&](F va, F vb, bool tail, int64_t rem) {
      const F ya = V::max(V::fmsub(va, vt, vma), floor), yb = V::max(V::fmsub(vb, vt, vmb), floor);
      F ea = Ops::exp_poly(ya), eb = Ops::exp_poly(yb);
      if (tail) ea = V::zero_tail(ea, rem), eb = V::zero_tail(eb, rem);
      sa = V::add(sa, ea);
      sb = V::add(sb, eb);
      ta = V::fmadd(ea, ya, ta);
      tb = V::fmadd(eb, yb, tb);
      fa = V::min_where_eq(fa, va, vza, col);
      fb = V::min_where_eq(fb, vb, vzb, col);
      col = V::add(col, step);
    };
    int64_t j = 0;
    for (; j + L <= C; j += L) step_both(V::load(xa + j), V::load(xb + j), false, 0);
    if (j < C) step_both(V::load_tail(xa + j, C - j), V::load_tail(xb + j, C - j), true, C - j);
    se[0] = sa, se[1] = sb, sy[0] = ta, sy[1] = tb, first[0] = fa, first[1] = fb;
  }

  // v[i] holds row i's partial results in its lanes; after the transpose v[j] holds lane j of
  // every row, so reducing over j is vertical.
  static F vertical_max(F* v) {
    V::transpose(v);
    F out = v[0];
    for (int64_t j = 1; j < L; ++j) out = V::max(v[j], out);
    return out;
  }
  static F vertical_sum(F* v) {
    V::transpose(v);
    F out = v[0];
    for (int64_t j = 1; j < L; ++j) out = V::add(out, v[j]);
    return out;
  }
  static F vertical_min(F* v) {
    V::transpose(v);
    F out = v[0];
    for (int64_t j = 1; j < L; ++j) out = V::min(out, v[j]);
    return out;
  }
};

// Running state of one row: online max with rescaled sums (paper §3 energy, plus entropy).
struct RowState {
  double sum_e = 0.0, sum_ey = 0.0;  // sum exp(y), sum exp(y) * y, with y = z / T - m
  float m = -__builtin_inff();       // running max of z / T
  float best = -__builtin_inff();    // running max of z, for the label
  int64_t best_i = 0;
  bool has_nan = false, has_pinf = false;

  // Folds in one block's max; returns true when the block's exp sums are still needed.
  bool add_block_max(const BlockMax& bm, int64_t offset, float inv_t) {
    has_nan |= bm.nan;
    if (bm.max > best) {  // strict: the earlier block keeps ties
      best = bm.max;
      best_i = offset + bm.argmax;
    }
    const float bm_t = bm.max * inv_t;
    if (bm_t == __builtin_inff()) has_pinf = true;  // +inf, or z / T overflowing float32
    if (has_nan || has_pinf || bm_t == -__builtin_inff()) return false;
    if (bm_t > m) {
      if (sum_e > 0.0) {
        const double d = static_cast<double>(m) - bm_t;
        const double e = __builtin_exp(d);
        sum_ey = e * (sum_ey + d * sum_e);
        sum_e = e * sum_e;
      }
      m = bm_t;
    }
    return true;
  }

  void write(EnergyOut& out, int64_t r, float temperature) const {
    uint8_t flag = 0;
    float energy, entropy;
    int64_t label = best_i;
    if (has_nan || has_pinf) {
      flag = static_cast<uint8_t>((has_nan ? kFlagNaN : 0) | (has_pinf ? kFlagPosInf : 0));
      energy = entropy = __builtin_nanf("");
      label = 0;
    } else if (m == -__builtin_inff()) {
      flag = kFlagEmpty;
      energy = __builtin_inff();
      entropy = __builtin_nanf("");
      label = 0;
    } else {
      const double log_s = __builtin_log(sum_e);
      energy = static_cast<float>(-static_cast<double>(temperature) * (m + log_s));
      entropy = static_cast<float>(log_s - sum_ey / sum_e);
    }
    out.energy[r] = energy;
    out.entropy[r] = entropy;
    out.flags[r] = flag;
    switch (out.label_bytes) {
      case 1: static_cast<uint8_t*>(out.label)[r] = static_cast<uint8_t>(label); break;
      case 2: static_cast<uint16_t*>(out.label)[r] = static_cast<uint16_t>(label); break;
      default: static_cast<uint32_t*>(out.label)[r] = static_cast<uint32_t>(label); break;
    }
  }
};

template <class Ops>
void energy_rows_each(const void* logits, bool half, int64_t n, int64_t C, float temperature, EnergyOut out);

// energy_rows_impl's short-row path: GroupOps over L rows at a time, special rows by the row path.
// float16 rows are widened first, so they give exactly what the same values as float32 give.
template <class V>
void energy_groups_impl(const void* logits, bool half, int64_t n, int64_t C, float temperature, EnergyOut out) {
  using G = GroupOps<V>;
  constexpr int64_t L = G::L;
  const int64_t row_bytes = C * (half ? 2 : 4);
  const char* base = static_cast<const char*>(logits);
  std::vector<float> widened(half ? L * C : 0);
  const float* rows[L];
  typename G::Result res;
  for (int64_t r0 = 0; r0 < n; r0 += L) {
    const int64_t valid = (n - r0 < L) ? n - r0 : L;
    for (int64_t i = 0; i < L; ++i) {
      const char* row = base + (r0 + i) * row_bytes;
      if (i >= valid) {
        rows[i] = kZeroRow;
      } else if (half) {
        VecOps<V>::half_to_float(reinterpret_cast<const uint16_t*>(row), widened.data() + i * C, C);
        rows[i] = widened.data() + i * C;
      } else {
        rows[i] = reinterpret_cast<const float*>(row);
      }
    }
    G::group(rows, base + ((r0 + L < n) ? r0 + L : r0) * row_bytes, row_bytes, C, temperature, res);
    for (int64_t i = 0; i < valid; ++i) {
      const int64_t r = r0 + i;
      if (res.special[i]) {
        EnergyOut one{out.energy + r, static_cast<char*>(out.label) + r * out.label_bytes, out.label_bytes,
                      out.entropy + r, out.flags + r};
        energy_rows_each<VecOps<V>>(rows[i], false, 1, C, temperature, one);
        continue;
      }
      out.energy[r] = res.energy[i];
      out.entropy[r] = res.entropy[i];
      out.flags[r] = 0;
      const auto label = static_cast<uint32_t>(res.first[i]);
      switch (out.label_bytes) {
        case 1: static_cast<uint8_t*>(out.label)[r] = static_cast<uint8_t>(label); break;
        case 2: static_cast<uint16_t*>(out.label)[r] = static_cast<uint16_t>(label); break;
        default: static_cast<uint32_t*>(out.label)[r] = label; break;
      }
    }
  }
}

// The row path: each row on its own, any C, float32 or float16.
template <class Ops>
void energy_rows_each(const void* logits, bool half, int64_t n, int64_t C, float temperature, EnergyOut out) {
  const float inv_t = 1.0f / temperature;
  const auto* f32 = static_cast<const float*>(logits);
  const auto* f16 = static_cast<const uint16_t*>(logits);
  // L1-sized blocks joined by the online max; short rows are a single block.
  alignas(64) float buf[kBlock];
  for (int64_t r = 0; r < n; ++r) {
    RowState st;
    for (int64_t b0 = 0; b0 < C; b0 += kBlock) {
      const int64_t len = (C - b0 < kBlock) ? C - b0 : kBlock;
      const float* x = f32 + r * C + b0;
      if (half) {
        Ops::half_to_float(f16 + r * C + b0, buf, len);
        x = buf;
      }
      if (st.add_block_max(Ops::block_max(x, len), b0, inv_t)) {
        Ops::block_expsum(x, len, inv_t, st.m, st.sum_e, st.sum_ey);
      }
    }
    st.write(out, r, temperature);
  }
}

// Every ISA's entry: short float32 rows by groups where the policy has them, the rest row by row.
template <class Ops>
void energy_rows_impl(const void* logits, bool half, int64_t n, int64_t C, float temperature, EnergyOut out) {
  if constexpr (Ops::kGroups) {
    if (C <= kGroupMaxC) {
      energy_groups_impl<typename Ops::Policy>(logits, half, n, C, temperature, out);
      return;
    }
  }
  energy_rows_each<Ops>(logits, half, n, C, temperature, out);
}

}  // namespace
}  // namespace plada
