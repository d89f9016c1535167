#!/usr/bin/env python3
"""Reference sets at scale (issue 18): wall time and peak memory of each step as N grows.

A deterministic synthetic pack per N (offline-mix images with random crops, colour shifts and
noise, so nearly no two are equal; generated at 16 px) is built with ``reference build``: by
default a raw 16 px pack, so 14.2M images take 10.9 GB and the run fits 2 cores in under an hour
(``--size 32 --store jpeg`` builds 32 px jpeg packs instead, about 4x slower to build and score).
A small teacher (tiny_cnn, 1 epoch on fmnist, at 8x8) scores it; then ``select`` and ``pack`` at
1 %, and the device's gather of that 1 % as learn does it (to a file, a block at a time) followed by
an epoch of random training batches read back from it. Every step runs in its own process, so its peak RSS
(VmHWM) is its own. The goals: peak RSS of score, select, pack and gather grows <= 1.2x from the
smallest to the largest N, and the energy kernel plus selection stay <= 2 % of scoring time.

    .venv/bin/python -m benchmarks scale --update-docs          # N = 1M, 4M and 14,197,122
    .venv/bin/python -m benchmarks scale --rerun select,pack --update-docs   # again on the cached packs

Each step's result is cached in runs/scale/nN-SIZEpx-STORE/steps.json; packs are kept for --rerun
unless --drop-packs. Disk: the 16 px source takes N x 768 B while building; a raw 16 px pack the
same, a 32 px jpeg pack about N x 1.1 KB (15 GB at 14.2M).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .kit import machine, replace_section

ROOT = Path("runs/scale")

STEP = r"""
import json, os, sys, time
import numpy as np
step, args = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
extra = {}
if step == "build":
    from plada_edge.core.reference import build_pack
    p = build_pack([args["source"]], args["pack"], size=args["size"], store=args["store"], progress=False)
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
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import open_scores
    p, sel, data = make_payload(open_scores(args["scores"]), args["payload"], keep="1%")
    extra["bytes"] = len(data)
elif step == "gather":
    from plada_edge.core.payload import read_payload
    from plada_edge.core.reference import open_pack
    pack = open_pack(args["pack"])
    p = read_payload(args["payload"])
    p.check_pack(pack)
    images = pack.gather_to(p.indices, args["out"])  # what learn does: to a file, a block at a time
    order = np.random.default_rng(0).permutation(len(images))
    for b0 in range(0, len(order), 256):  # then an epoch of training batches read back from it
        images[np.sort(order[b0 : b0 + 256])]
    extra["gathered_mib"] = len(images) * images.shape[1] * images.shape[2] * 3 / 2**20
    os.unlink(args["out"])
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
    """N distinct 16 px RGB tiles (the build upsamples them to 32 px): random 16 px crops of
    offline-mix images box-downsampled to 18 px, colour-shifted and noised, in 64k-row chunks.
    16 px keeps the source at N x 768 B, so the source and an encoded 14.2M pack fit on one disk."""
    from plada_edge.core.reference import open_pack
    from plada_edge.core.targets import data_dir

    base = open_pack(data_dir() / "offline-mix")
    small = np.empty((base.n, 18, 18, 3), np.uint8)
    for c0 in range(0, base.n, 8192):
        block = base.read(c0, min(c0 + 8192, base.n)).astype(np.uint16)
        quarter = block.reshape(len(block), 16, 2, 16, 2, 3).sum(axis=(2, 4), dtype=np.uint16) // 4
        small[c0 : c0 + len(block)] = np.pad(quarter, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 16, 16, 3))
    for c0 in range(0, n, 65536):
        m = min(65536, n - c0)
        src = small[rng.integers(0, base.n, m)]
        dy, dx = rng.integers(0, 3, m), rng.integers(0, 3, m)
        rows = dy[:, None] + np.arange(16)
        cols = dx[:, None] + np.arange(16)
        tiles = src[np.arange(m)[:, None, None], rows[:, :, None], cols[:, None, :]].astype(np.int16)
        tiles += rng.integers(-24, 25, (m, 1, 1, 3), dtype=np.int16) + rng.integers(-6, 7, tiles.shape, dtype=np.int16)
        arr[c0 : c0 + m] = np.clip(tiles, 0, 255).astype(np.uint8)
    arr.flush()
    del arr


