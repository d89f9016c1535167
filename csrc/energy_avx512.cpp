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
  static constexpr bool kGroups = true;

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
  static F pow2_rounded(F tm) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(tm), _mm512_set1_epi32(kPow2Bias)), 23));
  }
  static NanAcc nan_init() { return 0; }
  static NanAcc nan_update(NanAcc acc, F a, F b) {
    return static_cast<__mmask16>(acc | _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q));
  }
  static bool nan_any(NanAcc acc) { return acc != 0; }
  static float reduce_max(F v) { return _mm512_reduce_max_ps(v); }
  static float reduce_add(F v) { return _mm512_reduce_add_ps(v); }
  static uint64_t eq_mask(F v, float s) { return _mm512_cmp_ps_mask(v, _mm512_set1_ps(s), _CMP_EQ_OQ); }
  // For GroupOps (energy_row.h): per-lane min, min(acc, col) where v == s, 0..15, store, div,
  // "where a > b take x, else y", exponent and mantissa, and
  // the 16 x 16 transpose (v[i] lane j -> v[j] lane i) in 64 shuffles.
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F min_where_eq(F acc, F v, F s, F col) {
    return _mm512_mask_min_ps(acc, _mm512_cmp_ps_mask(v, s, _CMP_EQ_OQ), acc, col);
  }
  static F iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static void store(float* p, F v) { _mm512_store_ps(p, v); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F select_gt(F a, F b, F x, F y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x); }
  static void split_exponent(F x, F& e, F& m) {  // x = m * 2^e, m in [1, 2)
    e = _mm512_getexp_ps(x);
    m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  }
  static void transpose(F* r) {
    F t[16];
    for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // quads within each 128-bit lane
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8) {  // 128-bit lanes across row quads
      for (int i = 0; i < 4; ++i) {
        t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
        t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
      }
    }
    for (int i = 0; i < 8; ++i) {  // and across row octets
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
  }
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
