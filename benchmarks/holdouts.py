"""Which held-out images make the forecast honest: the shipped holdout against two others, at 1 % (issue 35).

    python -m benchmarks holdouts                              # after `python -m benchmarks bytes`; ~15 min
    python -m benchmarks holdouts --report-only --update-docs  # the page from docs/results-holdouts.json

The bytes benchmark found the shipped forecast (plada_edge.server.forecast) within 3 points of the device on
too few targets. This benchmark asks whether the held-out images are what is wrong, on the bytes benchmark's own
1 % hard payloads (runs/bytes) and its measured students (docs/results-bytes.json), for three holdouts:

- **groups** (shipped): Target.holdout(), whole near-copy groups; the teacher that labels the payload saw them.
- **random**: a stratified random holdout of the same size; the teacher's recipe retrained without it (the
  scale's denominator), near-copies of held-out images left in that training.
- **proxy labels**: the shipped holdout, but the trial student learns the payload's images with the labels of
  the proxy teacher (trained without the held-out images), so nothing the held-out images taught reaches it.

Each is the forecast's estimate (share of the teacher on the held-out images times the teacher's test accuracy),
against the device student's test accuracy on the same payload.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from plada_edge.core.payload import read_payload
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.data.suite import SUITE

from . import bytes as bytes_bench
from . import suite
from .kit import machine, publish, read_record, record_targets

RECORD = Path(__file__).resolve().parent.parent / "docs" / "results-holdouts.json"
KEEP = "1%"
VARIANTS = ("groups", "random", "proxy labels")


def _teacher_run(recipe: str, target, meta: dict):
    """The teacher's recipe as the suite trained it (``meta``: its teacher.pt): (TrainingRun, view spec)."""
    from plada_edge.core.config import TeacherConfig, with_options
    from plada_edge.core.recipes import TargetFacts, teacher_options
    from plada_edge.core.train import TrainingRun
    from plada_edge.core.view import ViewSpec

    options = teacher_options(TargetFacts.of(target), recipe, {})
    options.pop("recipe")
    cfg = with_options(None, TeacherConfig, options)
    spec = ViewSpec.from_dict(meta["view"])
    return TrainingRun(cfg.arch, target.num_classes, cfg.weights, cfg.train, "cpu", cfg.precision), spec


def _teacher_meta(name: str, recipe: str) -> dict:
    import torch

    path = suite.teacher_dir(name, recipe) / "teacher" / "teacher.pt"
    return torch.load(path, map_location="cpu", weights_only=False)


def _random_scale(recipe: str, target, meta: dict) -> tuple[np.ndarray, float]:
    """A stratified random holdout as large as the shipped one, and the teacher's recipe's accuracy on it,
    trained on the rest."""
    from plada_edge.core.train import accuracy
    from plada_edge.core.view import as_nhwc3, torch_view
    from plada_edge.server.auto import holdout_split

    run, spec = _teacher_run(recipe, target, meta)
    held, _ = holdout_split(target, share=len(target.holdout()) / len(target.y_train), seed=7)
    rest = np.setdiff1d(np.arange(len(target.y_train)), held)
    view = torch_view(spec, input_size=target.native_size)
    images = as_nhwc3(target.x_train)
    with tempfile.TemporaryDirectory(prefix="plada-holdouts-") as work:
        proxy, _ = run.fit(view, images[rest], target.y_train[rest], work, {"holdouts": "random"}, resume=False,
                           progress=False)  # fmt: skip
    return held, accuracy(proxy, view, images[held], target.y_train[held])


def _proxy_labeller(name: str, recipe: str, pack: ReferencePack, meta: dict):
    """labels(indices): the proxy teacher's (trained without the shipped holdout) classes for pack images."""
    from plada_edge.core.models import create_model
    from plada_edge.core.train import load_checkpoint, predict
    from plada_edge.core.view import ViewSpec, torch_view

    model = create_model(meta["arch"], meta["num_classes"], None)
    proxy = suite.teacher_dir(name, recipe) / "teacher" / "proxy" / "checkpoint.pt"  # written by train_teacher
    model.load_state_dict(load_checkpoint(proxy)["model"])
    view = torch_view(ViewSpec.from_dict(meta["view"]), input_size=pack.size)
    return lambda idx: predict(model, view, pack.gather(idx)).argmax(1)


