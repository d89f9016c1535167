"""Leakage audit: does the reference pack already contain the target's images?

If it does, a student could score well by memorising pool copies of the test set, and any
accuracy claim is void. Two checks, both on the target images rendered exactly as the pack
builder would have stored them (same size, same resize rule):

1. The paper's check (§4, "data leakage"): bucket every image by pixel mean and variance into
   32 x 32 = 1,024 bins; within a bucket, flag target/pack pairs whose mean per-pixel L1
   distance (pixels in [0, 1]) is below 1e-5. Only pairs whose means differ by less than the
   threshold can qualify, so each target image is compared with a handful of candidates.
2. The near-duplicate rule of plada_edge.core.dedup (8x8 descriptors proposed by FAISS, then
   confirmed at full resolution), which the offline data builders use too. Flat index up to 1M
   images, HNSW beyond.
"""

from __future__ import annotations

import numpy as np

from ..core.dedup import NEAR_COSINE, NEAR_K, NEAR_MAD, confirmed_matches, descriptors, mean_abs_diff
from ..core.images import array_to_rgb_tiles
from ..core.progress import bar
from ..core.reference import ReferencePack
from ..core.targets import Target

BINS = 32  # per axis: 32 x 32 = 1,024 buckets, as in the paper
L1_THRESHOLD = 1e-5


def _mean_var(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = tiles.reshape(len(tiles), -1).astype(np.float32) / 255.0
    return x.mean(axis=1, dtype=np.float64), x.var(axis=1, dtype=np.float64)


def _bucket(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    mb = np.clip((mean * BINS).astype(np.int64), 0, BINS - 1)
    vb = np.clip((var / 0.25 * BINS).astype(np.int64), 0, BINS - 1)  # pixel variance <= 1/4 on [0, 1]
    return mb * BINS + vb


def target_tiles(target: Target, pack: ReferencePack) -> dict[str, np.ndarray]:
    method = pack.manifest["build"].get("resize", "crop")
    return {s: array_to_rgb_tiles(getattr(target, f"x_{s}"), pack.size, method) for s in ("train", "test")}


def audit_leakage(target: Target, pack: ReferencePack, examples: int = 5, progress: bool | None = None) -> dict:
    """Count target train/test images that have an exact or near duplicate in the pack."""
    tiles = target_tiles(target, pack)
    stats, index = _read_pack(pack, progress)
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
        exact = _exact_matches(t, pack, stats)
        report["exact"][split] = len(exact)
        for i, j, l1 in exact[: examples - len(report["exact"]["examples"])]:
            report["exact"]["examples"].append(
                {"split": split, "index": i, "pack_index": j, "l1": l1, "origin": pack.origin(j)}
            )
        sims, nn = index.search(descriptors(t), NEAR_K)
        matches = confirmed_matches(t, sims, nn, pack.gather)
        for i, (matched, mad) in list(matches.items())[: examples - len(report["near"]["examples"])]:
            j = int(matched[0])
            report["near"]["examples"].append(
                {"split": split, "index": i, "pack_index": j, "mean_abs_diff": float(mad[0]), "origin": pack.origin(j)}
            )
        best = sims[:, 0].astype(float).tolist()
        report["near"][split] = len(matches)
        report["near"][f"{split}_median_top1_cosine"] = float(np.median(best)) if best else None
    return report


def _read_pack(pack: ReferencePack, progress):
    """One pass over the pack: each image's mean and variance (sorted by the paper's buckets) and a FAISS index
    of its descriptors."""
    import faiss

    pack_mean, pack_var = np.empty(pack.n), np.empty(pack.n)
    dim = 64
    index = faiss.IndexFlatIP(dim) if pack.n <= 1_000_000 else faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    with bar("audit: reading pack", pack.n, progress, unit="img") as b:
        for c0, imgs in pack.iter_chunks(16384):
            pack_mean[c0 : c0 + len(imgs)], pack_var[c0 : c0 + len(imgs)] = _mean_var(imgs)
            index.add(descriptors(imgs))
            b.advance(len(imgs))
    key = _bucket(pack_mean, pack_var) + np.minimum(pack_mean, 1 - 1e-12)  # sort by bucket, then mean
    order = np.argsort(key, kind="stable")
    return (pack_mean, pack_var, order, key[order]), index


def _exact_matches(t: np.ndarray, pack: ReferencePack, stats) -> list[tuple[int, int, float]]:
    """The paper's rule: target images with a pack image in their mean/variance bucket at mean L1 below the
    threshold, as (target index, first such pack index, its L1)."""
    pack_mean, pack_var, order, sorted_key = stats
    t_mean, t_var = _mean_var(t)
    t_key = _bucket(t_mean, t_var) + np.minimum(t_mean, 1 - 1e-12)
    lo = np.searchsorted(sorted_key, t_key - L1_THRESHOLD, side="left")
    hi = np.searchsorted(sorted_key, t_key + L1_THRESHOLD, side="right")
    found = []
    for i in np.flatnonzero(hi > lo):
        cand = np.sort(order[lo[i] : hi[i]])
        cand = cand[_bucket(pack_mean[cand], pack_var[cand]) == _bucket(t_mean[i : i + 1], t_var[i : i + 1])[0]]
        if not len(cand):
            continue
        l1 = mean_abs_diff(t[i], pack.gather(cand))
        hit = np.flatnonzero(l1 < L1_THRESHOLD)
        if len(hit):
            found.append((int(i), int(cand[hit[0]]), float(l1[hit[0]])))
    return found
