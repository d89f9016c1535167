"""Numpy twins of the native kernels in csrc/: identical signatures, identical answers.

They serve when ``plada_edge._native`` cannot load (an unsupported platform, a source tree
without a build) and they are the executable specification the C++ is tested against
(tests/test_energy.py, tests/test_selection.py and tests/test_reference.py).
Paper §3: energy E(x) = -T * logsumexp(z / T).
"""

from __future__ import annotations

import numpy as np

FLAG_NAN = 1  # a NaN anywhere in the row
FLAG_POSINF = 2  # a +inf logit (kept only with nan_policy="flag")
FLAG_EMPTY = 4  # every logit is -inf

EXP_FLOOR = np.float32(-87.0)  # as csrc/energy_row.h: exp() stays normal and 0 * -inf never occurs
_BLOCK_BYTES = 1 << 22  # rows are processed in ~4 MiB blocks so temporaries stay cache-sized


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned integer type that holds labels 0..num_classes-1."""
    if num_classes <= 1 << 8:
        return np.dtype(np.uint8)
    if num_classes <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def check_logits(logits, temperature: float, threads: int, nan_policy: str) -> np.ndarray:
    """Validate energy_stats arguments exactly as the native binding does."""
    arr = np.asarray(logits)
    if arr.dtype not in (np.float32, np.float16):
        raise TypeError(f"logits must be float32 or float16, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {arr.shape}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if nan_policy not in ("raise", "flag"):
        raise ValueError(f"nan_policy must be 'raise' or 'flag', got '{nan_policy}'")
    if threads < 0:
        raise ValueError("threads must be >= 0 (0 = all CPUs)")
    if arr.shape[1] < 1:
        raise ValueError(f"logits need at least one class column, got shape {arr.shape}")
    return arr


def energy_stats(logits, temperature: float = 1.0, threads: int = 0, nan_policy: str = "raise"):
    """Per row of (N, C) logits: (energy, label, entropy, flags).

    energy = -T * logsumexp(z / T) as float32 (lower = more in-distribution); label = first
    argmax, in the smallest unsigned type fitting C; entropy of softmax(z / T) as float32; flags
    as FLAG_* bits. Rows with a NaN (or +inf, under nan_policy="flag") get energy and entropy NaN
    and label 0; all -inf rows get energy +inf, entropy NaN, label 0. ``threads`` is accepted for
    signature parity and ignored.
    """
    arr = check_logits(logits, temperature, threads, nan_policy)
    n, c = arr.shape
    t = np.float32(temperature)
    inv_t = np.float32(1.0) / t
    energy = np.empty(n, np.float32)
    entropy = np.empty(n, np.float32)
    flags = np.zeros(n, np.uint8)
    label = np.empty(n, label_dtype(c))
    rows = max(1, _BLOCK_BYTES // (4 * c))
    for b0 in range(0, n, rows):
        x = arr[b0 : b0 + rows].astype(np.float32)  # a private copy we may overwrite
        sl = slice(b0, b0 + len(x))
        has_nan = np.isnan(x).any(axis=1)
        np.nan_to_num(x, copy=False, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
        lab = x.argmax(axis=1)  # first occurrence: ties go to the lowest index
        x *= inv_t
        m = x.max(axis=1)
        has_pinf = np.isposinf(m)
        empty = np.isneginf(m) & ~has_nan & ~has_pinf
        bad = has_nan | has_pinf | empty
        m_safe = np.where(bad, np.float32(0), m).astype(np.float32)
        x -= m_safe[:, None]
        np.maximum(x, EXP_FLOOR, out=x)
        e = np.exp(x)
        sum_e = e.sum(axis=1, dtype=np.float64)
        e *= x
        sum_ey = e.sum(axis=1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.log(sum_e)
            en = -np.float64(t) * (m_safe.astype(np.float64) + log_s)
            h = log_s - sum_ey / sum_e
        en[has_nan | has_pinf] = np.nan
        en[empty] = np.inf
        h[bad] = np.nan
        lab[bad] = 0
        energy[sl] = en
        entropy[sl] = h
        label[sl] = lab
        flags[sl] = (has_nan * FLAG_NAN) | (has_pinf * FLAG_POSINF) | (empty * FLAG_EMPTY)
    if nan_policy == "raise":
        bad_rows = np.flatnonzero(flags & FLAG_POSINF)
        if bad_rows.size:
            raise ValueError(
                f"logits row {bad_rows[0]} contains +inf (or overflows at this temperature); "
                "pass nan_policy='flag' to flag such rows instead of raising"
            )
    return energy, label, entropy, flags


def gather_rows(images, indices, threads: int = 0) -> np.ndarray:
    """images[indices], reading rows in ascending index order; same checks as the native kernel."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got {idx.dtype}")
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    if threads < 0:
        raise ValueError("threads must be >= 0 (0 = all CPUs)")
    n = len(images)
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise IndexError(f"index {idx[bad][0]} out of range for a pack of {n} images")
    order = np.argsort(idx, kind="stable")
    out = np.empty((len(idx), *images.shape[1:]), images.dtype)
    out[order] = images[idx[order]]
    return out


