"""Accuracy per byte (issue 35): the forecast against the device, sizing to a goal, and soft labels at equal bytes.

    python -m benchmarks bytes                                  # every suite target (hours on 2 cores), then the page
    python -m benchmarks bytes --targets tango,papirus --draws 1
    python -m benchmarks bytes --report-only --update-docs      # the page from docs/results-bytes.json

Per suite target, with the recipe auto picks and the suite's cached teachers and scores (runs/suite):

- **frontier**: hard labels at each keep, and soft labels (``pack --soft 3``) in a payload of the same bytes, each
  for ``--draws`` independent selection draws (selection seed s, student seed s): the device's student
  (``learn``) measured on the target's test split.
- **forecast**: for each hard payload, ``pack --forecast``'s estimate (the same student recipe on the trial
  payload the teacher's blind twin picks, judged on the target's held-out training images) against that test
  accuracy.
- **goal**: ``pack --goal`` (a share of the teacher's test accuracy): the images it sends, the student's test
  accuracy, and the bytes against those of the smallest hard keep above whose draws' mean reaches the goal.

Every finished run is recorded in docs/results-bytes.json (committed), so ``--report-only`` rewrites the page
and an interrupted pass resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.config import GOAL_MAX_KEEP
from plada_edge.core.payload import read_payload
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.data.suite import SUITE
from plada_edge.device.student import learn
from plada_edge.server.packing import make_payload

from . import suite
from .goals import mean_of
from .kit import machine, publish, read_record, record_targets

ROOT = Path("runs/bytes")
RECORD = Path(__file__).resolve().parent.parent / "docs" / "results-bytes.json"
KEEPS = ("0.5%", "1%", "2%")
SOFT_BITS = 3
GOAL = 0.9  # the example: 90 % of the teacher's test accuracy
TIGHT = 1.5  # the bound: a goal's payload at most this many times the smallest that reaches the goal
UNBOUNDED = "the whole pool"  # how far goal runs searched before GOAL_MAX_KEEP bounded the search
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "frontier.png"
FORECAST_FIGURE = FIGURE.with_name("forecast.png")


def _student(payload: Path, pack, target, out: Path, seed: int) -> dict:
    """The device's student on ``payload`` (cached in ``out``): its test accuracy and time."""
    done = out / "result.json"
    if not done.exists():
        m = learn(payload, pack, out, target=target, seed=seed, progress=False)
        atomic.write_json(done, {k: m[k] for k in ("test_acc", "macro_acc", "seconds", "trained_on")})
        (out / "checkpoint.pt").unlink(missing_ok=True)
    return json.loads(done.read_text())


def _folds(name: str) -> int:
    """How many held-out folds the forecast pools on ``name`` now (a recorded forecast with fewer is stale)."""
    return len(load_target(name).holdout_folds())


