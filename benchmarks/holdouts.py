"""Why the forecast pools held-out folds, each with a blind teacher: the shipped forecast against others (issue 35).

    python -m benchmarks holdouts                              # after `python -m benchmarks bytes`; minutes
    python -m benchmarks holdouts --report-only --update-docs  # the page from docs/results-holdouts.json

On the bytes benchmark's own 1 % hard payloads (runs/bytes) and device students (docs/results-bytes.json), each
estimate against the device student's test accuracy (held-out images drawn as the test split was):

- **folds** (shipped, plada_edge.server.forecast): per held-out fold, the trial payload is the same plan picked
  and labelled by that fold's blind teacher (trained without the fold); the trial students' pooled share of
  their blind teachers times the teacher's test accuracy. Read from the bytes record.
- **one fold**: the same on fold 0 alone (Target.holdout(), what the forecast did before folds).
- **folds, unscaled**: the pooled trial students' held-out accuracy as it is, without the share.
- **seen**: the shipped payload itself as the trial (selected and labelled by the teacher, which trained on the
  held-out images), judged on fold 0 and read as the same share. What the forecast did before the blind teacher.

Where the shipped forecast's error comes from: its trial students
and their blind teachers judged on the test split too (the benchmark reads it; the forecast never does) split
forecast − measured into **held-out folds − test split** (the same students, judged on other icons) and
**blind teachers' payloads − the teacher's** (on the test split alone), beside the forecast's spread over the
held-out icons (a bootstrap over the training split's groups) and what 1.5x more images buys on the measured
frontier: the precision ``pack --goal`` would need to land within 1.5x of the smallest payload.
"""

from __future__ import annotations

import argparse
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
VARIANTS = ("folds", "one fold", "folds, unscaled", "seen")
BOOTSTRAP = 1000  # resamples of the held-out groups


def run_target(name: str, pack: ReferencePack, measured: list[dict], log) -> dict:
    """The estimates for each recorded 1 % draw of ``name``."""
    from unittest import mock

    import plada_edge.server.forecast as fc
    from plada_edge.server.packing import make_payload

    recipe = suite.effective(name, "auto")
    metrics, scores = suite.teacher(name, recipe, pack, log)
    target = load_target(name)
    fold0 = fc.blind_scores(scores, pack)
    every_fold = fc.blind_folds
    rows = []
    for row in measured:
        payload = bytes_bench.ROOT / name / f"hard-{KEEP}-s{row['seed']}.plada"
        if not payload.exists():
            raise SystemExit(f"{payload} is missing: run `python -m benchmarks bytes --targets {name}` first")
        shipped = row["forecast"]
        one = shipped["accuracy"]  # one fold is all a large target holds out
        if shipped.get("folds", 1) > 1:
            log(f"[{name}] draw {row['seed']}: fold 0 alone")
            with mock.patch.object(fc, "blind_folds", lambda *a, **k: every_fold(*a, **k)[:1]):  # the shipped path
                made = make_payload(scores, None, keep=KEEP, seed=row["seed"], forecast=True, target=target, pack=pack)
            one = made.selection.forecast.accuracy
        log(f"[{name}] draw {row['seed']}: the shipped payload as the trial")
        p = read_payload(payload)
        seen = fc.forecast(scores, [fc.Trial(fold0, np.asarray(p.indices), np.asarray(p.labels))], pack, target)
        log(f"[{name}] draw {row['seed']}: the trial students on the test split")
        rows.append({"seed": row["seed"], "measured": row["test_acc"], "folds": shipped["accuracy"],
                     "one fold": one, "folds, unscaled": shipped["held_out"],
                     "seen": seen.accuracy, "held out: folds, seen": [shipped["held_out"], seen.held_out],
                     "sources": sources(name, recipe, scores, pack, target, row["seed"])})  # fmt: skip
    teacher = {"test": metrics["test_acc"], "blind, held out": measured[0]["forecast"]["teacher_held_out"]}
    held = sum(len(f) for f in target.holdout_folds())
    return {"recipe": recipe, "machine": machine(), "held_out": held, "folds": len(target.holdout_folds()),
            "teacher": teacher, "rows": rows}  # fmt: skip


