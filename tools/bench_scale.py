#!/usr/bin/env python3
"""Reference sets at scale (issue 18): wall time and peak memory of each step as N grows.

A deterministic synthetic pack per N (32 px tiles: offline-mix images with random crops, colour
shifts and noise, so no two are equal) is built with ``reference build``; a small teacher (tiny_cnn,
1 epoch on fmnist, at 8x8) scores it; then ``select`` and ``pack`` at 1 %, and the device's gather of that
1 %. Every step runs in its own process, so its peak RSS (VmHWM) is its own. The goals: peak
RSS of score, select, pack and gather grows <= 1.2x from the smallest to the largest N, and the
energy kernel plus selection stay <= 2 % of scoring time.

    .venv/bin/python tools/bench_scale.py --sizes 1000000,4000000 --update-docs

Disk: the synthetic source and the pack each take N x 3 KiB while building (raw 32 px).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchkit import machine, replace_section

ROOT = Path("runs/scale")

STEP = r"""
import json, sys, time
import numpy as np
step, args = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
extra = {}
if step == "build":
    from plada_edge.core.reference import build_pack
    p = build_pack([args["source"]], args["pack"], size=32, progress=False)
    extra["fingerprint"] = p.fingerprint
elif step == "score":
    from plada_edge.core.reference import open_pack
    from plada_edge.server.scoring import score_pack
    sc = score_pack(args["teacher"], open_pack(args["pack"]), args["scores"], batch_size=1024, chunk=65536,
                    progress=False)
    extra["n"] = sc.n
elif step == "select":
    from plada_edge.server.scoring import open_scores
    from plada_edge.server.selection import select
    sc = open_scores(args["scores"])
    t1 = time.perf_counter()
    sel = select(sc, keep="1%")
    extra["select_seconds"] = time.perf_counter() - t1
    extra["k"] = sel.k
elif step == "pack":
    from plada_edge.server.payloads import make_payload
    from plada_edge.server.scoring import open_scores
    p, sel, data = make_payload(open_scores(args["scores"]), args["payload"], keep="1%")
    extra["bytes"] = len(data)
elif step == "gather":
    from plada_edge.core.payload import read_payload
    from plada_edge.core.reference import open_pack
    pack = open_pack(args["pack"])
    p = read_payload(args["payload"])
    p.check_pack(pack)
    images = pack.gather(p.indices)
    extra["gathered_mib"] = images.nbytes / 2**20
