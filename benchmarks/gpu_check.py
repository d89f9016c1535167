#!/usr/bin/env python3
"""The prepared GPU check (issue 33): steady-state training and scoring on a GPU beside the same machine's CPU.

One run, under 8 minutes on one data-centre GPU:
  1. a synthetic 10-class target (32 px, 1,000 training images a class) and an N-image reference pack;
  2. a resnet18 teacher trained on the GPU (batch 128, and batch 1024 with the learning rate scaled
     linearly, Goyal et al. 2017) and on the CPU; images/s over the epochs after the first, so
     CUDA start-up and cuDNN autotuning are not counted; one epoch under torch.profiler, its top
     operations written out;
  3. the GPU teacher scored from the pack on disk: onnxruntime on the CPU (fp32, the reference),
     onnxruntime's CUDA provider where installed, and `score --engine torch` on the GPU in fp32 and
     bf16 (each run twice, the second timed); max relative energy difference and the Jaccard overlap
     of the 1 % selections against the CPU's fp32;
  4. efficientnet_lite0 at 64 px (random weights: throughput only) scored the same ways on --lite-n images;
  5. a student (resnet18) learnt from the 1 % payload on the GPU and on the CPU.
The results go to docs/benchmarks.md (section gpu_check) with the machine named, and with what each
rate means for ImageNet-21K's 14,197,122 images.

    python -m benchmarks gpu_check --update-docs                    # on a GPU machine (tools/gpu_check.sh)
    python -m benchmarks gpu_check --device cpu --n 4000 --lite-n 1000 --epochs 2 --student-epochs 1 --per-class 100
                                                               # a dry run of the code path, here
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import plada_edge as plada
from plada_edge.core import native
from plada_edge.core.targets import Target, save_target

from .kit import machine, replace_section

IMAGENET_21K = 14_197_122


def synthetic_images(rng: np.random.Generator, labels: np.ndarray, size: int = 32) -> np.ndarray:
    """Class c: a grating of frequency (c % 5 + 1) at angle 36°·(c // 5 + 1), in a random colour, plus noise."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq = (labels % 5 + 1).astype(np.float32)[:, None, None]
    ang = np.deg2rad(36.0 * (labels // 5 + 1)).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(ang) + yy * np.sin(ang)) + phase)
    colour = rng.uniform(0.3, 1.0, (n, 1, 1, 3)).astype(np.float32)
    img = wave[..., None] * colour + rng.normal(0, 0.08, (n, size, size, 3)).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def build_data(root: Path, n: int, per_class: int, lite_n: int) -> tuple[Path, Path, Path | None]:
    """The target, the 32 px pack and (with ``lite_n``) a 64 px pack of its first ``lite_n`` images."""
    target_path, pack_path, lite_path = root / "target.npz", root / "pack", root / "pack64"
    rng = np.random.default_rng(0)
    if not target_path.exists():
        y, yt = np.repeat(np.arange(10), per_class), np.repeat(np.arange(10), max(10, per_class // 4))
        names = [f"g{c}" for c in range(10)]
        save_target(target_path, Target("gratings", synthetic_images(rng, y), y, synthetic_images(rng, yt), yt, names))
    if not pack_path.exists():
        # a quarter in-domain gratings, the rest noise blobs: energy has something to find
        chunks = []
        for c0 in range(0, n, 50_000):
            m = min(50_000, n - c0)
            x = synthetic_images(rng, rng.integers(0, 10, m))
            noise = rng.random(m) >= 0.25
            x[noise] = rng.integers(0, 256, (int(noise.sum()), 32, 32, 3), dtype=np.uint8)
            chunks.append(x)
        np.save(root / "pool.npy", np.concatenate(chunks))
        plada.build_pack([str(root / "pool.npy")], pack_path, size=32)
        (root / "pool.npy").unlink()
    if lite_n and not lite_path.exists():
        np.save(root / "pool64.npy", np.asarray(plada.open_pack(pack_path).images[:lite_n]))
        plada.build_pack([str(root / "pool64.npy")], lite_path, size=64)
        (root / "pool64.npy").unlink()
    return target_path, pack_path, (lite_path if lite_n else None)


def steady_rate(history: list[dict], n_train: int) -> float:
    """Training images/s over the epochs after the first (start-up and autotuning excluded where there are any)."""
    steady = history[1:] or history
    return n_train * len(steady) / sum(h["seconds"] for h in steady)


def train(target: Path, out: Path, n_train: int, **options) -> dict:
    m = plada.train_teacher(target, out, arch=options.pop("arch", "resnet18"), resume=False, progress=False, **options)
    return {"test_acc": m["test_acc"], "images_per_s": steady_rate(m["history"], n_train), "epochs": len(m["history"])}


def profile_epoch(target: Path, out: Path, device: str, rows: int = 15) -> str:
    """One training epoch under torch.profiler: the operations that took the most time, as a table."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        plada.train_teacher(target, out, arch="resnet18", epochs=1, device=device, resume=False, progress=False)
    if cuda:
        torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / max(1, len(a | b))


def score_rates(onnx: Path, pack, root: Path, gpu: str, gpu_ort: bool) -> dict:
    """Each way of scoring ``pack``: images/s (the second of two runs on a GPU) and agreement with CPU fp32."""
    ways = {"onnxruntime cpu fp32": dict(engine="local", device="cpu")}
    if gpu != "cpu":
        if gpu_ort:
            ways["onnxruntime cuda fp32"] = dict(engine="local", device=gpu)
        ways["torch gpu fp32"] = dict(engine="torch", device=gpu, precision="fp32")
        ways["torch gpu bf16"] = dict(engine="torch", device=gpu, precision="bf16")
    else:  # the dry run: the torch engine on the CPU
        ways["torch cpu fp32"] = dict(engine="torch", device="cpu")
    out, energies = {}, {}
    for name, options in ways.items():
        runs = 2 if options["device"] != "cpu" else 1
        for r in range(runs):
            d = root / f"scores-{onnx.stem}-{name.replace(' ', '-')}-{r}"
            t0 = time.perf_counter()
            s = plada.score(onnx, pack, d, batch_size=2048, chunk=65536, progress=False, **options)
            secs = time.perf_counter() - t0
        energies[name] = np.asarray(s.energy)
        out[name] = {"images_per_s": pack.n / secs, "engine": plada.open_scores(d).meta.get("engine")}
        print(f"{onnx.stem} {name}: {pack.n / secs:,.0f} images/s", flush=True)
    ref, k = energies["onnxruntime cpu fp32"], max(1, pack.n // 100)
    low = np.argsort(ref, kind="stable")[:k]
    for name, e in energies.items():
        rel = np.abs(e - ref) / np.maximum(1e-6, np.abs(ref))
        out[name] |= {"max_rel_diff": float(rel.max()), "jaccard_1pct": jaccard(np.argsort(e, kind="stable")[:k], low)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="the accelerator under test (cpu for a dry run)")
    ap.add_argument("--n", type=int, default=300_000, help="reference pack size (32 px)")
    ap.add_argument("--lite-n", type=int, default=100_000, help="64 px images for efficientnet_lite0 (0: skip)")
    ap.add_argument("--per-class", type=int, default=1000, help="training images per class of the target")
    ap.add_argument("--epochs", type=int, default=3, help="teacher epochs (the first is not timed)")
    ap.add_argument("--student-epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    from plada_edge.core.devices import device_report, gpu_providers, resolve_device

    gpu = resolve_device(args.device)
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    report = {"device": gpu, "machine": device_report(), "cpu": machine(), "kernels": native.BACKEND}
    report |= {"n": args.n, "python": platform.python_version(), "per_class": args.per_class}
    t_start = t0 = time.perf_counter()
    target, pack_path, lite_path = build_data(root, args.n, args.per_class, args.lite_n)
    pack = plada.open_pack(pack_path)
    report["data_seconds"] = time.perf_counter() - t0
    print(f"data: {pack.n:,} images in {report['data_seconds']:.0f} s", flush=True)
    n_train = 10 * args.per_class

    runs = {
        "gpu, batch 128": dict(device=gpu, epochs=args.epochs),
        "gpu, batch 1024, lr x8": dict(device=gpu, epochs=args.epochs, batch_size=1024, lr=8 * 1e-3),
        "cpu, batch 128": dict(device="cpu", epochs=min(args.epochs, 2)),
    }
    from plada_edge.core.config import TrainConfig

    assert TrainConfig().lr == 1e-3, "the linear scaling row assumes lr 1e-3 at batch 128"
    report["teacher"] = {}
    for name, options in runs.items():
        side = "teacher-" + name.split(",")[0] + ("-1024" if "1024" in name else "")
        report["teacher"][name] = train(target, root / side, n_train, **options)
        print(f"teacher {name}: {report['teacher'][name]}", flush=True)
    report["profile"] = profile_epoch(target, root / "teacher-profiled", gpu)
    print(report["profile"], flush=True)

    onnx = root / "teacher-gpu.onnx"
    plada.export_teacher(root / "teacher-gpu", onnx, input_size=pack.size)
    gpu_ort = bool(gpu_providers())
    report["score_resnet18_32"] = score_rates(onnx, pack, root, gpu, gpu_ort)
    if lite_path is not None:
        lite = plada.open_pack(lite_path)
        tdir = root / "teacher-lite"
        plada.train_teacher(target, tdir, arch="efficientnet_lite0", size=64, epochs=1, device=gpu, resume=False,
                            progress=False)  # fmt: skip
        plada.export_teacher(tdir, root / "teacher-lite.onnx", input_size=lite.size)
        report["score_lite0_64"] = score_rates(root / "teacher-lite.onnx", lite, root, gpu, gpu_ort)

    payload = root / "task.plada"
    plada.make_payload(plada.open_scores(root / f"scores-{onnx.stem}-onnxruntime-cpu-fp32-0"), payload, keep="1%")
    report["student"] = {}
    for side, device in (("gpu", gpu), ("cpu", "cpu")):
        t0 = time.perf_counter()
        m = plada.learn(payload, pack, root / f"student-{side}", target=target, arch="resnet18",
                        epochs=args.student_epochs, device=device, resume=False, progress=False)  # fmt: skip
        fit_s = sum(h["seconds"] for h in m.get("history", []))
        report["student"][side] = {"test_acc": m["test_acc"], "seconds": time.perf_counter() - t0, "fit_seconds": fit_s}
        report["student"][side]["k"] = m["k"]
        print(f"student on {device}: {report['student'][side]}", flush=True)
    report["seconds"] = time.perf_counter() - t_start
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str))
    body = render(report, args)
    print(body)
    if args.update_docs:
        replace_section("gpu_check", body, " ".join(["bash tools/gpu_check.sh", *sys.argv[1:]]))


def render(report: dict, args) -> str:
    gpus = report["machine"]
    name = ", ".join(g["name"] for g in gpus["gpus"]) or f"no GPU ({report['device']})"
    t = report["teacher"]
    cpu_rate = t["cpu, batch 128"]["images_per_s"]
    lines = [
        f"Machine: {name}; {report['cpu']}; torch sees CUDA {gpus['cuda']}, onnxruntime providers "
        f"{', '.join(gpus['onnxruntime_providers'])}. Whole run "
        f"{report['seconds'] / 60:.1f} min. Target: 10 synthetic 32 px classes, {report['per_class']:,} training "
        f"images each; pack {report['n']:,} images.\n",
        "Teacher training, resnet18 at 32 px, images/s over the epochs after the first:\n",
        "| run | images/s | × CPU | test accuracy |\n|---|---:|---:|---:|",
    ]
    for run, r in t.items():
        lines.append(f"| {run} | {r['images_per_s']:,.0f} | {r['images_per_s'] / cpu_rate:.1f} | {r['test_acc']:.3f} |")
    for key, title in (("score_resnet18_32", "resnet18 at 32 px"), ("score_lite0_64", "efficientnet_lite0 at 64 px")):
        if key not in report:
            continue
        rows = report[key]
        ref = rows["onnxruntime cpu fp32"]["images_per_s"]
        lines += [
            f"\nScoring {title} from disk (warm page cache), against onnxruntime on the CPU in fp32:\n",
            "| engine | images/s | × CPU | ImageNet-21K (14.2M) | max rel. energy diff | Jaccard, 1 % |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for way, r in rows.items():
            mins = IMAGENET_21K / r["images_per_s"] / 60
            lines.append(
                f"| {way} | {r['images_per_s']:,.0f} | {r['images_per_s'] / ref:.1f} | {mins:,.1f} min | "
                f"{r['max_rel_diff']:.1e} | {r['jaccard_1pct']:.4f} |"
            )
    s = report["student"]
    lines += [
        f"\n`learn` on the 1 % payload (k = {s['gpu']['k']:,}), resnet18, {args.student_epochs} epochs: "
        f"GPU {s['gpu']['seconds']:.1f} s in all ({s['gpu']['fit_seconds']:.1f} s of training), test accuracy "
        f"{s['gpu']['test_acc']:.3f}; CPU {s['cpu']['seconds']:.1f} s ({s['cpu']['fit_seconds']:.1f} s), "
        f"{s['cpu']['test_acc']:.3f}.\n",
        "One GPU training epoch (batch 128) under torch.profiler, the operations that took the most time:\n",
        "```\n" + report["profile"].strip() + "\n```\n",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
