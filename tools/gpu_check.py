#!/usr/bin/env python3
"""The prepared GPU check (issue 16): the pipeline on a GPU beside the same pipeline on the CPU.

One run, a few minutes on one data-centre GPU:
  1. a synthetic 10-class target (32 px) and a deterministic N-image reference pack;
  2. a resnet18 teacher trained for a few epochs on the GPU and, the same recipe, on the CPU;
  3. the GPU teacher's ONNX scored through onnxruntime on the GPU (CUDA provider) and on the CPU,
     and through torch under bf16 autocast: max relative energy difference and the Jaccard
     overlap of the 1 % selections against the CPU's fp32;
  4. a student (resnet18, 30 epochs) learnt from the same 1 % payload on the GPU and on the CPU;
  5. throughput: scoring images/s (onnxruntime CUDA; torch bf16 channels-last), teacher training
     images/s, and learn's wall time.
The results go to docs/benchmarks.md (section gpu_check) with the machine named.

    python tools/gpu_check.py --update-docs                    # on a GPU machine
    python tools/gpu_check.py --device cpu --n 4000 --epochs 1 --student-epochs 1   # a dry run of the code path
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from benchkit import replace_section

import plada_edge as plada
from plada_edge.core import native
from plada_edge.core.targets import Target, save_target


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


def build_data(root: Path, n: int) -> tuple[Path, Path]:
    target_path, pack_path = root / "target.npz", root / "pack"
    rng = np.random.default_rng(0)
    if not target_path.exists():
        y, yt = np.repeat(np.arange(10), 200), np.repeat(np.arange(10), 50)
        save_target(
            target_path,
            Target(
                "gratings", synthetic_images(rng, y), y, synthetic_images(rng, yt), yt, [f"g{c}" for c in range(10)]
            ),
        )
    if not pack_path.exists():
        # a quarter in-domain gratings, the rest noise blobs: energy has something to find
        chunks = []
        for c0 in range(0, n, 50_000):
            m = min(50_000, n - c0)
            lab = rng.integers(0, 10, m)
            x = synthetic_images(rng, lab)
            noise = rng.random(m) >= 0.25
            x[noise] = rng.integers(0, 256, (int(noise.sum()), 32, 32, 3), dtype=np.uint8)
            chunks.append(x)
        np.save(root / "pool.npy", np.concatenate(chunks))
        plada.build_pack([str(root / "pool.npy")], pack_path, size=32)
        (root / "pool.npy").unlink()
    return target_path, pack_path


def torch_energies(teacher_dir: Path, pack, device: str, batch: int = 4096) -> tuple[np.ndarray, float]:
    """Energies from the torch teacher under bf16 autocast, channels-last; (energies, images/s)."""
    import torch

    from plada_edge.core.view import ViewSpec, torch_view
    from plada_edge.server.teacher import load_teacher

    model, meta = load_teacher(teacher_dir)
    view = torch_view(ViewSpec.from_dict(meta["view"]), input_size=pack.size).to(device)
    model = model.to(device, memory_format=torch.channels_last).eval()
    out = np.empty(pack.n, np.float32)
    cuda = device.startswith("cuda")
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for b0 in range(0, pack.n, batch):
            x = torch.from_numpy(np.array(pack.images[b0 : b0 + batch])).to(
                device, non_blocking=True
            )  # a writable copy
            logits = model(view(x).contiguous(memory_format=torch.channels_last)).float()
            out[b0 : b0 + len(logits)] = (-torch.logsumexp(logits, dim=1)).cpu().numpy()
    return out, pack.n / (time.perf_counter() - t0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / max(1, len(a | b))


def lowest(energy: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(energy, kind="stable")[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="the accelerator under test (cpu for a dry run)")
    ap.add_argument("--n", type=int, default=300_000, help="reference pack size")
    ap.add_argument("--epochs", type=int, default=3, help="teacher epochs")
    ap.add_argument("--student-epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    from plada_edge.core.devices import device_report, onnx_providers, resolve_device
    from plada_edge.core.errors import ConfigError

    gpu = resolve_device(args.device)
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    report = {
        "device": gpu,
        "machine": device_report(),
        "kernels": native.BACKEND,
        "simd": native.simd_level(),
        "n": args.n,
        "python": platform.python_version(),
    }
    t0 = time.perf_counter()
    target, pack_path = build_data(root, args.n)
    pack = plada.open_pack(pack_path)
    report["data_seconds"] = time.perf_counter() - t0
    print(f"data: {pack.n:,} images in {report['data_seconds']:.0f} s", flush=True)

    teachers = {}
    for side, device in (("gpu", gpu), ("cpu", "cpu")):
        t0 = time.perf_counter()
        m = plada.train_teacher(
            target,
            root / f"teacher-{side}",
            arch="resnet18",
            epochs=args.epochs,
            device=device,
            resume=False,
            progress=False,
        )
        secs = time.perf_counter() - t0
        teachers[side] = m
        report[f"teacher_{side}"] = {
            "test_acc": m["test_acc"],
            "seconds": secs,
            "train_images_per_s": 2000 * args.epochs / secs,
        }
        print(f"teacher on {device}: {m['test_acc']:.3f} in {secs:.1f} s", flush=True)
    onnx = root / "teacher-gpu.onnx"
    plada.export_teacher(root / "teacher-gpu", onnx, input_size=pack.size)

    scores = {}
    try:  # the rule `score --device cuda` applies: the CPU-only onnxruntime wheel is refused
        onnx_providers(None, gpu)
        gpu_ort = True
    except ConfigError:
        gpu_ort = False
    for side, device in (("gpu", gpu), ("cpu", "cpu")):
        if side == "gpu" and not gpu_ort:
            report["score_gpu"] = {"seconds": None, "images_per_s": None, "providers": "none (no onnxruntime-gpu)"}
            print("score on the GPU: skipped, onnxruntime has no CUDA provider here", flush=True)
            continue
        out = root / f"scores-{side}"
        t0 = time.perf_counter()
        scores[side] = plada.score(onnx, pack, out, device=device, batch_size=4096, chunk=65536, progress=False)
        secs = time.perf_counter() - t0
        report[f"score_{side}"] = {
            "seconds": secs,
            "images_per_s": pack.n / secs,
            "providers": ", ".join(plada.open_scores(out).meta.get("providers", [])),
        }
        print(f"score on {device}: {pack.n / secs:,.0f} images/s", flush=True)
    e_cpu = np.asarray(scores["cpu"].energy)
    k = pack.n // 100

    def agreement(e: np.ndarray) -> tuple[float, float]:
        """(max relative energy difference, Jaccard overlap of the 1 % selections) against the CPU's fp32."""
        rel = np.abs(e - e_cpu) / np.maximum(1e-6, np.abs(e_cpu))
        return float(rel.max()), jaccard(lowest(e, k), lowest(e_cpu, k))

    e_bf16, bf16_rate = torch_energies(root / "teacher-gpu", pack, gpu)
    fp32 = agreement(np.asarray(scores["gpu"].energy)) if "gpu" in scores else (None, None)
    bf16 = agreement(e_bf16)
    report["energy"] = {
        "max_rel_diff_fp32": fp32[0],
        "jaccard_1pct_fp32": fp32[1],
        "max_rel_diff_bf16": bf16[0],
        "jaccard_1pct_bf16": bf16[1],
        "torch_bf16_images_per_s": bf16_rate,
    }
    print(json.dumps(report["energy"]), flush=True)

    payload = root / "task.plada"
    plada.make_payload(scores["cpu"], payload, keep="1%")
    for side, device in (("gpu", gpu), ("cpu", "cpu")):
        t0 = time.perf_counter()
        m = plada.learn(
            payload,
            pack,
            root / f"student-{side}",
            target=target,
            arch="resnet18",
            epochs=args.student_epochs,
            device=device,
            resume=False,
            progress=False,
        )
        report[f"student_{side}"] = {"test_acc": m["test_acc"], "seconds": time.perf_counter() - t0, "k": m["k"]}
        print(f"student on {device}: {m['test_acc']:.3f} in {report[f'student_{side}']['seconds']:.1f} s", flush=True)
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str))

    name = ", ".join(g["name"] for g in report["machine"]["gpus"]) or f"no GPU ({gpu})"
    e = report["energy"]
    sg, sc = report["score_gpu"], report["score_cpu"]
    gpu_rate = f"{sg['images_per_s']:,.0f}" if sg["images_per_s"] else "–"
    if e["jaccard_1pct_fp32"] is None:
        fp32_line = "onnxruntime here is the CPU-only wheel (no onnxruntime-gpu): the GPU's ONNX scoring was not run. "
    else:
        fp32_line = (
            f"Energies, GPU vs CPU fp32: max relative difference {e['max_rel_diff_fp32']:.2e}, 1 % selections overlap "
            f"(Jaccard) {e['jaccard_1pct_fp32']:.4f}. "
        )
    body = (
        f"Machine: {name}; {platform.machine()}, torch sees CUDA {report['machine']['cuda']}, "
        f"onnxruntime providers {', '.join(report['machine']['onnxruntime_providers'])}. Pack: {pack.n:,} synthetic "
        f"32 px images; teacher resnet18, {args.epochs} epochs; students resnet18, {args.student_epochs} epochs on the "
        f"1 % payload (k = {k:,}).\n\n"
        "| measure | GPU | CPU |\n|---|---:|---:|\n"
        f"| teacher test accuracy | {report['teacher_gpu']['test_acc']:.3f} | "
        f"{report['teacher_cpu']['test_acc']:.3f} |\n"
        f"| teacher training, images/s | {report['teacher_gpu']['train_images_per_s']:,.0f} | "
        f"{report['teacher_cpu']['train_images_per_s']:,.0f} |\n"
        f"| scoring (onnxruntime), images/s | {gpu_rate} | {sc['images_per_s']:,.0f} |\n"
        f"| scoring providers | {sg['providers']} | {sc['providers']} |\n"
        f"| student test accuracy | {report['student_gpu']['test_acc']:.3f} | "
        f"{report['student_cpu']['test_acc']:.3f} |\n"
        f"| learn wall time, s | {report['student_gpu']['seconds']:.1f} | {report['student_cpu']['seconds']:.1f} |\n\n"
        f"{fp32_line}torch bf16 autocast on the GPU ({e['torch_bf16_images_per_s']:,.0f} images/s): max relative "
        f"difference {e['max_rel_diff_bf16']:.2e}, 1 % selections overlap (Jaccard) {e['jaccard_1pct_bf16']:.4f} "
        "(`score` itself runs the fp32 ONNX graph). The training rows include CUDA start-up and cuDNN autotuning: "
        "runs this short time the start more than the GPU's throughput.\n"
    )
    print(body)
    if args.update_docs:
        replace_section("gpu_check", body, " ".join(["python tools/gpu_check.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