elif step == "energy":  # the native energy kernel alone, on logits shaped like scoring's
    from plada_edge.core import native
    logits = np.random.default_rng(0).standard_normal((args["n"], 10)).astype(np.float32)
    t1 = time.perf_counter()
    native.energy_stats(logits)
    extra["energy_seconds"] = time.perf_counter() - t1
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": rss, **extra}))
"""


def run_step(step: str, **args) -> dict:
    out = subprocess.run([sys.executable, "-c", STEP, step, json.dumps(args)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def synthetic_source(path: Path, n: int, seed: int = 0) -> None:
    """N distinct 32 px RGB tiles: crops of offline-mix images, colour-shifted and noised, in 64k-row chunks."""
    from plada_edge.core.reference import open_pack
    from plada_edge.core.targets import data_dir

    base = open_pack(data_dir() / "offline-mix")
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
    for c0 in range(0, n, 65536):
        m = min(65536, n - c0)
        src = base.gather(np.sort(rng.integers(0, base.n, m)))
        dy, dx = rng.integers(0, 5, m), rng.integers(0, 5, m)
        padded = np.pad(src, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
        rows = dy[:, None] + np.arange(32)
        cols = dx[:, None] + np.arange(32)
        tiles = padded[np.arange(m)[:, None, None], rows[:, :, None], cols[:, None, :]].astype(np.int16)
        tiles += rng.integers(-24, 25, (m, 1, 1, 3), dtype=np.int16) + rng.integers(-6, 7, tiles.shape, dtype=np.int16)
        arr[c0 : c0 + m] = np.clip(tiles, 0, 255).astype(np.uint8)
    arr.flush()
    del arr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,4000000")
    ap.add_argument("--keep-packs", action="store_true", help="keep the synthetic packs (N x 3 KiB each)")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    import plada_edge as plada

    teacher = ROOT / "teacher.onnx"
    if not teacher.exists():
        # a tiny_cnn that looks at 8x8 (the view area-downsamples inside the graph): scoring stays I/O-bound
        plada.train_teacher("fmnist", ROOT / "teacher", arch="tiny_cnn", size=8, epochs=1, progress=False)
        plada.export_teacher(ROOT / "teacher", teacher, input_size=32)
    rows, results = [], {}
    for n in (int(s) for s in args.sizes.split(",")):
        d = ROOT / f"n{n}"
        d.mkdir(exist_ok=True)
        source, pack = d / "source.npy", d / "pack"
        t0 = time.perf_counter()
        if not (pack / "manifest.json").exists():
            synthetic_source(source, n)
            r = {
                "generate_seconds": time.perf_counter() - t0,
                "build": run_step("build", source=str(source), pack=str(pack)),
            }
            source.unlink()
        else:
            r = {"generate_seconds": None, "build": None}
        r["score"] = run_step("score", teacher=str(teacher), pack=str(pack), scores=str(d / "scores"))
        r["select"] = run_step("select", scores=str(d / "scores"))
        r["pack"] = run_step("pack", scores=str(d / "scores"), payload=str(d / "task.plada"))
        r["gather"] = run_step("gather", pack=str(pack), payload=str(d / "task.plada"))
        r["energy"] = run_step("energy", n=n)
        results[n] = r
        kernel_share = (r["energy"]["energy_seconds"] + r["select"]["select_seconds"]) / r["score"]["seconds"]
        build = f"{r['build']['seconds']:,.0f} s" if r["build"] else "cached"
        rows.append(
            f"| {n:,} | {build} | {r['score']['seconds']:,.0f} s, {r['score']['peak_rss_mib']:,.0f} MiB | "
            f"{r['select']['seconds']:,.1f} s, {r['select']['peak_rss_mib']:,.0f} MiB | "
            f"{r['pack']['seconds']:,.1f} s, {r['pack']['peak_rss_mib']:,.0f} MiB, {r['pack']['bytes']:,} B | "
            f"{r['gather']['seconds']:,.1f} s, {r['gather']['peak_rss_mib']:,.0f} MiB | {kernel_share:.2%} |"
        )
        print(rows[-1], flush=True)
        if not args.keep_packs:
            import shutil

            shutil.rmtree(pack, ignore_errors=True)
            (d / "scores").exists() and shutil.rmtree(d / "scores", ignore_errors=True)
    ns = sorted(results)
    growth = {
        s: results[ns[-1]][s]["peak_rss_mib"] / results[ns[0]][s]["peak_rss_mib"]
        for s in ("score", "select", "pack", "gather")
    }
    body = (
        f"Machine: {machine()}. Synthetic 32 px packs (offline-mix crops, colour shifts, noise), a tiny_cnn teacher; "
        "each step in its own process (wall time, peak RSS as VmHWM). Payload at 1 %, default selection. "
        "Energy kernel + selection as a share of scoring time in the last column.\n\n"
        "| N | build | score | select 1 % | pack 1 % | learn's gather of 1 % | energy + select / score |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"Peak RSS growth from N = {ns[0]:,} to {ns[-1]:,}: "
        + ", ".join(f"{s} {g:.2f}x" for s, g in growth.items())
        + " (goal ≤ 1.2x).\n"
    )
    print(body)
    (ROOT / "results.json").write_text(json.dumps(results, indent=2))
    if args.update_docs:
        replace_section("scale", body, f"python tools/bench_scale.py --sizes {args.sizes} --update-docs")


if __name__ == "__main__":
    main()