def run_target(name: str, pack, draws: int, log, by_forecast: int = 0, goal: bool = True, keeps=KEEPS,
               forecast_keeps=KEEPS) -> dict:  # fmt: skip
    """Frontier, forecast and goal runs of one target (each cached under runs/bytes/TARGET); a stale forecast is
    made again at ``forecast_keeps`` only (a scratch recipe's trial students take a minute a fold)."""
    recipe = suite.effective(name, "auto")
    metrics, scores = suite.teacher(name, recipe, pack, log)
    onnx = suite.teacher_dir(name, recipe) / "teacher.onnx"
    target = load_target(name)
    root = ROOT / name
    folds = len(target.holdout_folds())  # a recorded forecast over other folds is stale
    out = {"recipe": recipe, "teacher": metrics["test_acc"], "machine": machine(), "rows": {}}
    for keep in keeps:
        for s in range(draws):
            hard = root / f"hard-{keep}-s{s}.plada"
            if not hard.exists():
                made = make_payload(scores, hard, keep=keep, seed=s, forecast=True, target=target, pack=pack)
                atomic.write_json(hard.with_suffix(".json"), made.selection.forecast.to_dict())
            fc = json.loads(hard.with_suffix(".json").read_text())
            if fc.get("folds", 1) != folds and keep in forecast_keeps:
                log(f"[{name}] {keep} draw {s}: the forecast again, over {folds} held-out folds")
                made = make_payload(scores, None, keep=keep, seed=s, forecast=True, target=target, pack=pack)
                if not np.array_equal(read_payload(hard).indices, made.selection.indices):
                    raise SystemExit(f"{hard} is not what the same rules pick now: remove {root} and run again")
                fc = made.selection.forecast.to_dict()
                atomic.write_json(hard.with_suffix(".json"), fc)
            soft = root / f"soft{SOFT_BITS}-{keep}-s{s}.plada"
            if not soft.exists():  # as many bytes as the hard payload: soft labels take images' places
                make_payload(scores, soft, max_bytes=hard.stat().st_size, seed=s, soft=SOFT_BITS, teacher=onnx,
                             pack=pack)  # fmt: skip
            log(f"[{name}] {keep} draw {s}: students")
            for kind, path in (("hard", hard), (f"soft{SOFT_BITS}", soft)):
                r = _student(path, pack, target, root / f"{kind}-{keep}-s{s}", s)
                row = {**r, "bytes": path.stat().st_size, "seed": s}
                if kind == "hard":
                    row["forecast"] = fc
                out["rows"].setdefault(f"{kind}@{keep}", []).append(row)
    if goal:  # its search trains a student per step, up to GOAL_MAX_KEEP of the pool where the goal is out of reach
        out["goal"] = _goal(name, scores, pack, target, root, log, draws, folds)
        out["goal"]["fewer"] = _fewer(name, out["goal"]["k"], draws, scores, pack, target, root, log)
    for s in range(by_forecast):  # strategy by-forecast at 1 %, against the default's hard@1% rows above
        path = root / f"by-forecast-1%-s{s}.plada"
        if path.exists() and _chosen_with(path) != folds:  # chosen by an earlier forecast: choose again
            import shutil

            log(f"[{name}] by-forecast draw {s}: chosen over other folds before; chosen again")
            path.unlink()
            shutil.rmtree(root / f"by-forecast-1%-s{s}", ignore_errors=True)
        if not path.exists():
            made = make_payload(scores, path, keep="1%", seed=s, strategy="by-forecast", target=target, pack=pack)
            atomic.write_json(path.with_suffix(".json"), made.selection.auto)
        log(f"[{name}] by-forecast draw {s}: student")
        r = _student(path, pack, target, root / f"by-forecast-1%-s{s}", s)
        chosen = json.loads(path.with_suffix(".json").read_text())["chosen"]
        out["rows"].setdefault("by-forecast@1%", []).append({**r, "bytes": path.stat().st_size, "seed": s,
                                                             "chosen": chosen, "folds": folds})  # fmt: skip
    return out


def _chosen_with(path: Path) -> int:
    """How many held-out folds the forecasts pooled that chose the by-forecast payload at ``path``."""
    candidates = json.loads(path.with_suffix(".json").read_text())["candidates"].values()
    return next(c.get("folds", 1) for c in candidates if "accuracy" in c)


def _fewer(name: str, k: int, draws: int, scores, pack, target, root: Path, log) -> list[dict]:
    """Hard payloads of k / TIGHT images (``draws`` selection draws) and their students: whether a payload that
    much smaller would have reached the goal too, which decides "within TIGHT x the smallest" between the keeps."""
    count = max(1, int(k / TIGHT))
    rows = []
    for s in range(draws):
        path = root / f"hard-{count}-s{s}.plada"
        if not path.exists():
            make_payload(scores, path, count=count, seed=s)
        log(f"[{name}] {count:,} images (goal / {TIGHT:g}) draw {s}: student")
        r = _student(path, pack, target, root / f"hard-{count}-s{s}", s)
        rows.append({**r, "bytes": path.stat().st_size, "seed": s})
    return rows


