"""Pure-Python twin of the "model" codec in csrc/codec.cpp: same signature, same bytes.

Slow (one Python loop step per coded bit) but readable; tests hold it to the C++ byte for byte,
and it serves as the decoder where the native module is missing. See csrc/codec.cpp for the
design: LZMA's binary range coder with 16-bit two-speed probabilities; gap classes
b = floor(log2 gap) coded with a 6-bit tree in the context of the previous class; the top 3
mantissa bits adaptive, the rest raw; labels relative to the run label r: a context tree on
r when C <= 64, else a "label == r" bit plus an order-0 tree.
"""

from __future__ import annotations

import numpy as np

TOP = 1 << 24
PROB_BITS = 16
ONE = 1 << PROB_BITS
PROB_MIN, PROB_MAX = 64, ONE - 64
FAST, SLOW = 4, 7
BUCKET_BITS = 6
MANTISSA_BITS = 3
MAX_BUCKET = 32
MAX_CLASSES = 1 << 24
MASK32 = 0xFFFFFFFF


def label_bits(c: int) -> int:
    bits = 1
    while (1 << bits) < c:
        bits += 1
    return bits


def gap_class(b: int) -> int:
    return 0 if b < 2 else (1 if b < 8 else 2)


def _probs(n: int) -> list:
    """n adaptive probabilities, each [fast, slow] estimates of P(bit = 0) in 1/65536."""
    return [[ONE >> 1, ONE >> 1] for _ in range(n)]


def _p(prob) -> int:
    m = (prob[0] + prob[1]) >> 1
    return PROB_MIN if m < PROB_MIN else (PROB_MAX if m > PROB_MAX else m)


def _update(prob, bit: int) -> None:
    if bit == 0:
        prob[0] += (ONE - prob[0]) >> FAST
        prob[1] += (ONE - prob[1]) >> SLOW
    else:
        prob[0] -= prob[0] >> FAST
        prob[1] -= prob[1] >> SLOW


class _Model:
    def __init__(self, c: int):
        self.c, self.lbits = c, label_bits(c)
        self.bucket = _probs((MAX_BUCKET + 1) << BUCKET_BITS)
        self.mantissa = _probs((MAX_BUCKET + 1) << MANTISSA_BITS)
        self.label1 = _probs(c << self.lbits) if 1 < c <= 64 else []
        self.is_run = _probs(12) if c > 64 else []
        self.label0 = _probs(1 << self.lbits) if c > 64 else []


class _Labels:
    """The run label (last label seen twice in a row) and the current streak of it (capped at 3)."""

    def __init__(self):
        self.run = self.prev = self.streak = 0

    def update(self, label: int) -> None:
        self.streak = min(self.streak + 1, 3) if label == self.run else 0
        if label == self.prev and label != self.run:
            self.run, self.streak = label, 2
        self.prev = label