def run_target(name: str, pack: ReferencePack, measured: list[dict], log) -> dict:
    """The three holdouts' forecasts for each recorded 1 % draw of ``name``."""
    from plada_edge.server.forecast import forecast

    recipe = suite.effective(name, "auto")
    _, scores = suite.teacher(name, recipe, pack, log)
    target = load_target(name)
    meta = _teacher_meta(name, recipe)
    log(f"[{name}] the teacher's recipe without a random holdout")
    held, teacher_held = _random_scale(recipe, target, meta)
    relabel = _proxy_labeller(name, recipe, pack, meta)
    shipped_meta = dict(scores.meta)
    rows = []
    for row in measured:
        payload = bytes_bench.ROOT / name / f"hard-{KEEP}-s{row['seed']}.plada"
        if not payload.exists():
            raise SystemExit(f"{payload} is missing: run `python -m benchmarks bytes --targets {name}` first")
        p = read_payload(payload)
        idx, labels = np.asarray(p.indices), np.asarray(p.labels)
        log(f"[{name}] draw {row['seed']}: trial students")
        scores.meta = dict(shipped_meta, teacher_holdout_acc=teacher_held,
                           target={**(shipped_meta.get("target") or {}), "holdout": held.tolist()})  # fmt: skip
        rand = forecast(scores, idx, labels, pack, target)
        scores.meta = shipped_meta
        relabelled = relabel(idx)
        proxy = forecast(scores, idx, relabelled, pack, target)
        rows.append({"seed": row["seed"], "measured": row["test_acc"], "groups": row["forecast"]["accuracy"],
                     "random": rand.accuracy, "proxy labels": proxy.accuracy,
                     "proxy agrees": float((relabelled == labels).mean())})  # fmt: skip
    teacher = {"test": scores.meta.get("teacher_test_acc"), "groups": scores.meta.get("teacher_holdout_acc"),
               "random": teacher_held}  # fmt: skip
    return {"recipe": recipe, "machine": machine(), "held_out": int(len(held)), "teacher": teacher, "rows": rows}


def run(targets, report_only: bool, log=print) -> dict:
    pack = ReferencePack.open(data_dir() / "offline-mix")
    measured = read_record(bytes_bench.RECORD, pack.fingerprint).get("targets", {})
    record = read_record(RECORD, pack.fingerprint)
    results = {"pack": pack.fingerprint, "machine": machine(), "targets": {}}
    for name in targets:
        if name in record.get("targets", {}):
            results["targets"][name] = record["targets"][name]
            continue
        rows = measured.get(name, {}).get("rows", {}).get(f"hard@{KEEP}")
        if report_only or not rows:
            if not report_only:
                log(f"[{name}] not in the bytes record: run `python -m benchmarks bytes --targets {name}` first")
            continue
        results["targets"][name] = run_target(name, pack, rows, log)
        record_targets(RECORD, results)  # after each target: an interrupted pass keeps what it finished
    return results


def report(results: dict) -> str:
    order = [t for t in SUITE if t in results["targets"]]
    if not order:
        return "No target measured yet: run `python -m benchmarks holdouts`."
    lines = [
        f"Machines: {'; '.join(sorted({results['targets'][t]['machine'] for t in order}))}. The bytes benchmark's "
        f"{KEEP} hard payloads and device students; each cell is the mean over its draws of forecast − measured "
        "test accuracy, in points (mean |error| in the last row). The teacher's accuracy on each holdout is the "
        "scale's denominator.",
        "",
        "| target | held-out images | teacher: test, groups, random | " + " | ".join(VARIANTS) + " | proxy agrees |",
        "|---|---:|---|" + "---:|" * (len(VARIANTS) + 1),
    ]
    errors = {v: [] for v in VARIANTS}
    for t in order:
        res = results["targets"][t]
        rows = res["rows"]
        gaps = [100 * float(np.mean([r[v] - r["measured"] for r in rows])) for v in VARIANTS]
        for v, g in zip(VARIANTS, gaps):
            errors[v].append(g)
        te = res["teacher"]
        lines.append(f"| {t} | {res['held_out']} | {te['test']:.3f}, {te['groups']:.3f}, {te['random']:.3f} | "
                     + " | ".join(f"{g:+.1f}" for g in gaps)
                     + f" | {float(np.mean([r['proxy agrees'] for r in rows])):.2f} |")  # fmt: skip
    mean_abs = " | ".join(f"{float(np.mean(np.abs(errors[v]))):.1f}" for v in VARIANTS)
    lines.append(f"| mean \\|error\\| | | | {mean_abs} | |")
    within = {v: sum(abs(g) <= 3 for g in errors[v]) for v in VARIANTS}
    lines += ["", "- Within 3 points: " + ", ".join(f"{v} {within[v]} of {len(order)}" for v in VARIANTS) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(SUITE))
    ap.add_argument("--report-only", action="store_true", help="write the page from the record; train nothing")
    ap.add_argument("--update-docs", action="store_true", help="write the section into docs/results.md")
    args = ap.parse_args()
    suite.check_targets(args.targets.split(","), "holdouts")
    t0 = time.perf_counter()
    results = run(args.targets.split(","), args.report_only)
    publish("holdouts", report(results), time.perf_counter() - t0, args.update_docs)


if __name__ == "__main__":
    main()
