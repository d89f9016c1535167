// The "model" payload codec: adaptive binary arithmetic coding of (gap, label) sequences.
//
// A payload is a sorted index list plus one label per index. Real reference sets are laid out by
// class folder, so kept indices cluster (small gaps in runs, rare long jumps) and labels come in
// runs. The model codes, per kept image:
//   gap class   b = floor(log2 gap), 6-bit binary tree, context: the previous gap class
//   mantissa    the top 3 bits below the leading one adaptively (context: b), the rest raw
//   label       relative to the "run label" r (the last label seen twice in a row, which one
//               stray label does not displace):
//               C <= 64: a binary tree over the label bits, context: r
//               C >  64: a "label == r" bit (context: gap size, current streak), then, if not,
//                        a binary tree with order-0 contexts
// The coder is LZMA's range coder with 16-bit probabilities, each the mean of a fast (shift 4)
// and a slow (shift 7) adaptive estimate: quick to learn, precise once learnt. Pure integer
// arithmetic, so every platform writes the same bytes. plada_edge/core/model_codec.py is the
// Python twin and must stay bit-for-bit identical.
#include "codec.h"

#include <stdexcept>
#include <vector>

namespace plada {
namespace {

constexpr uint32_t kTop = 1u << 24;
constexpr int kProbBits = 16;
constexpr uint32_t kProbMin = 64, kProbMax = (1u << kProbBits) - 64;
constexpr int kFast = 4, kSlow = 7;

// P(bit = 0) in 1/65536, as two estimates adapting at different speeds.
struct Prob {
  uint16_t fast = 1u << 15, slow = 1u << 15;
  uint32_t p() const {
    const uint32_t m = (static_cast<uint32_t>(fast) + slow) >> 1;
    return m < kProbMin ? kProbMin : (m > kProbMax ? kProbMax : m);
  }
  void update(int bit) {
    if (bit == 0) {
      fast = static_cast<uint16_t>(fast + (((1u << kProbBits) - fast) >> kFast));
      slow = static_cast<uint16_t>(slow + (((1u << kProbBits) - slow) >> kSlow));
    } else {
      fast = static_cast<uint16_t>(fast - (fast >> kFast));
      slow = static_cast<uint16_t>(slow - (slow >> kSlow));
    }
  }
};
constexpr int kBucketBits = 6;    // gap classes 0..63 (only 0..32 occur for N < 2^32)
constexpr int kMantissaBits = 3;  // adaptive mantissa bits below the leading one
constexpr int kMaxBucket = 32;

int label_bits(int64_t c) {
  int bits = 1;
  while ((int64_t(1) << bits) < c) ++bits;
  return bits;
}

int gap_class(int b) { return b < 2 ? 0 : (b < 8 ? 1 : 2); }

int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

class Encoder {
 public:
  void bit(Prob& p, int b) {
    const uint32_t bound = (range_ >> kProbBits) * p.p();
    if (b == 0) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    p.update(b);
    while (range_ < kTop) {
      range_ <<= 8;
      shift_low();
    }
  }
  void direct(uint64_t value, int nbits) {
    for (int i = nbits - 1; i >= 0; --i) {
      range_ >>= 1;
      if ((value >> i) & 1) low_ += range_;
      while (range_ < kTop) {
        range_ <<= 8;
        shift_low();
      }
    }
  }
  std::string finish() {
    for (int i = 0; i < 5; ++i) shift_low();
    // The first byte is the initial zero cache (a carry can never reach it): not stored.
    if (out_.empty() || out_[0] != 0) throw std::logic_error("range coder: unexpected first byte");
    return out_.substr(1);
  }

 private:
  void shift_low() {
    if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
      const uint8_t carry = static_cast<uint8_t>(low_ >> 32);
      uint8_t temp = cache_;
      do {
        out_.push_back(static_cast<char>(static_cast<uint8_t>(temp + carry)));
        temp = 0xFF;
      } while (--cache_size_ != 0);
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++cache_size_;
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  uint64_t cache_size_ = 1;
  std::string out_;
};

class Decoder {
 public:
  Decoder(const uint8_t* data, size_t len) : data_(data), len_(len) {
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | next();
  }
  int bit(Prob& p) {
    const uint32_t bound = (range_ >> kProbBits) * p.p();
    int b;
    if (code_ < bound) {
      range_ = bound;
      b = 0;
    } else {
      code_ -= bound;
      range_ -= bound;
      b = 1;
    }
    p.update(b);
    normalize();
    return b;
  }
  uint64_t direct(int nbits) {
    uint64_t v = 0;
    for (int i = 0; i < nbits; ++i) {
      range_ >>= 1;
      int b = 0;
      if (code_ >= range_) {
        code_ -= range_;
        b = 1;
      }
      v = (v << 1) | static_cast<uint64_t>(b);
      normalize();
    }
    return v;
  }
  size_t overrun() const { return pos_ > len_ ? pos_ - len_ : 0; }

