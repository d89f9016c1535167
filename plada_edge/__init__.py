"""plada-edge: PLADA, Pseudo-Labels as Data ("A Dataset is Worth 1 MB", arXiv 2602.23358).

A server ships a new image-classification task to devices as a tiny payload of
(reference-image index, hard label) pairs over a reference set every device already stores.

Layout: ``plada_edge.core`` is what both sides share (kernels, reference pack, payload),
``plada_edge.server`` builds payloads, ``plada_edge.device`` learns from them, ``plada_edge.cli``
is the thin command line. Heavy imports (torch, onnxruntime, faiss) are deferred to first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (timm-style lazy API)
_LAZY = {
    "energy_stats": "plada_edge.core.native",
    "EnergyStats": "plada_edge.core.native",
    "doctor": "plada_edge.doctor",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plada_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
