#!/usr/bin/env python3
"""The suite's colour-target goals, with every seed drawing its own selection (docs/results.md, "draws")

    .venv/bin/python -m benchmarks draws                       # the four colour targets, 3 draws, then the table
    .venv/bin/python -m benchmarks draws --targets papirus --seeds 2
    .venv/bin/python -m benchmarks draws --report-only --update-docs

The suite (benchmarks/suite.py) trains a row's seeds on one payload: its selection is drawn once
(seed 0), and only the student's training seed changes. For the pretrained recipe the student is a
linear probe, whose training seed barely matters, so "3 seeds" there measures one draw. Random
selection, and the default's spread (each quota drawn from a band of candidates), vary far more
from draw to draw. Issue 15's goals on the colour targets compare the default against random
selection and against the scratch recipe; here each compared row gets seeds independent draws
(selection seed s, student seed s), so the gaps carry the spread of both. Teachers, scores and the
draw-0 students are bench_suite's (runs/suite, shared cache).
"""

from __future__ import annotations

import argparse
import time

from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir

from . import suite
from .goals import DRAWS_RECORD as RECORD
from .goals import ROWS, gaps
from .kit import machine, publish, record_targets, recorded_targets


def run(targets, seeds: int, log=print) -> dict:
    pack = ReferencePack.open(data_dir() / "offline-mix")
    results = {"machine": machine(), "pack": pack.fingerprint, "targets": {}}
    record = recorded_targets(RECORD, pack.fingerprint)
    for target in targets:
        res = {"auto": suite.effective(target, "auto"), "rows": {}, "teachers": {}, "machine": results["machine"]}
        results["targets"][target] = res
        for name, row in ROWS:
            recipe = suite.effective(target, name)
            got = suite.teacher(target, recipe, pack, log)
            if got is None:
                continue
            metrics, scores = got
            res["teachers"][recipe] = metrics["test_acc"]
            res["rows"][f"{name}:{row}"] = suite.drawn(target, recipe, scores, row, pack, seeds, log)
        if not res["rows"] and target in record:  # no teacher in runs/suite (--report-only): as recorded
            results["targets"][target] = record[target]
    if not suite.REPORT_ONLY:
        record_targets(RECORD, results)
    return results


def _cell(g: tuple[float, float, float, int] | None) -> str:
    if g is None:
        return "–"
    mean, lo, hi = (100 * x for x in g[:3])
    return f"{mean:+.1f} ({lo:+.1f} to {hi:+.1f})"


def report(results: dict) -> str:
    machines = "; ".join(sorted({r["machine"] for r in results["targets"].values()}))
    lines = [
        f"Machine: {machines}. Pool: offline-mix `{results['pack'][:12]}…`, keep {suite.KEEP}. Test "
        "accuracy, plain / macro (mean per-class), mean over seeds; seed s draws its own selection (selection "
        "seed s) and trains its student with seed s. Default: the code's default selection and recipe (auto: "
        "pretrained on these targets); random: the suite's random baseline, same recipe; scratch: the scratch "
        "recipe's teacher and student with the default selection. Gaps in points, with the lowest and highest "
        "gap between runs of the same seed.",
        "",
        "| target | teacher, auto / scratch | default | random | scratch | default − random, plain | macro "
        "| default − scratch | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    goals = []
    for target, res in results["targets"].items():
        auto = res["auto"]
        d, r, s = (res["rows"].get(f"{name}:{row}", {}).get("students") or [] for name, row in ROWS)
        teachers = " / ".join(f"{res['teachers'][k]:.3f}" if k in res["teachers"] else "–" for k in (auto, "scratch"))
        accs = [
            f"{suite._mean(x, 'test_acc'):.3f} / {suite._mean(x, 'macro_acc'):.3f}" if x else "–" for x in (d, r, s)
        ]
        g = gaps(res)
        seeds = " / ".join(str(len(x)) for x in (d, r, s))
        lines.append(
            f"| {target} | {teachers} | {' | '.join(accs)} | {_cell(g['plain'])} | {_cell(g['macro'])} "
            f"| {_cell(g['scratch'])} | {seeds} |"
        )
        if g["random holds"] is not None:
            ok = "holds" if g["random holds"] else "fails"
            goals.append(f"{target}, default beats random by ≥ 5 points, plain and macro: {ok}")
        if g["scratch holds"] is not None:
            ok = "holds" if g["scratch holds"] else "fails"
            goals.append(f"{target}, default beats the scratch recipe by ≥ 5 points: {ok}")
    held = sum(g.endswith("holds") for g in goals)
    lines += ["", f"Issue 15's colour goals over independent draws: {held} of {len(goals)} hold.", ""]
    lines += [f"- {g}" for g in goals]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(suite.COLOUR))
    ap.add_argument("--seeds", type=int, default=3, help="draws per row: selection and student seed s")
    ap.add_argument("--report-only", action="store_true", help="use cached runs only")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/results.md")
    args = ap.parse_args()
    suite.REPORT_ONLY = args.report_only
    suite.check_targets(args.targets.split(","), "bench_draws")
    t0 = time.perf_counter()
    text = report(run(args.targets.split(","), args.seeds))
    publish("draws", text, time.perf_counter() - t0, args.update_docs)


if __name__ == "__main__":
    main()
