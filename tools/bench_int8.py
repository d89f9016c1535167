#!/usr/bin/env python3
"""int8 against fp32 scoring (issue 18): speed on this CPU, energy agreement, the 1 % selection, the student.

Uses the fmnist teacher that tools/bench_payload_overhead.py trains (runs/payload_overhead), exports
it in fp32 and, calibrated on 512 fmnist training images, in int8 (``teacher export --int8``), then:
  - times onnxruntime on the same 16,384 pack images with each, interleaved rounds (median);
  - scores the whole of offline-mix with each and compares energies and the default 1 % selections;
  - trains the default student on each payload and compares test accuracy.
Goals: int8 >= 2x fp32 onnxruntime; 1 % selections overlap >= 0.97 (Jaccard); student within 1 point.

    .venv/bin/python tools/bench_int8.py --update-docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchkit import interleaved, machine, replace_section

import plada_edge as plada
from plada_edge.core.targets import data_dir
from plada_edge.server.inference import open_session
from plada_edge.server.teacher import export_int8

ROOT = Path("runs/int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=Path("runs/payload_overhead/fmnist/teacher"))
    ap.add_argument("--target", default="fmnist")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--students", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    pack = plada.open_pack(data_dir() / "offline-mix")
    int8 = ROOT / "teacher.onnx"
    rep = export_int8(args.teacher, int8, args.target, input_size=pack.size)
    fp32 = Path(rep["fp32"]["onnx"])
    images = np.ascontiguousarray(pack.images[:16_384])
    sessions = {"fp32": open_session(fp32.read_bytes()), "int8": open_session(int8.read_bytes())}
    times = interleaved(
        {
            k: (lambda s=s: [s.run(["logits"], {"images": images[i : i + 256]}) for i in range(0, len(images), 256)])
            for k, s in sessions.items()
        },
        args.repeats,
    )
    rate = {k: len(images) / t for k, t in times.items()}
    scores = {
        k: plada.score(p, pack, ROOT / f"scores-{k}", progress=False) for k, p in (("fp32", fp32), ("int8", int8))
    }
    e32, e8 = np.asarray(scores["fp32"].energy), np.asarray(scores["int8"].energy)
    sel = {k: plada.select(sc, keep="1%") for k, sc in scores.items()}
    a, b = set(sel["fp32"].indices.tolist()), set(sel["int8"].indices.tolist())
    jaccard = len(a & b) / len(a | b)
    label_agree = float((np.asarray(scores["fp32"].label) == np.asarray(scores["int8"].label)).mean())
    students = {}
    if args.students:
        for k, sc in scores.items():
            plada.make_payload(sc, ROOT / f"{k}.plada", keep="1%")
            students[k] = plada.learn(
                ROOT / f"{k}.plada", pack, ROOT / f"student-{k}", target=args.target, resume=False, progress=False
            )["test_acc"]
    body = (
        f"Machine: {machine()}. Teacher: resnet18 on {args.target} (`{args.teacher}`), int8 = onnxruntime static QDQ, "
        f"Conv and Gemm only, per-channel weights, calibrated on {rep['calibration_images']} training images.\n\n"
        "| measure | fp32 | int8 |\n|---|---:|---:|\n"
        f"| onnxruntime scoring, images/s (16,384 pack images, median of {args.repeats}) | {rate['fp32']:,.0f} | "
        f"{rate['int8']:,.0f} ({rate['int8'] / rate['fp32']:.2f}x) |\n"
        f"| model file, MiB | {rep['fp32_bytes'] / 2**20:.1f} | {rep['bytes'] / 2**20:.1f} |\n"
        + (
            f"| student test accuracy (default recipe, 1 % payload) | {students['fp32']:.4f} | "
            f"{students['int8']:.4f} |\n"
            if students
            else ""
        )
        + f"\nOver all {pack.n:,} pool images: max |energy difference| {float(np.nanmax(np.abs(e8 - e32))):.3f}, "
        f"pseudo-label agreement {label_agree:.4f}, 1 % selections (energy + Safety-Net) overlap, Jaccard "
        f"**{jaccard:.4f}**.\n"
    )
    print(body)
    if args.update_docs:
        replace_section("int8_scoring", body, "python tools/bench_int8.py --update-docs")


if __name__ == "__main__":
    main()
