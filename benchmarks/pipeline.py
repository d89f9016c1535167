#!/usr/bin/env python3
"""Report one server-pipeline run (issue 4): teacher accuracy, ONNX parity, 1 % selections, picture.

Reads RUN/teacher (teacher.pt, metrics.json), RUN/teacher.onnx and RUN/scores; writes a section
of docs/benchmarks.md and docs/figures/<name>_energy_grid.png: for a few classes, the 64
lowest-energy and the 64 highest-energy pack images the teacher labels with that class.

    .venv/bin/python -m benchmarks pipeline runs/fmnist data/offline-mix --name fmnist --update-docs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.reference import ReferencePack
from plada_edge.server.scoring import Scores
from plada_edge.server.selection import select
from plada_edge.server.teacher import export_onnx

from .kit import DOCS, replace_section


def energy_grid(pack: ReferencePack, scores: Scores, classes: list[int], per: int = 64):
    from PIL import Image, ImageDraw

    side = int(np.sqrt(per))
    s = pack.size
    e, lab, flags = np.asarray(scores.energy), np.asarray(scores.label), np.asarray(scores.flags)
    label_w, gap = 120, 8
    canvas = Image.new("RGB", (label_w + 2 * side * s + gap, len(classes) * (side * s + gap) + 20), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 2), f"{per} lowest energy", fill="black")
    draw.text((label_w + side * s + gap, 2), f"{per} highest energy", fill="black")
    for row, c in enumerate(classes):
        members = np.flatnonzero((lab == c) & (flags == 0))
        order = members[np.argsort(e[members], kind="stable")]
        y0 = 20 + row * (side * s + gap)
        draw.text((4, y0 + side * s // 2), f"{scores.class_names[c]}\n({len(members):,} in pack)", fill="black")
        for col, pick in enumerate((order[:per], order[::-1][:per])):
            imgs = pack.gather(pick)
            for j, img in enumerate(imgs):
                canvas.paste(
                    Image.fromarray(img), (label_w + col * (side * s + gap) + (j % side) * s, y0 + (j // side) * s)
                )
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("pack", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument(
        "--classes", default="", help="comma-separated class indices for the picture (default: 3 spread out)"
    )
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    pack = ReferencePack.open(args.pack)
    scores = Scores.open(args.run / "scores", pack)
    metrics = json.loads((args.run / "teacher" / "metrics.json").read_text())
    parity = export_onnx(args.run / "teacher", args.run / ".parity.onnx", input_size=pack.size)
    (args.run / ".parity.onnx").unlink()
    c = scores.num_classes
    classes = [int(v) for v in args.classes.split(",")] if args.classes else [0, c // 2, c - 1]
    png = DOCS / "figures" / f"{args.name}_energy_grid.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    energy_grid(pack, scores, classes).save(buf, format="PNG")
    atomic.write_bytes(png, buf.getvalue())
    lines = [
        f"Target `{metrics['target']}`, teacher `{metrics['arch']}` trained {metrics['epochs']} epochs from scratch: "
        f"**test accuracy {metrics['test_acc']:.4f}**. ONNX export vs torch on {parity['parity_batch']} random "
        "pack-sized "
        f"images: max |logit diff| **{parity['max_abs_logit_diff']:.2e}** (limit 1e-4).",
        "",
        f"1 % selections of {pack.n:,} pack images (k = {round(0.01 * pack.n):,}), label histogram and where the "
        "images come from:",
        "",
    ]
    sels = {
        "energy": select(scores, strategy="energy", keep="1%", safety_net=False, spread=1),
        "energy + Safety-Net (alpha -0.2, share 0.5)": select(
            scores, strategy="energy", keep="1%", safety_net=True, spread=1
        ),
        "energy + equal quotas (alpha 0, share 1)": select(
            scores, strategy="energy", keep="1%", safety_net=True, alpha=0.0, share=1.0, spread=1
        ),
    }
    names = scores.class_names
    lines.append("| selection | " + " | ".join(names) + " | classes present |")
    lines.append("|---|" + "---:|" * (len(names) + 1))
    for title, sel in sels.items():
        h = sel.histogram
        lines.append(f"| {title} | " + " | ".join(str(int(v)) for v in h) + f" | {int((h > 0).sum())}/{len(names)} |")
    src_names = [s.name for s in pack.sources]
    lines += ["", "| selection | " + " | ".join(src_names) + " |", "|---|" + "---:|" * len(src_names)]
    for title, sel in sels.items():
        rep = sel.report(pack)["sources"]
        lines.append(f"| {title} | " + " | ".join(str(rep[n]) for n in src_names) + " |")
    lines += ["", f"![lowest and highest energy images per class](figures/{png.name})"]
    body = "\n".join(lines)
    print(body)
    if args.update_docs:
        replace_section(
            f"pipeline_{args.name}",
            body,
            f"python -m benchmarks pipeline {args.run} {args.pack} --name {args.name} --update-docs",
        )


if __name__ == "__main__":
    main()
