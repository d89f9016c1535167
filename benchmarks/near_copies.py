#!/usr/bin/env python3
"""The near-copy rule (strategy by-teacher, plada_edge.server.selection) beyond the suite.

A teacher trained from scratch gets nearest, not energy, when the pool holds near-copies of the
target's images (NEAR_COPY_RATIO). Here the rule meets targets outside the suite: fmnist cut to a
few training images per class (seeded, from fmnist's own split, so the pool's Fashion-MNIST images
stay disjoint from it). Fewer images make a weaker teacher whose features measure nearness less
well. For each size: a resnet18 teacher from scratch, the pool scored, the near-copy ratio and what
by-teacher picks, and 3 students (resnet18, scratch recipe) on the energy and on the nearest
selection at 1 %. This ran first as a held-out check of a threshold chosen on the suite alone
(0.12); it found fmnist200 (0.22) picking energy where nearest won, so the threshold now rests on
both (config.py), and these targets are evidence, no longer held out.

    .venv/bin/python -m benchmarks near_copies --update-docs
    .venv/bin/python -m benchmarks near_copies --per-class 50 --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.config import NEAR_COPY_RATIO, SelectionConfig
from plada_edge.core.payload import write_payload
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import Target, data_dir, load_target
from plada_edge.server.packing import payload_header
from plada_edge.server.plan import plan_selection
from plada_edge.server.scoring import Scores, score_pack
from plada_edge.server.selection import near_copy_ratio, select, selection_facts
from plada_edge.server.teacher import export_onnx, train_teacher

from .kit import machine, replace_section

ROOT = Path("runs/heldout")
FRAME = "none"  # images as stored, as when NEAR_COPY_RATIO was set; grayscale teachers now default to "ink"
KEEP = "1%"
STRATEGIES = ("energy", "nearest")
FIRST_THRESHOLD = 0.12  # NEAR_COPY_RATIO as chosen on the suite alone, before this check (git history)


def small_fmnist(per_class: int) -> Target:
    """fmnist with ``per_class`` training images per class (seed 0), the official test split."""
    fm = load_target("fmnist")
    rng = np.random.default_rng(0)
    classes = range(len(fm.class_names))
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(fm.y_train == c), per_class, False) for c in classes]))
    name = f"fmnist{per_class * len(fm.class_names)}"
    return Target(name, fm.x_train[pick], fm.y_train[pick], fm.x_test, fm.y_test, fm.class_names)


def run(per_class: int, seeds: int, pack: ReferencePack, report_only: bool) -> dict | None:
    target = small_fmnist(per_class)
    root = ROOT / target.name
    if not (root / "teacher" / "teacher.pt").exists():
        if report_only:
            return None
        print(f"[{target.name}] teacher", flush=True)
        train_teacher(target, root / "teacher", recipe="scratch", frame=FRAME, progress=False)
    if not (root / "teacher.onnx").exists():
        export_onnx(root / "teacher", root / "teacher.onnx", input_size=pack.size, target=target)
    try:
        scores = Scores.open(root / "scores", pack)
    except ValueError:
        if report_only:
            return None
        print(f"[{target.name}] scoring the pool", flush=True)
        scores = score_pack(root / "teacher.onnx", pack, root / "scores", progress=False)
    teacher = json.loads((root / "teacher" / "metrics.json").read_text())["test_acc"]
    out = {
        "target": target.name,
        "train": len(target.y_train),
        "per_class": per_class,
        "teacher": teacher,
        "ratio": near_copy_ratio(scores),
        "picks": plan_selection(selection_facts(scores), SelectionConfig()).strategy.value,
    }
    for strategy in STRATEGIES:
        path = root / f"{strategy}.plada"
        if not path.exists():
            sel = select(scores, keep=KEEP, strategy=strategy, target_counts=target.class_counts())
            write_payload(path, sel.indices, sel.labels, payload_header(scores, sel, task=target.name), codec="auto")
        runs = []
        for seed in range(seeds):
            done = root / f"student-{strategy}-s{seed}" / "result.json"
            if not done.exists():
                if report_only:
                    continue
                from plada_edge.device.student import learn

                print(f"[{target.name}] student on {strategy} (seed {seed})", flush=True)
                m = learn(path, pack, done.parent, recipe="scratch", seed=seed, target=target, progress=False)
                atomic.write_json(done, {k: m[k] for k in ("test_acc", "macro_acc", "seconds")})
                (done.parent / "checkpoint.pt").unlink(missing_ok=True)  # 100+ MB, and the run is finished
            runs.append(json.loads(done.read_text()))
        out[strategy] = runs
    return out


def report(rows: list[dict]) -> str:
    sizes = " and ".join(str(r["per_class"]) for r in rows)
    lines = [
        "`by-teacher` gives a scratch teacher `nearest` when the pool holds near-copies of the target's images. Here "
        f"the rule meets fmnist cut to {sizes} training images per class: weaker teachers, whose features judge "
        "nearness less well. This ran first as a held-out check of a threshold chosen on the suite alone "
        f"({FIRST_THRESHOLD:g}). It found a target picking `energy` where `nearest` won, so the threshold "
        f"({NEAR_COPY_RATIO:g}) now rests on both tables, and these targets are no longer held out.",
        "",
        f"Machine: {machine()}. Pool: offline-mix, keep {KEEP}. Teachers see images as stored (`--frame {FRAME}`), "
        "as they did when the threshold was set; the suite's frame table has what `ink`, now grayscale's default, "
        f"changes. Students: resnet18, scratch recipe, on the target's "
        f"test split (fmnist's official 10,000). Near-copies: the ratio `near_copy_ratio` reads; by-teacher takes "
        f"nearest under {NEAR_COPY_RATIO:g}.",
        "",
        "| target | train images | teacher | near-copies | by-teacher | energy | nearest | macro, energy | "
        "macro, nearest | seeds | student / teacher, pick |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    wins, done = 0, [r for r in rows if r["energy"] and r["nearest"]]
    for r in done:
        mean = {s: float(np.mean([x["test_acc"] for x in r[s]])) for s in STRATEGIES}
        macro = {s: float(np.mean([x["macro_acc"] for x in r[s]])) for s in STRATEGIES}
        wins += (mean["nearest"] > mean["energy"]) == (r["picks"] == "nearest")
        lines.append(
            f"| {r['target']} | {r['train']:,} | {r['teacher']:.3f} | {r['ratio']:.2f} | {r['picks']} | "
            f"{mean['energy']:.3f} | {mean['nearest']:.3f} | {macro['energy']:.3f} | {macro['nearest']:.3f} | "
            f"{len(r['energy'])} / {len(r['nearest'])} | {mean[r['picks']] / r['teacher']:.3f} |"
        )
    return "\n".join(lines + ["", f"by-teacher's pick wins on plain accuracy on {wins} of {len(done)} targets."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", default="50,20", help="training images per class, one target each")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--report-only", action="store_true", help="use finished runs only")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/results.md")
    args = ap.parse_args()
    pack = ReferencePack.open(data_dir() / "offline-mix")
    rows = [run(int(p), args.seeds, pack, args.report_only) for p in args.per_class.split(",")]
    done = [r for r in rows if r is not None]
    text = report(done)
    print(text)
    if args.update_docs and not done:  # a section of nothing would replace the measured one
        sys.exit("error: no finished runs under runs/ to write the section from; run without --report-only first")
    if args.update_docs:
        command = "python -m benchmarks near_copies " + " ".join(sys.argv[1:])
        replace_section("near_copies", text, command, doc="results.md")


if __name__ == "__main__":
    main()
