#!/usr/bin/env python3
"""The transfer suite: does PLADA hold on tasks the defaults were not tuned on? (docs/results.md, "suite")

    .venv/bin/python -m benchmarks suite                  # every target, both recipes, then the page
    .venv/bin/python -m benchmarks suite --targets tango --recipes pretrained --seeds 1
    .venv/bin/python -m benchmarks suite --targets tango --recipes pretrained --demo --seeds 1   # + time the demo
    .venv/bin/python -m benchmarks suite --targets digits --seeds 3 --lean   # variants 1 seed, no self-training
    .venv/bin/python -m benchmarks suite --report-only --update-docs

Targets: plada_edge.data.suite.SUITE (fmnist, digits and four icon-theme colour tasks; build them
with tools/build_offline_data.py and tools/build_suite.py). For each target and recipe
(plada_edge.core.recipes: scratch, pretrained; auto is whichever of the two it picks) a teacher is
trained and scores the offline-mix pool; at 1 % keep the code's default selection goes to a student
trained with the same recipe. For the recipe auto picks, random and plain lowest energy do too, and
where the pool's ground truth is known (fmnist, digits) an oracle payload of the same size. On a
grayscale target each recipe's teacher is also trained seeing images as stored (`--frame none`)
beside the default ink frame, with the default selection: the evidence for FRAME. Every
run is cached under runs/suite by what it depends on, so a rerun resumes and --report-only trains
nothing. Every pass also records its runs in docs/results-suite.json (RECORD, committed): a
teacher missing from runs/suite (a clean clone, or a pass over some targets only) is reported as
the record has it, so the page can be rewritten without training every target again.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.config import SelectionConfig, StudentConfig, TeacherConfig
from plada_edge.core.payload import write_payload
from plada_edge.core.recipes import TargetFacts, teacher_options
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.data.suite import SUITE, THEMES
from plada_edge.server.packing import payload_header
from plada_edge.server.plan import resolve_spread
from plada_edge.server.scoring import Scores, score_pack
from plada_edge.server.selection import budget_size, class_counts, near_copy_ratio, select
from plada_edge.server.teacher import blind_name, blind_path, export_onnx, onnx_metadata, train_teacher

from .goals import DRAWS_RECORD, gaps
from .goals import mean_of as _mean
from .kit import machine, read_record, recorded_targets, replace_section

ROOT = Path("runs/suite")
COLOUR = tuple(THEMES)  # the icon-theme colour targets: a pretrained student there takes seconds
# the runs' results, committed beside the page: a clean clone (its runs/ gone) can still rewrite the page,
# and a pass over some targets rewrites theirs while the rest come from here
RECORD = Path(__file__).resolve().parent.parent / "docs" / "results-suite.json"
KEEP = "1%"
PINNED = {  # baselines with every option pinned, so they do not move when the defaults do
    "random": dict(strategy="random", safety_net=False, spread=1.0),
    "energy": dict(strategy="energy", safety_net=False, spread=1.0),
}
VARIANTS = {  # the default selection with one option changed
    "strategy=energy": dict(strategy="energy"),  # the order "by-teacher" takes for a scratch teacher (TEACHER_STRATEGY)
    "strategy=nearest": dict(strategy="nearest"),  # ... and for a pretrained one
    "quotas=pool": dict(quotas="pool"),
    "quotas=target": dict(quotas="target"),
    "target_power=1": dict(target_power=1.0),  # quotas=target in the target's own proportions
    "target_power=0": dict(target_power=0.0),  # ... and equal
    "strategy=energy,target_power=0.5": dict(strategy="energy", target_power=0.5),  # the square root in energy order
    "spread=gray": dict(spread="gray"),  # the spread "auto" resolves to for a grayscale view (AUTO_SPREAD)
    "spread=colour": dict(spread="colour"),  # ... and for a colour one
}
STRATEGY_ROWS = ("strategy=energy", "strategy=nearest")  # run for both recipes: the evidence for TEACHER_STRATEGY
KEYLESS = {("quotas", "pool"), ("target_power", 1.0)}
# an oracle payload depends on k alone; its cache key stays the selection options it was first keyed by
ORACLE_KEY = dict(strategy="energy", safety_net=True, quotas="auto", alpha=-0.2, share=0.5, spread="auto")
RECIPES = ("scratch", "pretrained")
REPORT_ONLY = False
LEAN = False  # --lean: variants one seed, no self-training
TIME_DEMO = False  # --demo: time `plada-edge demo` (best on otherwise idle cores)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def check_targets(targets, tool: str) -> None:
    """Exit in one line, before any training, when a target is not built."""
    for target in targets:
        try:
            load_target(target)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"{tool}: {e}")


def effective(target: str, recipe: str) -> str:
    """What ``recipe`` resolves to for ``target`` (auto → scratch or pretrained)."""
    return teacher_options(TargetFacts.of(load_target(target)), recipe)["recipe"]


@functools.cache  # each call would load the target from disk again
def view_frame(target: str, frame: str | None = None) -> str:
    """The frame a teacher of ``target`` sees through: ``frame``, or TeacherConfig's default resolved."""
    return TeacherConfig(frame=frame or "auto").view_frame(load_target(target).channels == 1)


def teacher_dir(target: str, recipe: str, frame: str | None = None) -> Path:
    """A teacher's folder, its scores, payloads and students; teachers framed "none" keep the name they had."""
    frame = view_frame(target, frame)
    return ROOT / (f"{target}-{recipe}" + ("" if frame == "none" else f"-frame={frame}"))


def _other_holdout(d: Path, target: str) -> bool:
    """Whether the teacher cached in ``d`` set aside other held-out images than the target's holdout now."""
    from plada_edge.core.train import load_checkpoint

    meta = load_checkpoint(d / "teacher" / "teacher.pt")
    return (meta.get("target") or {}).get("holdout") != load_target(target).holdout().tolist()


