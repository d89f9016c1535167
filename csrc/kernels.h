// Declarations shared by the native kernels and their dispatcher.
//
// Each instruction set (scalar, AVX2, AVX-512, NEON) is compiled in its own translation unit with its
// own flags; the dispatcher in dispatch.cpp picks one at run time from the CPU's features, so
// the module itself is built for the baseline ISA (as FAISS and numpy do).
#pragma once
#include <cstdint>

namespace plada {

// Per-row flag bits written by energy_stats (see plada_edge/core/twins.py for the same values).
enum RowFlag : uint8_t {
  kFlagNaN = 1,     // a NaN anywhere in the row
  kFlagPosInf = 2,  // a +inf logit (only kept when nan_policy="flag")
  kFlagEmpty = 4,   // every logit is -inf: energy is +inf, nothing to learn from
};

// The smallest unsigned label type for C classes, in bytes: 1, 2 or 4. One rule, mirrored by
// plada_edge.core.twins.label_dtype (tests/test_energy.py holds the two together).
inline int label_bytes_for(int64_t num_classes) {
  return num_classes <= (int64_t{1} << 8) ? 1 : num_classes <= (int64_t{1} << 16) ? 2 : 4;
}

// Outputs of energy_stats for rows [0, n) of one contiguous block.
struct EnergyOut {
  float* energy;
  void* label;       // uint8, uint16 or uint32, per label_bytes
  int label_bytes;
  float* entropy;
  uint8_t* flags;
};

// One ISA's implementation: processes n rows of C logits (row-major, contiguous).
// `half` selects IEEE float16 input instead of float32.
using EnergyRowsFn = void (*)(const void* logits, bool half, int64_t n, int64_t C,
                              float temperature, EnergyOut out);

void energy_rows_scalar(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                        EnergyOut out);
#if defined(__x86_64__) || defined(_M_X64)
void energy_rows_avx512(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                        EnergyOut out);
void energy_rows_avx2(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                      EnergyOut out);
#endif
#if defined(__aarch64__)
void energy_rows_neon(const void* logits, bool half, int64_t n, int64_t C, float temperature,
                      EnergyOut out);
#endif

}  // namespace plada
