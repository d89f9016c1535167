"""Server step 3 (paper §3): score every reference image with the teacher, by energy.

onnxruntime runs the exported teacher over the memory-mapped pack in batches (a prefetch thread
reads the next batch while the current one runs); each batch's logits go straight through the
native ``energy_stats`` kernel and are dropped, so memory never holds N x C logits. Per image we
keep energy (float32), label, entropy (float32) and flags: about 10 bytes, 140 MB at 14.2M images.

Work is done in chunks, each written atomically to ``chunks/``; a rerun after a crash (or kill -9)
skips finished chunks and produces identical scores. When all chunks exist they are joined into
``energy.npy``, ``label.npy``, ``entropy.npy``, ``flags.npy`` and ``meta.json`` says complete.
The scores record the pack fingerprint and the teacher's hash; loading them against another pack
is refused.
"""

from __future__ import annotations

import io
import json
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

from ..core import atomic, native
from ..core.progress import bar
from ..core.reference import ReferencePack
from ..core.twins import label_dtype
from .teacher import onnx_metadata

SCORES_FORMAT = 1
FIELDS = ("energy", "label", "entropy", "flags")


class ScoresError(ValueError):
    """Scores that are incomplete, inconsistent, or made for another pack or teacher."""


def _session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or native.hardware_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def _prefetched(pack: ReferencePack, start: int, stop: int, batch: int):
    """Yield (b0, images) for [start, stop), reading the next batch on a helper thread."""
    q: queue.Queue = queue.Queue(maxsize=2)

    def producer():
        try:
            for b0 in range(start, stop, batch):
                q.put((b0, np.ascontiguousarray(pack.images[b0 : min(b0 + batch, stop)])))
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
    sess, pack: ReferencePack, c0: int, c1: int, batch_size: int, keep_logits: bool = False, advance=lambda n: None
) -> dict:
    """Score pack images [c0, c1): per-image arrays plus the global index range they cover."""
    parts = {f: [] for f in FIELDS}
    logits_all = []
    for _, imgs in _prefetched(pack, c0, c1, batch_size):
        logits = sess.run(["logits"], {"images": imgs})[0]
        for f, v in zip(FIELDS, native.energy_stats(logits, nan_policy="flag")):
            parts[f].append(v)
        if keep_logits:
            logits_all.append(logits)
        advance(len(imgs))
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


def prepare_scores(teacher, pack: ReferencePack, out: Path, batch_size: int, chunk: int, keep_logits: bool):
    """Check inputs, write or check meta.json; returns (meta, chunk starts, starts still to do, complete)."""
    meta_t = onnx_metadata(teacher)
    if meta_t["input_size"] != pack.size:
        raise ValueError(
            f"teacher takes {meta_t['input_size']} px images but the pack holds {pack.size} px; "
            f"re-export with --input-size {pack.size}"
        )
    if chunk % batch_size:
        raise ValueError(f"chunk ({chunk}) must be a multiple of batch_size ({batch_size})")
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "plada-scores",
        "format_version": SCORES_FORMAT,
        "complete": False,
        "pack_fingerprint": pack.fingerprint,
        "pack_n": pack.n,
        "teacher_sha256": meta_t["sha256"],
        "checkpoint_sha256": meta_t["checkpoint_sha256"],
        "num_classes": len(meta_t["class_names"]),
        "class_names": meta_t["class_names"],
        "view": meta_t["view"],
        "target": meta_t["target"],
        "teacher_test_acc": meta_t["test_acc"],
        "arch": meta_t["arch"],
        "chunk": chunk,
        "batch_size": batch_size,
        "image_size": pack.size,
        "keep_logits": keep_logits,
    }
    path = out / "meta.json"
    if path.exists():
        prev = json.loads(path.read_text())
        same = {k: prev.get(k) for k in ("pack_fingerprint", "teacher_sha256", "chunk", "batch_size", "keep_logits")}
        if same != {k: meta[k] for k in same}:
            raise ScoresError(f"{out} holds scores of another pack, teacher or chunking ({same}); use a new --out")
        if prev.get("complete"):
            return prev, [], [], True
    atomic.write_json(path, meta)
    starts = list(range(0, pack.n, chunk))
    todo = [c0 for c0 in starts if not chunk_path(out, c0).exists()]
    return meta, starts, todo, False


def finish_scores(out: Path, meta: dict, starts: list[int], pack: ReferencePack, seconds: float) -> Scores:
    _consolidate(out, starts, pack.n, meta["num_classes"], meta["keep_logits"])
    meta.update(complete=True, seconds_last_run=seconds)
    atomic.write_json(out / "meta.json", meta)
    return Scores.open(out, pack)


