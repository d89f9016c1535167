// Portable energy_stats path: plain C++, any CPU. Also the reference the SIMD paths are held to.
#include "energy_row.h"

namespace plada {
namespace {

struct ScalarOps {
  static constexpr bool kGroups = false;  // one lane: nothing to group
  static void half_to_float(const uint16_t* src, float* dst, int64_t len) {
    for (int64_t i = 0; i < len; ++i) dst[i] = half_bits_to_float(src[i]);
  }

  static BlockMax block_max(const float* x, int64_t len) {
    BlockMax bm{-__builtin_inff(), 0, false};
    for (int64_t i = 0; i < len; ++i) {
      const float v = x[i];
      if (v != v) bm.nan = true;
      if (v > bm.max) {
        bm.max = v;
        bm.argmax = i;
      }
    }
    return bm;
  }

  static void block_expsum(const float* x, int64_t len, float inv_t, float m, double& sum_e,
                           double& sum_ey) {
    for (int64_t i = 0; i < len; ++i) {
      float y = x[i] * inv_t - m;
      if (!(y >= kExpFloor)) y = kExpFloor;
      const float e = exp_poly_scalar(y);
      sum_e += e;
      sum_ey += static_cast<double>(e) * y;
    }
  }
};

}  // namespace

void energy_rows_scalar(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                        EnergyOut out) {
  energy_rows_impl<ScalarOps>(logits, half, n, C, temperature, out);
}

}  // namespace plada
