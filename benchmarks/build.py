#!/usr/bin/env python3
"""Building a pack from full-size photos (issue 18): images/s per core, draft decoding, kill -9 and resume.

N distinct 500x375 JPEG photos (quality 90) are cut from the real photos that ship with
scikit-image, scikit-learn and matplotlib (random crops, flips and colour shifts, each resized to
500x375), then:
  - one image at a time on one thread, decode to a 64 px tile: JPEG draft mode (what
    ``reference build`` does: the DCT decodes at 1/2-1/8 scale) against a full decode then the same
    resize (the best alternative without draft), interleaved;
  - ``build_pack(size=64)`` with 1 and with 2 worker processes: images/s, and per core;
  - a build killed with SIGKILL once some shards are committed, then run again: its fingerprint
    against an uninterrupted build's.
Goal: >= 500 images/s per core into a 64 px pack.

    .venv/bin/python -m benchmarks build --update-docs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .kit import interleaved, machine, replace_section

ROOT = Path("runs/build_bench")
SIZE = 64


def make_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    from plada_edge.core.images import to_rgb
    from plada_edge.data.offline import photo_paths

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    sources = [to_rgb(Image.open(p)) for p in photo_paths()]
    sources = [im for im in sources if min(im.size) >= 150]
    rng = np.random.default_rng(seed)
    for p in paths:
        im = sources[rng.integers(len(sources))]
        w, h = im.size
        cw = int(rng.integers(min(w, 150), w + 1))
        ch = min(h, max(100, int(cw * 0.75)))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch)).resize((500, 375), Image.Resampling.BICUBIC)
        arr = np.asarray(crop, np.int16) + rng.integers(-20, 21, (1, 1, 3), dtype=np.int16)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p, quality=90)
    return paths


def full_decode(path: Path) -> np.ndarray:
    """decode_file without draft mode: every pixel decoded, then the same resize and crop."""
    from PIL import Image

    from plada_edge.core.images import square, to_rgb

    with Image.open(path) as img:
        img.load()
        return np.asarray(square(to_rgb(img), SIZE, "crop"), np.uint8)


def build_seconds(folder: Path, out: Path, workers: int, **kw) -> tuple[float, str]:
    from plada_edge.core.reference import build_pack

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    pack = build_pack([str(folder)], out, size=SIZE, workers=workers, progress=False, **kw)
    return time.perf_counter() - t0, pack.fingerprint


def killed_then_resumed(folder: Path, out: Path, shard: int) -> str:
    """SIGKILL a build once two shards are committed, rerun it; the resumed pack's fingerprint."""
    from plada_edge.core.reference import build_pack

    shutil.rmtree(out, ignore_errors=True)
    work = out.parent / f".{out.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    code = (
        "from plada_edge.core.reference import build_pack;"
        f"build_pack([{str(folder)!r}], {str(out)!r}, size={SIZE}, workers=1, progress=False, shard={shard})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    while proc.poll() is None:
        try:
            if len(json.loads((work / "progress.json").read_text())["shards"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    if proc.poll() is not None:
        raise SystemExit("the build finished before it could be killed; use more --photos")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return build_pack([str(folder)], out, size=SIZE, workers=1, progress=False, shard=shard).fingerprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    from plada_edge.core.images import decode_file

    folder = ROOT / "photos"
    paths = make_photos(folder, args.photos)
    sample = paths[:200]
    per_image = interleaved(
        {
            "draft": lambda: [decode_file(p, SIZE) for p in sample],
            "full": lambda: [full_decode(p) for p in sample],
        },
        args.repeats,
    )
    builds = {}
    for workers in (1, 2):
        runs = [build_seconds(folder, ROOT / f"pack-w{workers}", workers) for _ in range(args.repeats)]
        builds[workers] = (sorted(t for t, _ in runs)[len(runs) // 2], runs[0][1])
    same_pixels = builds[1][1] == builds[2][1]
    shard = max(64, args.photos // 8)
    clean = build_seconds(folder, ROOT / "pack-clean", 1, shard=shard)[1]
    resumed = killed_then_resumed(folder, ROOT / "pack-killed", shard)
    rate1 = args.photos / builds[1][0]
    rate2 = args.photos / builds[2][0]
    body = (
        f"Machine: {machine()}. {args.photos:,} distinct 500x375 JPEG photos (q90, cut from the photos shipped "
        f"with scikit-image, scikit-learn and matplotlib) into a {SIZE} px raw pack; medians of {args.repeats}.\n\n"
        "| measure | result |\n|---|---:|\n"
        f"| decode one photo to a {SIZE} px tile, draft mode (what the build does) | "
        f"{per_image['draft'] / len(sample) * 1e3:.2f} ms |\n"
        f"| the same with a full decode | {per_image['full'] / len(sample) * 1e3:.2f} ms "
        f"({per_image['full'] / per_image['draft']:.2f}x slower) |\n"
        f"| build, 1 worker process | {rate1:,.0f} images/s |\n"
        f"| build, 2 worker processes | {rate2:,.0f} images/s ({rate2 / 2:,.0f} per core) |\n"
        f"| 1 and 2 workers give the same fingerprint | {'yes' if same_pixels else 'NO'} |\n"
        f"| killed with SIGKILL after 2 of {-(-args.photos // shard)} shards, rerun: fingerprint equals a clean "
        f"build's | {'yes' if resumed == clean else 'NO'} |\n\n"
        f"Goal: ≥ 500 images/s per core: {'met' if min(rate1, rate2 / 2) >= 500 else 'not met'} "
        f"({min(rate1, rate2 / 2):,.0f}).\n"
    )
    print(body)
    if args.update_docs:
        replace_section("build", body, "python -m benchmarks build --update-docs")


if __name__ == "__main__":
    main()
