"""Near-duplicate images: one rule for the leakage audit and the data builders (paper §4, leakage).

A student could score well by memorising pool copies of the target's test set, so the audit
(plada_edge.server.audit) and the offline benchmark builders (plada_edge.data) must agree on what
"the same image" means. The rule, for RGB tiles rendered exactly as the pack builder stores them:

1. describe each tile by its 8x8 grayscale area means, zero-mean and unit-norm (64-d, cosine via
   inner product), and let a FAISS index propose the NEAR_K nearest tiles of the other set;
2. a proposal with cosine >= NEAR_COSINE is a near duplicate when the full-resolution mean
   absolute pixel difference is <= NEAR_MAD (pixels in [0, 1]).

That catches copies that were re-encoded, re-scaled or slightly re-toned, which the paper's exact
check misses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NEAR_COSINE = 0.98
NEAR_MAD = 4 / 255
NEAR_K = 4
DIM = 64


def descriptors(tiles: np.ndarray) -> np.ndarray:
    """8x8 grayscale area means, zero-mean, unit-norm (float32, 64-d)."""
    n, s = len(tiles), tiles.shape[1]
    g = tiles.astype(np.float32).mean(axis=3)
    f = s // 8
    g = g[:, : f * 8, : f * 8].reshape(n, 8, f, 8, f).mean(axis=(2, 4)).reshape(n, 64)
    g -= g.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return np.divide(g, norm, out=np.zeros_like(g), where=norm > 1e-6)


def mean_abs_diff(query_tile: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference (in [0, 1]) of each candidate to the query tile."""
    return np.abs(candidates.astype(np.float32) - query_tile.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


def confirmed_matches(
    query: np.ndarray, sims: np.ndarray, neighbours: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Apply the rule to an index search's proposals.

    ``sims`` and ``neighbours`` are a FAISS search of ``descriptors(query)`` (NEAR_K columns);
    ``fetch(indices)`` returns the other set's tiles. Returns {query row: (matched indices, their
    mean absolute differences)} for every row with at least one near duplicate.
    """
    out = {}
    for i in np.flatnonzero(sims[:, 0] >= NEAR_COSINE):
        cand = neighbours[i][(sims[i] >= NEAR_COSINE) & (neighbours[i] >= 0)]
        if not len(cand):
            continue
        mad = mean_abs_diff(query[i], fetch(cand))
        hit = mad <= NEAR_MAD
        if hit.any():
            out[int(i)] = (cand[hit], mad[hit])
    return out


def flat_index(vectors: np.ndarray):
    """An exact inner-product FAISS index over descriptor vectors."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(np.ascontiguousarray(vectors, np.float32))
    return index


def near_duplicate_mask(query: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For in-memory (n, s, s, 3) tiles: which query tiles have a near duplicate in ``base``.

    Searched in both directions (query → base and base → query), so any pair the audit would
    report from either side is caught. The offline-mix builder uses it to keep pool samples free
    of the targets' images.
    """
    dq, db = descriptors(query), descriptors(base)
    mask = np.zeros(len(query), bool)
    sims, nn = flat_index(db).search(dq, NEAR_K)
    mask[list(confirmed_matches(query, sims, nn, lambda idx: base[idx]))] = True
    sims, nn = flat_index(dq).search(db, NEAR_K)
    for matched, _ in confirmed_matches(base, sims, nn, lambda idx: query[idx]).values():
        mask[matched] = True
    return mask
