"""The experiments behind docs/results.md: teachers, selections and students, cached in runs/bench.

benchmarks/plada.py runs them (see its docstring for every row and sweep) and
benchmarks/plada_report.py turns their results into the page. Every run is cached by a hash of what it
depends on, so a rerun resumes and ``--report-only`` trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.codecs import list_codecs
from plada_edge.core.payload import encode_payload, write_payload
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.data.offline import load_pool_truth
from plada_edge.server.packing import payload_header
from plada_edge.server.scoring import Scores, score_pack
from plada_edge.server.selection import select
from plada_edge.server.teacher import export_onnx, train_teacher

from .kit import machine

ROOT = Path("runs/bench")
TEACHERS = {
    "fmnist": {
        "scratch": dict(arch="resnet18", epochs=10, hflip=True, model_size=32),
        "lite0": dict(arch="efficientnet_lite0", epochs=3, hflip=True, model_size=64),
    },
    "digits": {
        "scratch": dict(arch="resnet18", epochs=30, hflip=False, model_size=32),
        "lite0": dict(arch="efficientnet_lite0", epochs=15, hflip=False, model_size=64),
    },
}
STRATEGIES = {  # every option pinned: a row must not change when the code's defaults do
    "energy": dict(strategy="energy", safety_net=False, spread=1.0),
    "entropy": dict(strategy="entropy", safety_net=False, spread=1.0),
    "opposite": dict(strategy="opposite", safety_net=False, spread=1.0),
    "random": dict(strategy="random", safety_net=False, spread=1.0),
    "energy+SN(-0.2)": dict(strategy="energy", safety_net=True, alpha=-0.2, share=0.5, spread=1.0),
    "energy+SN(0.5)": dict(strategy="energy", safety_net=True, alpha=0.5, share=0.5, spread=1.0),
    "energy+SN(-0.2)+spread8": dict(strategy="energy", safety_net=True, alpha=-0.2, share=0.5, spread=8.0),
    "energy+SN(-0.2)+spread-auto": dict(strategy="energy", safety_net=True, alpha=-0.2, share=0.5, spread="auto"),
}
SPREAD_SWEEP = (2, 4, 8, 16)  # energy+SN(-0.2) at 1 %, seed 0, beside spread 1 (the strict order)
KEEPS = ["0.5%", "1%", "5%", "10%"]
STUDENT = {"arch": "resnet18", "model_size": None}  # None: the teacher's view (32 px)
PRETRAINED_STUDENT = {"arch": "efficientnet_lite0", "model_size": 64}  # ImageNet init from the pip package
SAMPLE_BUDGET = 15_000
EPOCH_SWEEP = (30_000, 60_000)  # sample-step budgets beside the default, energy+SN(-0.2) at 1 %
REPORT_ONLY = False  # --report-only: use cached runs, train nothing


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def teacher_scores(target: str, kind: str, pack: ReferencePack, log) -> Scores | None:
    cfg = TEACHERS[target][kind]
    d = ROOT / f"{target}-{kind}"
    if REPORT_ONLY and not (d / "teacher.onnx").exists():
        return None
    if not (d / "teacher" / "teacher.pt").exists():
        log(f"[{target}] training the {kind} teacher")
        train_teacher(
            data_dir() / "targets" / f"{target}.npz",
            d / "teacher",
            arch=cfg["arch"],
            epochs=cfg["epochs"],
            size=cfg["model_size"],
            hflip=cfg["hflip"],
        )
    if not (d / "teacher.onnx").exists():
        export_onnx(d / "teacher", d / "teacher.onnx", input_size=pack.size)
    try:
        return Scores.open(d / "scores", pack)
    except ValueError:
        if REPORT_ONLY:
            return None
        log(f"[{target}] scoring the pool with the {kind} teacher")
        return score_pack(d / "teacher.onnx", pack, d / "scores")


def student_run(
    name: str,
    payload: Path,
    pack: ReferencePack,
    target: str,
    k: int,
    seed: int,
    expand: int = 0,
    budget: int = SAMPLE_BUDGET,
    student: dict = STUDENT,
) -> dict:
    from plada_edge.device.student import learn

    out = ROOT / "students" / name
    cached = out / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    if REPORT_ONLY:
        return None
    epochs = int(np.clip(round(budget / max(k, 1)), 2, max(30, budget // 1000)))
    m = learn(
        payload,
        pack,
        out,
        arch=student["arch"],
        model_size=student["model_size"],
        epochs=epochs,
        seed=seed,
        target=data_dir() / "targets" / f"{target}.npz",
        hflip=TEACHERS[target]["scratch"]["hflip"],
        expand=expand,
        progress=False,
    )
    r = {
        "test_acc": m["test_acc"],
        "macro_acc": m["macro_acc"],
        "epochs": epochs,
        "trained_on": m["trained_on"],
        "expansion": m.get("expansion"),
        "seconds": m["seconds"],
        "arch": student["arch"],
        "model_size": m["model_size"],
    }
    atomic.write_json(cached, r)
    return r


def selection_record(scores: Scores, pack: ReferencePack, name: str, keep: str, opts: dict, target: str) -> dict:
    sel = select(scores, keep=keep, **opts)
    header = payload_header(scores, sel, task=target)
    sizes = {c: len(encode_payload(sel.indices, sel.labels, header, c)) for c in list_codecs()}
    best = min(sizes, key=sizes.get)
    path = ROOT / "payloads" / f"{target}-{_key(name, keep, scores.meta['teacher_sha256'])}.plada"
    if not path.exists():
        write_payload(path, sel.indices, sel.labels, header, codec=best)
    truth_idx, truth_lab = load_pool_truth(target)
    truth = dict(zip(truth_idx.tolist(), truth_lab.tolist()))
    correct = [truth.get(int(i)) == int(y) for i, y in zip(sel.indices, sel.labels) if int(i) in truth]
    rep = sel.report(pack)
    return {
        "k": sel.k,
        "bytes": sizes,
        "best_codec": best,
        "payload": str(path),
        "histogram": rep["label_histogram"],
        "sources": rep["sources"],
        "classes_present": rep["classes_present"],
        "in_domain": len(correct),
        "pseudo_label_acc": float(np.mean(correct)) if correct else None,
    }


def oracle_payload(scores: Scores, target: str, k: int, seed: int) -> Path:
    idx, lab = load_pool_truth(target)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(idx), min(k, len(idx)), replace=False))
    order = np.argsort(idx[pick])
    header = dict(payload_header(scores, select(scores, count=0), task=f"{target}-oracle"))
    path = ROOT / "payloads" / f"{target}-oracle-{k}-{seed}.plada"
    if not path.exists():
        write_payload(path, idx[pick][order], lab[pick][order], header, codec="auto")
    return path


def strategy_name(opts: dict) -> str:
    """The matrix row a set of select() options is: energy+SN(-0.2)+spread8 and so on."""
    name = opts["strategy"] + (f"+SN({opts['alpha']:g})" if opts.get("safety_net") else "")
    spread = opts.get("spread", 1)
    if spread == "auto":
        return name + "+spread-auto"
    return name + (f"+spread{float(spread):g}" if float(spread) != 1 else "")


def code_defaults() -> tuple[dict, int]:
    """The selection options and student epochs the code uses when nothing is set (core/config.py)."""
    from dataclasses import asdict

    from plada_edge.core.config import SelectionConfig, StudentConfig

    opts = {k: v for k, v in asdict(SelectionConfig()).items() if k != "seed"}  # seeds vary per run
    return opts, StudentConfig().train.epochs


def run(
    targets, keeps, seeds_at, pretrained: bool, expand: bool, log=print, expand_only: bool = False, sweep: bool = True
) -> dict:
    pack = ReferencePack.open(data_dir() / "offline-mix")
    results = {"machine": machine(), "targets": {}}
    t_start = time.perf_counter()
    scores = {}
    for target in targets:  # phase 1: teachers, scores and every selection (cheap)
        scores[target] = teacher_scores(target, "scratch", pack, log)
        res = {"teacher_acc": scores[target].meta["teacher_test_acc"], "selections": {}, "students": {}, "oracle": {}}
        for keep in keeps:
            for name, opts in STRATEGIES.items():
                res["selections"][f"{name}@{keep}"] = selection_record(scores[target], pack, name, keep, opts, target)
        results["targets"][target] = res
    # phase 2: students, every configuration once (both targets) before any extra seed
    plan = [
        (seed, target, keep, name)
        for target in targets
        for keep in keeps
        for seed in range(seeds_at.get(keep, 1))
        for name in [*STRATEGIES, "oracle"]
    ]
    if expand_only:  # just the baselines the expansion runs are compared with
        plan = [p for p in plan if p[3] == "energy+SN(-0.2)" and p[0] == 0 and p[2] in ("1%", "5%")]
    plan.sort(key=lambda p: (p[0], keeps.index(p[2]), targets.index(p[1])))
    for seed, target, keep, name in plan:
        res = results["targets"][target]
        k = res["selections"][f"energy@{keep}"]["k"]
        tag = f"{target}-{name}-{keep}-s{seed}"
        log(f"student {tag}")
        if name == "oracle":
            r = student_run(tag, oracle_payload(scores[target], target, k, seed), pack, target, k, seed)
            bucket = res["oracle"].setdefault(keep, [])
        else:
            sel = res["selections"][f"{name}@{keep}"]
            r = student_run(tag, Path(sel["payload"]), pack, target, sel["k"], seed)
            bucket = res["students"].setdefault(f"{name}@{keep}", [])
        if r is not None:
            bucket.append(r)
    for res in results["targets"].values():  # drop configurations with no finished run
        res["students"] = {k: v for k, v in res["students"].items() if v}
        res["oracle"] = {k: v for k, v in res["oracle"].items() if v}
    for target in targets:  # phase 3: references and extras
        res = results["targets"][target]
        up = ROOT / "students" / f"{target}-own-data" / "metrics.json"
        if not up.exists() and (REPORT_ONLY or expand_only):
            res["own_data_acc"] = None
        elif not up.exists():
            log(f"[{target}] student on the target's own training data")
            train_teacher(
                load_target(data_dir() / "targets" / f"{target}.npz"),
                STUDENT["arch"],
                up.parent,
                epochs=TEACHERS[target]["scratch"]["epochs"],
                hflip=TEACHERS[target]["scratch"]["hflip"],
            )
        if up.exists():
            own = json.loads(up.read_text())
            res["own_data_acc"], res["own_data_sha256"] = own["test_acc"], own["checkpoint_sha256"]
            teacher = json.loads((ROOT / f"{target}-scratch" / "teacher" / "metrics.json").read_text())
            res["teacher_sha256"] = teacher["checkpoint_sha256"]
        if expand:
            from plada_edge.device.index import build_index

            if not REPORT_ONLY:
                build_index(pack, "efficientnet_lite0")
            for keep in ("1%", "5%"):
                if keep not in keeps:
                    continue
                sel = res["selections"][f"energy+SN(-0.2)@{keep}"]
                tag = f"{target}-energy+SN(-0.2)-{keep}-expand10"
                log(f"student {tag}")
                r = student_run(tag, Path(sel["payload"]), pack, target, sel["k"], 0, expand=10)
                if r is not None and f"energy+SN(-0.2)@{keep}" in res["students"]:
                    res.setdefault("expand", {})[keep] = r
        if sweep and "1%" in keeps and "energy+SN(-0.2)@1%" in res["students"]:  # how long should a student train?
            sel = res["selections"]["energy+SN(-0.2)@1%"]
            for budget in EPOCH_SWEEP:
                tag = f"{target}-energy+SN(-0.2)-1%-s0-budget{budget}"
                log(f"student {tag}")
                r = student_run(tag, Path(sel["payload"]), pack, target, sel["k"], 0, budget=budget)
                if r is not None:
                    res.setdefault("epoch_sweep", {})[budget] = r
        if sweep and "1%" in keeps and "energy+SN(-0.2)@1%" in res["students"]:  # how much diversity?
            for s in SPREAD_SWEEP:
                name = f"energy+SN(-0.2)+spread{s}"
                opts = dict(STRATEGIES["energy+SN(-0.2)"], spread=float(s))
                rec = res["selections"].get(f"{name}@1%") or selection_record(
                    scores[target], pack, name, "1%", opts, target
                )
                tag = f"{target}-{name}-1%-s0"
                log(f"student {tag}")
                r = student_run(tag, Path(rec["payload"]), pack, target, rec["k"], 0)
                if r is not None:
                    res.setdefault("spread_sweep", {})[s] = {
                        "student": r,
                        "pseudo_label_acc": rec["pseudo_label_acc"],
                        "in_domain": rec["in_domain"],
                        "k": rec["k"],
                        "bytes": min(rec["bytes"].values()),
                    }
        if sweep and "1%" in keeps:  # what a user gets from the code's own defaults, end to end
            opts, epochs = code_defaults()
            name = "defaults-" + _key(opts, epochs)[:8]  # a new cache entry whenever the defaults change
            rec = selection_record(scores[target], pack, name, "1%", opts, target)
            runs = [(seed, 0) for seed in range(3)] + ([(0, 10)] if expand else [])
            for seed, n_expand in runs:
                tag = f"{target}-{name}-1%-s{seed}" + (f"-expand{n_expand}" if n_expand else "")
                log(f"student {tag}")
                r = student_run(
                    tag, Path(rec["payload"]), pack, target, rec["k"], seed, expand=n_expand, budget=epochs * rec["k"]
                )
                if r is not None:
                    d = res.setdefault(
                        "defaults", {"options": opts, "epochs": epochs, "selection": rec, "plain": [], "expand": []}
                    )
                    d["expand" if n_expand else "plain"].append(r)
        if pretrained and "1%" in keeps:  # an ImageNet-initialised student on the same payloads
            k = res["selections"]["energy@1%"]["k"]
            for name in ("energy+SN(-0.2)", "oracle"):
                tag = f"{target}-{name}-1%-s0-lite0student"
                log(f"student {tag}")
                payload = (
                    oracle_payload(scores[target], target, k, 0)
                    if name == "oracle"
                    else Path(res["selections"][f"{name}@1%"]["payload"])
                )
                r = student_run(tag, payload, pack, target, k, 0, student=PRETRAINED_STUDENT)
                if r is not None:
                    res.setdefault("pretrained_student", {})[name] = r
        pscores = teacher_scores(target, "lite0", pack, log) if pretrained else None
        if pscores is not None:
            res["pretrained_teacher_acc"] = pscores.meta["teacher_test_acc"]
            rec = selection_record(pscores, pack, "energy+SN(-0.2)", "1%", STRATEGIES["energy+SN(-0.2)"], target)
            tag = f"{target}-lite0-energy+SN(-0.2)-1%-s0"
            log(f"student {tag}")
            res["pretrained"] = {
                "1%": {"selection": rec, "student": student_run(tag, Path(rec["payload"]), pack, target, rec["k"], 0)}
            }
    results["seconds"] = time.perf_counter() - t_start
    return results