def teacher(target: str, recipe: str, pack: ReferencePack, log, frame: str | None = None) -> tuple[dict, Scores] | None:
    d = teacher_dir(target, recipe, frame)
    if not REPORT_ONLY and (d / "teacher" / "teacher.pt").exists() and _other_holdout(d, target):
        log(f"[{target}] the cached teacher held out other images than the target's holdout now: trained again")
        shutil.rmtree(d)
    if not (d / "teacher" / "teacher.pt").exists():
        if REPORT_ONLY:
            return None
        log(f"[{target}] {recipe} teacher (frame {view_frame(target, frame)})")
        t0 = time.perf_counter()
        train_teacher(target, d / "teacher", recipe=recipe, progress=False, frame=view_frame(target, frame))
        atomic.write_json(d / "teacher-seconds.json", {"seconds": time.perf_counter() - t0})
    metrics = json.loads((d / "teacher" / "metrics.json").read_text())
    folds = len(load_target(target).holdout_folds())
    if not REPORT_ONLY and len(metrics.get("holdout_folds") or [None]) < folds:
        log(f"[{target}] the cached teacher has blind teachers for fewer than {folds} held-out folds: the rest")
        sha = metrics["checkpoint_sha256"]  # the teacher itself resumes as it was; only the new folds train
        train_teacher(target, d / "teacher", recipe=recipe, progress=False, frame=view_frame(target, frame))
        metrics = json.loads((d / "teacher" / "metrics.json").read_text())
        if metrics["checkpoint_sha256"] != sha:
            raise SystemExit(f"[{target}] the teacher changed when it resumed: remove {d} and run again")
    metrics["seconds"] = json.loads((d / "teacher-seconds.json").read_text())["seconds"]
    onnx = d / "teacher.onnx"
    graph = onnx_metadata(onnx) if onnx.exists() else None
    stale = graph is None or "distance" not in graph["outputs"] or graph["pretrained"] is None
    if not REPORT_ONLY and (stale or not blind_path(onnx).exists()):
        # graphs from before anchors (or the pretrained flag) are exported again; anchors from the target
        export_onnx(d / "teacher", onnx, input_size=pack.size, target=target)
        graph = onnx_metadata(onnx)
    for fold in range(folds):  # the blind teachers of held-out folds added since the last export
        if not REPORT_ONLY and not blind_path(onnx, fold).exists():
            export_onnx(d / "teacher" / blind_name(fold), blind_path(onnx, fold), input_size=pack.size, target=target,
                        blind=False)  # fmt: skip
    try:
        scores = Scores.open(d / "scores", pack)
    except ValueError:
        scores = None
    if scores is not None and not REPORT_ONLY and scores.meta["teacher_sha256"] != graph["sha256"]:
        shutil.rmtree(d / "scores")  # scored by an earlier export of this teacher: score again
        scores = None
    if scores is None:
        if REPORT_ONLY:
            return None
        log(f"[{target}] scoring the pool with the {recipe} teacher")
        t0 = time.perf_counter()
        scores = score_pack(d / "teacher.onnx", pack, d / "scores", progress=False)
        atomic.write_json(d / "score-seconds.json", {"seconds": time.perf_counter() - t0})
    return metrics, scores


def default_selection() -> dict:
    """SelectionConfig's defaults; fields added later at the value the cached runs used stay out of the key."""
    return {k: v for k, v in asdict(SelectionConfig()).items() if k != "seed" and (k, v) not in KEYLESS}


def at_keep(row: str, keep: str, draw: int = 0) -> str:
    """The name a row's payload and students go by at budget ``keep`` and selection seed ``draw``: KEEP's and
    draw 0's keep the row's own name."""
    return row + (f",keep={keep}" if keep != KEEP else "") + (f",draw={draw}" if draw else "")


def payload(
    target: str, recipe: str, scores: Scores, row: str, pack: ReferencePack, keep: str = KEEP, draw: int = 0
) -> dict:
    """The payload of ``row`` at budget ``keep``, its random parts (random order, spread, the oracle's sample)
    drawn with seed ``draw`` (named by at_keep)."""
    opts = ORACLE_KEY if row == "oracle" else PINNED.get(row) or dict(default_selection(), **VARIANTS.get(row, {}))
    if row == "oracle":
        from plada_edge.data.offline import load_pool_truth

        k = select(scores, keep=keep).k
        idx, lab = load_pool_truth(target)
        pick = np.sort(np.random.default_rng(draw).choice(len(idx), min(k, len(idx)), replace=False))
        order = np.argsort(idx[pick])
        indices, labels = idx[pick][order], lab[pick][order]
        header = payload_header(scores, select(scores, count=0), task=f"{target}-oracle")
        spread = None
    else:
        valid = int(class_counts(scores).sum())
        k = min(budget_size(scores.n, keep, None), valid)
        gray_auto = resolve_spread("auto", k, valid, colour=False)
        if opts["spread"] in ("gray", "colour"):
            opts = dict(opts, spread=resolve_spread("auto", k, valid, colour=opts["spread"] == "colour"))
        sel = select(scores, keep=keep, target_counts=load_target(target).class_counts(), seed=draw, **opts)
        indices, labels, spread = sel.indices, sel.labels, sel.spread
        opts = dict(opts, strategy=sel.strategy)  # key what "by-teacher" resolved to (energy: the old default's key)
        header = payload_header(scores, sel, task=target)
        # payloads were keyed by "auto" while it resolved by the gray band for every view
        if not (opts["spread"] == "auto" and spread == gray_auto):
            opts = dict(opts, spread=spread)
        if sel.safety_net:  # key the quotas auto resolved to; pool, the old default, stays out of the key
            opts = dict(opts, quotas=sel.safety_net["quotas"])
            if opts["quotas"] == "target":  # key the power "auto" resolved to; it sizes target quotas only
                opts["target_power"] = sel.safety_net["target_power"]
            else:
                opts.pop("target_power", None)
            opts = {k: v for k, v in opts.items() if (k, v) not in KEYLESS}
    hist = np.bincount(labels, minlength=scores.num_classes)
    path = Path(scores.path).parent / "payloads" / f"{at_keep(row, keep, draw)}-{_key(opts)}.plada"
    if not path.exists():
        write_payload(path, indices, labels, header, codec="auto")
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "k": int(len(indices)),
        "classes_present": int((hist > 0).sum()),
        "spread": spread,
        "options": {k: v for k, v in opts.items() if k != "spread"},
    }


SELF_TRAIN = dict(self_train=1.0)  # the "default+self" row: zero-byte self-training on the device


