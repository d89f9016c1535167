"""``plada-edge doctor``: what this installation runs on (native kernels, SIMD, threads, stack, GPUs).

Versions come from package metadata. With ``devices=True`` (the default) it also asks torch and
onnxruntime which GPUs and execution providers they see and which device ``--device auto`` picks;
``devices=False`` stays instant and never imports torch.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from .. import __version__
from . import native

STACK = (
    "numpy",
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "faiss-cpu",
    "zstandard",
    "ray",
    "typer",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def doctor(devices: bool = True) -> dict:
    """A JSON-able report: backend ("native"/"numpy"), SIMD level, threads, package versions, devices."""
    report = {
        "plada_edge": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()}-{platform.machine()}",
        "kernels": native.BACKEND,
        "native_load_error": native.LOAD_ERROR,
        "simd": native.simd_level(),
        "simd_available": native.available_simd(),
        "threads": native.hardware_threads(),
        "packages": {name: _version(name) for name in STACK},
    }
    if devices:
        from .devices import device_report

        report["devices"] = device_report()
    return report
