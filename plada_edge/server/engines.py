"""Which engine scores the pack, and on what: the one rule (paper §3, energy scoring).

- ``engine="local"`` (the default) is onnxruntime in this process, with the best installed
  execution provider (plada_edge.core.devices.onnx_providers). Where onnxruntime cannot reach the
  GPU that was asked for (``--device cuda``: the CPU-only onnxruntime wheel beside a CUDA torch),
  the torch engine scores on that GPU instead and the plan says so; it never falls back to a CPU
  run in silence. ``--device auto`` does the same when torch sees a GPU and the teacher's
  checkpoint is at hand, and otherwise scores on the CPU with a warning that names the fix.
- ``engine="torch"``: the teacher's graph as a torch module (plada_edge.server.torch_scoring) on
  ``--device`` (CUDA, MPS or CPU), in ``--precision`` fp32 (the default: it agrees with the ONNX
  graph to float rounding) or bf16/fp16 autocast on CUDA.
- ``engine="ray"``: chunks spread over Ray actors (plada_edge.server.scoring_ray); each actor
  plans its own engine by this rule on its node, where its GPU is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..core.devices import available_providers, gpu_providers, onnx_providers, resolve_device
from ..core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnginePlan:
    """How one scoring process runs the teacher."""

    engine: str  # onnxruntime | torch
    device: str  # cpu, cuda:N or mps
    providers: tuple = ()  # onnxruntime's, best first
    precision: str = "fp32"  # the torch engine's
    checkpoint: Path | None = None  # the torch engine's teacher.pt
    reason: str = ""  # why this engine, when it is not the one asked for

    def describe(self) -> dict:
        return {
            "engine": self.engine,
            "device": self.device,
            "providers": [p if isinstance(p, str) else p[0] for p in self.providers],
            "precision": self.precision if self.engine == "torch" else "fp32",
            **({"reason": self.reason} if self.reason else {}),
        }


def _torch_sees_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def plan_engine(teacher: str | Path, meta: dict, config) -> EnginePlan:
    """The engine a ScoreConfig asks for, checked before anything is written (ConfigError if it cannot run)."""
    from .torch_scoring import find_checkpoint

    precision = config.precision
    if config.engine == "torch":
        device = resolve_device(config.device)
        if precision != "fp32" and not device.startswith("cuda"):
            raise ConfigError(f"--precision {precision} needs a CUDA device; {device} scores in fp32")
        checkpoint = find_checkpoint(teacher, meta, config.checkpoint)
        return EnginePlan("torch", device, precision=precision, checkpoint=checkpoint)
    if config.providers:
        return EnginePlan("onnxruntime", config.device, tuple(onnx_providers(config.providers, config.device)))
    has_gpu_provider = bool(gpu_providers())
    if config.device.startswith("cuda") and not has_gpu_provider:
        device = resolve_device(config.device)  # torch must see it too
        reason = (
            f"onnxruntime here has no CUDA provider (installed: {', '.join(available_providers())}): "
            f"scoring with the torch engine on {device}"
        )
        try:
            checkpoint = find_checkpoint(teacher, meta, config.checkpoint)
        except ConfigError as exc:
            raise ConfigError(f"--device {config.device}: {reason}, but {exc}") from None
        return EnginePlan("torch", device, precision=precision, checkpoint=checkpoint, reason=reason)
    if config.device == "auto" and not has_gpu_provider and _torch_sees_cuda():
        try:
            checkpoint = find_checkpoint(teacher, meta, config.checkpoint)
        except ConfigError:
            log.warning(
                "torch sees a CUDA GPU but onnxruntime has no CUDA provider and the teacher's checkpoint is not "
                "beside %s: scoring on the CPU; pass --checkpoint DIR (or --engine torch) to score on the GPU",
                Path(teacher).name,
            )
        else:
            device = resolve_device("cuda")
            reason = f"onnxruntime here has no CUDA provider: scoring with the torch engine on {device}"
            return EnginePlan("torch", device, precision=precision, checkpoint=checkpoint, reason=reason)
    return EnginePlan("onnxruntime", config.device, tuple(onnx_providers(None, config.device)))


def make_runner(plan: EnginePlan, teacher: str | Path, meta: dict, input_size: int, threads: int = 0):
    """A runner (plada_edge.server.inference) for ``plan``."""
    if plan.engine == "torch":
        from .torch_scoring import TorchRunner

        return TorchRunner(plan.checkpoint, meta, input_size, plan.device, plan.precision, threads)
    from .inference import OnnxRunner

    return OnnxRunner(Path(teacher).read_bytes(), threads, list(plan.providers))


def log_plan(plan: EnginePlan) -> None:
    if plan.reason:
        log.info(plan.reason)