def _goal(name: str, scores, pack, target, root: Path, log, draws: int, folds: int) -> dict:
    """The goal's payload and its device students, ``draws`` student seeds (judged, as the 1.5x-fewer payloads
    are, by the mean of their draws: one device student is a few points of noise either way)."""
    path = root / f"goal-{GOAL:g}.plada"
    made_with = json.loads(path.with_suffix(".json").read_text()).get("folds", 1) if path.exists() else None
    if made_with is not None and made_with != folds:  # sized by an earlier forecast: search again
        import shutil

        path.unlink()
        for old in root.glob(f"goal-{GOAL:g}*/"):
            shutil.rmtree(old)
    if not path.exists():
        made = make_payload(scores, path, goal=GOAL, target=target, pack=pack)
        atomic.write_json(path.with_suffix(".json"), {"k": made.selection.k, **made.selection.forecast.to_dict(),
                                                      "bound": GOAL_MAX_KEEP})  # fmt: skip
    chosen = json.loads(path.with_suffix(".json").read_text())
    log(f"[{name}] goal {GOAL:g}: {chosen['k']:,} images; students")
    students = [{**_student(path, pack, target, root / (f"goal-{GOAL:g}" + (f"-s{s}" if s else "")), s), "seed": s}
                for s in range(draws)]  # fmt: skip
    bound = chosen.get("bound", UNBOUNDED)
    return {**students[0], "k": chosen["k"], "forecast": chosen["accuracy"], "bytes": path.stat().st_size,
            "bound": bound, "folds": chosen.get("folds", 1), "students": students}  # fmt: skip


def _current(recorded: dict, name: str, keeps, goal: bool) -> bool:
    """Whether a recorded target's forecasts (at ``keeps``, and its goal run's) pool today's held-out folds."""
    folds = _folds(name)
    rows = [r for k in keeps for r in recorded["rows"].get(f"hard@{k}", [])]
    stale = any(r["forecast"].get("folds", 1) != folds for r in rows)
    made = recorded.get("goal", {})
    return not stale and (not goal or made.get("folds", 1) == folds and "students" in made)


def run(targets, draws: int, report_only: bool, log=print, by_forecast: int = 0, goal: bool = True,
        keeps=KEEPS, forecast_keeps=KEEPS) -> dict:  # fmt: skip
    pack = ReferencePack.open(data_dir() / "offline-mix")
    record = read_record(RECORD, pack.fingerprint)
    results = {"pack": pack.fingerprint, "machine": machine(), "draws": draws, "targets": {}}
    for name in targets:
        recorded = record.get("targets", {}).get(name)
        chosen = (recorded or {}).get("rows", {}).get("by-forecast@1%", [])
        forecast_rows = sum(r.get("folds", 1) == _folds(name) for r in chosen) if by_forecast else 0
        done = recorded and record.get("draws") == draws and forecast_rows >= by_forecast
        done = done and ("fewer" in recorded.get("goal", {}) or not goal)
        done = done and all(f"hard@{k}" in recorded["rows"] for k in keeps)
        done = done and _current(recorded, name, forecast_keeps, goal)
        if report_only or done:
            if recorded:
                results["targets"][name] = recorded
            continue
        results["targets"][name] = run_target(name, pack, draws, log, by_forecast, goal, keeps, forecast_keeps)
        record_targets(RECORD, results)  # after each target: an interrupted pass keeps what it finished
    return results


def _table(title: str, header: str, align: str | None = None) -> list[str]:
    """A titled table's first lines; ``align`` defaults to text in the first column, numbers in the rest."""
    return ["", f"#### {title}", "", header, align or "|---|" + "---:|" * (header.count("|") - 2)]


def _rows(res: dict, kind: str, keep: str) -> list[dict]:
    return res["rows"].get(f"{kind}@{keep}", [])


