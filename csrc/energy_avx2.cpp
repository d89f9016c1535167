// AVX2 + FMA + F16C vector policy for the energy kernel. Only this file is built with
// -mavx2 -mfma -mf16c; the dispatcher calls it only after the CPU reports those features.
#include <immintrin.h>

#include "energy_row.h"

namespace plada {
namespace {

struct Avx2 {
  using F = __m256;
  using NanAcc = __m256;
  static constexpr int64_t kLanes = 8;

  static F set1(float v) { return _mm256_set1_ps(v); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i mask(int64_t rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load_tail(const float* p, int64_t rem) {
    const __m256i m = mask(rem);
    return _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static F zero_tail(F v, int64_t rem) { return _mm256_and_ps(v, _mm256_castsi256_ps(mask(rem))); }
  static F max(F v, F acc) { return _mm256_max_ps(v, acc); }  // NaN in v returns acc
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fmsub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  static F round(F v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F pow2(F n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static NanAcc nan_init() { return _mm256_setzero_ps(); }
  static NanAcc nan_update(NanAcc acc, F a, F b) { return _mm256_or_ps(acc, _mm256_cmp_ps(a, b, _CMP_UNORD_Q)); }
  static bool nan_any(NanAcc acc) { return _mm256_movemask_ps(acc) != 0; }
  static float reduce_max(F v) {
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
    v = _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
    return _mm256_cvtss_f32(v);
  }
  static float reduce_add(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static uint64_t eq_mask(F v, float s) {
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(s), _CMP_EQ_OQ)));
  }
  static void half_to_float(const uint16_t* src, float* dst, int64_t len) {
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    }
    for (; i < len; ++i) dst[i] = half_bits_to_float(src[i]);
  }
};

}  // namespace

void energy_rows_avx2(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                      EnergyOut out) {
  energy_rows_impl<VecOps<Avx2>>(logits, half, n, C, temperature, out);
}

}  // namespace plada
