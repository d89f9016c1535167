"""Where the work runs: ``--device`` for torch, ``--providers`` for onnxruntime, and the AMP policy.

The server trains teachers and scores millions of reference images (paper §3); the device trains a
student (§3.3). Both are GPU machines in practice (CUDA servers, Jetson boxes), and CPU-only
machines must keep working unchanged. One module decides, so every command behaves alike:

- ``resolve_device("auto")``: CUDA when torch sees a GPU, then Apple MPS, then CPU. An explicit
  ``cuda``/``cuda:1``/``mps`` that is not there is a one-line ConfigError, never a silent fallback.
- ``onnx_providers(requested, device)``: the best installed onnxruntime execution providers
  (TensorRT, CUDA, then CPU) unless told otherwise; a requested provider that is not installed is a
  ConfigError naming what is, and so is an explicit ``cuda`` device where onnxruntime has no GPU
  provider (the CPU-only ``onnxruntime`` wheel beside a CUDA torch). CPU always comes last as the
  fallback for unsupported nodes.
- ``autocast_dtype(device, precision)``: mixed precision for training on CUDA (bf16 where the GPU
  supports it, else fp16 with loss scaling); full fp32 on CPU and MPS.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError

DEVICE_HELP = "auto (CUDA GPU, then Apple MPS, then CPU), cpu, cuda, cuda:N (or just N) or mps."
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_GPU_PROVIDERS = _PREFERRED[:2]


def check_device_spec(spec: str) -> str:
    """Normalise a device string without importing torch; ConfigError if it is not one."""
    text = str(spec).strip().lower()
    if re.fullmatch(r"\d+", text):  # torch's and Ultralytics' habit: a bare GPU index
        text = f"cuda:{int(text)}"
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise ConfigError(f"device must be {DEVICE_HELP.rstrip('.')}; got {spec!r}")
    return text


def resolve_device(spec: str = "auto") -> str:
    """The torch device to use for ``spec`` ("auto", "cpu", "cuda", "cuda:N", "mps")."""
    text = check_device_spec(spec)
    if text == "cpu":
        return "cpu"
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if has_mps else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r} requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto"
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        return f"cuda:{index}"
    if not has_mps:
        raise ConfigError("device 'mps' requested but Apple MPS is not available here; use --device cpu or auto")
    return "mps"


def autocast_dtype(device: str, precision: str = "auto"):
    """The torch dtype to autocast training to on ``device`` (None = fp32), and whether to scale losses."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32" or not device.startswith("cuda"):
        if precision in ("bf16", "fp16") and not device.startswith("cuda"):
            raise ConfigError(f"precision {precision} needs a CUDA device; {device} trains in fp32")
        return None, False
    import torch

    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True  # fp16 needs loss scaling against underflow


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def gpu_providers() -> list[str]:
    """The installed onnxruntime providers that run on an NVIDIA GPU (TensorRT, CUDA)."""
    return [p for p in _GPU_PROVIDERS if p in available_providers()]


def provider_names(requested: str | list[str] | None) -> list[str]:
    """Full onnxruntime provider names for "cuda,cpu"-style short names (not checked against what is installed)."""
    if requested is None or requested in ("", "auto"):
        return []
    items = requested.split(",") if isinstance(requested, str) else list(requested)
    return [_PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in items if p.strip()]


def onnx_providers(requested: str | list[str] | None = None, device: str = "auto") -> list:
    """onnxruntime providers for a session, best first, CPU last.

    ``requested``: None (the best installed, or CPU only when ``device`` is "cpu"), or names such as
    "cuda,cpu" / ["TensorrtExecutionProvider"]. With ``device`` "cuda:N" the GPU providers get
    ``device_id`` N.
    """
    device = check_device_spec(device)
    have = available_providers()
    names = provider_names(requested)
    if not names:
        names = ["CPUExecutionProvider"] if device == "cpu" else [p for p in _PREFERRED if p in have]
        if device.startswith("cuda") and not any(p in have for p in _GPU_PROVIDERS):
            raise ConfigError(
                f"device {device!r} asks for the GPU, but onnxruntime here has no CUDA provider "
                f"(installed: {', '.join(have)}); install onnxruntime-gpu, or use --device auto or cpu"
            )
    else:
        missing = [p for p in names if p not in have]
        if missing:
            raise ConfigError(
                f"onnxruntime provider(s) {', '.join(missing)} not available here "
                f"(installed: {', '.join(have)}); for CUDA install onnxruntime-gpu"
            )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    out: list[Any] = []
    for name in names:
        gpu = name in _GPU_PROVIDERS
        out.append((name, {"device_id": index}) if gpu and index else name)
    return out


def device_report() -> dict:
    """GPUs, CUDA/cuDNN as torch sees them, onnxruntime providers and the device 'auto' picks."""
    report: dict[str, Any] = {
        "gpus": [],
        "cuda": None,
        "cudnn": None,
        "mps": False,
        "auto": "cpu",
        "onnxruntime_providers": [],
    }
    try:
        import torch
    except ImportError:
        report["torch"] = None
    else:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                report["gpus"].append(
                    {
                        "index": i,
                        "name": p.name,
                        "memory_gib": round(p.total_memory / 2**30, 1),
                        "compute_capability": f"{p.major}.{p.minor}",
                    }
                )
            report["cudnn"] = torch.backends.cudnn.version()
        report["cuda"] = torch.version.cuda
        report["mps"] = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        report["auto"] = resolve_device("auto")
    try:
        report["onnxruntime_providers"] = available_providers()
    except ImportError:
        pass
    return report