def sources(name: str, recipe: str, scores, pack: ReferencePack, target, seed: int) -> dict:
    """The shipped 1 % forecast of draw ``seed`` made again with its trial students kept, which are then judged on
    the test split too, as are the blind teachers: the forecast, the same students' estimate from the test split
    (their share of their blind teachers there, times the teacher's test accuracy), and the forecast's standard
    deviation over the held-out groups (bootstrap)."""
    from unittest import mock

    import plada_edge.core.train as train
    from plada_edge.core.view import ViewSpec, as_nhwc3, torch_view
    from plada_edge.server.forecast import group_resamples
    from plada_edge.server.packing import make_payload
    from plada_edge.server.teacher import blind_name, load_teacher

    fitted, judged = [], []
    real_fit, real_predict = train.TrainingRun.fit, train.predict

    def fit(self, view, images, labels, out_dir, identity, **options):  # keeps each trial student
        model, history = real_fit(self, view, images, labels, out_dir, identity, **options)
        if identity == {"forecast": True}:
            fitted.append(model)
        return model, history

    def predict(model, view, *args, **options):  # and the view and held-out logits the forecast judged it by
        logits = real_predict(model, view, *args, **options)
        if any(model is m for m in fitted) and not any(model is m for m, _, _ in judged):
            judged.append((model, view, logits))
        return logits

    with mock.patch.object(train.TrainingRun, "fit", fit), mock.patch.object(train, "predict", predict):
        made = make_payload(scores, None, keep=KEEP, seed=seed, forecast=True, target=target, pack=pack)
    folds = target.holdout_folds()
    if len(judged) != len(folds):
        raise SystemExit(f"[{name}] the forecast trained {len(judged)} trial students for {len(folds)} folds")
    x_test = as_nhwc3(target.x_test)
    teachers = suite.teacher_dir(name, recipe) / "teacher"
    on_test = {"trial": 0.0, "blind": 0.0}
    trial_right, blind_right, held = [], [], []
    for f, ((model, view, logits), fold) in enumerate(zip(judged, folds)):
        x, y = as_nhwc3(target.x_train[fold]), target.y_train[fold]
        blind, meta = load_teacher(teachers / blind_name(f) / "teacher.pt")
        blind_view = torch_view(ViewSpec.from_dict(meta["view"]), input_size=target.native_size)
        on_test["trial"] += float((real_predict(model, view, x_test).argmax(1) == target.y_test).mean())
        on_test["blind"] += float((real_predict(blind, blind_view, x_test).argmax(1) == target.y_test).mean())
        trial_right.append(logits.argmax(1) == y)
        blind_right.append(real_predict(blind, blind_view, x).argmax(1) == y)
        held.append(fold)
    test = scores.meta["teacher_test_acc"]
    trial, blind, held = (np.concatenate(a) for a in (trial_right, blind_right, held))
    groups = target.groups[held] if target.groups is not None else np.arange(len(held))
    draws = group_resamples(np.stack([trial, blind], 1), groups, BOOTSTRAP, seed)
    spread = float(np.std(draws[:, 0] / np.maximum(draws[:, 1], 1), ddof=1) * test)
    return {"forecast again": made.selection.forecast.accuracy, "trials on test": on_test["trial"] / on_test["blind"]
            * test, "held-out sd": spread, "groups": len(np.unique(groups))}  # fmt: skip


def _same_draws(mine: list[dict], measured: list[dict]) -> bool:
    """Whether recorded rows were measured on the bytes record's payloads now (their forecasts agree)."""
    pairs = list(zip(mine, measured))
    return len(mine) == len(measured) and all(a.get("folds") == b["forecast"]["accuracy"] for a, b in pairs)


