"""docs/results.md from the experiments' results (benchmarks/plada_runs.py): tables, goals, figures and
the "Defaults, and why" section, which reads the code's defaults so the page shows whether they
still agree with the numbers.
"""

from __future__ import annotations

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.codecs import list_codecs
from plada_edge.core.payload import read_payload
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir
from plada_edge.server.scoring import Scores

from .kit import DOCS, replace_section
from .plada_runs import KEEPS, PRETRAINED_STUDENT, ROOT, SAMPLE_BUDGET, STRATEGIES, code_defaults, strategy_name


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
                f"| resnet18 scratch | {res['teacher_acc']:.4f} | "
                f"{res['students']['energy+SN(-0.2)@1%'][0]['test_acc']:.3f} | {s['in_domain'] / s['k']:.3f} |"
            )
            p = res["pretrained"]["1%"]
            lines.append(
                f"| efficientnet_lite0 ImageNet | {res['pretrained_teacher_acc']:.4f} | "
                f"{p['student']['test_acc']:.3f} | {p['selection']['in_domain'] / p['selection']['k']:.3f} |"
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
                + f" (here {read_payload(d['selection']['payload']).header['selection']['spread']:.2f}), "
                f"{d['epochs']} epochs.",
                "",
                "| | student acc | / teacher | payload bytes |",
                "|---|---:|---:|---:|",
                f"| {len(d['plain'])} seeds | {_ms(d['plain'])} | {_mean(d['plain']) / res['teacher_acc']:.1%} | "
                f"{min(d['selection']['bytes'].values()):,} |",
            ]
            if d["expand"]:
                lines.append(
                    f"| + `--expand 10` (seed 0) | {_ms(d['expand'])} | "
                    f"{_mean(d['expand']) / res['teacher_acc']:.1%} | "
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
                "resnet18 from scratch at the teacher's 32 px view vs efficientnet_lite0 from the pip package's "
                "ImageNet "
                f"weights at {PRETRAINED_STUDENT['model_size']} px (`learn --arch efficientnet_lite0 --size "
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
            f"{best1[0]:.3f} = {best1[0] / res['teacher_acc']:.1%} of the teacher: "
            f"**{'holds' if best1[0] >= want * res['teacher_acc'] else 'does not hold'}**."
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
                f"- {target}, the same with an ImageNet-initialised student (efficientnet_lite0, energy+SN(-0.2) @ 1 "
                "%, "
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
        "### The defaults when this section was generated, and why",
        "",
        'Today\'s defaults, and the evidence for each, are at the top of this page ("What to expect"); '
        "this section keeps what its own runs said of the defaults of its date. "
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
