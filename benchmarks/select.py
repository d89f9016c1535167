#!/usr/bin/env python3
"""Benchmark selection at ImageNet-21K scale (paper §3.2): N = 14,197,122 images, C = 200 classes.

Keep 1 % by lowest energy, vanilla and with Safety-Net (alpha -0.2, share 0.5), with
  native         plada_edge's C++ kernels (radix-select top-k, counting-sort quotas), all threads
  numpy-twin     the numpy twin: identical output (packed (score, index) keys, np.partition)
  numpy-argpart  the fastest plain numpy we could write: np.argpartition on the scores, quotas by
                 argsort on labels then argpartition per class (ties unordered, so not identical)
Median of --repeats runs in one process, interleaved.

    .venv/bin/python -m benchmarks select [--n 14197122] [--update-docs]
"""

from __future__ import annotations

import argparse

import numpy as np

from plada_edge.core import native, twins
from plada_edge.server.selection import safety_net_quotas

from .kit import interleaved, replace_section


def synthetic(n: int, c: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1) ** 0.8  # Zipf-like pseudo-label counts
    labels = rng.choice(c, n, p=p / p.sum()).astype(np.uint8 if c <= 256 else np.uint16)
    energy = (rng.standard_normal(n, dtype=np.float32) * 2 - labels.astype(np.float32) * 0.01).astype(np.float32)
    flags = (rng.random(n) < 1e-4).astype(np.uint8)
    energy[flags == 1] = np.nan
    return energy, labels, flags


def argpartition_select(energy, labels, flags, k, quotas=None):
    valid = np.flatnonzero(flags == 0)
    e = energy[valid]
    if quotas is None:
        pick = np.argpartition(e, k - 1)[:k]
        return np.sort(valid[pick])
    order = np.argsort(labels[valid], kind="stable")
    bounds = np.searchsorted(labels[valid][order], np.arange(len(quotas) + 1))
    picked = []
    for c, q in enumerate(quotas):
        seg = order[bounds[c] : bounds[c + 1]]
        if q and len(seg):
            q = min(q, len(seg))
            picked.append(seg[np.argpartition(e[seg], q - 1)[:q]])
    picked = np.concatenate(picked)
    mask = np.ones(len(e), bool)
    mask[picked] = False
    rest = np.flatnonzero(mask)
    r = k - len(picked)
    more = rest[np.argpartition(e[rest], r - 1)[:r]] if r > 0 else rest[:0]
    return np.sort(valid[np.concatenate([picked, more])])


def kernel_select(lib, energy, labels, flags, k, quotas=None):
    if quotas is None:
        return np.sort(lib.topk(energy, k, flags, False, 0))
    picked = lib.class_topk(energy, labels, quotas, flags, False, 0)
    ex = flags.copy()
    ex[picked] = 1
    return np.sort(np.concatenate([picked, lib.topk(energy, k - len(picked), ex, False, 0)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=14_197_122)
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--keep", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    energy, labels, flags = synthetic(args.n, args.classes)
    k = int(round(args.keep * args.n))
    counts = np.bincount(labels[flags == 0], minlength=args.classes)
    quotas = safety_net_quotas(counts, k, -0.2, 0.5)
    contenders = {
        "native": lambda q: kernel_select(native._native, energy, labels, flags, k, q),
        "numpy-twin": lambda q: kernel_select(twins, energy, labels, flags, k, q),
        "numpy-argpart": lambda q: argpartition_select(energy, labels, flags, k, q),
    }
    if native._native is None:
        contenders.pop("native")
    rows = []
    for mode, q in (("vanilla", None), ("safety-net", quotas)):
        outs = {name: fn(q) for name, fn in contenders.items()}  # warm-up and answers
        if "native" in outs:
            assert np.array_equal(outs["native"], outs["numpy-twin"]), "native and twin disagree"
        med = interleaved(
            {name: (lambda fn=fn, q=q: fn(q)) for name, fn in contenders.items()}, args.repeats, warmup=False
        )
        best_numpy = min(med["numpy-twin"], med["numpy-argpart"])
        for name, t in med.items():
            rows.append((mode, name, t, best_numpy / t))
            print(f"{mode:<11} {name:<14} {t * 1e3:9.1f} ms   {best_numpy / t:5.2f}x vs best numpy", flush=True)
    body = (
        f"N = {args.n:,} synthetic energies (1e-4 flagged), C = {args.classes} Zipf-distributed pseudo-labels, "
        f"keep {args.keep:.0%} (k = {k:,}); Safety-Net alpha -0.2, share 0.5; {native.hardware_threads()} threads, "
        f"median of {args.repeats}.\n\n| selection | implementation | ms | speed-up vs best numpy "
        "|\n|---|---|---:|---:|\n" + "\n".join(f"| {m} | {n} | {t * 1e3:.1f} | {r:.2f}x |" for m, n, t, r in rows)
    )
    if args.update_docs:
        replace_section("bench_select", body, "python -m benchmarks select --update-docs")


if __name__ == "__main__":
    main()
