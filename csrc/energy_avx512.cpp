// AVX-512 (F + BW + DQ + VL) vector policy for the energy kernel: 16 lanes and masked tails.
// Only this file is built with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c.
#include <immintrin.h>

#include "energy_row.h"

namespace plada {
namespace {

struct Avx512 {
  using F = __m512;
  using NanAcc = __mmask16;
  static constexpr int64_t kLanes = 16;

  static __mmask16 mask(int64_t rem) { return static_cast<__mmask16>((1u << rem) - 1u); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_tail(const float* p, int64_t rem) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), mask(rem), p);
  }
  static F zero_tail(F v, int64_t rem) { return _mm512_maskz_mov_ps(mask(rem), v); }
  static F max(F v, F acc) { return _mm512_max_ps(v, acc); }  // NaN in v returns acc
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fmsub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }
  static F round(F v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F pow2(F n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static NanAcc nan_init() { return 0; }
  static NanAcc nan_update(NanAcc acc, F a, F b) {
    return static_cast<__mmask16>(acc | _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q));
  }
  static bool nan_any(NanAcc acc) { return acc != 0; }
  static float reduce_max(F v) { return _mm512_reduce_max_ps(v); }
  static float reduce_add(F v) { return _mm512_reduce_add_ps(v); }
  static uint64_t eq_mask(F v, float s) { return _mm512_cmp_ps_mask(v, _mm512_set1_ps(s), _CMP_EQ_OQ); }
  static void half_to_float(const uint16_t* src, float* dst, int64_t len) {
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    }
    for (; i < len; ++i) dst[i] = half_bits_to_float(src[i]);
  }
};

}  // namespace

void energy_rows_avx512(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                        EnergyOut out) {
  energy_rows_impl<VecOps<Avx512>>(logits, half, n, C, temperature, out);
}

}  // namespace plada
