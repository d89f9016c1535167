#!/usr/bin/env python3
"""Local scoring vs the Ray engine on this machine: what the engine costs when it brings no nodes.

Scores the whole pack twice with the same teacher, batch and chunking: the local engine (one
onnxruntime session, all threads) and Ray on a local runtime (one actor per CPU, one thread each),
checks that the scores are identical, and reports images/s and the Ray overhead.

    .venv/bin/python -m benchmarks ray_scoring runs/fmnist/teacher.onnx data/offline-mix --update-docs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from plada_edge.core import native
from plada_edge.core.reference import ReferencePack
from plada_edge.server.scoring import FIELDS, score_pack

from .kit import replace_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher", type=Path)
    ap.add_argument("pack", type=Path)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    import os

    import ray

    pack = ReferencePack.open(args.pack)
    cpus = native.hardware_threads()
    load = os.getloadavg()[0]  # other work on the machine skews both engines
    times, scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        scores["local"] = score_pack(args.teacher, pack, Path(tmp) / "local", chunk=args.chunk, progress=False)
        times["local"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores["ray"] = score_pack(
            args.teacher, pack, Path(tmp) / "ray", chunk=args.chunk, engine="ray", progress=False
        )
        times["ray"] = time.perf_counter() - t0
        ray.shutdown()
        identical = all(np.array_equal(getattr(scores["local"], f), getattr(scores["ray"], f)) for f in FIELDS)
    for k, t in times.items():
        print(f"{k:<6} {t:7.1f} s  {pack.n / t:8,.0f} images/s")
    print(f"ray.init {t_init:.1f} s; identical scores: {identical}")
    body = (
        f"Pack `{args.pack}` ({pack.n:,} images), teacher `{args.teacher}`, chunks of {args.chunk:,}, {cpus} CPUs. "
        f"Ray: a local runtime, {cpus} actors with 1 onnxruntime thread each; `ray.init` itself took {t_init:.1f} s "
        "(not included). "
        f"1-minute load average at the start: {load:.1f}.\n\n"
        "| engine | seconds | images/s | vs local |\n|---|---:|---:|---:|\n"
        + "\n".join(f"| {k} | {t:.1f} | {pack.n / t:,.0f} | {times['local'] / t:.2f}x |" for k, t in times.items())
        + f"\n\nScores identical to the local engine: **{'yes' if identical else 'NO'}**."
    )
    if args.update_docs:
        replace_section("bench_ray", body, f"python -m benchmarks ray_scoring {args.teacher} {args.pack} --update-docs")


if __name__ == "__main__":
    main()
