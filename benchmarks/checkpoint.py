#!/usr/bin/env python3
"""Benchmark fit's resume checkpoints: one after every epoch against timed ones (CHECKPOINT_SECONDS).

A student's fit (paper §3.3: resnet18 from scratch on a 1 % payload, 32 px) is timed twice in
interleaved rounds on the same images: with a checkpoint after every epoch (the old behaviour,
CHECKPOINT_SECONDS = 0) and with the default, which writes one only when CHECKPOINT_SECONDS have
passed since the last, and after the final epoch. Both end with the same weights (checked). The
checkpoint holds the model and its AdamW state; its size and the time one write takes are reported
beside an epoch's compute, which is what decides whether per-epoch writes matter.

    .venv/bin/python -m benchmarks checkpoint [--images 1000] [--epochs 6] [--device cpu] [--update-docs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from plada_edge.core import train
from plada_edge.core.config import CHECKPOINT_SECONDS, TrainConfig
from plada_edge.core.devices import resolve_device
from plada_edge.core.models import create_model
from plada_edge.core.view import ViewSpec, torch_view

from .kit import machine, replace_section


def timed_fit(images, labels, cfg, device: str, every_epoch: bool, root: Path) -> tuple[float, list[float], dict]:
    """(wall seconds, seconds of each checkpoint write, final weights and checkpoint bytes) of one fresh fit."""
    import torch

    writes = []
    real = train.save_checkpoint

    def counting(path, state):
        t0 = time.perf_counter()
        real(path, state)
        writes.append(time.perf_counter() - t0)

    train.save_checkpoint, train.CHECKPOINT_SECONDS = counting, 0.0 if every_epoch else CHECKPOINT_SECONDS
    try:
        torch.manual_seed(0)
        model = create_model("resnet18", 10, None)
        view = torch_view(ViewSpec(native_size=32, model_size=32), input_size=32)
        out = Path(tempfile.mkdtemp(dir=root))
        t0 = time.perf_counter()
        train.fit(model, view, images, labels, cfg, out, resume=False, progress=False, device=device)
        wall = time.perf_counter() - t0
    finally:
        train.save_checkpoint, train.CHECKPOINT_SECONDS = real, CHECKPOINT_SECONDS
    size = (out / train.CHECKPOINT).stat().st_size
    return wall, writes, {"weights": model.state_dict(), "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="training images (a 1 %% payload of a 100k pool)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_checkpoint"))
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    import torch

    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    cfg = TrainConfig(epochs=args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, list[float]] = {"every epoch": [], "timed (default)": []}
    writes: dict[str, list[float]] = {name: [] for name in walls}
    finals = {}
    for _ in range(args.repeats):  # interleaved rounds: machine noise hits both alike
        for name in walls:
            wall, w, final = timed_fit(images, labels, cfg, device, name == "every epoch", args.out)
            walls[name].append(wall)
            writes[name] += w
            finals[name] = final
    a, b = (finals[name]["weights"] for name in walls)
    same = all(torch.equal(a[key], b[key]) for key in a)
    every, timed = (statistics.median(walls[name]) for name in walls)
    write_s = statistics.median(writes["every epoch"])
    per_run = {name: len(writes[name]) // args.repeats for name in walls}
    body = (
        f"Machine: {machine()}; device {device}. resnet18 from scratch, {args.images:,} images at 32 px, "
        f"{args.epochs} epochs, batch {cfg.batch_size}; median of {args.repeats} interleaved runs each. "
        f"A checkpoint (model + AdamW state) is {finals['every epoch']['bytes'] / 1e6:.0f} MB and took "
        f"{write_s:.2f} s to write (median).\n\n"
        "| checkpoints | per run | fit wall s | vs every epoch |\n|---|---:|---:|---:|\n"
        f"| every epoch (CHECKPOINT_SECONDS = 0) | {per_run['every epoch']} | {every:.1f} | 1.00x |\n"
        f"| timed (CHECKPOINT_SECONDS = {CHECKPOINT_SECONDS:g}) | {per_run['timed (default)']} | {timed:.1f} | "
        f"{every / timed:.2f}x |\n\n"
        f"Same final weights both ways: {'yes' if same else 'NO'}.\n"
    )
    print(body)
    if not same:
        raise SystemExit("the two schedules ended with different weights")
    if args.update_docs:
        command = " ".join(["python -m benchmarks checkpoint", *sys.argv[1:]])
        replace_section("checkpoint", body, command)


if __name__ == "__main__":
    main()
