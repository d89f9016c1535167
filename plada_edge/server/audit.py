"""Leakage audit: does the reference pack already contain the target's images?

If it does, a student could score well by memorising pool copies of the test set, and any
accuracy claim is void. Two checks, both on the target images rendered exactly as the pack
builder would have stored them (same size, same resize rule):

1. The paper's check (§4, "data leakage"): bucket every image by pixel mean and variance into
   32 x 32 = 1,024 bins; within a bucket, flag target/pack pairs whose mean per-pixel L1
   distance (pixels in [0, 1]) is below 1e-5. Only pairs whose means differ by less than the
   threshold can qualify, so each target image is compared with a handful of candidates.
2. A stronger near-duplicate check: a FAISS index over compact descriptors (8x8 grayscale,
   zero-mean, unit-norm; cosine via inner product) proposes the 4 nearest pack images per target
   image; a proposal with cosine >= 0.98 is confirmed when the full-resolution mean absolute pixel
   difference is <= 4/255. That catches copies that were re-encoded, re-scaled or slightly
   re-toned, which the exact check misses. Flat index up to 1M images, HNSW beyond.
"""

from __future__ import annotations

import numpy as np

from ..core.images import array_to_rgb_tiles
from ..core.progress import bar
from ..core.reference import ReferencePack
from ..core.targets import Target

BINS = 32  # per axis: 32 x 32 = 1,024 buckets, as in the paper
L1_THRESHOLD = 1e-5
NEAR_COSINE = 0.98
NEAR_MAD = 4 / 255
NEAR_K = 4


