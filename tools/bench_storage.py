#!/usr/bin/env python3
"""Encoded packs against raw ones (issue 18): bytes on disk, and the device's gather of 1 %.

The offline-mix pool (32 px) is re-stored as JPEG and as WebP (quality 90) from its own images;
the same 1,002 random indices (1 %) are gathered from each, in interleaved rounds (median; the page
cache is warm for every contender). Goal: an encoded pack >= 3x smaller than raw, its 1 % gather
<= 2x the raw gather time.

    .venv/bin/python tools/bench_storage.py --update-docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchkit import interleaved, machine, replace_section

from plada_edge.core.reference import build_pack, open_pack
from plada_edge.core.targets import data_dir

ROOT = Path("runs/storage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    raw = open_pack(data_dir() / "offline-mix")
    packs = {"raw": raw}
    for store in ("jpeg", "webp"):
        out = ROOT / f"offline-mix-{store}{args.quality}"
        packs[store] = (
            open_pack(out)
            if (out / "manifest.json").exists()
            else build_pack(
                [f"offline-mix={raw.path / 'images.npy'}"], out, size=raw.size, store=store, quality=args.quality
            )
        )
    idx = np.sort(np.random.default_rng(0).choice(raw.n, raw.n // 100, replace=False))
    times = interleaved({k: (lambda p=p: p.gather(idx)) for k, p in packs.items()}, args.repeats)
    err = {k: float(np.abs(p.gather(idx).astype(np.int16) - raw.gather(idx)).mean()) for k, p in packs.items()}
    rows = [
        f"| {k} | {p.info()['bytes'] / 2**20:,.1f} | {raw.info()['bytes'] / p.info()['bytes']:.2f}x | "
        f"{times[k] * 1e3:,.1f} | {times[k] / times['raw']:.2f}x | {err[k]:.2f} |"
        for k, p in packs.items()
    ]
    body = (
        f"Machine: {machine()}. offline-mix ({raw.n:,} images, {raw.size} px) stored raw and re-stored encoded at "
        f"quality {args.quality}; gather = the same {len(idx):,} random indices (1 %), median of {args.repeats} "
        "interleaved rounds, warm page cache.\n\n"
        "| store | MiB on disk | smaller than raw | 1 % gather, ms | vs raw | mean abs pixel error |\n"
        "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if args.update_docs:
        replace_section("storage", body, "python tools/bench_storage.py --update-docs")


if __name__ == "__main__":
    main()
