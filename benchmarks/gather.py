#!/usr/bin/env python3
"""Benchmark the memory-mapped gather a device does after decoding a payload (paper §3.3).

A random 1 % of the pack, read (a) by ReferencePack.gather (sorted reads, results in caller
order) and (b) by plain numpy fancy indexing in the caller's (unsorted) order, each with a warm
page cache and a cold one (pages dropped with posix_fadvise before every run). Every run opens
the pack afresh (manifest check + new memory map), as a device process would.

    .venv/bin/python -m benchmarks gather data/offline-mix [--keep 0.01] [--update-docs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from plada_edge.core.reference import IMAGES, ReferencePack

from .kit import replace_section


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pack", type=Path)
    ap.add_argument("--keep", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    pack = ReferencePack.open(args.pack)
    n, images_path = pack.n, pack.path / IMAGES
    del pack
    rng = np.random.default_rng(0)
    k = max(1, int(round(n * args.keep)))
    idx = rng.choice(n, k, replace=False)  # unsorted, as a payload decoder might hand them over
    contenders = {
        "ReferencePack.gather (sorted reads)": lambda p: p.gather(idx),
        "numpy fancy index (caller order)": lambda p: np.asarray(p.images[idx]),
    }
    reference = ReferencePack.open(args.pack).gather(idx)
    times = {(c, name): [] for c in ("warm", "cold") for name in contenders}
    for _ in range(args.repeats):  # interleaved rounds: machine noise hits every contender alike
        for cache in ("warm", "cold"):
            for name, fn in contenders.items():
                if cache == "cold":
                    drop_cache(images_path)
                t0 = time.perf_counter()
                pack = ReferencePack.open(args.pack)  # a fresh map, as a device process would have
                out = fn(pack)
                times[(cache, name)].append(time.perf_counter() - t0)
                assert np.array_equal(out, reference)
                del pack
    rows = []
    for (cache, name), ts in times.items():
        t = statistics.median(ts)
        rows.append((cache, name, t, k / t, reference.nbytes / t / 2**20))
        print(
            f"{cache:<5} {name:<38} {t * 1e3:8.2f} ms  {k / t:12,.0f} img/s  {reference.nbytes / t / 2**20:8.1f} MiB/s"
        )
    body = (
        f"Pack `{args.pack}`: N = {n:,}, gathering k = {k:,} random images ({args.keep:.1%}), median of "
        f"{args.repeats}.\n\n"
        "| page cache | method | ms | images/s | MiB/s |\n|---|---|---:|---:|---:|\n"
        + "\n".join(f"| {c} | {n} | {t * 1e3:.2f} | {r:,.0f} | {m:,.1f} |" for c, n, t, r, m in rows)
    )
    if args.update_docs:
        replace_section("bench_gather", body, f"python -m benchmarks gather {args.pack} --update-docs")


if __name__ == "__main__":
    main()
