#!/usr/bin/env python3
"""Encoded packs against raw ones (issue 18): bytes on disk, and the device's gather of 1 %.

Two pools, each stored raw and re-stored as JPEG and as WebP (quality 90) from its own pixels:
offline-mix (100,181 images, 32 px) and photos-64 (100,000 random crops of the photos shipped with
scikit-image, scikit-learn and matplotlib at 64 px: the goal's size, and photo content). The same
1 % random indices are gathered from each store in interleaved rounds (median), twice: with the
page cache warm, and cold (the pack's files dropped from the page cache with
posix_fadvise(DONTNEED) before each gather, as on a device whose reference set does not fit in
memory). Goal: an encoded 64 px pack >= 3x smaller than raw, its 1 % gather <= 2x the raw one.

    .venv/bin/python -m benchmarks storage --update-docs
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from plada_edge.core.reference import build_pack, open_pack
from plada_edge.core.targets import data_dir

from .kit import interleaved, machine, replace_section

ROOT = Path("runs/storage")
STORES = ("raw", "jpeg", "webp")


def photos_64(n: int) -> Path:
    """A raw 64 px pack of n photo crops (built once, cached)."""
    from plada_edge.data.offline import photo_patches

    out = ROOT / "photos-64"
    if not (out / "manifest.json").exists():
        src = ROOT / "photos-64.npy"
        np.save(src, photo_patches(n, seed=7, size=64))
        build_pack([f"photos={src}"], out, size=64, progress=False)
        src.unlink()
    return out


def drop_cache(pack) -> None:
    """Evict the pack's files from the page cache (clean pages; no root needed)."""
    for f in pack.path.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(name: str, raw, quality: int, repeats: int) -> list[str]:
    packs = {"raw": raw}
    for store in STORES[1:]:
        out = ROOT / f"{name}-{store}{quality}"
        packs[store] = (
            open_pack(out)
            if (out / "manifest.json").exists()
            else build_pack([f"{name}={raw.path / 'images.npy'}"], out, size=raw.size, store=store, quality=quality)
        )
    idx = np.sort(np.random.default_rng(0).choice(raw.n, raw.n // 100, replace=False))
    warm = interleaved({k: (lambda p=p: p.gather(idx)) for k, p in packs.items()}, repeats)
    cold = interleaved(
        {k: (lambda p=p: (drop_cache(p), p.gather(idx))) for k, p in packs.items()}, repeats, warmup=False
    )
    base = raw.gather(idx).astype(np.int16)
    rows = []
    for k, p in packs.items():
        err = float(np.abs(p.gather(idx).astype(np.int16) - base).mean())
        rows.append(
            f"| {name} | {raw.size} px | {k} | {p.info()['bytes'] / 2**20:,.1f} | "
            f"{raw.info()['bytes'] / p.info()['bytes']:.2f}x | "
            f"{warm[k] * 1e3:,.1f} ({warm[k] / warm['raw']:.2f}x) | "
            f"{cold[k] * 1e3:,.1f} ({cold[k] / cold['raw']:.2f}x) | {err:.2f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    rows = measure("offline-mix", open_pack(data_dir() / "offline-mix"), args.quality, args.repeats)
    rows += measure("photos-64", open_pack(photos_64(args.photos)), args.quality, args.repeats)
    body = (
        f"Machine: {machine()}. Each pool stored raw and re-stored encoded at quality {args.quality}; gather = the "
        f"same random 1 % of indices from each store, median of {args.repeats} interleaved rounds; cold = the "
        "pack's files dropped from the page cache (posix_fadvise DONTNEED) before each gather.\n\n"
        "| pool | size | store | MiB on disk | smaller than raw | 1 % gather, warm, ms (vs raw) | "
        "1 % gather, cold, ms (vs raw) | mean abs pixel error |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if args.update_docs:
        replace_section("storage", body, "python -m benchmarks storage --update-docs")


if __name__ == "__main__":
    main()
