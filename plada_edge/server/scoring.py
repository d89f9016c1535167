"""Server step 3 (paper §3): score every reference image with the teacher, by energy.

An engine (plada_edge.server.engines: onnxruntime, or torch on a GPU onnxruntime cannot reach, or
Ray actors) runs the exported teacher over the memory-mapped pack in batches (a prefetch thread
reads the next batch while the current one runs); each batch's logits go straight through the
native ``energy_stats`` kernel and are dropped, so memory never holds N x C logits. Per image we
keep energy (float32), label, entropy (float32) and flags: about 10 bytes, 140 MB at 14.2M images;
and, when the teacher graph has a ``distance`` output (its anchors: plada_edge.server.teacher), that
distance too (float32, 4 bytes more), for strategy ``nearest``.

Work is done in chunks, each written atomically to ``chunks/``; a rerun after a crash (or kill -9)
skips finished chunks and produces identical scores. When all chunks exist they are joined into
``energy.npy``, ``label.npy``, ``entropy.npy``, ``flags.npy`` and ``meta.json`` says complete.
The scores record the pack fingerprint and the teacher's hash; loading them against another pack
is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.config import ScoreConfig, with_options
from ..core.errors import ScoresError
from ..core.locks import clean_stale_temps, output_lock
from ..core.progress import bar
from ..core.reference import ReferencePack
from ..core.twins import label_dtype
from .engines import log_plan, make_runner, plan_engine
from .inference import FIELDS, NEAREST_FIELD, chunk_path, score_chunk, write_chunk
from .teacher import onnx_metadata

SCORES_FORMAT = 1


def prepare_scores(teacher, pack: ReferencePack, out: Path, config: ScoreConfig):
    """Check inputs, write or check meta.json; returns (meta, chunk starts, starts still to do, complete)."""
    batch_size, chunk, keep_logits = config.batch_size, config.chunk, config.keep_logits
    meta_t = onnx_metadata(teacher)
    if meta_t["input_size"] != pack.size:
        raise ScoresError(
            f"teacher takes {meta_t['input_size']} px images but the pack holds {pack.size} px; "
            f"re-export with --input-size {pack.size}"
        )
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "plada-scores",
        "format_version": SCORES_FORMAT,
        "complete": False,
        "pack_fingerprint": pack.fingerprint,
        "pack_n": pack.n,
        "teacher_sha256": meta_t["sha256"],
        "teacher_path": str(Path(teacher).resolve()),  # where a forecast looks for its blind twin first
        "checkpoint_sha256": meta_t["checkpoint_sha256"],
        "num_classes": len(meta_t["class_names"]),
        "class_names": meta_t["class_names"],
        "view": meta_t["view"],
        "target": meta_t["target"],
        "teacher_test_acc": meta_t["test_acc"],
        "teacher_holdout_acc": meta_t.get("holdout_acc"),
        "blind_of": meta_t.get("blind_of"),  # a blind teacher's scores: whose twin it is (forecasts)
        "arch": meta_t["arch"],
        "pretrained": meta_t["pretrained"],
        "chunk": chunk,
        "batch_size": batch_size,
        "image_size": pack.size,
        "keep_logits": keep_logits,
        NEAREST_FIELD: NEAREST_FIELD in meta_t["outputs"],
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
    todo = [c0 for c0 in starts if not _chunk_readable(out, c0, score_fields(meta))]
    return meta, starts, todo, False


def score_fields(meta: dict) -> tuple[str, ...]:
    """The per-image fields scores with this meta hold (logits aside)."""
    return FIELDS + (NEAREST_FIELD,) * bool(meta.get(NEAREST_FIELD))


def finish_scores(out: Path, meta: dict, starts: list[int], pack: ReferencePack, seconds: float) -> Scores:
    _consolidate(out, starts, pack.n, meta["num_classes"], meta["keep_logits"], score_fields(meta))
    meta.update(complete=True, seconds_last_run=seconds)
    atomic.write_json(out / "meta.json", meta)
    return Scores.open(out, pack)


def score_pack(
    teacher: str | os.PathLike,
    pack: ReferencePack | str | os.PathLike,
    out: str | os.PathLike,
    config: ScoreConfig | None = None,
    *,
    progress: bool | None = None,
    **options,
) -> Scores:
    """Score ``pack`` with the ONNX ``teacher`` into directory ``out`` (resumable).

    ``config`` (a ScoreConfig) or keyword ``options`` (batch_size, chunk, threads, keep_logits,
    engine, device, precision, checkpoint, address, workers) say how. Every engine writes the same
    files (plada_edge.server.engines says which runs): ``engine="torch"`` runs the graph with torch
    on a GPU, ``engine="ray"`` spreads the chunks over Ray actors (plada_edge.server.scoring_ray).
    """
    cfg = with_options(config, ScoreConfig, options)
    pack = pack if isinstance(pack, ReferencePack) else ReferencePack.open(pack)
    out = Path(out)
    plan = None if cfg.engine == "ray" else plan_engine(teacher, onnx_metadata(teacher), cfg)  # refuse before writing
    with output_lock(out):
        clean_stale_temps(out)
        clean_stale_temps(out / "chunks")
        return _score_locked(teacher, pack, out, cfg, plan, progress)


def _score_locked(teacher, pack: ReferencePack, out: Path, cfg: ScoreConfig, plan, progress) -> Scores:
    meta, starts, todo, complete = prepare_scores(teacher, pack, out, cfg)
    if complete:
        return Scores.open(out, pack)
    t0 = time.perf_counter()
    if plan is None:
        from .scoring_ray import score_chunks_on_ray

        score_chunks_on_ray(teacher, pack, out, todo, cfg, progress=progress)
        meta["engine"] = {"engine": "ray", "gpus_per_worker": cfg.gpus_per_worker}
    else:
        log_plan(plan)
        runner = make_runner(plan, teacher, onnx_metadata(teacher), pack.size, cfg.threads)
        with bar("scoring", sum(min(cfg.chunk, pack.n - c0) for c0 in todo), progress, unit="img") as b:
            for c0 in todo:
                c1 = min(c0 + cfg.chunk, pack.n)
                write_chunk(out, c0, score_chunk(runner, pack, c0, c1, cfg.batch_size, cfg.keep_logits, b.advance))
        meta["engine"] = plan.describe()
    meta["providers"] = meta["engine"].get("providers") or [meta["engine"]["engine"]]
    return finish_scores(out, meta, starts, pack, time.perf_counter() - t0)


def _chunk_readable(out: Path, c0: int, fields: tuple[str, ...]) -> bool:
    """Whether chunk c0 exists and its archive opens with every field; a damaged one is removed."""
    path = chunk_path(out, c0)
    if not path.exists():
        return False
    try:
        with np.load(path) as z:
            ok = {"start", "stop", *fields} <= set(z.files) and int(z["start"]) == c0
    except Exception:  # truncated or corrupt archive: zipfile, OSError, ValueError, EOFError
        ok = False
    if not ok:
        path.unlink(missing_ok=True)
    return ok


def _consolidate(out: Path, starts: list[int], n: int, num_classes: int, keep_logits: bool, kept: tuple) -> None:
    dtypes = {"label": label_dtype(num_classes), "flags": np.uint8}  # the rest are float32
    fields = {f: dtypes.get(f, np.float32) for f in kept}
    if keep_logits:
        fields["logits"] = np.float32
    for f, dt in fields.items():
        shape = (n, num_classes) if f == "logits" else (n,)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{f}.npy.", suffix=".tmp")  # unique: concurrent runs never share
        os.close(fd)
        try:
            # written, not memory-mapped: a map's dirty pages would stay in this process's resident set
            with open(tmp, "wb") as f_out:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dt)), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f_out, header)
                rows = 0
                for c0 in starts:
                    path = chunk_path(out, c0)
                    try:
                        with np.load(path) as z:
                            part, start, stop = z[f], int(z["start"]), int(z["stop"])
                    except Exception as exc:  # a chunk damaged after it was written: drop it so a rerun rescores it
                        path.unlink(missing_ok=True)
                        raise ScoresError(
                            f"{path} is damaged ({type(exc).__name__}); it was removed, rerun to rescore it"
                        ) from None
                    if start != c0 or start != rows or stop - start != len(part):
                        raise ScoresError(
                            f"{path} covers [{start}, {stop}) with {len(part)} rows, expected to start at {rows}"
                        )
                    f_out.write(np.ascontiguousarray(part, dt).tobytes())
                    rows = stop
                if rows != n:
                    raise ScoresError(f"the score chunks in {out} cover {rows:,} rows of {n:,}")
                f_out.flush()
                os.fsync(f_out.fileno())
            os.replace(tmp, out / f"{f}.npy")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_rows(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """arr[lo:hi] as a new array. A memory-mapped .npy is read with pread instead of through the
    map, so a pass over 14.2M rows never leaves their pages resident in this process."""
    if isinstance(arr, np.memmap) and arr.filename and arr.ndim == 1 and arr.flags.c_contiguous:
        with open(arr.filename, "rb") as f:
            f.seek(arr.offset + lo * arr.itemsize)
            out = np.fromfile(f, arr.dtype, hi - lo)
        if len(out) != hi - lo:
            raise ScoresError(f"{arr.filename} is shorter than its header says: truncated scores")
        return out
    return np.array(arr[lo:hi])


def gather_rows(arr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """arr[indices] for sorted indices, read a chunk of rows at a time (see read_rows)."""
    out = np.empty(len(indices), arr.dtype)
    step = 1 << 18
    for lo in range(0, len(arr), step):
        a, b = np.searchsorted(indices, [lo, lo + step])
        if b > a:
            out[a:b] = read_rows(arr, lo, min(lo + step, len(arr)))[indices[a:b] - lo]
    return out


def open_scores(path: str | os.PathLike, pack: ReferencePack | None = None) -> Scores:
    """Finished scores at ``path``; with ``pack``, refused unless they were made for that pack."""
    return Scores.open(path, pack)


def as_scores(scores: Scores | str | os.PathLike, pack: ReferencePack | None = None) -> Scores:
    """``scores`` itself, or the finished scores at that path: API functions take either."""
    return Scores.open(scores, pack) if isinstance(scores, (str, os.PathLike)) else scores


class Scores:
    """Per-image energy, label, entropy and flags of one pack under one teacher (memory-mapped), and
    ``distance`` when the teacher had anchors (else ``distance`` is None)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        self.distance = None
        fields = score_fields(meta)
        for f in fields:
            try:
                setattr(self, f, np.load(path / f"{f}.npy", mmap_mode="r"))
            except (ValueError, OSError) as exc:  # truncated, missing or not numpy at all
                raise ScoresError(f"{path / (f + '.npy')} is damaged ({exc}); score again into a new --out") from None
        n = meta["pack_n"]
        for f in fields:
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