class _Encoder:
    def __init__(self):
        self.low, self.range, self.cache, self.cache_size = 0, MASK32, 0, 1
        self.out = bytearray()

    def _shift_low(self):
        if (self.low & MASK32) < 0xFF000000 or (self.low >> 32) != 0:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def bit(self, probs: list, i: int, b: int):
        bound = (self.range >> PROB_BITS) * _p(probs[i])
        if b == 0:
            self.range = bound
        else:
            self.low += bound
            self.range -= bound
        _update(probs[i], b)
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def direct(self, value: int, nbits: int):
        for i in range(nbits - 1, -1, -1):
            self.range >>= 1
            if (value >> i) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self._shift_low()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        assert self.out[0] == 0
        return bytes(self.out[1:])


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos, self.code, self.range = data, 0, 0, MASK32
        for _ in range(4):
            self.code = ((self.code << 8) | self._next()) & MASK32

    def _next(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def _normalize(self):
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32

    def bit(self, probs: list, i: int) -> int:
        bound = (self.range >> PROB_BITS) * _p(probs[i])
        if self.code < bound:
            self.range = bound
            b = 0
        else:
            self.code -= bound
            self.range -= bound
            b = 1
        _update(probs[i], b)
        self._normalize()
        return b

    def direct(self, nbits: int) -> int:
        v = 0
        for _ in range(nbits):
            self.range >>= 1
            b = 0
            if self.code >= self.range:
                self.code -= self.range
                b = 1
            v = (v << 1) | b
            self._normalize()
        return v


def _check_classes(n: int, c: int) -> None:
    if not 1 <= c <= MAX_CLASSES:
        raise ValueError(f"the model codec needs 1 <= C <= 2^24, got {c}")
    if n >= 1 << 32:
        raise ValueError("the model codec supports N < 2^32")


def model_encode(indices, labels, n: int, c: int) -> bytes:
    """Encode strictly increasing ``indices`` in [0, n) and their ``labels`` in [0, c)."""
    _check_classes(n, c)
    idx = np.asarray(indices, np.int64)
    lab = np.asarray(labels, np.int64)
    if idx.ndim != 1 or lab.ndim != 1 or len(idx) != len(lab):
        raise ValueError("indices and labels must be 1-D and of equal length")
    if len(idx) and (idx[0] < 0 or idx[-1] >= n or (np.diff(idx) <= 0).any()):
        raise ValueError("indices must be strictly increasing and in [0, N)")
    if len(lab) and (lab.min() < 0 or lab.max() >= c):
        raise ValueError("label out of range")
    m, enc, ls = _Model(c), _Encoder(), _Labels()
    prev_b = 0
    prev_idx = -1
    for index, label in zip(idx.tolist(), lab.tolist()):
        gap = index - prev_idx
        b = gap.bit_length() - 1
        base, node = prev_b << BUCKET_BITS, 1
        for j in range(BUCKET_BITS - 1, -1, -1):
            bit = (b >> j) & 1
            enc.bit(m.bucket, base + node, bit)
            node = node * 2 + bit
        t = min(b, MANTISSA_BITS)
        mant = gap - (1 << b)
        base, node = b << MANTISSA_BITS, 1
        for j in range(t - 1, -1, -1):
            bit = (mant >> (b - t + j)) & 1
            enc.bit(m.mantissa, base + node, bit)
            node = node * 2 + bit
        enc.direct(mant & ((1 << (b - t)) - 1), b - t)
        gc = gap_class(b)
        if 1 < c <= 64:
            base, node = ls.run << m.lbits, 1
            for j in range(m.lbits - 1, -1, -1):
                bit = (label >> j) & 1
                enc.bit(m.label1, base + node, bit)
                node = node * 2 + bit
        elif c > 64:
            hit = int(label == ls.run)
            enc.bit(m.is_run, gc * 4 + ls.streak, hit)
            if not hit:
                node = 1
                for j in range(m.lbits - 1, -1, -1):
                    bit = (label >> j) & 1
                    enc.bit(m.label0, node, bit)
                    node = node * 2 + bit
        ls.update(label)
        prev_b, prev_idx = b, index
    return enc.finish()


def model_decode(body: bytes, n: int, c: int, k: int):
    """Decode k (index, label) pairs; ValueError on any inconsistency."""
    _check_classes(n, c)
    if not 0 <= k <= n:
        raise ValueError("k must be in [0, N]")
    m, dec, ls = _Model(c), _Decoder(bytes(body)), _Labels()
    idx = np.empty(k, np.int64)
    lab = np.empty(k, np.int64)
    prev_b = 0
    prev_idx = -1
    for i in range(k):
        b, base, node = 0, prev_b << BUCKET_BITS, 1
        for _ in range(BUCKET_BITS):
            bit = dec.bit(m.bucket, base + node)
            node = node * 2 + bit
            b = (b << 1) | bit
        if b > MAX_BUCKET:
            raise ValueError(f"model body: gap class out of range at item {i}")
        t = min(b, MANTISSA_BITS)
        mant, base, node = 0, b << MANTISSA_BITS, 1
        for _ in range(t):
            bit = dec.bit(m.mantissa, base + node)
            node = node * 2 + bit
            mant = (mant << 1) | bit
        mant = (mant << (b - t)) | dec.direct(b - t)
        index = prev_idx + (1 << b) + mant
        if index >= n:
            raise ValueError(f"model body: index {index} at item {i} is out of range for N = {n}")
        label, gc = 0, gap_class(b)
        if 1 < c <= 64:
            base, node = ls.run << m.lbits, 1
            for _ in range(m.lbits):
                bit = dec.bit(m.label1, base + node)
                node = node * 2 + bit
                label = (label << 1) | bit
        elif c > 64:
            if dec.bit(m.is_run, gc * 4 + ls.streak):
                label = ls.run
            else:
                node = 1
                for _ in range(m.lbits):
                    bit = dec.bit(m.label0, node)
                    node = node * 2 + bit
                    label = (label << 1) | bit
        if label >= c:
            raise ValueError(f"model body: label {label} at item {i} is >= the number of classes {c}")
        idx[i], lab[i] = index, label
        ls.update(label)
        prev_b, prev_idx = b, index
        if dec.pos > len(body):  # a valid body is never read past its end: garbage costs O(body), not O(k)
            raise ValueError(f"model body is truncated at item {i}")
    if dec.pos > len(body):
        raise ValueError("model body is truncated")
    return idx, lab