def report(results: dict) -> str:
    order = [t for t in SUITE if t in results["targets"]]
    lines = [
        f"Machines: {'; '.join(sorted({results['targets'][t]['machine'] for t in order}))}. Pool: offline-mix "
        f"`{results['pack'][:12]}…`. Recipe: what auto picks per target; students are the device's (`learn`, "
        f"default options), measured on each target's test split; {results['draws']} independent selection draws "
        "per cell (selection seed s, student seed s). The forecast holds out 20 % of each class of the training "
        "split at a time (whole icons on the icon targets, as their test splits are drawn), fold after fold until "
        "1,000 images or the whole split are held out, and trains a blind teacher without each fold, which picks "
        "and labels that fold's trial payload; the teacher keeps fold 0 out of its nearest-order anchors.",
        *_table(
            "The forecast against the device (hard labels)",
            "| target | teacher | keep | held-out images (folds) | forecast (held-out) | measured (test) | "
            "difference, points |",
            "|---|---:|---|---:|---:|---:|---:|",
        ),
    ]
    close = []
    for t in order:
        res = results["targets"][t]
        for keep in KEEPS:
            rows = _rows(res, "hard", keep)
            if not rows:
                continue
            f = float(np.mean([r["forecast"]["accuracy"] for r in rows]))
            m = mean_of(rows)
            held = f"{rows[0]['forecast']['images']:,} ({rows[0]['forecast'].get('folds', 1)})"
            lines.append(f"| {t} | {res['teacher']:.3f} | {keep} | {held} | {f:.3f} | {m:.3f} | {100 * (f - m):+.1f} |")
            if keep == "1%":
                close.append((t, abs(f - m) <= 0.03))
    held = sum(ok for _, ok in close)
    lines += [
        "",
        f"- Forecast within 3 points of the measured test accuracy at 1 %: {held} of {len(close)} targets "
        f"({', '.join(t for t, ok in close if not ok) or 'none'} outside): "
        f"{'**holds**' if held >= 5 else '**does not hold**'} (goal: 5 of 6).",
        "",
        "![forecast against measured accuracy](figures/forecast.png)",
    ]
    lines += _anchor_lines(results, order)
    lines += _frontier_lines(results, order)
    lines += _goal_lines(results, order)
    lines += _by_forecast_lines(results, order)
    return "\n".join(lines)


def _by_forecast_lines(results: dict, order: list[str]) -> list[str]:
    done = [t for t in order if _rows(results["targets"][t], "by-forecast", "1%")]
    if not done:
        return ["", "- Strategy by-forecast: not measured with this forecast (run with `--by-forecast 3`)."]
    lines = _table(
        "Strategy by-forecast against the default, at 1 %",
        "| target | default | by-forecast | candidate kept, per draw | by-forecast − default, points |",
        "|---|---:|---:|---|---:|",
    )
    gaps = {}
    for t in done:
        res = results["targets"][t]
        bf = _rows(res, "by-forecast", "1%")
        seeds = {r["seed"] for r in bf}
        default = [r for r in _rows(res, "hard", "1%") if r["seed"] in seeds]  # the same draws on both sides
        gaps[t] = mean_of(bf) - mean_of(default)
        kept = ", ".join(r["chosen"] for r in bf)
        lines.append(f"| {t} | {mean_of(default):.3f} | {mean_of(bf):.3f} | {kept} | {100 * gaps[t]:+.1f} |")
    mean, worst = float(np.mean(list(gaps.values()))), min(gaps.values())
    ok = len(done) == len(order) and mean > 0 and worst >= -0.01
    lines += [
        "",
        f"- by-forecast changes the mean by {100 * mean:+.1f} points over {len(done)} targets (worst "
        f"{100 * worst:+.1f}, {min(gaps, key=gaps.get)}). The rule for a default (beats the default on the suite "
        f"mean, loses more than 1 point on none, every target measured): "
        f"{'met' if ok else 'not met: the default stays by-teacher'}.",
    ]
    return lines


def _anchor_lines(results: dict, order: list[str]) -> list[str]:
    """The default at 1 % now that teachers keep their held-out images out of the anchors, against the same draws
    recorded before (docs/results-draws.json, the draws benchmark's default rows)."""
    from .goals import DRAWS_RECORD
    from .kit import recorded_targets

    before = recorded_targets(DRAWS_RECORD, results["pack"])
    rows = []
    for t in order:
        old = before.get(t, {}).get("rows", {}).get("auto:default", {}).get("students", [])
        new = _rows(results["targets"][t], "hard", "1%")
        if old and new:
            rows.append((t, mean_of(old), mean_of(new)))
    if not rows:
        return []
    lines = _table(
        "What keeping the held-out images out of the anchors costs the default (1 %, the same draws)",
        "| target | anchors: all training images (draws record) | anchors: all but the held-out | change, points |",
    )
    lines += [f"| {t} | {a:.3f} | {b:.3f} | {100 * (b - a):+.1f} |" for t, a, b in rows]
    mean = float(np.mean([b - a for _, a, b in rows]))
    return lines + ["", f"- Mean change {100 * mean:+.1f} points over {len(rows)} targets."]