 private:
  uint8_t next() { return pos_ < len_ ? data_[pos_++] : (++pos_, 0); }
  void normalize() {
    while (range_ < kTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | next();
    }
  }
  const uint8_t* data_;
  size_t len_, pos_ = 0;
  uint32_t code_ = 0, range_ = 0xFFFFFFFFu;
};

// All adaptive probabilities of one stream, laid out identically in the Python twin.
struct Model {
  explicit Model(int64_t c) : c(c), lbits(label_bits(c)) {
    bucket.resize((kMaxBucket + 1) << kBucketBits);
    mantissa.resize((kMaxBucket + 1) << kMantissaBits);
    if (c > 1 && c <= 64) label1.resize(static_cast<size_t>(c) << lbits);
    if (c > 64) {
      is_run.resize(12);
      label0.resize(size_t(1) << lbits);
    }
  }
  int64_t c;
  int lbits;
  std::vector<Prob> bucket, mantissa, label1, is_run, label0;
};

// The label context: the run label r and how long the current streak of r has lasted.
struct LabelState {
  int64_t run = 0, prev = 0;
  int streak = 0;
  void update(int64_t label) {
    streak = label == run ? (streak < 3 ? streak + 1 : 3) : 0;
    if (label == prev && label != run) {  // seen twice in a row: a new run
      run = label;
      streak = 2;
    }
    prev = label;
  }
};

}  // namespace

std::string model_encode(const int64_t* indices, const int64_t* labels, int64_t k, int64_t c) {
  Model m(c);
  Encoder enc;
  int prev_b = 0;
  int64_t prev_idx = -1;
  LabelState ls;
  for (int64_t i = 0; i < k; ++i) {
    const uint64_t gap = static_cast<uint64_t>(indices[i] - prev_idx);
    const int b = bit_length(gap) - 1;
    Prob* pb = &m.bucket[static_cast<size_t>(prev_b) << kBucketBits];
    for (int j = kBucketBits - 1, node = 1; j >= 0; --j) {
      const int bit = (b >> j) & 1;
      enc.bit(pb[node], bit);
      node = node * 2 + bit;
    }
    const int t = b < kMantissaBits ? b : kMantissaBits;
    const uint64_t mant = gap - (uint64_t(1) << b);
    Prob* pm = &m.mantissa[static_cast<size_t>(b) << kMantissaBits];
    for (int j = t - 1, node = 1; j >= 0; --j) {
      const int bit = static_cast<int>((mant >> (b - t + j)) & 1);
      enc.bit(pm[node], bit);
      node = node * 2 + bit;
    }
    enc.direct(mant & ((uint64_t(1) << (b - t)) - 1), b - t);
    const int64_t label = labels[i];
    const int gc = gap_class(b);
    if (c > 1 && c <= 64) {
      Prob* pl = &m.label1[static_cast<size_t>(ls.run) << m.lbits];
      for (int j = m.lbits - 1, node = 1; j >= 0; --j) {
        const int bit = static_cast<int>((label >> j) & 1);
        enc.bit(pl[node], bit);
        node = node * 2 + bit;
      }
    } else if (c > 64) {
      const int hit = label == ls.run;
      enc.bit(m.is_run[gc * 4 + ls.streak], hit);
      if (!hit) {
        for (int j = m.lbits - 1, node = 1; j >= 0; --j) {
          const int bit = static_cast<int>((label >> j) & 1);
          enc.bit(m.label0[node], bit);
          node = node * 2 + bit;
        }
      }
    }
    ls.update(label);
    prev_b = b;
    prev_idx = indices[i];
  }
  return enc.finish();
}

void model_decode(const uint8_t* data, size_t len, uint64_t n, int64_t c, int64_t k, int64_t* indices,
                  int64_t* labels) {
  Model m(c);
  Decoder dec(data, len);
  int prev_b = 0;
  int64_t prev_idx = -1;
  LabelState ls;
  for (int64_t i = 0; i < k; ++i) {
    int b = 0;
    Prob* pb = &m.bucket[static_cast<size_t>(prev_b) << kBucketBits];
    for (int j = 0, node = 1; j < kBucketBits; ++j) {
      const int bit = dec.bit(pb[node]);
      node = node * 2 + bit;
      b = (b << 1) | bit;
    }
    if (b > kMaxBucket) throw std::runtime_error("model body: gap class out of range at item " + std::to_string(i));
    const int t = b < kMantissaBits ? b : kMantissaBits;
    uint64_t mant = 0;
    Prob* pm = &m.mantissa[static_cast<size_t>(b) << kMantissaBits];
    for (int j = 0, node = 1; j < t; ++j) {
      const int bit = dec.bit(pm[node]);
      node = node * 2 + bit;
      mant = (mant << 1) | static_cast<uint64_t>(bit);
    }
    mant = (mant << (b - t)) | dec.direct(b - t);
    const uint64_t gap = (uint64_t(1) << b) + mant;
    const int64_t idx = prev_idx + static_cast<int64_t>(gap);
    if (static_cast<uint64_t>(idx) >= n) {
      throw std::runtime_error("model body: index " + std::to_string(idx) + " at item " + std::to_string(i) +
                               " is out of range for N = " + std::to_string(n));
    }
    int64_t label = 0;
    const int gc = gap_class(b);
    if (c > 1 && c <= 64) {
      Prob* pl = &m.label1[static_cast<size_t>(ls.run) << m.lbits];
      for (int j = 0, node = 1; j < m.lbits; ++j) {
        const int bit = dec.bit(pl[node]);
        node = node * 2 + bit;
        label = (label << 1) | bit;
      }
    } else if (c > 64) {
      if (dec.bit(m.is_run[gc * 4 + ls.streak])) {
        label = ls.run;
      } else {
        for (int j = 0, node = 1; j < m.lbits; ++j) {
          const int bit = dec.bit(m.label0[node]);
          node = node * 2 + bit;
          label = (label << 1) | bit;
        }
      }
    }
    if (label >= c) {
      throw std::runtime_error("model body: label " + std::to_string(label) + " at item " + std::to_string(i) +
                               " is >= the number of classes " + std::to_string(c));
    }
    indices[i] = idx;
    labels[i] = label;
    ls.update(label);
    prev_b = b;
    prev_idx = idx;
    // a valid body is never read past its end, so stop at once: garbage costs O(body), not O(k)
    if (dec.overrun() > 0) throw std::runtime_error("model body is truncated at item " + std::to_string(i));
  }
  if (dec.overrun() > 0) throw std::runtime_error("model body is truncated");
}

}  // namespace plada
