"""The torch scoring engine (``score --engine torch``): the teacher's ONNX graph, run by torch (paper §3).

A GPU server often has a CUDA torch and only the CPU onnxruntime wheel (onnxruntime-gpu is a
separate, large install), so onnxruntime cannot reach the GPU. This engine rebuilds the exported
graph from the checkpoint it was exported from (plada_edge.server.teacher.graph_module: the same
sensor view, model and anchors) and runs it on CUDA, Apple MPS or the CPU, in fp32 or under
autocast bf16/fp16. Its logits go through the same native energy kernel as onnxruntime's, into
the same chunks, so either engine can resume the other's scores; tests/test_torch_scoring.py holds
the two to the same energies, labels and default selection.

The checkpoint is found beside the ONNX file (``runs/t.onnx`` -> ``runs/t/teacher.pt``, or a
``teacher.pt`` next to it) or named with ``--checkpoint``, and must be the one whose SHA-256 the
ONNX metadata records: scores never come from other weights than the graph's.

Batches reach the device as uint8 (a quarter of float32's bytes), through pinned memory, and the
next batch is uploaded and run while the previous one's outputs come back, so the GPU does not
wait on the host between batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core import native
from ..core.atomic import file_sha256
from ..core.devices import autocast_dtype
from ..core.errors import ConfigError
from .inference import NEAREST_FIELD

TEACHER_FILE = "teacher.pt"


def checkpoint_candidates(onnx_path: str | os.PathLike) -> list[Path]:
    """Where a teacher exported to ``onnx_path`` keeps its checkpoint, by the README's layout."""
    onnx_path = Path(onnx_path)
    return [onnx_path.with_suffix("") / TEACHER_FILE, onnx_path.parent / TEACHER_FILE]


def find_checkpoint(onnx_path: str | os.PathLike, meta: dict, checkpoint: str | os.PathLike | None = None) -> Path:
    """The teacher.pt that ``onnx_path`` was exported from (its SHA-256 must match the graph's metadata)."""
    want = meta.get("checkpoint_sha256")
    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / TEACHER_FILE if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"--checkpoint {checkpoint}: no teacher checkpoint there")
        if file_sha256(path) != want:
            raise ConfigError(
                f"--checkpoint {path} is not the checkpoint {Path(onnx_path).name} was exported from "
                f"(its SHA-256 differs from the graph's {str(want)[:16]}…)"
            )
        return path
    for path in checkpoint_candidates(onnx_path):
        if path.is_file() and file_sha256(path) == want:
            return path
    tried = ", ".join(str(p) for p in checkpoint_candidates(onnx_path))
    raise ConfigError(
        f"the torch engine needs the checkpoint {Path(onnx_path).name} was exported from "
        f"(SHA-256 {str(want)[:16]}…), and none was found at {tried}; pass --checkpoint DIR "
        "(imported and int8 teachers have none: score them with onnxruntime)"
    )


class TorchRunner:
    """A teacher's graph as a torch module on ``device``: the runner interface of plada_edge.server.inference."""

    def __init__(
        self, checkpoint: Path, meta: dict, input_size: int, device: str, precision: str = "fp32", threads: int = 0
    ):
        import torch

        from ..core.view import ViewSpec, torch_view
        from .teacher import graph_module, load_teacher

        model, state = load_teacher(checkpoint)
        nearest = NEAREST_FIELD in meta["outputs"]
        anchors = state.get("anchors") if nearest else None
        if nearest and (anchors is None or len(anchors) != meta.get("anchors")):
            raise ConfigError(
                f"{checkpoint} does not hold the {meta.get('anchors')} anchors the graph's distance output uses "
                "(they were added at export from --target); score this teacher with onnxruntime"
            )
        self.device = device
        self.cuda = device.startswith("cuda")
        self.amp_dtype, _ = autocast_dtype(device, precision) if precision != "fp32" else (None, False)
        if not self.cuda:
            torch.set_num_threads(threads or native.hardware_threads())
        else:
            torch.backends.cudnn.benchmark = True  # one input shape: let cuDNN pick its fastest kernels
        view = torch_view(ViewSpec.from_dict(meta["view"]), input_size=input_size)
        self.module = graph_module(model, view, with_features=False, anchors=anchors).to(device).eval()
        self.outputs = ["logits"] + [NEAREST_FIELD] * nearest
        self.providers = [f"torch:{device}" + (f":{str(self.amp_dtype).split('.')[-1]}" if self.amp_dtype else "")]

    def _forward(self, images: np.ndarray):
        """Start one batch: upload uint8, run, start copying the outputs back. Returns the pending copy."""
        import torch

        x = torch.from_numpy(images)
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        device_type = "cuda" if self.cuda else self.device.split(":")[0]
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.module(x)
        outs = out if isinstance(out, tuple) else (out,)
        host = [o.float().to("cpu", non_blocking=self.cuda) for o in outs]
        done = None
        if self.cuda:
            done = torch.cuda.Event()
            done.record()
        return host, done

    def run_batches(self, batches):
        import torch

        pending = None
        with torch.inference_mode():
            for images in batches:
                started = self._forward(images)  # queued on the GPU before the previous batch is read back
                if pending is not None:
                    yield self._finish(pending)
                pending = started
            if pending is not None:
                yield self._finish(pending)

    def _finish(self, pending):
        host, done = pending
        if done is not None:
            done.synchronize()
        logits = host[0].numpy()
        return logits, (host[1].numpy() if len(host) > 1 else None)