def _content(path: Path) -> tuple:
    """What a student learns from in a payload: its pairs and header, less the teacher file's hash (the
    same teacher exported again, e.g. to record how it started, selects the same pairs)."""
    from plada_edge.core.payload import read_payload

    p = read_payload(path)
    header = json.loads(json.dumps(p.header, sort_keys=True, default=str))
    header.get("teacher", {}).pop("sha256_prefix", None)
    return p.indices.tobytes(), p.labels.tobytes(), json.dumps(header, sort_keys=True)


def _student_dir(payload: Path, row: str, seed: int) -> Path:
    """Where the student of ``row`` with ``seed`` on ``payload`` is cached (beside the teacher's payloads)."""
    return payload.parent.parent / "students" / f"{row}-s{seed}-{_key(str(payload), StudentConfig().train.epochs)}"


def _twin(path: Path, seed: int) -> Path | None:
    """A finished plain student (same seed) of another row whose payload holds what ``path`` holds (_content):
    a default that now resolves as one of its variants did reuses that variant's runs."""
    mine = _content(path)
    for other in sorted(path.parent.glob("*.plada")):
        if other == path or other.stat().st_size != path.stat().st_size or _content(other) != mine:
            continue
        done = _student_dir(other, other.name.rsplit("-", 1)[0], seed) / "result.json"
        if done.exists():
            return done
    return None


def student(target: str, recipe: str, row: str, pay: dict, seed: int, pack: ReferencePack, log) -> dict | None:
    extra = SELF_TRAIN if row.endswith("+self") else {}
    out = _student_dir(Path(pay["path"]), row, seed)
    cached = out / "result.json"
    if not cached.exists() and not extra and not REPORT_ONLY:
        twin = _twin(Path(pay["path"]), seed)
        if twin is not None:  # the same seed on the same bytes: training is deterministic, so its result stands
            atomic.write_json(cached, dict(json.loads(twin.read_text()), same_as=str(twin.parent)))
    if cached.exists():
        return dict(json.loads(cached.read_text()), seed=seed)
    if REPORT_ONLY or (LEAN and extra):
        return None
    log(f"[{target}] {recipe} student on {row} (seed {seed})")
    from plada_edge.device.student import learn

    m = learn(pay["path"], pack, out, recipe=recipe, seed=seed, target=target, progress=False, **extra)
    r = {k: m[k] for k in ("test_acc", "macro_acc", "seconds", "arch", "model_size", "epochs", "recipe", "k")}
    r["self_training"] = m.get("self_training")
    atomic.write_json(cached, r)
    return dict(r, seed=seed)


def demo(log) -> dict | None:
    """`plada-edge demo` from a fresh work folder (data already built): its wall time and table, once per setup."""
    from plada_edge.core.recipes import PRETRAINED_EPOCHS, PRETRAINED_TRAIN
    from plada_edge.demo import DEMO_TEACHERS, run_demo

    d = ROOT / f"demo-{_key(DEMO_TEACHERS, default_selection(), PRETRAINED_TRAIN, PRETRAINED_EPOCHS)}"
    if (d / "result.json").exists():
        return json.loads((d / "result.json").read_text())
    if REPORT_ONLY or not TIME_DEMO:
        return None
    shutil.rmtree(d / "work", ignore_errors=True)  # an interrupted demo starts over: it is timed from nothing
    log("plada-edge demo (default target), timed")
    r = run_demo(workdir=d / "work", log=lambda m: None)
    atomic.write_json(d / "result.json", r)
    shutil.rmtree(d / "work", ignore_errors=True)
    return r


def run(targets, recipes, seeds: int, log=print) -> dict:
    pack = ReferencePack.open(data_dir() / "offline-mix")
    record = read_record(RECORD, pack.fingerprint, keep=KEEP)  # the runs behind the page, on this pool
    results = {"machine": machine(), "pack": pack.fingerprint, "keep": KEEP, "targets": {}, "demo": demo(log)}
    if results["demo"] is None:
        results["demo"] = record.get("demo")
    for target in targets:
        res = results["targets"].setdefault(target, {"facts": asdict(TargetFacts.of(load_target(target)))})
        res["auto"] = effective(target, "auto")
        for recipe in recipes:
            got = teacher(target, recipe, pack, log)
            if got is None:  # not in runs/suite (--report-only): as the record has it, when it has it
                old = record.get("targets", {}).get(target, {}).get(recipe)
                if old is not None:
                    res[recipe] = old
                continue
            metrics, scores = got
            rec = res.setdefault(recipe, {})
            rec["teacher"] = {k: metrics.get(k) for k in ("test_acc", "arch", "size", "epochs", "seconds", "weights")}
            rec["near_copy_ratio"] = near_copy_ratio(scores)
            oracle = (data_dir() / "targets" / f"{target}_pool.npz").exists()  # pool ground truth known
            # baselines for the recipe auto picks; the other recipe is compared on the default row and by strategy
            rows = (
                ["default", *PINNED, *VARIANTS] + (["oracle"] if oracle else [])
                if recipe == res["auto"]
                else ["default", *STRATEGY_ROWS]
            )
            if recipe == res["auto"]:  # self-training: one more student per target (twice a default's time)
                rows.append("default+self")
            rec["rows"] = {}
            for row in rows:
                pay = (
                    rec["rows"]["default"]["payload"]
                    if row == "default+self"
                    else payload(target, recipe, scores, row, pack)
                )
                default = rec["rows"].get("default")
                if row in VARIANTS and (pay["spread"], pay["options"]) == (
                    default["payload"]["spread"],
                    default["payload"]["options"],
                ):  # the default selection itself: its students serve
                    rec["rows"][row] = default
                    continue
                # the default, its variants and the pinned baselines it is judged against get every seed
                every_seed = row == "default" or row in PINNED or (row in VARIANTS and not LEAN)
                n_seeds = seeds if every_seed and recipe == res["auto"] else 1
                runs = [student(target, recipe, row, pay, s, pack, log) for s in range(n_seeds)]
                rec["rows"][row] = {"payload": pay, "students": [r for r in runs if r is not None]}
            if view_frame(target) != "none":  # the evidence for FRAME: the same teacher seeing images as stored
                unframed = teacher(target, recipe, pack, log, frame="none")
                if unframed is not None:
                    pay = payload(target, recipe, unframed[1], "default", pack)
                    n_seeds = seeds if recipe == res["auto"] else 1
                    runs = [student(target, recipe, "default", pay, s, pack, log) for s in range(n_seeds)]
                    rec["frame=none"] = {
                        "teacher": {"test_acc": unframed[0].get("test_acc")},
                        "payload": pay,
                        "students": [r for r in runs if r is not None],
                    }
    # the record keeps every target it has seen on this pool: a pass over some targets updates theirs
    merged = dict(record, **{k: v for k, v in results.items() if k != "targets"})
    merged["targets"] = {**record.get("targets", {})}
    for target, res in results["targets"].items():
        merged["targets"][target] = {**merged["targets"].get(target, {}), **res}
    atomic.write_json(RECORD, merged)
    return results