def _frontier_lines(results: dict, order: list[str]) -> list[str]:
    soft = f"soft{SOFT_BITS}"
    lines = _table(
        f"Hard labels against {SOFT_BITS}-bit soft labels in payloads of the same bytes",
        "| target | keep | bytes | hard: images, accuracy | soft: images, accuracy | soft − hard, points |",
        "|---|---|---:|---:|---:|---:|",
    )
    gains = {}
    for t in order:
        res = results["targets"][t]
        for keep in KEEPS:
            h, s = _rows(res, "hard", keep), _rows(res, soft, keep)
            if not (h and s):
                continue
            gap = mean_of(s) - mean_of(h)
            gains.setdefault(keep, {})[t] = gap
            lines.append(
                f"| {t} | {keep} | {int(np.mean([r['bytes'] for r in h])):,} | "
                f"{int(np.mean([r['trained_on'] for r in h])):,}, {mean_of(h):.3f} | "
                f"{int(np.mean([r['trained_on'] for r in s])):,}, {mean_of(s):.3f} | {100 * gap:+.1f} |"
            )
    one = gains.get("1%", {})
    if one:
        mean, worst = float(np.mean(list(one.values()))), min(one.values())
        wins = mean >= 0.02 and worst > -0.01
        lines += [
            "",
            f"- At the 1 % payload's bytes, soft labels change the suite mean by {100 * mean:+.1f} points (worst "
            f"{100 * worst:+.1f}, {min(one, key=one.get)}). The rule for a default (≥ +2 points mean, no target "
            f"below −1): {'met: soft labels on' if wins else 'not met: soft labels stay off by default'} "
            "(`pack --soft` is 0 unless given).",
            "",
            "![accuracy against payload bytes](figures/frontier.png)",
        ]
    return lines


