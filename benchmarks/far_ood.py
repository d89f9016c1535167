#!/usr/bin/env python3
"""Far out of domain (paper §4.4): a target unrelated to most of the pool, energy vs opposite vs auto.

Target: faces vs non-faces (scikit-image's LFW subset, 25x25 gray; see plada_edge/data/offline.py),
which almost nothing in offline-mix resembles. A resnet18 teacher is trained on it; the pool is
scored; at 1 % with the Safety-Net, students (resnet18) are trained on the energy, opposite and
auto selections (auto decides with proxy students on held-out training images, without looking
at the test split), and evaluated on the test split. Three seeds per student.

    .venv/bin/python -m benchmarks far_ood --update-docs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.device.student import learn
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import Scores, score_pack
from plada_edge.server.teacher import export_onnx, train_teacher

from .kit import replace_section

ROOT = Path("runs/far_ood")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", default="1%")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    pack = ReferencePack.open(data_dir() / "offline-mix")
    tpath = data_dir() / "targets" / "faces.npz"
    target = load_target(tpath)
    if not (ROOT / "teacher" / "teacher.pt").exists():
        train_teacher(target, ROOT / "teacher", arch="resnet18", epochs=30)
    if not (ROOT / "teacher.onnx").exists():
        export_onnx(ROOT / "teacher", ROOT / "teacher.onnx", input_size=pack.size)
    try:
        scores = Scores.open(ROOT / "scores", pack)
    except ValueError:
        scores = score_pack(ROOT / "teacher.onnx", pack, ROOT / "scores")
    rows, auto_report = {}, None
    for strategy in ("energy", "opposite", "auto"):
        payload_path = ROOT / f"{strategy}.plada"
        p, sel, data = make_payload(
            scores, payload_path, strategy=strategy, keep=args.keep, safety_net=True, spread=1, target=target, pack=pack
        )
        if strategy == "auto":
            auto_report = sel.auto
        accs = []
        for seed in range(args.seeds):
            cache = ROOT / "students" / f"{strategy}-s{seed}.json"
            if not cache.exists():
                m = learn(
                    payload_path,
                    pack,
                    ROOT / "students" / f"{strategy}-s{seed}",
                    epochs=int(np.clip(round(15000 / p.k), 2, 30)),
                    seed=seed,
                    target=target,
                    progress=False,
                )
                atomic.write_json(cache, {"test_acc": m["test_acc"]})
            accs.append(json.loads(cache.read_text())["test_acc"])
        src = sel.report(pack)["sources"]
        rows[strategy] = {
            "k": p.k,
            "bytes": len(data),
            "acc": accs,
            "chosen": sel.strategy,
            "sources": {k: v for k, v in sorted(src.items(), key=lambda kv: -kv[1])[:3]},
        }
        print(strategy, sel.strategy, np.mean(accs), rows[strategy]["sources"])
    teacher_acc = scores.meta["teacher_test_acc"]
    lines = [
        f"Target `faces` ({len(target.y_train)} train / {len(target.y_test)} test, 25x25 gray, 2 classes); teacher "
        "resnet18: "
        f"**{teacher_acc:.3f}** test accuracy. Selections at {args.keep} of offline-mix with the Safety-Net (alpha "
        "-0.2, share 0.5); "
        f"students resnet18, {args.seeds} seeds.",
        "",
        "| strategy | picked | k | payload bytes | student accuracy | top pool sources |",
        "|---|---|---:|---:|---:|---|",
    ]
    for s, r in rows.items():
        lines.append(
            f"| {s} | {r['chosen']} | {r['k']:,} | {r['bytes']:,} | {np.mean(r['acc']):.3f} ± {np.std(r['acc']):.3f} | "
            + ", ".join(f"{k} {v}" for k, v in r["sources"].items())
            + " |"
        )
    c = auto_report["candidates"]
    lines += [
        "",
        f"`--strategy auto` trained a {auto_report['proxy']} proxy on each candidate and scored it on "
        f"{auto_report['held_out']} held-out training images: energy {c['energy']['held_out_acc']:.3f}, "
        f"opposite {c['opposite']['held_out_acc']:.3f} → **{auto_report['chosen']}**.",
    ]
    body = "\n".join(lines)
    print(body)
    if args.update_docs:
        replace_section("far_ood", body, "python -m benchmarks far_ood --update-docs", doc="results.md")


if __name__ == "__main__":
    main()
