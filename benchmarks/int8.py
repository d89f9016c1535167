#!/usr/bin/env python3
"""int8 against fp32 scoring (issue 18): speed on this CPU, energy agreement, the 1 % selection, the student.

Uses the fmnist teacher that benchmarks/payload_overhead.py trains (runs/payload_overhead), exports
it in fp32 and, calibrated on 512 fmnist training images, in int8 (``teacher export --int8``), then:
  - times onnxruntime on the same 16,384 pack images with each, interleaved rounds (median);
  - scores the whole of offline-mix with each and compares energies and the default 1 % selections;
  - trains the default student on each payload and compares test accuracy.
Goals: int8 >= 2x fp32 onnxruntime; 1 % selections overlap >= 0.97 (Jaccard); student within 1 point.

    .venv/bin/python -m benchmarks int8 --update-docs
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np

import plada_edge as plada
from plada_edge.core.errors import ScoresError
from plada_edge.core.targets import data_dir
from plada_edge.server.inference import open_session
from plada_edge.server.quantize import quantize_teacher
from plada_edge.server.teacher import calibration_set, export_int8

from .kit import interleaved, machine, replace_section

ROOT = Path("runs/int8")


def scored(teacher: Path, pack, name: str):
    """Scores of ``pack`` under ``teacher``: cached while the teacher's bytes stay the same."""
    out = ROOT / f"scores-{name}"
    try:
        cached = plada.open_scores(out, pack)
        if cached.meta["teacher_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest():
            return cached
    except ScoresError:
        pass
    shutil.rmtree(out, ignore_errors=True)
    return plada.score(teacher, pack, out, progress=False)


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
    # the same quantization with 8-bit weights: the setting reduce_range replaced
    full = ROOT / "teacher-full-range.onnx"
    quantize_teacher(fp32, full, calibration_set(args.target, pack.size), reduce_range=False)
    scores = {k: scored(p, pack, k) for k, p in (("fp32", fp32), ("int8", int8), ("int8-full-range", full))}
    sel = {k: plada.select(sc, keep="1%") for k, sc in scores.items()}
    e32 = np.asarray(scores["fp32"].energy)
    agree = {}
    for k in ("int8", "int8-full-range"):
        a, b = set(sel["fp32"].indices.tolist()), set(sel[k].indices.tolist())
        agree[k] = (
            float(np.nanmax(np.abs(np.asarray(scores[k].energy) - e32))),
            float((np.asarray(scores["fp32"].label) == np.asarray(scores[k].label)).mean()),
            len(a & b) / len(a | b),
        )
    students = {}
    if args.students:
        for k in ("fp32", "int8"):  # a rerun on the same payload resumes the finished student
            plada.make_payload(scores[k], ROOT / f"{k}.plada", keep="1%")
            students[k] = plada.learn(
                ROOT / f"{k}.plada", pack, ROOT / f"student-{k}", target=args.target, progress=False
            )["test_acc"]
    body = (
        f"Machine: {machine()}. Teacher: resnet18 on {args.target} (`{args.teacher}`), int8 = onnxruntime static QDQ, "
        f"Conv and Gemm only, per-channel 7-bit weights, calibrated on {rep['calibration_images']} training images.\n\n"
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
        + f"\nAgainst fp32 over all {pack.n:,} pool images (1 % selection: energy + Safety-Net, the default):\n\n"
        "| int8 weights | max abs energy difference | pseudo-label agreement | 1 % selection overlap (Jaccard) |\n"
        "|---|---:|---:|---:|\n"
        + "".join(
            f"| {'7-bit (reduce_range, shipped)' if k == 'int8' else '8-bit (full range)'} | {d:.3f} | {la:.4f} | "
            f"{j:.4f} |\n"
            for k, (d, la, j) in agree.items()
        )
    )
    print(body)
    if args.update_docs:
        replace_section("int8_scoring", body, "python -m benchmarks int8 --update-docs")


if __name__ == "__main__":
    main()
