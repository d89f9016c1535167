#!/usr/bin/env python3
"""Benchmark the energy kernel (paper §3 scoring) against its best alternatives, in one process.

Contenders per shape, median of --repeats timed runs after one warm-up:
  bandwidth   numpy .sum() over the same array: a read-bandwidth proxy (nothing can beat reading)
  numpy       the fastest numpy energy+argmax we could write: blocked, in place, one thread per core
  torch       torch.logsumexp + argmax on a zero-copy tensor, torch's own intra-op threads
  native-1t   plada_edge native energy_stats (energy + label + entropy + flags), 1 thread
  native      the same, all threads

    .venv/bin/python -m benchmarks kernel                       # both issue shapes
    .venv/bin/python -m benchmarks kernel --json out.json --update-docs
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from plada_edge.core import native

from .kit import interleaved, machine, replace_section

SHAPES = [(2_000_000, 100), (500_000, 1000)]


def numpy_energy_argmax(x: np.ndarray, threads: int, block_bytes: int = 1 << 20):
    """Best-effort numpy: cache-sized row blocks, in-place ufuncs, blocks spread over threads."""
    n, c = x.shape
    rows = max(1, block_bytes // (4 * c))
    energy = np.empty(n, np.float32)
    label = np.empty(n, np.int64)

    def run(b0: int) -> None:
        blk = x[b0 : b0 + rows]
        m = blk.max(axis=1)
        label[b0 : b0 + len(blk)] = blk.argmax(axis=1)
        buf = np.subtract(blk, m[:, None])
        np.exp(buf, out=buf)
        s = buf.sum(axis=1)
        np.log(s, out=s)
        s += m
        np.negative(s, out=energy[b0 : b0 + len(blk)])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, n, rows)))
    return energy, label


def time_median(fn, repeats: int) -> float:
    return interleaved({"fn": fn}, repeats)["fn"]


def bench_shape(n: int, c: int, repeats: int, threads: int) -> dict:
    x = np.random.default_rng(0).standard_normal((n, c), dtype=np.float32) * 3
    gb = x.nbytes / 1e9
    contenders = {
        "bandwidth": lambda: x.sum(),
        "numpy": lambda: numpy_energy_argmax(x, threads),
        "native-1t": lambda: native.energy_stats(x, threads=1),
        "native": lambda: native.energy_stats(x, threads=threads),
    }
    try:
        import torch

        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)
        contenders["torch"] = lambda: (torch.logsumexp(xt, dim=1), xt.argmax(dim=1))
    except ImportError:
        pass
    result = {"n": n, "classes": c, "gbytes": gb, "gbps": {}}
    for name, fn in contenders.items():
        seconds = time_median(fn, repeats)
        result["gbps"][name] = gb / seconds
        print(f"  {n:>9,} x {c:<5} {name:<10} {gb / seconds:7.2f} GB/s  ({seconds * 1e3:8.1f} ms)", flush=True)
    g = result["gbps"]
    result["ratios"] = {
        "native/numpy": g["native"] / g["numpy"],
        "native/bandwidth": g["native"] / g["bandwidth"],
        **({"native/torch": g["native"] / g["torch"]} if "torch" in g else {}),
    }
    return result


def to_markdown(report: dict) -> str:
    cols = ["bandwidth", "numpy", "torch", "native-1t", "native"]
    lines = [
        f"Machine: {report['machine']}, {report['threads']} threads, SIMD `{report['simd']}`, "
        f"median of {report['repeats']} runs. GB/s of float32 logits processed.",
        "",
        "| N x C | " + " | ".join(cols) + " | native/numpy | native/torch | native/bandwidth |",
        "|---|" + "---:|" * (len(cols) + 3),
    ]
    for r in report["shapes"]:
        g, q = r["gbps"], r["ratios"]
        cells = [f"{g[c]:.2f}" if c in g else "-" for c in cols]
        lines.append(
            f"| {r['n']:,} x {r['classes']} | "
            + " | ".join(cells)
            + f" | {q['native/numpy']:.1f}x | {q.get('native/torch', float('nan')):.1f}x | "
            f"{q['native/bandwidth']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=native.hardware_threads())
    ap.add_argument("--shapes", default=",".join(f"{n}x{c}" for n, c in SHAPES), help="e.g. 2000000x100,500000x1000")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--update-docs", action="store_true", help="rewrite the kernel table in docs/benchmarks.md")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(f"energy_stats backend={native.BACKEND} simd={native.simd_level()} threads={args.threads}")
    report = {
        "machine": machine(),
        "simd": native.simd_level(),
        "threads": args.threads,
        "repeats": args.repeats,
        "shapes": [bench_shape(n, c, args.repeats, args.threads) for n, c in shapes],
    }
    table = to_markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.update_docs:
        replace_section("bench_kernel", table, "python -m benchmarks kernel --update-docs")


if __name__ == "__main__":
    main()