def drawn(target: str, recipe: str, scores: Scores, row: str, pack: ReferencePack, seeds: int, log, keep=KEEP):
    """``row`` at budget ``keep`` over ``seeds`` independent draws: seed s trains, with seed s, on the selection
    drawn with seed s (the draws and budget benchmarks). Its draw-0 payload and the students that are done."""
    pays = [payload(target, recipe, scores, row, pack, keep=keep, draw=s) for s in range(seeds)]
    runs = [student(target, recipe, at_keep(row, keep, s), pay, s, pack, log) for s, pay in enumerate(pays)]
    return {"payload": pays[0], "students": [r for r in runs if r is not None]}


def _seeded(runs: list[dict]) -> str:
    """Mean plain accuracy of the runs, with their count when there are several."""
    return _fmt(_mean(runs)) + (f" ({len(runs)} seeds)" if len(runs) > 1 else "")


def _fmt(x, spec=".3f") -> str:
    return "–" if x is None else format(x, spec)


def report(results: dict) -> str:
    results = _ordered(results)  # targets outside the suite last
    lines = [
        f"Machine: {results['machine']}. Pool: offline-mix `{results['pack'][:12]}…`, keep {results['keep']}. "
        "Accuracy on each target's test split; macro = mean per-class accuracy. A recipe's student is "
        'trained with the same recipe as its teacher (`learn --recipe R`). "student s" is wall time on the 2 cores, '
        "including ONNX export; some runs shared the cores with others, so read it as an upper bound.",
        "",
        "| target | classes / train | recipe | teacher | student (default) | / teacher | macro | random | "
        "plain energy | oracle | payload B | student s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = {r: {} for r in ("scratch", "pretrained", "auto")}
    for target, res in results["targets"].items():
        facts = res["facts"]
        for recipe in ("scratch", "pretrained"):
            rec = res.get(recipe)
            if not rec or not rec["rows"]["default"]["students"]:
                continue
            t = rec["teacher"]["test_acc"]
            d = rec["rows"]["default"]
            s = _mean(d["students"])
            ratios[recipe][target] = s / t
            if res["auto"] == recipe:
                ratios["auto"][target] = s / t
            rows = rec["rows"]
            lines.append(
                f"| {target} | {facts['num_classes']} / {facts['n_train']:,} | {recipe}"
                + (" (auto)" if res["auto"] == recipe else "")
                + f" | {t:.3f} | {_seeded(d['students'])}"
                + f" | {s / t:.3f} | {_fmt(_mean(d['students'], 'macro_acc'))}"
                + "".join(f" | {_seeded(_students(rows, r))}" for r in ("random", "energy", "oracle"))
                + f" | {d['payload']['bytes']:,} | {np.mean([r['seconds'] for r in d['students']]):.0f} |"
            )
    lines += ["", "| recipe | targets | mean student / teacher | worst |", "|---|---:|---:|---:|"]
    order = {"scratch": 0, "pretrained": 1, "auto": 2}
    ratios = dict(sorted(ratios.items(), key=lambda kv: order[kv[0]]))
    for recipe, by in ratios.items():
        if by:
            worst = min(by, key=by.get)
            lines.append(f"| {recipe} | {len(by)} | {np.mean(list(by.values())):.3f} | {by[worst]:.3f} ({worst}) |")
    selfed = [
        (target, res[res["auto"]]["rows"])
        for target, res in results["targets"].items()
        if (res.get(res["auto"]) or {}).get("rows", {}).get("default+self", {}).get("students")
    ]
    if selfed:
        lines += [
            "",
            f"Zero-byte self-training (`learn --self-train {SELF_TRAIN['self_train']:g}`): the student labels pool "
            "images it is sure of and retrains; no extra payload bytes.",
            "",
            "| target | default | + self-training | macro | + self-training | pool images added | seeds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        gains = []
        for target, rows in selfed:
            st = rows["default+self"]["students"]
            seeds = {r["seed"] for r in st}
            d = [r for r in rows["default"]["students"] if r["seed"] in seeds]  # the same seeds on both sides
            added = (st[0].get("self_training") or {}).get("added", 0)
            lines.append(
                f"| {target} | {_mean(d):.3f} | {_mean(st):.3f} | {_mean(d, 'macro_acc'):.3f} | "
                f"{_mean(st, 'macro_acc'):.3f} | {added:,} | {len(st)} |"
            )
            gains.append(_mean(st) - _mean(d))
        lines += [
            "",
            f"Self-training raises plain accuracy on {sum(g > 0 for g in gains)} of {len(gains)} targets "
            f"(mean change {100 * np.mean(gains):+.1f} points); `learn` leaves it off by default "
            f"(`self_train = {StudentConfig().self_train:g}`).",
        ]
    lines += strategies(results)
    lines += quotas(results)
    lines += powers(results)
    lines += spreads(results)
    lines += frames(results)
    lines += ["", "#### Goals, stated plainly", ""] + goals(results, ratios)
    lines += ["", "#### Defaults, and why (the recipe)", ""] + why(results)
    return "\n".join(lines)


def _with_rows(results: dict, *rows: str) -> list[tuple[str, dict, dict]]:
    """(target, its results, its auto recipe's rows) for the targets where every one of ``rows`` has students."""
    return [
        (target, res, res[res["auto"]]["rows"])
        for target, res in results["targets"].items()
        if all(_row(res, res["auto"], r) is not None for r in rows)
    ]


def _pair(rows: dict, a: str, b: str) -> tuple[float, float, str]:
    """Plain accuracy of rows a and b, and the table cells: both plain, both macro, the seeds of each."""
    x, y = rows[a]["students"], rows[b]["students"]
    cells = f"{_mean(x):.3f} | {_mean(y):.3f} | {_mean(x, 'macro_acc'):.3f} | {_mean(y, 'macro_acc'):.3f} | "
    return _mean(x), _mean(y), cells + f"{len(x)} / {len(y)} |"


def _wins(what: str, wins: dict, of: str = "target") -> list[str]:
    counted = "; ".join(f"{w} of {n} {kind} {of}s" for kind, (w, n) in wins.items() if n)
    return ["", f"{what} wins on plain accuracy on {counted}."]


def strategies(results: dict) -> list[str]:
    """Energy against nearest for both recipes' teachers on every target, and which one ``by-teacher`` took:
    the evidence for TEACHER_STRATEGY and NEAR_COPY_RATIO."""
    from plada_edge.core.config import NEAR_COPY_QUANTILE, NEAR_COPY_RATIO, TEACHER_STRATEGY

    found = [
        (target, recipe, res[recipe])
        for target, res in results["targets"].items()
        for recipe in RECIPES
        if all(_row(res, recipe, r) is not None for r in STRATEGY_ROWS)
    ]
    if not found:
        return []
    lines = [
        "",
        "Strategy (`pack --strategy`): `energy` (lowest energy first, the paper's order) against `nearest` (the pool "
        "images closest to the target's own training images in the teacher's features: 1 - mean cosine similarity "
        "of the 5 most similar of its training images), each with the default quotas and spread; same seeds; for "
        "both recipes' teachers. `by-teacher`, the default, takes "
        f"{TEACHER_STRATEGY['pretrained']} for a teacher that started from ImageNet weights; for one trained from "
        f"scratch, {TEACHER_STRATEGY['scratch, near-copies']} where the pool holds near-copies of the target's images "
        f"(near-copies: the pool's {NEAR_COPY_QUANTILE:.0%} nearest-distance quantile over its median, under "
        f"{NEAR_COPY_RATIO:g}) and {TEACHER_STRATEGY['scratch']} elsewhere. Auto's recipe is marked *.",
        "",
        "| target | teacher | near-copies | by-teacher | energy | nearest | macro, energy | macro, nearest | seeds |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    wins = {"pretrained": [0, 0], "scratch": [0, 0]}
    for target, recipe, rec in found:
        rows = rec["rows"]
        a, b, cells = _pair(rows, *STRATEGY_ROWS)
        picked = rows["default"]["payload"]["options"].get("strategy")
        wins[recipe][0] += (b > a) == (picked == "nearest")
        wins[recipe][1] += 1
        auto = "*" if results["targets"][target]["auto"] == recipe else ""
        lines.append(f"| {target} | {recipe}{auto} | {_fmt(rec.get('near_copy_ratio'), '.2f')} | {picked} | {cells}")
    return lines + _wins("`by-teacher`'s pick", wins, "teacher")


def quotas(results: dict) -> list[str]:
    """Pool against target quotas on every target, and which one ``auto`` picked: the evidence for QUOTA_IMBALANCE."""
    from plada_edge.core.config import QUOTA_IMBALANCE

    found = _with_rows(results, "quotas=pool", "quotas=target")
    if not found:
        return []
    lines = [
        "",
        "Safety-Net quotas (`pack --quotas`): `pool` (K_c ∝ N_c^alpha for half the budget, the rest in the "
        "strategy's order) against `target` (the whole budget by the target's training images per class n_c, "
        "K_c ∝ n_c^p, p by the table below); same seeds. `auto`, the "
        f"default, picks `target` where the target's largest class has {QUOTA_IMBALANCE:g}x its smallest's "
        "training images or more (largest / smallest is in the table).",
        "",
        "| target | largest / smallest | auto | pool | target | macro, pool | macro, target | seeds |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    right = 0
    for target, _, rows in found:
        counts = load_target(target).class_counts()
        a, b, cells = _pair(rows, "quotas=pool", "quotas=target")
        picked = rows["default"]["payload"]["options"].get("quotas", "pool")
        right += (picked == "target") == (b > a)
        lines.append(f"| {target} | {counts.max() / max(counts.min(), 1):.1f} | {picked} | {cells}")
    lines += ["", f"`auto` picks the better of the two on plain accuracy on {right} of {len(found)} targets."]
    return lines


def powers(results: dict) -> list[str]:
    """quotas=target's power on the targets whose quotas auto sizes by the target: the evidence for target_power."""
    from plada_edge.core.config import TARGET_POWER

    default = TARGET_POWER["nearest"]
    rows_of = ("target_power=1", "default", "target_power=0")
    found = [
        (target, rows)
        for target, _, rows in _with_rows(results, *rows_of)
        if rows["default"]["payload"]["options"].get("quotas") == "target"
        and rows["default"]["payload"]["options"].get("target_power") == default
    ]
    if not found:
        return []
    lines = [
        "",
        "Target quotas' power (`pack --target-power`): with `quotas=target` each class gets K_c ∝ n_c^p of the "
        "budget, n_c its training images: p = 1 is the target's own proportions, p = 0 equal quotas. The default, "
        f"`auto`, takes p = {default:g} in nearest order (TARGET_POWER) and 1 in energy order (the strategy table's "
        "energy rows). On the targets where `auto` picks target quotas, in the order by-teacher picks for them:",
        "",
        f"| target | p = 1 | p = {default:g} | p = 0 | macro, 1 | macro, {default:g} | macro, 0 | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    plain, macro = [], []
    for target, rows in found:
        runs = [rows[r]["students"] for r in rows_of]
        plain.append([_mean(x) for x in runs])
        macro.append([_mean(x, "macro_acc") for x in runs])
        cells = " | ".join(f"{v:.3f}" for v in plain[-1] + macro[-1])
        lines.append(f"| {target} | {cells} | {' / '.join(str(len(x)) for x in runs)} |")
    means = " | ".join(f"{v:.3f}" for v in list(np.mean(plain, 0)) + list(np.mean(macro, 0)))
    lines += [f"| mean | {means} | |"]
    energy = [(t, rows) for t, rows in found if _students(rows, "strategy=energy,target_power=0.5")]
    if energy:
        lines += [
            "",
            f"The same in energy order (`--strategy energy`): p = 1 against p = {default:g}.",
            "",
            f"| target | p = 1 | p = {default:g} | macro, 1 | macro, {default:g} | seeds |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for target, rows in energy:
            lines.append(f"| {target} | " + _pair(rows, "strategy=energy", "strategy=energy,target_power=0.5")[2])
    return lines


def _students(rows: dict, row: str) -> list[dict]:
    """The student runs of ``row`` (none when the row was not run)."""
    return rows.get(row, {}).get("students", [])


def spreads(results: dict) -> list[str]:
    """Spread 8 against 32 on every target: the evidence for AUTO_SPREAD's two bands."""
    from plada_edge.core.config import AUTO_SPREAD

    found = _with_rows(results, "spread=gray", "spread=colour")
    if not found:
        return []
    lines = [
        "",
        "Spread (`pack --spread`): each quota draws its images at random from its spread × quota best candidates "
        "in the strategy's order. "
        f"`auto` resolves by the teacher's view (AUTO_SPREAD, as (band of the pool, largest spread): {AUTO_SPREAD}); "
        "at 1 % of this pool that is about 8 for grayscale and 32 for colour views. Both bands on every target:",
        "",
        "| target | view | auto | gray band | colour band | macro, gray | macro, colour | seeds |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    wins = {"gray": [0, 0], "colour": [0, 0]}
    for target, res, rows in found:
        view = "colour" if res["facts"]["channels"] == 3 else "gray"
        a, b, cells = _pair(rows, "spread=gray", "spread=colour")
        wins[view][0] += (b > a) == (view == "colour")
        wins[view][1] += 1
        lines.append(f"| {target} | {view} | {_fmt(rows['default']['payload'].get('spread'), '.1f')} | {cells}")
    return lines + _wins("Its own view's band", wins)


def frames(results: dict) -> list[str]:
    """Each grayscale teacher seeing images as stored against through the ink frame: the evidence for FRAME."""
    from plada_edge.core.config import FRAME

    found = [
        (target, recipe, res[recipe])
        for target, res in results["targets"].items()
        for recipe in RECIPES
        if (res.get(recipe) or {}).get("frame=none", {}).get("students") and res[recipe]["rows"]["default"]["students"]
    ]
    if not found:
        return []
    lines = [
        "",
        "Frame (`teacher train --frame`): `ink` shows a model every image light-on-dark, the square box of its "
        "ink filling the frame and its contrast stretched (plada_edge.core.view); `none` shows it as stored. "
        f"`auto` resolves by the target's view (FRAME: {FRAME}). The frame is part of the view the payload "
        "carries, so teacher, scoring and student see the same images. Each recipe's teacher on each grayscale "
        "target, both ways, with the default selection (same seeds):",
        "",
        "| target | recipe | teacher, none | teacher, ink | student, none | student, ink | / teacher, none "
        "| / teacher, ink | seeds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    wins, changes = {"gray": [0, 0]}, []
    for target, recipe, rec in found:
        seeds = {r["seed"] for r in rec["frame=none"]["students"]} & {
            r["seed"] for r in rec["rows"]["default"]["students"]
        }
        a = _mean([r for r in rec["frame=none"]["students"] if r["seed"] in seeds])
        b = _mean([r for r in rec["rows"]["default"]["students"] if r["seed"] in seeds])
        ta, tb = rec["frame=none"]["teacher"]["test_acc"], rec["teacher"]["test_acc"]
        wins["gray"][0] += (b > a) == (view_frame(target) == "ink")
        wins["gray"][1] += 1
        changes.append(b - a)
        lines.append(
            f"| {target} | {recipe} | {ta:.3f} | {tb:.3f} | {a:.3f} | {b:.3f} | {a / ta:.3f} | {b / tb:.3f} "
            f"| {len(seeds)} |"
        )
    return lines + [
        "",
        f"`auto`'s frame wins on plain accuracy on {wins['gray'][0]} of {wins['gray'][1]} grayscale teachers "
        f"(mean change {100 * np.mean(changes):+.1f} points, largest loss {100 * min(0.0, min(changes)):.1f}).",
    ]


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def _row(res: dict, recipe: str, row: str, key: str = "test_acc") -> float | None:
    return _mean(_students((res.get(recipe) or {}).get("rows", {}), row), key)


def _over_draws(draws: dict, target: str, goal: str) -> str:
    """The same colour goal over independent selection draws, from the draws benchmark's record ``draws``."""

    res = draws.get(target)
    g = gaps(res) if res else {}
    if g.get(f"{goal} holds") is None:
        return ""
    shown = g["scratch"] if goal == "scratch" else g["plain"]
    macro = f", macro {100 * g['macro'][0]:+.1f}" if goal == "random" else ""
    return (
        f'; over {g["draws"]} independent draws (section "draws"): {100 * shown[0]:+.1f} points{macro}: '
        f"{_verdict(g[f'{goal} holds'])}"
    )


def goals(results: dict, ratios: dict) -> list[str]:
    out = []
    draws = recorded_targets(DRAWS_RECORD, results["pack"])  # the colour goals over independent draws
    auto = ratios["auto"]
    if auto:
        mean, worst = float(np.mean(list(auto.values()))), min(auto.values())
        sizes = [
            res[res["auto"]]["rows"]["default"]["payload"]["bytes"]
            for res in results["targets"].values()
            if res.get(res["auto"])
        ]
        out.append(
            f"- Mean student/teacher ≥ 0.85 at 1 % with payloads ≤ 4 KB ({len(auto)} targets, default recipe): "
            f"{mean:.4f}, largest payload {max(sizes):,} B: {_verdict(mean >= 0.85 and max(sizes) <= 4096)}"
        )
        out.append(f"- Worst target ≥ 0.70 of its teacher: {worst:.4f}: {_verdict(worst >= 0.70)}")
    for target, res in results["targets"].items():
        d, sc = _row(res, res["auto"], "default"), _row(res, "scratch", "default")
        if res["facts"]["channels"] != 3 or d is None:
            continue
        r, dm = _row(res, res["auto"], "random"), _row(res, res["auto"], "default", "macro_acc")
        rm = _row(res, res["auto"], "random", "macro_acc")
        if sc is not None and res["auto"] != "scratch":
            filed = _row(res, "scratch", "strategy=energy")  # the scratch recipe's order when the issue was filed
            then = "" if filed is None or filed == sc else f" ({filed:.3f} in energy order, as the issue found it)"
            out.append(
                f"- {target}: default recipe ({res['auto']}) beats today's scratch recipe by ≥ 5 points: "
                f"{d:.3f} vs {sc:.3f}{then}: {_verdict(d - sc >= 0.05)}{_over_draws(draws, target, 'scratch')}"
            )
        if r is not None:
            out.append(
                f"- {target}: default beats random by ≥ 5 points, plain and macro: {d:.3f} vs {r:.3f}, "
                f"macro {dm:.3f} vs {rm:.3f}: {_verdict(d - r >= 0.05 and dm - rm >= 0.05)}"
                f"{_over_draws(draws, target, 'random')}"
            )
    for target, floor in (("fmnist", 0.90), ("digits", 0.80)):
        if target in auto:
            out.append(
                f"- {target} ≥ {floor:.2f} of its teacher: {auto[target]:.3f}: {_verdict(auto[target] >= floor)}"
            )
    times = [
        (target, r["seconds"])
        for target, res in results["targets"].items()
        for r in _students((res.get(res["auto"]) or {}).get("rows", {}), "default")
    ]
    if times:
        target, slowest = max(times, key=lambda t: t[1])
        out.append(
            f"- A student at 1 % trains in under 5 minutes on this machine: slowest {slowest:.0f} s ({target}): "
            f"{_verdict(slowest < 300)}"
        )
    if results.get("demo"):
        r = results["demo"]
        out.append(
            f"- `plada-edge demo` (target {r['target']}, data already built) finishes in under 5 minutes: "
            f"{r['seconds'] / 60:.1f} min (teacher {r['teacher_acc']:.3f}, student {r['student_acc']:.3f}, "
            f"{r['payload_bytes']:,} B): {_verdict(r['seconds'] < 300)}"
        )
    return out


FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "suite.png"


def _ordered(results: dict) -> dict:
    """The results with targets in the suite's order (the record keeps them sorted by name)."""
    order = sorted(results["targets"], key=lambda t: (SUITE.index(t) if t in SUITE else len(SUITE), t))
    return dict(results, targets={t: results["targets"][t] for t in order})


def _auto_rows(results: dict) -> list[tuple[str, dict]]:
    """(target, the figures of the recipe auto picks) for every target with a default student."""
    out = []
    for target, res in results["targets"].items():
        rec, d = res.get(res["auto"]) or {}, _row(res, res["auto"], "default")
        if d is None:
            continue
        out.append(
            (
                target,
                {
                    "recipe": res["auto"],
                    "teacher": rec["teacher"]["test_acc"],
                    "default": d,
                    "random": _row(res, res["auto"], "random"),
                    "energy": _row(res, res["auto"], "energy"),
                    "bytes": rec["rows"]["default"]["payload"]["bytes"],
                    "colour": res["facts"]["channels"] == 3,
                },
            )
        )
    return out


def expect(results: dict) -> str:
    """The top of docs/results.md: what a user can expect on a task of their own, and today's defaults."""
    from plada_edge.core.config import AUTO_SPREAD, QUOTA_IMBALANCE, SelectionConfig, StudentConfig
    from plada_edge.core.recipes import PRETRAINED_SIZE, installed_pretrained_arch

    rows = _auto_rows(_ordered(results))
    if not rows:
        return "No suite runs recorded yet: run benchmarks/suite.py."
    ratio = {t: r["default"] / r["teacher"] for t, r in rows}
    worst = min(ratio, key=ratio.get)
    over_random = {t: r["default"] - r["random"] for t, r in rows if r["random"] is not None}
    sel, student = SelectionConfig(), StudentConfig()
    sizes = [r["bytes"] for _, r in rows]
    rows_by = dict(rows)
    weakest = min(rows_by, key=lambda t: rows_by[t]["teacher"])
    lines = [
        f'On the suite\'s {len(rows)} targets (section "suite" below; none of them tuned on alone), the defaults at '
        f"{results['keep']} of the offline-mix pool gave a student keeping "
        f"**{np.mean(list(ratio.values())):.2f}** of its teacher's accuracy on average "
        f"(from {min(ratio.values()):.2f}, {worst}, to {max(ratio.values()):.2f}), with payloads of "
        f"{min(sizes):,}–{max(sizes):,} bytes. The default selection beat random selection of the same size "
        f"on {sum(g > 0 for g in over_random.values())} of {len(over_random)} targets "
        f"(by {100 * min(over_random.values()):+.1f} to {100 * max(over_random.values()):+.1f} points).",
        "",
        "What that means for a task of your own:",
        "",
        "- **The student follows the teacher.** Expect a share of your teacher's accuracy, not more: a weak "
        f"teacher ({weakest}'s {rows_by[weakest]['teacher']:.2f}) gives a weak student. Train the best teacher you "
        "can; `teacher train` reports its test accuracy, and `inspect --grid` shows what the payload picked.",
        "- **The pool must hold something like your images.** The reference set stands in for your data; "
        'where it holds nothing of your domain, no selection helps (docs/results.md, "Far out of domain").',
        "- **Small payloads are the point.** At 1 % a payload is a few KB; larger keeps paid only where the "
        'student kept little of its teacher (section "budget").',
        "",
        "The defaults, and where their evidence is:",
        "",
        f"- Recipe `auto`: colour targets get `{installed_pretrained_arch() or 'a pretrained model'}` "
        f"(ImageNet weights, {PRETRAINED_SIZE} px, a linear probe); grayscale ones resnet18 from scratch at 32 px "
        '("suite", *Defaults, and why (the recipe)*).',
        f"- Order `{sel.strategy}`: nearest to the target's own images for a pretrained teacher, lowest energy for a "
        'scratch one unless the pool holds near-copies of the target ("suite", the strategy table; '
        '"near_copies").',
        f"- Safety-Net on: class quotas (pool-sized, alpha {sel.alpha:g}, share {sel.share:g}; sized by the target "
        f'when its classes differ {QUOTA_IMBALANCE:g}x or more) so no class vanishes ("suite", the quota tables).',
        f"- Spread `{sel.spread}`: each quota drawn from a band up to {AUTO_SPREAD['gray'][1]:g}x "
        f'({AUTO_SPREAD["colour"][1]:g}x for colour) its size at small keeps ("suite", the spread table).',
        f"- Student: {student.train.epochs} epochs from scratch, or the recipe's probe; no label expansion, no "
        'self-training ("suite", self-training table).',
        "",
        "![student against teacher on the suite](figures/suite.png)",
        "",
        "The picture: per target, the teacher, the default student, and random and plain lowest-energy selection "
        "(the paper's order without quotas) of the same size, with the recipe auto picks.",
    ]
    return "\n".join(lines)


def figure(results: dict, path: Path = FIGURE) -> Path | None:
    """docs/figures/suite.png: per target, teacher against students of the default, random and plain-energy rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = _auto_rows(_ordered(results))
    bars = (("teacher", "teacher", "#4c4c4c"), ("default", "default student", "#1f77b4"))
    bars += (("random", "random", "#bbbbbb"), ("energy", "plain energy", "#e6a04c"))
    fig, ax = plt.subplots(figsize=(8.5, 3.6), dpi=120)
    width = 0.2
    for i, (key, label, colour) in enumerate(bars):
        xs = [j + (i - 1.5) * width for j in range(len(rows))]
        ys = [r[key] if r[key] is not None else 0 for _, r in rows]
        ax.bar(xs, ys, width, label=label, color=colour)
    ax.set_xticks(range(len(rows)), [f"{t}\n({r['recipe']})" for t, r in rows])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"PLADA at {results['keep']} of offline-mix: students from a payload of a few KB", fontsize=10)
    ax.legend(ncol=4, fontsize=8, loc="upper right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def why(results: dict) -> list[str]:
    """The recipe rule beside the runs that chose it: scratch vs pretrained, per kind of target."""
    from plada_edge.core.recipes import PRETRAINED_SIZE, PRETRAINED_TRAIN, installed_pretrained_arch

    out = [
        f"`--recipe auto` (the default of `teacher train` and `learn`): colour targets get "
        f"`{installed_pretrained_arch()}` with its installed ImageNet weights at {PRETRAINED_SIZE} px, "
        f"trained with {PRETRAINED_TRAIN}; grayscale targets, or a machine without weights, get resnet18 from "
        "scratch at the pack's 32 px view. Student accuracy with each recipe (default selection, 1 %):",
        "",
        "| target | colour | scratch teacher | pretrained teacher | scratch student | pretrained student | auto |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for target, res in results["targets"].items():
        t = {r: (res.get(r) or {}).get("teacher", {}).get("test_acc") for r in ("scratch", "pretrained")}
        out.append(
            f"| {target} | {'yes' if res['facts']['channels'] == 3 else 'no'} | {_fmt(t['scratch'])} | "
            f"{_fmt(t['pretrained'])} | {_fmt(_row(res, 'scratch', 'default'))} | "
            f"{_fmt(_row(res, 'pretrained', 'default'))} | {res['auto']} |"
        )
    return out


FACTS = Path(__file__).resolve().parent.parent / "tests" / "golden" / "suite-facts.json"


def plan_facts(results: dict) -> dict:
    """What the selection plan reads of each suite target's scores, per recipe (tests/test_plan.py pins the plans
    they give): the teacher's view and start, the pool's near-copy ratio, the target's training class counts."""
    from plada_edge.core.config import FRAME

    out = {}
    for target, res in _ordered(results)["targets"].items():
        target_data = load_target(target)
        counts = [int(c) for c in np.bincount(target_data.y_train, minlength=target_data.num_classes)]
        colour = res["facts"]["channels"] == 3
        for recipe in RECIPES:
            if (res.get(recipe) or {}).get("near_copy_ratio") is None:
                continue
            out[f"{target}/{recipe}"] = {
                "colour": colour,
                "pretrained": recipe == "pretrained",
                "has_distance": True,
                "near_copy_ratio": round(res[recipe]["near_copy_ratio"], 4),
                "target_counts": counts,
                "frame": FRAME["colour" if colour else "gray"],
            }
    return out


def main() -> None:
    global REPORT_ONLY, TIME_DEMO, LEAN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(SUITE))
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="student seeds of the default row, its variants and the random and plain-energy baselines "
        "(for the recipe auto picks)",
    )
    ap.add_argument(
        "--lean",
        action="store_true",
        help="only the default and the pinned baselines get --seeds seeds, variants one, no self-training "
        "(a quick pass on short cores; the report counts the seeds each cell has)",
    )
    ap.add_argument("--report-only", action="store_true", help="use cached runs only")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/results.md")
    ap.add_argument("--demo", action="store_true", help="also time `plada-edge demo` from a fresh folder, first")
    ap.add_argument("--facts", action="store_true", help=f"also write what the plan reads of each target to {FACTS}")
    args = ap.parse_args()
    REPORT_ONLY, TIME_DEMO, LEAN = args.report_only, args.demo, args.lean
    t0 = time.perf_counter()
    results = run(args.targets.split(","), args.recipes.split(","), args.seeds)
    if args.facts:
        atomic.write_json(FACTS, plan_facts(results))
    text = report(results)
    print(text)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.update_docs:
        command = "python -m benchmarks suite " + " ".join(sys.argv[1:])
        runs = (
            "The runs behind it are cached under runs/suite; they came from `benchmarks/suite.py --targets T "
            "--recipes R --seeds S` per target and recipe (S = 3: for the recipe auto picks, the default, its "
            "variants and the random and plain-energy baselines get 3 seeds; the other recipe, the oracle and "
            "self-training get 1, to fit the 2-core budget; grayscale targets' runs since the ink frame came with "
            "`--lean`: their variants get 1 seed and no self-training, and each table's seeds column says so), and "
            "a rerun without `--report-only` resumes from them. Their results are also recorded in "
            "docs/results-suite.json, which `--report-only` reads for any teacher no longer cached.\n\n"
        )
        replace_section("suite", runs + text, command, doc="results.md")
        replace_section("expect", expect(results), command, doc="results.md")
        figure(results)


if __name__ == "__main__":
    main()
