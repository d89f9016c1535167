"""The chunk-scoring API every scoring engine shares (paper §3, energy scoring).

A chunk is a contiguous range of pack images [c0, c1). ``score_chunk`` streams it through a
runner in batches (a helper thread reads the next batch from the memory-mapped pack while the
current one runs), passes each batch's logits straight through the native ``energy_stats`` kernel
and drops them, so memory never holds N x C logits. ``write_chunk`` stores the per-image arrays
atomically, with the global index range inside the file.

A runner has ``outputs`` (the graph's output names) and ``run_batches(batches)``, which turns an
iterator of uint8 NHWC batches into (logits, distance or None) float32 arrays, in order.
``OnnxRunner`` is onnxruntime on the exported graph; ``TorchRunner``
(plada_edge.server.torch_scoring) runs the same graph as a torch module on CUDA, MPS or CPU. The
local engine (plada_edge.server.scoring) and the Ray engine (plada_edge.server.scoring_ray) both
call these and nothing else, so each can resume the other's output.
"""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

import numpy as np

from ..core import atomic, native
from ..core.reference import ReferencePack

FIELDS = ("energy", "label", "entropy", "flags")
NEAREST_FIELD = "distance"  # present when the teacher graph has a distance output (strategy nearest)


def open_session(model_bytes: bytes, threads: int = 0, providers: list | None = None):
    """An onnxruntime session for a teacher's ONNX bytes.

    ``threads``: intra-op CPU threads (0 = all CPUs). ``providers``: execution providers, best
    first (plada_edge.core.devices.onnx_providers); None = CPU only.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or native.hardware_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=providers or ["CPUExecutionProvider"])


class OnnxRunner:
    """onnxruntime on an exported teacher: the reference engine every other one is held to."""

    def __init__(self, model_bytes: bytes, threads: int = 0, providers: list | None = None):
        self.session = open_session(model_bytes, threads, providers)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.providers = list(self.session.get_providers())
        self.wanted = ["logits"] + [NEAREST_FIELD] * (NEAREST_FIELD in self.outputs)

    def run_batches(self, batches):
        for imgs in batches:
            logits, *distance = self.session.run(self.wanted, {"images": imgs})
            yield logits, (distance[0] if distance else None)


def prefetched(pack: ReferencePack, start: int, stop: int, batch: int):
    """Yield (b0, images) for [start, stop), reading the next batch on a helper thread."""
    q: queue.Queue = queue.Queue(maxsize=2)

    def producer():
        try:
            for b0 in range(start, stop, batch):
                q.put((b0, pack.read(b0, min(b0 + batch, stop))))  # a copy (raw: its pages are unmapped)
        except BaseException as exc:  # surface read errors in the consumer
            q.put(exc)
        q.put(None)

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    while (item := q.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def score_chunk(
    runner, pack: ReferencePack, c0: int, c1: int, batch_size: int, keep_logits: bool = False, advance=lambda n: None
) -> dict:
    """Score pack images [c0, c1) with ``runner``: per-image arrays plus the global index range they cover."""
    nearest = NEAREST_FIELD in runner.outputs
    parts = {f: [] for f in FIELDS + (NEAREST_FIELD,) * nearest}
    logits_all = []
    batches = (imgs for _, imgs in prefetched(pack, c0, c1, batch_size))
    for logits, distance in runner.run_batches(batches):
        for f, v in zip(FIELDS, native.energy_stats(logits, nan_policy="flag")):
            parts[f].append(v)
        if nearest:  # a NaN distance sorts last, as +inf (its row is flagged anyway when the logits are NaN)
            d = np.asarray(distance, np.float32)
            parts[NEAREST_FIELD].append(np.where(np.isnan(d), np.float32(np.inf), d))
        if keep_logits:
            logits_all.append(logits)
        advance(len(logits))
    arrays = {f: np.concatenate(v) for f, v in parts.items()}
    if keep_logits:
        arrays["logits"] = np.concatenate(logits_all)
    arrays["start"], arrays["stop"] = np.int64(c0), np.int64(c1)  # the chunk says where it belongs
    return arrays


def chunk_path(out: Path, c0: int) -> Path:
    return out / "chunks" / f"{c0:012d}.npz"


def write_chunk(out: Path, c0: int, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic.write_bytes(chunk_path(out, c0), buf.getvalue())
