"""Loads the C++ kernels (``plada_edge._native``), or their numpy twins, behind one face.

FAISS-style: callers import kernels from here and never care which implementation answers.
``BACKEND`` says which one did ("native" or "numpy"); ``plada-edge doctor`` reports it, and
PLADA_EDGE_NATIVE=0 forces the twins (for tests and for comparing the two).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from . import twins

_native = None
LOAD_ERROR: str | None = None
if os.environ.get("PLADA_EDGE_NATIVE", "1") != "0":
    try:
        from .. import _native  # type: ignore[attr-defined, no-redef]
    except ImportError as exc:  # no build for this platform, or a source checkout
        LOAD_ERROR = str(exc)
else:
    LOAD_ERROR = "disabled by PLADA_EDGE_NATIVE=0"

BACKEND = "native" if _native is not None else "numpy"
FLAG_NAN, FLAG_POSINF, FLAG_EMPTY = twins.FLAG_NAN, twins.FLAG_POSINF, twins.FLAG_EMPTY


class EnergyStats(NamedTuple):
    energy: np.ndarray  # float32, -T*logsumexp(z/T); NaN on flagged rows, +inf on all -inf rows
    label: np.ndarray  # argmax, uint8/uint16/uint32 by class count
    entropy: np.ndarray  # float32 softmax entropy
    flags: np.ndarray  # uint8 FLAG_* bits; selection never picks a flagged row


def energy_stats(logits, temperature: float = 1.0, threads: int = 0, nan_policy: str = "raise") -> EnergyStats:
    """Energy, label, entropy and flags for every row of (N, C) float32/float16 logits.

    One streaming pass per row (paper §3). Native when available, else the numpy twin; both
    raise TypeError for a wrong dtype, ValueError for a wrong shape and, unless
    ``nan_policy="flag"``, ValueError naming the first row holding +inf.
    """
    impl = _native.energy_stats if _native is not None else twins.energy_stats
    return EnergyStats(*impl(logits, temperature, threads, nan_policy))


def gather_rows(images, indices, threads: int = 0) -> np.ndarray:
    """images[indices] for a C-contiguous array (a pack memmap), rows read in ascending order."""
    impl = _native.gather_rows if _native is not None else twins.gather_rows
    return impl(images, indices, threads)


def topk(scores, k: int, exclude=None, largest: bool = False, threads: int = 0) -> np.ndarray:
    """Indices of the k smallest (largest) float32 scores, rank order, ties to the lower index."""
    impl = _native.topk if _native is not None else twins.topk
    return impl(scores, k, exclude, largest, threads)


def class_topk(scores, labels, quotas, exclude=None, largest: bool = False, threads: int = 0) -> np.ndarray:
    """Per-class quotas of the best rows, grouped by ascending class, each in rank order."""
    impl = _native.class_topk if _native is not None else twins.class_topk
    return impl(scores, labels, quotas, exclude, largest, threads)


def model_encode(indices, labels, n: int, c: int) -> bytes:
    """The adaptive arithmetic 'model' payload codec (csrc/codec.cpp, twin: core/model_codec.py)."""
    if _native is not None:
        return _native.model_encode(indices, labels, n, c)
    from .model_codec import model_encode as twin

    return twin(indices, labels, n, c)


def model_decode(body: bytes, n: int, c: int, k: int):
    if _native is not None:
        return _native.model_decode(body, n, c, k)
    from .model_codec import model_decode as twin

    return twin(body, n, c, k)


def simd_level() -> str:
    """Instruction set in use: "avx512", "avx2", "neon", "scalar", or "numpy" when the twins answer."""
    return _native.simd_level() if _native is not None else "numpy"


def available_simd() -> list[str]:
    return list(_native.available_simd()) if _native is not None else []


def set_simd_level(level: str) -> None:
    """Switch the native kernels to another instruction set this CPU supports."""
    if _native is None:
        raise RuntimeError(f"native kernels are not loaded ({LOAD_ERROR})")
    _native.set_simd_level(level)


def hardware_threads() -> int:
    if _native is not None:
        return int(_native.hardware_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