def _mean_var(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = tiles.reshape(len(tiles), -1).astype(np.float32) / 255.0
    return x.mean(axis=1, dtype=np.float64), x.var(axis=1, dtype=np.float64)


def _bucket(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    mb = np.clip((mean * BINS).astype(np.int64), 0, BINS - 1)
    vb = np.clip((var / 0.25 * BINS).astype(np.int64), 0, BINS - 1)  # pixel variance <= 1/4 on [0, 1]
    return mb * BINS + vb


def descriptors(tiles: np.ndarray) -> np.ndarray:
    """8x8 grayscale area means, zero-mean, unit-norm (float32, 64-d)."""
    n, s = len(tiles), tiles.shape[1]
    g = tiles.astype(np.float32).mean(axis=3)
    f = s // 8
    g = g[:, : f * 8, : f * 8].reshape(n, 8, f, 8, f).mean(axis=(2, 4)).reshape(n, 64)
    g -= g.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return np.divide(g, norm, out=np.zeros_like(g), where=norm > 1e-6)


def _confirmed(query_tile: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference (in [0, 1]) of each candidate to the query tile."""
    return np.abs(candidates.astype(np.float32) - query_tile.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


def near_duplicate_mask(query: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For in-memory (n, s, s, 3) tiles: which query tiles have a near duplicate in ``base``.

    Same rule as the audit's near check, searched in both directions (query → base and
    base → query), so any pair the audit would report from either side is caught. The
    offline-mix builder uses it to keep pool samples free of the targets' images.
    """
    import faiss

    dq, db = descriptors(query), descriptors(base)
    mask = np.zeros(len(query), bool)
    for src, dst, src_tiles, dst_tiles, forward in ((dq, db, query, base, True), (db, dq, base, query, False)):
        index = faiss.IndexFlatIP(64)
        index.add(dst)
        sims, nn = index.search(src, NEAR_K)
        for i in np.flatnonzero(sims[:, 0] >= NEAR_COSINE):
            cand = nn[i][(sims[i] >= NEAR_COSINE) & (nn[i] >= 0)]
            hit = cand[_confirmed(src_tiles[i], dst_tiles[cand]) <= NEAR_MAD]
            if forward and len(hit):
                mask[i] = True
            elif not forward:
                mask[hit] = True
    return mask


def target_tiles(target: Target, pack: ReferencePack) -> dict[str, np.ndarray]:
    method = pack.manifest["build"].get("resize", "crop")
    return {s: array_to_rgb_tiles(getattr(target, f"x_{s}"), pack.size, method) for s in ("train", "test")}


def audit_leakage(target: Target, pack: ReferencePack, examples: int = 5, progress: bool | None = None) -> dict:
    """Count target train/test images that have an exact or near duplicate in the pack."""
    import faiss

    tiles = target_tiles(target, pack)
    pack_mean = np.empty(pack.n)
    pack_var = np.empty(pack.n)
    dim = 64
    index = faiss.IndexFlatIP(dim) if pack.n <= 1_000_000 else faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    with bar("audit: reading pack", pack.n, progress, unit="img") as b:
        for c0, imgs in pack.iter_chunks(16384):
            pack_mean[c0 : c0 + len(imgs)], pack_var[c0 : c0 + len(imgs)] = _mean_var(imgs)
            index.add(descriptors(imgs))
            b.advance(len(imgs))
    pack_bucket = _bucket(pack_mean, pack_var)
    key = pack_bucket + np.minimum(pack_mean, 1 - 1e-12)  # sort by bucket, then mean
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]

    report = {
        "target": target.name,
        "pack": str(pack.path),
        "pack_fingerprint": pack.fingerprint,
        "pack_n": pack.n,
        "exact": {"rule": f"paper: 1,024 mean/variance buckets, mean L1 < {L1_THRESHOLD:g}", "examples": []},
        "near": {
            "rule": f"FAISS {type(index).__name__} on 8x8 gray descriptors, cosine >= {NEAR_COSINE}, "
            f"then full-resolution mean |diff| <= {NEAR_MAD:.4f}",
            "examples": [],
        },
    }
    for split, t in tiles.items():
        t_mean, t_var = _mean_var(t)
        t_key = _bucket(t_mean, t_var) + np.minimum(t_mean, 1 - 1e-12)
        lo = np.searchsorted(sorted_key, t_key - L1_THRESHOLD, side="left")
        hi = np.searchsorted(sorted_key, t_key + L1_THRESHOLD, side="right")
        exact = set()
        for i in np.flatnonzero(hi > lo):
            cand = np.sort(order[lo[i] : hi[i]])
            cand = cand[_bucket(pack_mean[cand], pack_var[cand]) == _bucket(t_mean[i : i + 1], t_var[i : i + 1])[0]]
            if not len(cand):
                continue
            l1 = _confirmed(t[i], pack.gather(cand))
            hit = np.flatnonzero(l1 < L1_THRESHOLD)
            if len(hit):
                exact.add(int(i))
                if len(report["exact"]["examples"]) < examples:
                    j = int(cand[hit[0]])
                    report["exact"]["examples"].append(
                        {
                            "split": split,
                            "index": int(i),
                            "pack_index": j,
                            "l1": float(l1[hit[0]]),
                            "origin": pack.origin(j),
                        }
                    )
        report["exact"][split] = len(exact)

        sims, nn = index.search(descriptors(t), NEAR_K)
        near = 0
        best = []
        for i in range(len(t)):
            cand = nn[i][(sims[i] >= NEAR_COSINE) & (nn[i] >= 0)]
            best.append(float(sims[i, 0]))
            if not len(cand):
                continue
            mad = _confirmed(t[i], pack.gather(cand))
            hit = np.flatnonzero(mad <= NEAR_MAD)
            if len(hit):
                near += 1
                if len(report["near"]["examples"]) < examples:
                    j = int(cand[hit[0]])
                    report["near"]["examples"].append(
                        {
                            "split": split,
                            "index": int(i),
                            "pack_index": j,
                            "mean_abs_diff": float(mad[hit[0]]),
                            "origin": pack.origin(j),
                        }
                    )
        report["near"][split] = near
        report["near"][f"{split}_median_top1_cosine"] = float(np.median(best)) if best else None
    return report