def sortable_keys(scores: np.ndarray, largest: bool = False) -> np.ndarray:
    """uint32 keys whose ascending order is the scores' ascending (descending if largest) order."""
    u = (np.asarray(scores, np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 → +0.0
    u = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))
    return ~u if largest else u


def _check_select(scores, exclude, threads):
    s = np.asarray(scores)
    if s.dtype != np.float32:
        raise TypeError(f"scores must be float32, got {s.dtype}")
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if len(s) >= 1 << 32:
        raise ValueError("at most 2^32 - 1 rows are supported")
    if threads < 0:
        raise ValueError("threads must be >= 0 (0 = all CPUs)")
    valid = ~np.isnan(s)
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.ndim != 1 or len(ex) != len(s):
            raise ValueError("exclude must be a 1-D array with one entry per score")
        valid &= ex.astype(np.uint8) == 0
    return s, valid


def _packed(s: np.ndarray, idx: np.ndarray, largest: bool) -> np.ndarray:
    return (sortable_keys(s[idx], largest).astype(np.uint64) << np.uint64(32)) | idx.astype(np.uint64)


def _smallest_keys(keys: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(keys))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.partition(keys, k - 1)[:k] if k < len(keys) else keys.copy()
    part.sort()
    return (part & np.uint64(0xFFFFFFFF)).astype(np.int64)


def topk(scores, k: int, exclude=None, largest: bool = False, threads: int = 0) -> np.ndarray:
    """Indices of the k smallest (largest) scores in rank order; ties to the lower index."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    s, valid = _check_select(scores, exclude, threads)
    idx = np.flatnonzero(valid)
    return _smallest_keys(_packed(s, idx, largest), k)


def class_topk(scores, labels, quotas, exclude=None, largest: bool = False, threads: int = 0) -> np.ndarray:
    """For each class c, the quotas[c] best rows labelled c, grouped by ascending class."""
    s, valid = _check_select(scores, exclude, threads)
    lab = np.asarray(labels)
    if lab.dtype not in (np.uint8, np.uint16, np.uint32):
        raise TypeError(f"labels must be uint8, uint16 or uint32, got {lab.dtype}")
    if lab.ndim != 1 or len(lab) != len(s):
        raise ValueError("labels must be 1-D with one entry per score")
    q = np.asarray(quotas, np.int64)
    if q.ndim != 1:
        raise ValueError("quotas must be 1-D (one per class)")
    if (q < 0).any():
        raise ValueError("quotas must be >= 0")
    bad = np.flatnonzero(valid & (lab >= len(q)))
    if len(bad):
        raise ValueError(f"labels row {bad[0]} is >= the number of classes ({len(q)})")
    idx = np.flatnonzero(valid)
    idx = idx[q[lab[idx]] > 0]
    order = np.argsort(lab[idx], kind="stable")
    idx = idx[order]
    bounds = np.searchsorted(lab[idx], np.arange(len(q) + 1))
    parts = [_smallest_keys(_packed(s, idx[bounds[c] : bounds[c + 1]], largest), int(q[c])) for c in range(len(q))]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
