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
  static constexpr bool kGroups = true;

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
  static F pow2_rounded(F tm) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(tm), _mm256_set1_epi32(kPow2Bias)), 23));
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
  // For GroupOps (energy_row.h): per-lane min, min(acc, col) where v == s, 0..7, store, div,
  // "where a > b take x, else y", exponent and mantissa, and
  // the 8 x 8 transpose (v[i] lane j -> v[j] lane i) in 24 shuffles.
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F min_where_eq(F acc, F v, F s, F col) {
    return _mm256_blendv_ps(acc, _mm256_min_ps(acc, col), _mm256_cmp_ps(v, s, _CMP_EQ_OQ));
  }
  static F iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  static void store(float* p, F v) { _mm256_store_ps(p, v); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F select_gt(F a, F b, F x, F y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static void split_exponent(F x, F& e, F& m) {  // x = m * 2^e, m in [1, 2), for normal x > 0
    const __m256i bits = _mm256_castps_si256(x);
    e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffff)), _mm256_set1_epi32(0x3f800000)));
  }
  static void transpose(F* r) {
    F t[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
      t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; ++i) r[i] = t[i];
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
