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
//   max(v, acc) (NaN in v keeps acc), add, mul, sub, fmadd, fmsub, round, pow2(n) (2^n, n integral),
//   NanAcc + nan_init/nan_update(acc, a, b)/nan_any, reduce_max, reduce_add, eq_mask(v, s) (bits),
//   half_to_float(src, dst, len).
template <class V>
struct VecOps {
  using F = typename V::F;
  static constexpr int64_t L = V::kLanes;

  static inline F exp_poly(F y) {  // the steps of exp_poly_scalar, L lanes at a time
    const F t = V::mul(y, V::set1(kLog2e));
    const F n = V::round(t);
    const F f = V::sub(t, n);
    F p = V::set1(kExp2C5);
    p = V::fmadd(p, f, V::set1(kExp2C4));
    p = V::fmadd(p, f, V::set1(kExp2C3));
    p = V::fmadd(p, f, V::set1(kExp2C2));
    p = V::fmadd(p, f, V::set1(kExp2C1));
    p = V::fmadd(p, f, V::set1(1.0f));
    return V::mul(p, V::pow2(n));
  }

  static void half_to_float(const uint16_t* src, float* dst, int64_t len) { V::half_to_float(src, dst, len); }

  // Max first (two accumulators, NaN test folded in), then a short scan for the first index
  // holding it: cheaper than carrying an index through every compare, and the block is in L1.
  static BlockMax block_max(const float* x, int64_t len) {
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
    BlockMax bm{V::reduce_max(V::max(m1, m0)), 0, V::nan_any(nan_acc)};
    if (bm.max == -__builtin_inff()) return bm;
    for (j = 0; j < len; j += L) {
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
void energy_rows_impl(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                      EnergyOut out) {
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

}  // namespace
}  // namespace plada