def _goal_lines(results: dict, order: list[str]) -> list[str]:
    lines = _table(
        f"`pack --goal {GOAL:g}`: the fewest images whose forecast reaches {GOAL:.0%} of the teacher",
        "| target | goal (accuracy) | images sent | bytes | forecast | measured: mean of draws (draw 0) | reached | "
        "smallest hard keep "
        f"reaching it (mean of draws) | bytes / its bytes | {TIGHT:g}x fewer images: measured (mean of draws) |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    )
    reached, tight = 0, 0
    for t in order:
        res = results["targets"][t]
        g = res.get("goal")
        if not g:
            continue
        want = GOAL * res["teacher"]
        measured = mean_of(g["students"]) if g.get("students") else g["test_acc"]
        ok = measured >= want
        reached += ok
        smallest = next((k for k in KEEPS if _rows(res, "hard", k) and mean_of(_rows(res, "hard", k)) >= want), None)
        ratio = None
        if smallest:
            ratio = g["bytes"] / np.mean([r["bytes"] for r in _rows(res, "hard", smallest)])
        fewer = mean_of(g["fewer"]) if g.get("fewer") else None
        # within TIGHT x: a payload TIGHT times smaller misses the goal (else the keeps' grid decides)
        tight += ok and (fewer < want if fewer is not None else ratio is not None and ratio <= TIGHT)
        lines.append(
            f"| {t} | {want:.3f} | {g['k']:,} | {g['bytes']:,} | {g['forecast']:.3f} | {measured:.3f} "
            f"({g['test_acc']:.3f}) | "
            f"{'yes' if ok else 'no'} | {smallest or 'none of ' + '/'.join(KEEPS)} | "
            f"{'–' if ratio is None else f'{ratio:.2f}'} | "
            + ("–" if fewer is None else f"{int(g['k'] / TIGHT):,}: {fewer:.3f}")
            + " |"
        )
    n = sum(1 for t in order if results["targets"][t].get("goal"))
    missing = [t for t in order if not results["targets"][t].get("goal")]
    lines += [
        "",
        f"- The goal reached on the test split (the mean of the goal payload's {results['draws']} device students, "
        f"student seeds 0-{results['draws'] - 1}): {reached} of {n} targets; reached and within {TIGHT:g}x the "
        f"smallest payload that reaches it: {tight} of {n} (the issue asks 5 of 6). Within {TIGHT:g}x: a payload of "
        f"{TIGHT:g}x fewer images (same rules) misses the goal on the test split, mean of its draws (bytes grow "
        f"slower than images, so that payload holds more than 1/{TIGHT:g} of the bytes: the bound holds in bytes "
        "too); the smallest hard keep on the grid is shown beside it.",
    ]
    bounds = sorted({results["targets"][t]["goal"].get("bound", UNBOUNDED) for t in order
                     if results["targets"][t].get("goal")})  # fmt: skip
    if bounds:
        lines.append(f"- The search went up to: {', '.join(bounds)} (no byte cap given).")
    if missing:
        lines.append(f"- Not measured: {', '.join(missing)} (run without `--no-goal`: a student per search step).")
    return lines


def figure(results: dict, path: Path = FIGURE) -> None:
    """Accuracy against payload bytes per target: hard labels at each keep, soft labels at the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [t for t in SUITE if t in results["targets"]]
    if not order:
        return
    fig, axes = plt.subplots(1, len(order), figsize=(2.6 * len(order), 2.8), dpi=110, squeeze=False)
    for ax, t in zip(axes[0], order):
        res = results["targets"][t]
        for kind, colour, label in (
            ("hard", "#1f77b4", "hard"),
            (f"soft{SOFT_BITS}", "#e6a04c", f"soft {SOFT_BITS}-bit"),
        ):
            pts = [(np.mean([r["bytes"] for r in rs]), mean_of(rs)) for k in KEEPS if (rs := _rows(res, kind, k))]
            if pts:
                ax.plot(*zip(*pts), "o-", color=colour, label=label)
        ax.axhline(res["teacher"], color="#4c4c4c", lw=0.8, ls="--")
        ax.set_title(t, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("payload bytes", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("student test accuracy", fontsize=8)
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def forecast_figure(results: dict, path: Path = FORECAST_FIGURE) -> None:
    """Each hard payload's forecast against its student's test accuracy, per target, with the ±3-point band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [t for t in SUITE if t in results["targets"]]
    if not order:
        return
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    for i, t in enumerate(order):
        rows = [r for k in KEEPS for r in _rows(results["targets"][t], "hard", k)]
        ax.scatter([r["test_acc"] for r in rows], [r["forecast"]["accuracy"] for r in rows], s=14,
                   color=plt.cm.tab10(i), label=t)  # fmt: skip
    lo, hi = ax.get_xlim()[0], ax.get_xlim()[1]
    ax.plot([lo, hi], [lo, hi], color="#4c4c4c", lw=0.8)
    ax.fill_between([lo, hi], [lo - 0.03, hi - 0.03], [lo + 0.03, hi + 0.03], color="#4c4c4c", alpha=0.12, lw=0)
    ax.set_xlabel("device student, test accuracy", fontsize=8)
    ax.set_ylabel("forecast (blind trial, held-out images)", fontsize=8)
    ax.set_title(f"every hard payload ({'/'.join(KEEPS)}, all draws); band: ±3 points", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(SUITE))
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--report-only", action="store_true", help="write the page from the record; train nothing")
    ap.add_argument("--by-forecast", type=int, default=0, help="also this many draws of strategy by-forecast at 1 %%")
    ap.add_argument("--no-goal", action="store_true", help="skip the goal run (hours for scratch recipes)")
    ap.add_argument("--keeps", default=",".join(KEEPS), help="the frontier's keeps (a scratch target's 2 %% is slow)")
    ap.add_argument(
        "--forecast-keeps",
        default=",".join(KEEPS),
        help="where a stale forecast is made again (each trial student trains once per held-out fold)",
    )
    ap.add_argument("--update-docs", action="store_true", help="write the section into docs/results.md")
    args = ap.parse_args()
    suite.check_targets(args.targets.split(","), "bytes")
    t0 = time.perf_counter()
    results = run(args.targets.split(","), args.draws, args.report_only, by_forecast=args.by_forecast,
                  goal=not args.no_goal, keeps=tuple(args.keeps.split(",")),
                  forecast_keeps=tuple(args.forecast_keeps.split(",")))  # fmt: skip
    if args.update_docs:
        figure(results)
        forecast_figure(results)
    publish("bytes", report(results), time.perf_counter() - t0, args.update_docs)


if __name__ == "__main__":
    main()
