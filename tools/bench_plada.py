#!/usr/bin/env python3
"""The paper's claims on offline data: accuracy against payload size, per selection strategy.

For each target (fmnist, digits) on offline-mix:
  - teacher: resnet18 from scratch (and, with --pretrained, EfficientNet-Lite0 ImageNet init)
  - selections: energy, entropy, opposite, random, energy + Safety-Net (alpha -0.2 and 0.5,
    share 0.5), and energy + Safety-Net with spread 8 and auto, at keep 0.5 / 1 / 5 / 10 %; each
    with its label histogram, pool-source mix and payload bytes per codec
  - students (resnet18, trained on the payload alone, a fixed budget of ~15,000 sample-steps):
    3 seeds at 1 % and 5 %, 1 seed at 0.5 % and 10 %
  - references: an "oracle" (in-domain pool images with TRUE labels, same k), a student trained
    on the target's own training set (upper bound), and label expansion (--expand 10)
  - sweeps behind the defaults: spread 1-16 and 15k-60k sample-steps at 1 %, then the code's
    own defaults (plada_edge/core/defaults.py) end to end over 3 seeds
  - with --pretrained: an EfficientNet-Lite0 (ImageNet) teacher, and Lite0 students at 64 px
Every run's result is cached under runs/bench/ (a rerun resumes), and --update-docs rewrites
docs/results.md and its figures from whatever has been run, saying what is missing.

    .venv/bin/python tools/bench_plada.py --update-docs            # everything (hours on 2 cores)
    .venv/bin/python tools/bench_plada.py --quick --update-docs    # 1 % and 5 %, one seed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOCS, machine, replace_section  # noqa: E402

from plada_edge.core import atomic  # noqa: E402
from plada_edge.core.codecs import list_codecs  # noqa: E402
from plada_edge.core.payload import encode_payload, read_payload, write_payload  # noqa: E402
from plada_edge.core.reference import ReferencePack  # noqa: E402
from plada_edge.core.targets import data_dir, load_target  # noqa: E402
from plada_edge.data.offline import load_pool_truth  # noqa: E402
from plada_edge.server.payloads import payload_header  # noqa: E402
from plada_edge.server.scoring import Scores, score_pack  # noqa: E402
from plada_edge.server.selection import select  # noqa: E402
from plada_edge.server.teacher import export_onnx, train_teacher  # noqa: E402

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
            cfg["arch"],
            d / "teacher",
            epochs=cfg["epochs"],
            model_size=cfg["model_size"],
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
    """The selection options and student epochs the code uses when nothing is set (core/defaults.py)."""
    from plada_edge.core.defaults import SELECTION, STUDENT_EPOCHS

    return dict(SELECTION), STUDENT_EPOCHS


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


def _ms(runs: list[dict], key: str = "test_acc") -> str:
    v = np.array([r[key] for r in runs])
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def write_docs(results: dict, keeps, command: str) -> None:
    compute = sum(
        r["seconds"]
        for res in results["targets"].values()
        for runs in [*res["students"].values(), *res["oracle"].values()]
        for r in runs
    )
    lines = [
        "Written from its own runs (cached under runs/bench/, so the command resumes and `--report-only` "
        "rebuilds this page from finished runs). Machine: "
        + results["machine"]
        + f"; student training behind this page: {compute / 3600:.1f} h of wall time (some runs shared the 2 cores, so "
        "no per-run times are shown here).",
        "",
        "Students are resnet18 trained from scratch on the payload alone (AdamW, cosine, ~15,000 sample-steps), "
        "evaluated on the target's official test split. Keep is a share of the 100,181-image pool.",
        "",
    ]
    figs = plot(results, keeps)
    for target, res in results["targets"].items():
        own = f"**{res['own_data_acc']:.4f}**" if res.get("own_data_acc") is not None else "not run yet"
        if res.get("own_data_sha256") and res["own_data_sha256"] == res.get("teacher_sha256"):
            own += (
                " (the student's architecture is the teacher's, so this is the teacher's recipe run again; training "
                "is deterministic and the two checkpoints are byte-identical, SHA-256 "
                + res["teacher_sha256"][:12]
                + "…)"
            )
        lines += [
            f"### {target}",
            "",
            f"Teacher (resnet18 from scratch): **{res['teacher_acc']:.4f}**. Same student trained on the target's own "
            f"training split: {own}.",
            "",
            "Seeds per cell: "
            + ", ".join(f"{k} {len(v)}" for k, v in sorted(res["students"].items()) if k.startswith("energy@"))
            + ".",
            "",
        ]
        lines += [
            "#### Student accuracy (mean ± std over seeds) and payload bytes",
            "",
            "| selection | "
            + " | ".join(f"{k} acc" for k in keeps)
            + " | "
            + " | ".join(f"{k} bytes" for k in keeps)
            + " |",
            "|---|" + "---:|" * (2 * len(keeps)),
        ]
        for name in STRATEGIES:
            accs = [(_ms(res["students"][f"{name}@{k}"]) if f"{name}@{k}" in res["students"] else "–") for k in keeps]
            sizes = [f"{min(res['selections'][f'{name}@{k}']['bytes'].values()):,}" for k in keeps]
            lines.append(f"| {name} | " + " | ".join(accs) + " | " + " | ".join(sizes) + " |")
        lines.append(
            "| oracle (true labels, in-domain pool images) | "
            + " | ".join((_ms(res["oracle"][k]) if k in res["oracle"] else "–") for k in keeps)
            + " | "
            + " | ".join("" for _ in keeps)
            + " |"
        )
        lines += [
            "",
            "Macro-averaged accuracy (classes weighted equally):",
            "",
            "| selection | " + " | ".join(keeps) + " |",
            "|---|" + "---:|" * len(keeps),
        ]
        for name in STRATEGIES:
            lines.append(
                f"| {name} | "
                + " | ".join(
                    (_ms(res["students"][f"{name}@{k}"], "macro_acc") if f"{name}@{k}" in res["students"] else "–")
                    for k in keeps
                )
                + " |"
            )
        k1 = "1%" if "1%" in keeps else keeps[0]
        lines += [
            "",
            f"#### What the {k1} selections contain",
            "",
            "| selection | classes present | in-domain pool images | their pseudo-label accuracy | "
            + " | ".join(res["selections"][f"energy@{k1}"]["sources"])
            + " | best codec |",
            "|---|---:|---:|---:|" + "---:|" * len(res["selections"][f"energy@{k1}"]["sources"]) + "---|",
        ]
        for name in STRATEGIES:
            s = res["selections"][f"{name}@{k1}"]
            pla = f"{s['pseudo_label_acc']:.3f}" if s["pseudo_label_acc"] is not None else "–"
            lines.append(
                f"| {name} | {s['classes_present']} | {s['in_domain']:,} | {pla} | "
                + " | ".join(str(v) for v in s["sources"].values())
                + f" | {s['best_codec']} |"
            )
        lines += [
            "",
            f"Label histograms at {k1}:",
            "",
            "| selection | " + " | ".join(res["selections"][f"energy@{k1}"]["histogram"]) + " |",
            "|---|" + "---:|" * len(res["selections"][f"energy@{k1}"]["histogram"]),
        ]
        for name in STRATEGIES:
            lines.append(
                f"| {name} | "
                + " | ".join(str(v) for v in res["selections"][f"{name}@{k1}"]["histogram"].values())
                + " |"
            )
        lines += [
            "",
            f"Payload bytes per codec at {k1}:",
            "",
            "| selection | " + " | ".join(list_codecs()) + " |",
            "|---|" + "---:|" * len(list_codecs()),
        ]
        for name in STRATEGIES:
            lines.append(
                f"| {name} | "
                + " | ".join(f"{res['selections'][f'{name}@{k1}']['bytes'][c]:,}" for c in list_codecs())
                + " |"
            )
        if res.get("expand"):
            lines += [
                "",
                "#### Label expansion (`learn --expand 10`, EfficientNet-Lite0 index, zero extra payload bytes)",
                "",
                "| selection | without | with | images added |",
                "|---|---:|---:|---:|",
            ]
            for k, r in res["expand"].items():
                base = res["students"][f"energy+SN(-0.2)@{k}"][0]["test_acc"]
                lines.append(
                    f"| energy+SN(-0.2) @ {k} | {base:.3f} | {r['test_acc']:.3f} | {r['expansion']['added']:,} |"
                )
        if res.get("pretrained"):
            lines += [
                "",
                "#### Teacher from scratch vs EfficientNet-Lite0 ImageNet init",
                "",
                "| teacher | teacher acc | student acc (energy+SN(-0.2) @ 1%) | in-domain share of the selection |",
                "|---|---:|---:|---:|",
            ]
            s = res["selections"]["energy+SN(-0.2)@1%"]
            lines.append(
                f"| resnet18 scratch | {res['teacher_acc']:.4f} | {res['students']['energy+SN(-0.2)@1%'][0]['test_acc']:.3f} | {s['in_domain'] / s['k']:.3f} |"
            )
            p = res["pretrained"]["1%"]
            lines.append(
                f"| efficientnet_lite0 ImageNet | {res['pretrained_teacher_acc']:.4f} | {p['student']['test_acc']:.3f} | {p['selection']['in_domain'] / p['selection']['k']:.3f} |"
            )
        if res.get("epoch_sweep"):
            rows = {SAMPLE_BUDGET: res["students"]["energy+SN(-0.2)@1%"][0], **res["epoch_sweep"]}
            lines += [
                "",
                "#### How long to train (energy+SN(-0.2) @ 1 %, seed 0)",
                "",
                "| sample-steps | epochs | student acc |",
                "|---:|---:|---:|",
            ]
            for b, r in sorted(rows.items(), key=lambda kv: int(kv[0])):
                lines.append(f"| {int(b):,} | {r['epochs']} | {r['test_acc']:.3f} |")
        if res.get("defaults", {}).get("plain"):
            d = res["defaults"]
            lines += [
                "",
                "#### The code's defaults, end to end, at 1 %",
                "",
                "`pack --keep 1%` then `learn` with nothing else set: "
                + ", ".join(f"{k}={v}" for k, v in d["options"].items())
                + f" (here {read_payload(d['selection']['payload']).header['selection']['spread']:.2f}), {d['epochs']} epochs.",
                "",
                "| | student acc | / teacher | payload bytes |",
                "|---|---:|---:|---:|",
                f"| {len(d['plain'])} seeds | {_ms(d['plain'])} | {_mean(d['plain']) / res['teacher_acc']:.1%} | "
                f"{min(d['selection']['bytes'].values()):,} |",
            ]
            if d["expand"]:
                lines.append(
                    f"| + `--expand 10` (seed 0) | {_ms(d['expand'])} | {_mean(d['expand']) / res['teacher_acc']:.1%} | "
                    f"{min(d['selection']['bytes'].values()):,} |"
                )
        if res.get("spread_sweep"):
            base = res["students"]["energy+SN(-0.2)@1%"][0]
            s1 = res["selections"]["energy+SN(-0.2)@1%"]
            rows = [(1, base, s1["pseudo_label_acc"], s1["in_domain"], s1["k"], min(s1["bytes"].values()))]
            rows += [
                (s, v["student"], v["pseudo_label_acc"], v["in_domain"], v["k"], v["bytes"])
                for s, v in sorted(res["spread_sweep"].items(), key=lambda kv: int(kv[0]))
            ]
            lines += [
                "",
                "#### Purity or diversity: `--spread` (energy+SN(-0.2) @ 1 %, seed 0)",
                "",
                "Each quota takes its m images at random from its spread·m lowest energies (1 = the strict lowest).",
                "",
                "| spread | student acc | in-domain pool images | their pseudo-label accuracy | payload bytes |",
                "|---:|---:|---:|---:|---:|",
            ]
            for s, r, pla, ind, k, b in rows:
                lines.append(
                    f"| {s} | {r['test_acc']:.3f} | {ind:,} of {k:,} | "
                    + (f"{pla:.3f}" if pla is not None else "–")
                    + f" | {b:,} |"
                )
        if res.get("pretrained_student"):
            lines += [
                "",
                "#### Student from scratch vs ImageNet-initialised student, same 1 % payloads (seed 0)",
                "",
                f"resnet18 from scratch at the teacher's 32 px view vs efficientnet_lite0 from the pip package's ImageNet "
                f"weights at {PRETRAINED_STUDENT['model_size']} px (`learn --arch efficientnet_lite0 --model-size "
                f"{PRETRAINED_STUDENT['model_size']}`); same sample-step budget.",
                "",
                "| payload | resnet18 scratch | efficientnet_lite0 ImageNet |",
                "|---|---:|---:|",
            ]
            for name, r in res["pretrained_student"].items():
                base = res["oracle"]["1%"][0] if name == "oracle" else res["students"][f"{name}@1%"][0]
                lines.append(f"| {name} | {base['test_acc']:.3f} | {r['test_acc']:.3f} |")
        if target in figs:
            lines += [
                "",
                f"![accuracy vs payload bytes]({figs[target]})",
                "",
                f"![pool energy by source]({figs[f'{target}-energy']})",
            ]
        lines.append("")
    lines += goals(results) + [""] + defaults(results)
    path = DOCS / "results.md"
    if not path.exists():
        atomic.write_bytes(path, b"# Results: PLADA on offline data\n\nEach section names the command that wrote it.\n")
    replace_section("bench_plada", "\n".join(lines), command, doc="results.md")


def goals(results: dict) -> list[str]:
    out = ["### Goals, stated plainly", ""]
    for target, res in results["targets"].items():
        st = res["students"]
        want = 0.9 if target == "fmnist" else 0.8
        if not any(k.endswith("@1%") for k in st):
            out.append(f"- {target}: no 1 % students finished yet.")
            continue
        best1 = max((np.mean([r["test_acc"] for r in st[k]]), k) for k in st if k.endswith("@1%"))
        out.append(
            f"- **{target}, student ≥ {want:.0%} of the teacher at ≤ 1 % keep**: best at 1 % is {best1[1]} with "
            f"{best1[0]:.3f} = {best1[0] / res['teacher_acc']:.1%} of the teacher: **{'holds' if best1[0] >= want * res['teacher_acc'] else 'does not hold'}**."
        )
        for variant, runs in (
            ("the code's defaults (30 epochs)", res.get("defaults", {}).get("plain")),
            ("the code's defaults + `--expand 10`", res.get("defaults", {}).get("expand")),
        ):
            if runs:
                a = _mean(runs)
                out.append(
                    f"- {target}, the same with {variant}, {len(runs)} seed(s): {a:.3f} = {a / res['teacher_acc']:.1%} "
                    f"of the teacher: **{'holds' if a >= want * res['teacher_acc'] else 'does not hold'}**."
                )
        ps = res.get("pretrained_student", {}).get("energy+SN(-0.2)")
        if ps is not None:
            out.append(
                f"- {target}, the same with an ImageNet-initialised student (efficientnet_lite0, energy+SN(-0.2) @ 1 %, "
                f"seed 0): {ps['test_acc']:.3f} = {ps['test_acc'] / res['teacher_acc']:.1%} of the teacher: "
                f"**{'holds' if ps['test_acc'] >= want * res['teacher_acc'] else 'does not hold'}**."
            )
        if "random@1%" in st:
            rnd = np.mean([r["test_acc"] for r in st["random@1%"]])
            out.append(
                f"- {target}, best selection beats random by ≥ 10 points at 1 %: {best1[0]:.3f} vs {rnd:.3f}: "
                f"**{'holds' if best1[0] - rnd >= 0.10 else 'does not hold'}**."
            )
        e = max(
            [np.mean([r["test_acc"] for r in st[k]]) for k in st if k.startswith("energy") and k.endswith("@1%")]
            or [float("nan")]
        )
        others = {k: np.mean([r["test_acc"] for r in st[k]]) for k in ("entropy@1%", "opposite@1%") if k in st}
        out.append(
            f"- {target}, energy-based selection (with quotas) beats entropy and opposite at 1 %: {e:.3f} vs "
            + ", ".join(f"{k.split('@')[0]} {v:.3f}" for k, v in others.items())
            + f": **{'holds' if all(e > v for v in others.values()) else 'does not hold'}**."
        )
        if "energy@0.5%" in st and "energy+SN(-0.2)@0.5%" in st:
            a = np.mean([r["macro_acc"] for r in st["energy+SN(-0.2)@0.5%"]])
            b = np.mean([r["macro_acc"] for r in st["energy@0.5%"]])
            out.append(
                f"- {target}, Safety-Net no worse than vanilla on macro accuracy at 0.5 %: {a:.3f} vs {b:.3f}: "
                f"**{'holds' if a >= b else 'does not hold'}**."
            )
    return out


def _mean(runs: list[dict], key: str = "test_acc") -> float:
    return float(np.mean([r[key] for r in runs]))


def defaults(results: dict) -> list[str]:
    """The code's defaults beside what the runs measured, so a reader can see whether they agree."""
    opts, epochs = code_defaults()
    default = strategy_name(opts)
    out = [
        "### Defaults, and why",
        "",
        f"The code's defaults (read from it when this page was written): `select`, `pack` and `serve` use strategy "
        f"`{opts['strategy']}` with the Safety-Net {'on' if opts['safety_net'] else 'off'} (alpha "
        f"{opts['alpha']}, share {opts['share']}) and spread `{opts['spread']}`, i.e. the row "
        f"`{default}`; `learn` trains {epochs} "
        "epochs. Mean student accuracy per selection, best first:",
        "",
    ]
    best_at = {}
    for keep in KEEPS:
        for target, res in results["targets"].items():
            ranked = sorted(
                ((_mean(res["students"][f"{n}@{keep}"]), n) for n in STRATEGIES if f"{n}@{keep}" in res["students"]),
                reverse=True,
            )
            if ranked:
                mine = [a for a, n in ranked if n == default]
                best_at[target, keep] = (ranked[0][1], bool(mine) and mine[0] >= ranked[0][0] - 1e-9)  # ties count
                out.append(f"- {target} @ {keep}: " + " > ".join(f"{n} {a:.3f}" for a, n in ranked))
    for small in (True, False):
        cells = {tk: n for tk, n in best_at.items() if (tk[1] in ("0.5%", "1%")) == small}
        if not cells:
            continue
        agree = [tk for tk, (_, tied) in cells.items() if tied]
        out += ([""] if small else []) + [
            f"- **Strategy, keep {'≤ 1 %' if small else '5 and 10 %'}**: the default `{default}` is the "
            f"best selection in {len(agree)} of {len(cells)} (target, keep) cells"
            + (
                "."
                if len(agree) == len(cells)
                else "; elsewhere the best is: "
                + ", ".join(f"{t} @ {k}: {n}" for (t, k), (n, tied) in cells.items() if not tied)
                + "."
            )
        ]
    if best_at:
        out.append("- Plain energy is never the default: it drops whole classes at small keeps (the histograms above).")
    cells = [
        (t, k)
        for t, res in results["targets"].items()
        for k in KEEPS
        if f"energy+SN(-0.2)@{k}" in res["students"] and f"energy+SN(0.5)@{k}" in res["students"]
    ]
    if cells:
        wins = [
            c
            for c in cells
            if _mean(results["targets"][c[0]]["students"][f"energy+SN(-0.2)@{c[1]}"])
            >= _mean(results["targets"][c[0]]["students"][f"energy+SN(0.5)@{c[1]}"])
        ]
        out.append(
            f"- **Safety-Net alpha**: -0.2 (more quota to rare classes) matches or beats 0.5 in {len(wins)} of "
            f"{len(cells)} (target, keep) cells. The share (0.5, the paper's) was not swept."
        )
    for target, res in results["targets"].items():
        if res.get("spread_sweep"):
            rows = {
                1: res["students"]["energy+SN(-0.2)@1%"][0]["test_acc"],
                **{int(s): v["student"]["test_acc"] for s, v in res["spread_sweep"].items()},
            }
            best = max(rows, key=rows.get)
            out.append(
                f"- **Spread**, {target} @ 1 %: "
                + ", ".join(f"{s} → {a:.3f}" for s, a in sorted(rows.items()))
                + f" (best: {best}; the default is `{opts['spread']}`)."
            )
        if res.get("epoch_sweep"):
            rows = {SAMPLE_BUDGET: res["students"]["energy+SN(-0.2)@1%"][0], **res["epoch_sweep"]}
            out.append(
                f"- **Epochs**, {target} @ 1 %: "
                + ", ".join(
                    f"{r['epochs']} epochs {r['test_acc']:.3f}"
                    for _, r in sorted(rows.items(), key=lambda kv: int(kv[0]))
                )
            )
    return out


