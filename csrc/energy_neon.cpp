// AArch64 NEON vector policy for the energy kernel (NEON is mandatory on AArch64, so no run-time
// check is needed; the scalar path stays available through PLADA_EDGE_SIMD=scalar).
#include <arm_neon.h>

#include "energy_row.h"

namespace plada {
namespace {

struct Neon {
  using F = float32x4_t;
  using NanAcc = uint32x4_t;
  static constexpr int64_t kLanes = 4;
  static constexpr bool kGroups = false;  // short rows by groups: not yet written for NEON

  static uint32x4_t mask(int64_t rem) {  // lanes [0, rem) on
    const uint32_t lanes[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(lanes), vdupq_n_u32(static_cast<uint32_t>(rem)));
  }
  static F set1(float v) { return vdupq_n_f32(v); }
  static F load(const float* p) { return vld1q_f32(p); }
  static F load_tail(const float* p, int64_t rem) {
    float buf[4] = {-__builtin_inff(), -__builtin_inff(), -__builtin_inff(), -__builtin_inff()};
    for (int64_t i = 0; i < rem; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static F zero_tail(F v, int64_t rem) {
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), mask(rem)));
  }
  static F max(F v, F acc) { return vmaxnmq_f32(v, acc); }  // IEEE maxNum: a NaN in v yields acc
  static F add(F a, F b) { return vaddq_f32(a, b); }
  static F sub(F a, F b) { return vsubq_f32(a, b); }
  static F mul(F a, F b) { return vmulq_f32(a, b); }
  static F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }
  static F fmsub(F a, F b, F c) { return vfmaq_f32(vnegq_f32(c), a, b); }
  static F pow2_rounded(F tm) {
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vreinterpretq_s32_f32(tm), vdupq_n_s32(kPow2Bias)), 23));
  }
  static NanAcc nan_init() { return vdupq_n_u32(0); }
  static NanAcc nan_update(NanAcc acc, F a, F b) {
    return vorrq_u32(acc, vmvnq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b))));
  }
  static bool nan_any(NanAcc acc) { return vmaxvq_u32(acc) != 0; }
  static float reduce_max(F v) { return vmaxvq_f32(v); }
  static float reduce_add(F v) { return vaddvq_f32(v); }
  static uint64_t eq_mask(F v, float s) {
    const uint32_t weights[4] = {1, 2, 4, 8};
    const uint32x4_t bits = vandq_u32(vceqq_f32(v, vdupq_n_f32(s)), vld1q_u32(weights));
    return vaddvq_u32(bits);
  }
  static void half_to_float(const uint16_t* src, float* dst, int64_t len) {
    int64_t i = 0;
    for (; i + 4 <= len; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < len; ++i) dst[i] = half_bits_to_float(src[i]);
  }
};

}  // namespace

void energy_rows_neon(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                      EnergyOut out) {
  energy_rows_impl<VecOps<Neon>>(logits, half, n, C, temperature, out);
}

}  // namespace plada
