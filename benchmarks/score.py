#!/usr/bin/env python3
"""Scoring throughput (paper §3 step 3): onnxruntime vs torch eager on the same teacher.

Both run the full pack-to-logits graph (uint8 NHWC in, sensor view, model) on the same images,
with the same batch size and thread count, followed by the native energy_stats; median
images/s of --repeats passes over --images pack images, interleaved.

    .venv/bin/python -m benchmarks score runs/fmnist/teacher runs/fmnist/teacher.onnx data/offline-mix --update-docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from plada_edge.core import native
from plada_edge.core.reference import ReferencePack
from plada_edge.core.view import ViewSpec, torch_view
from plada_edge.server.scoring import _session
from plada_edge.server.teacher import load_teacher

from .kit import interleaved, replace_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher", type=Path, help="teacher directory (teacher.pt)")
    ap.add_argument("onnx", type=Path, help="its ONNX export")
    ap.add_argument("pack", type=Path)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=native.hardware_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    pack = ReferencePack.open(args.pack)
    images = np.ascontiguousarray(pack.images[: args.images])
    model, meta = load_teacher(args.teacher)
    view = torch_view(ViewSpec.from_dict(meta["view"]), input_size=pack.size)
    sess = _session(args.onnx.read_bytes(), args.threads)

    def run_ort():
        for b0 in range(0, len(images), args.batch_size):
            native.energy_stats(sess.run(["logits"], {"images": images[b0 : b0 + args.batch_size]})[0])

    def run_torch():
        with torch.inference_mode():
            for b0 in range(0, len(images), args.batch_size):
                native.energy_stats(model(view(torch.from_numpy(images[b0 : b0 + args.batch_size]))).numpy())

    contenders = {"onnxruntime": run_ort, "torch eager": run_torch}
    rate = {k: len(images) / t for k, t in interleaved(contenders, args.repeats).items()}
    for k, r in rate.items():
        print(f"{k:<12} {r:10,.0f} images/s")
    body = (
        f"Teacher `{meta['arch']}` ({args.onnx}), {args.images:,} images of `{args.pack}`, batch {args.batch_size}, "
        f"{args.threads} threads, median of {args.repeats}; each includes the energy kernel.\n\n"
        "| engine | images/s | vs torch eager |\n|---|---:|---:|\n"
        + "\n".join(f"| {k} | {r:,.0f} | {r / rate['torch eager']:.2f}x |" for k, r in rate.items())
        + f"\n\nAt this rate one machine scores all 14,197,122 ImageNet-21K images in "
        f"{14_197_122 / rate['onnxruntime'] / 3600:.1f} h with onnxruntime."
    )
    if args.update_docs:
        replace_section(
            "bench_score", body, f"python -m benchmarks score {args.teacher} {args.onnx} {args.pack} --update-docs"
        )


if __name__ == "__main__":
    main()