def plot(results: dict, keeps) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    (DOCS / "figures").mkdir(parents=True, exist_ok=True)
    for target, res in results["targets"].items():
        fig, ax = plt.subplots(figsize=(8.5, 4))
        for name in STRATEGIES:
            xs, ys = [], []
            for k in keeps:
                if f"{name}@{k}" in res["students"]:
                    xs.append(min(res["selections"][f"{name}@{k}"]["bytes"].values()))
                    ys.append(np.mean([r["test_acc"] for r in res["students"][f"{name}@{k}"]]))
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.axhline(res["teacher_acc"], color="k", ls="--", lw=1, label="teacher")
        ax.set_xscale("log")
        ax.set_xlabel("payload bytes")
        ax.set_ylabel("student test accuracy")
        ax.set_title(f"{target} on offline-mix")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        out[target] = _save(fig, plt, f"figures/{target}_accuracy_vs_bytes.png")
        out[f"{target}-energy"] = energy_histogram(target, plt)
    return out


def _save(fig, plt, name: str) -> str:
    fig.tight_layout()
    fig.savefig(DOCS / name, dpi=110)
    plt.close(fig)
    return name


def energy_histogram(target: str, plt) -> str:
    """The pool's energy under the target's teacher, one histogram per pool source."""
    pack = ReferencePack.open(data_dir() / "offline-mix")
    scores = Scores.open(ROOT / f"{target}-scratch" / "scores", pack)
    e, ok = np.asarray(scores.energy), np.asarray(scores.flags) == 0
    bins = np.linspace(np.percentile(e[ok], 0.1), np.percentile(e[ok], 99.9), 80)
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in pack.sources:
        part = e[s.start : s.stop][ok[s.start : s.stop]]
        ax.hist(part, bins=bins, histtype="step", density=True, label=f"{s.name} ({len(part):,})")
    ax.set_xlabel("energy (lower = more in-distribution)")
    ax.set_ylabel("density")
    ax.set_title(f"offline-mix under the {target} teacher")
    ax.legend(fontsize=7)
    return _save(fig, plt, f"figures/{target}_energy_by_source.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="fmnist,digits")
    ap.add_argument("--quick", action="store_true", help="keep 1 %% and 5 %% only, one seed, no extras")
    ap.add_argument("--pretrained", action="store_true", help="also the EfficientNet-Lite0-initialised teacher")
    ap.add_argument("--expand", action="store_true", help="also label expansion (builds the Lite0 pool index)")
    ap.add_argument("--report-only", action="store_true", help="write the docs from finished runs; train nothing")
    ap.add_argument(
        "--expand-only", action="store_true", help="only label expansion and its baselines (implies --expand)"
    )
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    global REPORT_ONLY
    REPORT_ONLY = args.report_only
    keeps = ["1%", "5%"] if args.quick else KEEPS
    seeds = {"1%": 1, "5%": 1} if args.quick else {"0.5%": 1, "1%": 3, "5%": 3, "10%": 1}
    results = run(
        args.targets.split(","),
        keeps,
        seeds,
        args.pretrained,
        args.expand or args.expand_only,
        expand_only=args.expand_only,
        sweep=not (args.quick or args.expand_only),
    )
    atomic.write_json(ROOT / "results.json", results)
    if args.update_docs:
        flags = " ".join(
            f
            for f, on in (
                ("--quick", args.quick),
                ("--pretrained", args.pretrained),
                ("--expand", args.expand),
                ("--report-only", args.report_only),
            )
            if on
        )
        write_docs(results, keeps, f"python tools/bench_plada.py {flags} --update-docs".replace("  ", " "))


if __name__ == "__main__":
    main()