def run(targets, report_only: bool, log=print) -> dict:
    pack = ReferencePack.open(data_dir() / "offline-mix")
    measured = read_record(bytes_bench.RECORD, pack.fingerprint).get("targets", {})
    record = read_record(RECORD, pack.fingerprint)
    results = {"pack": pack.fingerprint, "machine": machine(), "targets": {}}
    for name in targets:
        rows = measured.get(name, {}).get("rows", {}).get(f"hard@{KEEP}")
        mine = record.get("targets", {}).get(name)
        if mine and rows and _same_draws(mine["rows"], rows):
            results["targets"][name] = mine
            if not report_only and any("sources" not in r for r in mine["rows"]):  # recorded before them
                recipe = suite.effective(name, "auto")
                _, scores = suite.teacher(name, recipe, pack, log)
                target = load_target(name)
                for r in mine["rows"]:
                    log(f"[{name}] draw {r['seed']}: the trial students on the test split")
                    r["sources"] = sources(name, recipe, scores, pack, target, r["seed"])
                record_targets(RECORD, results)
            continue
        if report_only or not rows:
            if mine and report_only:
                results["targets"][name] = mine
            elif not report_only:
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
        f"{KEEP} hard payloads and device students; each cell is the mean over its draws of estimate − measured "
        "test accuracy, in points (mean |error| in the last row). The trial students' accuracy on the held-out "
        "images (blind trials, seen trial) against the blind teachers' shows what the teacher's sight of them "
        "passes on.",
        "",
        "| target | held-out images (folds) | teacher: test, blind on held-out | "
        + " | ".join(VARIANTS)
        + " | held-out accuracy: blind trials, seen trial |",
        "|---|---:|---|" + "---:|" * len(VARIANTS) + "---|",
    ]
    errors = {v: [] for v in VARIANTS}
    for t in order:
        res = results["targets"][t]
        rows = res["rows"]
        gaps = [100 * float(np.mean([r[v] - r["measured"] for r in rows])) for v in VARIANTS]
        for v, g in zip(VARIANTS, gaps):
            errors[v].append(g)
        te = res["teacher"]
        held = np.mean([r["held out: folds, seen"] for r in rows], axis=0)
        lines.append(f"| {t} | {res['held_out']} ({res['folds']}) | {te['test']:.3f}, {te['blind, held out']:.3f} | "
                     + " | ".join(f"{g:+.1f}" for g in gaps) + f" | {held[0]:.3f}, {held[1]:.3f} |")  # fmt: skip
    mean_abs = " | ".join(f"{float(np.mean(np.abs(errors[v]))):.1f}" for v in VARIANTS)
    lines.append(f"| mean \\|error\\| | | | {mean_abs} | |")
    within = {v: sum(abs(g) <= 3 for g in errors[v]) for v in VARIANTS}
    lines += ["", "- Within 3 points: " + ", ".join(f"{v} {within[v]} of {len(order)}" for v in VARIANTS) + "."]
    return "\n".join(lines + _sources_lines(results, order))


def _gain_per_step(name: str, measured: dict) -> float | None:
    """What 1.5x more images buys on ``name``'s measured hard frontier (0.5 % to 2 %, log-linear), in points."""
    rows = measured.get(name, {}).get("rows", {})
    if not all(f"hard@{k}" in rows for k in ("0.5%", "2%")):
        return None
    low, high = (float(np.mean([r["test_acc"] for r in rows[f"hard@{k}"]])) for k in ("0.5%", "2%"))
    return 100 * (high - low) / 2 * float(np.log2(1.5))


def _sources_lines(results: dict, order: list[str]) -> list[str]:
    have = [t for t in order if all("sources" in r for r in results["targets"][t]["rows"])]
    if not have:
        return ["", "- Where the error comes from: not measured (run `python -m benchmarks holdouts`)."]
    measured = read_record(bytes_bench.RECORD, results["pack"]).get("targets", {})
    lines = [
        "",
        f"#### Where the forecast's error comes from ({KEEP}, mean over draws, points)",
        "",
        "The forecast's own trial students and blind teachers judged on the test split as well (the benchmark "
        "reads it; the forecast does not): forecast − measured = (held-out folds − test split, the same students "
        "judged on other icons) + (blind teachers' payloads − the teacher's, both on the test split). Beside them, "
        "the forecast's standard deviation over the held-out images' groups (icons; images where a target records "
        "none), by bootstrap, and what 1.5x more images buys on the measured frontier (0.5 % to 2 %): the precision "
        "`pack --goal` would need to land within 1.5x of the smallest payload that reaches its goal.",
        "",
        "| target | forecast − measured | held-out folds − test split | blind teachers' payloads − the teacher's "
        "| forecast's sd over held-out groups (groups) | 1.5x more images buys |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    wider = 0
    for t in have:
        rows = results["targets"][t]["rows"]
        src = [r["sources"] for r in rows]
        total = 100 * float(np.mean([s["forecast again"] - r["measured"] for s, r in zip(src, rows)]))
        split = 100 * float(np.mean([s["forecast again"] - s["trials on test"] for s in src]))
        teacher = 100 * float(np.mean([s["trials on test"] - r["measured"] for s, r in zip(src, rows)]))
        sd = 100 * float(np.mean([s["held-out sd"] for s in src]))
        gain = _gain_per_step(t, measured)
        wider += gain is not None and sd > gain
        lines.append(f"| {t} | {total:+.1f} | {split:+.1f} | {teacher:+.1f} | {sd:.1f} ({src[0]['groups']:,}) | "
                     + ("–" if gain is None else f"{gain:.1f}") + " |")  # fmt: skip
    lines += ["", f"- The forecast's spread over the held-out groups alone exceeds what 1.5x more images buys on "
              f"{wider} of {len(have)} targets."]  # fmt: skip
    return lines


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