def score_pack(
    teacher: str | os.PathLike,
    pack: ReferencePack | str | os.PathLike,
    out: str | os.PathLike,
    batch_size: int = 256,
    chunk: int = 16384,
    threads: int = 0,
    keep_logits: bool = False,
    progress: bool | None = None,
    stop_after_chunks: int | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int = 0,
) -> Scores:
    """Score ``pack`` with the ONNX ``teacher`` into directory ``out`` (resumable).

    ``engine="ray"`` spreads the chunks over Ray actors (plada_edge.server.scoring_ray) and writes
    the same files with the same contents.
    """
    pack = pack if isinstance(pack, ReferencePack) else ReferencePack.open(pack)
    out = Path(out)
    meta, starts, todo, complete = prepare_scores(teacher, pack, out, batch_size, chunk, keep_logits)
    if complete:
        return Scores.open(out, pack)
    t0 = time.perf_counter()
    if engine == "ray":
        from .scoring_ray import score_chunks_on_ray

        score_chunks_on_ray(
            teacher,
            pack,
            out,
            todo,
            chunk,
            batch_size,
            keep_logits,
            address=address,
            workers=workers,
            progress=progress,
        )
    elif engine == "local":
        sess = _session(Path(teacher).read_bytes(), threads)
        with bar("scoring", sum(min(chunk, pack.n - c0) for c0 in todo), progress, unit="img") as b:
            for done, c0 in enumerate(todo, 1):
                write_chunk(
                    out, c0, score_chunk(sess, pack, c0, min(c0 + chunk, pack.n), batch_size, keep_logits, b.advance)
                )
                if stop_after_chunks is not None and done >= stop_after_chunks:
                    return None  # type: ignore[return-value]  (testing: behave as if killed)
    else:
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    return finish_scores(out, meta, starts, pack, time.perf_counter() - t0)


def _consolidate(out: Path, starts: list[int], n: int, num_classes: int, keep_logits: bool) -> None:
    dtypes = {"energy": np.float32, "label": label_dtype(num_classes), "entropy": np.float32, "flags": np.uint8}
    fields = dict(dtypes)
    if keep_logits:
        fields["logits"] = np.float32
    for f, dt in fields.items():
        shape = (n, num_classes) if f == "logits" else (n,)
        tmp = out / f".{f}.npy.tmp"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dt, shape=shape)
        for c0 in starts:
            with np.load(chunk_path(out, c0)) as z:
                part, start, stop = z[f], int(z["start"]), int(z["stop"])
            if start != c0 or stop - start != len(part):
                raise ScoresError(
                    f"{chunk_path(out, c0)} covers [{start}, {stop}) with {len(part)} rows, expected to start at {c0}"
                )
            arr[start:stop] = part
        arr.flush()
        del arr
        os.replace(tmp, out / f"{f}.npy")


class Scores:
    """Per-image energy, label, entropy and flags of one pack under one teacher (memory-mapped)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        for f in FIELDS:
            setattr(self, f, np.load(path / f"{f}.npy", mmap_mode="r"))
        n = meta["pack_n"]
        for f in FIELDS:
            if len(getattr(self, f)) != n:
                raise ScoresError(f"{path / (f + '.npy')} holds {len(getattr(self, f))} rows, expected {n}")

    @classmethod
    def open(cls, path: str | os.PathLike, pack: ReferencePack | None = None) -> Scores:
        path = Path(path)
        mp = path / "meta.json"
        if not mp.is_file():
            raise ScoresError(f"{path} holds no scores (no meta.json): run plada-edge score first")
        meta = json.loads(mp.read_text())
        if meta.get("format") != "plada-scores":
            raise ScoresError(f"{mp} is not a plada-edge scores file")
        if not meta.get("complete"):
            raise ScoresError(f"{path}: scoring did not finish; rerun the same plada-edge score command to resume it")
        if pack is not None and pack.fingerprint != meta["pack_fingerprint"]:
            raise ScoresError(
                f"{path} was scored on pack {meta['pack_fingerprint'][:16]}…, "
                f"not on {pack.path} ({pack.fingerprint[:16]}…)"
            )
        return cls(path, meta)

    @property
    def n(self) -> int:
        return int(self.meta["pack_n"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def info(self) -> dict:
        valid = np.asarray(self.flags) == 0
        e = np.asarray(self.energy)[valid]
        return {
            "path": str(self.path),
            "n": self.n,
            "classes": self.num_classes,
            "flagged": int((~valid).sum()),
            "pack_fingerprint": self.meta["pack_fingerprint"],
            "teacher_sha256": self.meta["teacher_sha256"],
            "energy": {"min": float(e.min()), "median": float(np.median(e)), "max": float(e.max())} if len(e) else None,
            "label_histogram": np.bincount(np.asarray(self.label)[valid], minlength=self.num_classes).tolist(),
        }