STEPS = ("score", "select", "pack", "gather", "energy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,4000000,14197122")
    ap.add_argument("--store", default="raw", choices=("raw", "jpeg", "webp"), help="how the packs store pixels")
    ap.add_argument("--size", type=int, default=16, help="pack pixels (the 16 px source is upsampled above 16)")
    ap.add_argument("--rerun", default="", help=f"steps to measure again on cached packs, comma-separated: {STEPS}")
    ap.add_argument("--drop-packs", action="store_true", help="delete each pack and its scores once measured")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    rerun = {s for s in args.rerun.split(",") if s}
    if rerun - set(STEPS):
        raise SystemExit(f"--rerun takes {', '.join(STEPS)}; got {', '.join(sorted(rerun - set(STEPS)))}")
    ROOT.mkdir(parents=True, exist_ok=True)
    import plada_edge as plada

    teacher = ROOT / f"teacher-{args.size}.onnx"
    if not teacher.exists():
        # a tiny_cnn that looks at 8x8 (the view area-downsamples inside the graph): scoring stays I/O-bound
        if not (ROOT / "teacher" / "metrics.json").exists():
            plada.train_teacher("fmnist", ROOT / "teacher", arch="tiny_cnn", size=8, epochs=1, progress=False)
        plada.export_teacher(ROOT / "teacher", teacher, input_size=args.size)
    rows, results = [], {}
    for n in (int(s) for s in args.sizes.split(",")):
        d = ROOT / f"n{n}-{args.size}px-{args.store}"
        d.mkdir(exist_ok=True)
        source, pack, cache = d / "source.npy", d / "pack", d / "steps.json"
        r = json.loads(cache.read_text()) if cache.exists() else {}
        if not (pack / "manifest.json").exists() and any(s not in r or s in rerun for s in STEPS):
            t0 = time.perf_counter()
            synthetic_source(source, n)
            r["generate_seconds"] = time.perf_counter() - t0
            r["build"] = run_step("build", source=str(source), pack=str(pack), store=args.store, size=args.size)
            source.unlink()
            r.pop("score", None)  # a new pack: its scores are new too
            atomic_json(cache, r)
        if "score" not in r or "score" in rerun:
            shutil.rmtree(d / "scores", ignore_errors=True)
            r["score"] = run_step("score", teacher=str(teacher), pack=str(pack), scores=str(d / "scores"))
            atomic_json(cache, r)
        for step, kw in (
            ("select", dict(scores=str(d / "scores"))),
            ("pack", dict(scores=str(d / "scores"), payload=str(d / "task.plada"))),
            ("gather", dict(pack=str(pack), payload=str(d / "task.plada"), out=str(d / "gathered.npy"))),
            ("energy", dict(n=n)),
        ):
            if step not in r or step in rerun:
                r[step] = run_step(step, **kw)
                atomic_json(cache, r)
        r["pack_mib"] = r.get("pack_mib") or sum(f.stat().st_size for f in pack.rglob("*") if f.is_file()) / 2**20
        atomic_json(cache, r)
        results[n] = r
        kernel_share = (r["energy"]["energy_seconds"] + r["select"]["select_seconds"]) / r["score"]["seconds"]
        rows.append(
            f"| {n:,} | {r['pack_mib'] / 1024:,.1f} GiB | {r['build']['seconds']:,.0f} s, "
            f"{r['build']['peak_rss_mib']:,.0f} MiB | "
            f"{r['score']['seconds']:,.0f} s, {r['score']['peak_rss_mib']:,.0f} MiB | "
            f"{r['select']['seconds']:,.1f} s, {r['select']['peak_rss_mib']:,.0f} MiB | "
            f"{r['pack']['seconds']:,.1f} s, {r['pack']['peak_rss_mib']:,.0f} MiB, {r['pack']['bytes']:,} B | "
            f"{r['gather']['seconds']:,.1f} s, {r['gather']['peak_rss_mib']:,.0f} MiB | {kernel_share:.2%} |"
        )
        print(rows[-1], flush=True)
        if args.drop_packs:
            shutil.rmtree(pack, ignore_errors=True)
            shutil.rmtree(d / "scores", ignore_errors=True)
    ns = sorted(results)
    growth = {
        s: results[ns[-1]][s]["peak_rss_mib"] / results[ns[0]][s]["peak_rss_mib"]
        for s in ("score", "select", "pack", "gather")
    }
    largest = results[ns[-1]]["pack"]["bytes"]
    body = (
        f"Machine: {machine()}. Synthetic packs (offline-mix crops, colour shifts, noise; generated at 16 px, "
        f"built to {args.size} px, stored {args.store}), a tiny_cnn teacher (10 classes); each step in its own process "
        "(wall time, peak RSS as VmHWM). Payload at 1 %, default selection. Energy kernel + selection as a share "
        "of scoring time in the last column.\n\n"
        "| N | pack on disk | build | score | select 1 % | pack 1 % | learn's gather of 1 % (+ an epoch of reads) "
        "| energy + select / score |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"Peak RSS growth from N = {ns[0]:,} to {ns[-1]:,}: "
        + ", ".join(f"{s} {g:.2f}x" for s, g in growth.items())
        + " (goal ≤ 1.2x). "
        f"The 1 % payload at N = {ns[-1]:,} is {largest / 1024:,.1f} KiB "
        "(the paper: 85-206 KB at 1 % of ImageNet-21K, 14,197,122 images).\n"
    )
    print(body)
    (ROOT / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    if args.update_docs:
        replace_section(
            "scale",
            body,
            f"python -m benchmarks scale --sizes {args.sizes} --size {args.size} --store {args.store} --update-docs",
        )


def atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


if __name__ == "__main__":
    main()
