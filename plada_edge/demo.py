"""``plada-edge demo``: the whole of PLADA on this machine, from nothing to a trained student.

1. builds the offline benchmark data if missing (offline-mix pool + targets, ~1 minute),
2. server: trains a teacher on the target, exports it to ONNX, scores every pool image (energy,
   and its distance to the target's own images) and packs the selected (index, label) pairs
   into a payload (``plada-edge build``),
3. device: verifies the payload, gathers its images from the pool, trains a student and
   evaluates it on the target's test split (``plada-edge learn``),
4. prints payload bytes, teacher and student accuracy and their ratio.

Defaults are the ones chosen from the measurements in docs/results.md: strategy ``by-teacher``
(nearest for an ImageNet-pretrained teacher, energy for one trained from scratch unless the pool holds
near-copies of the target's images) with the Safety-Net (so no class vanishes), at 1 % of the pool, and
``--recipe auto`` on both sides.
The default target, tango (a colour icon task of plada_edge.data.suite), gets the recipe colour
tasks get: ImageNet-initialised linear probes, a few minutes end to end on 2 cores. digits and
fmnist get resnet18 from scratch, which takes longer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from .core.config import KEEP, SelectionConfig
from .core.errors import ConfigError

_log = logging.getLogger(__name__)

DEMO_TEACHERS = {  # settings beyond the recipe's; the grayscale teachers a little shorter than the benchmark's
    "tango": {},
    "digits": {"arch": "resnet18", "epochs": 20, "hflip": False},
    "fmnist": {"arch": "resnet18", "epochs": 8, "hflip": True},
}


def run_demo(
    target: str = "tango",
    workdir: str | os.PathLike = "runs/demo",
    keep: str = KEEP,
    selection: SelectionConfig | None = None,
    log=_log.info,
    **student_options,
) -> dict:
    """Teacher → scores → payload → student on offline data; returns the summary ``format_table`` prints.

    ``student_options`` (arch, epochs, any StudentConfig or TrainConfig field) override what the
    student's recipe (auto) picks; None leaves an option to it.
    """
    from .core.payload import read_payload
    from .device.student import learn
    from .server.tasks import build_tasks, load_task_file

    if target not in DEMO_TEACHERS:
        raise ConfigError(f"demo targets: {', '.join(DEMO_TEACHERS)}")
    selection = selection or SelectionConfig()
    d = DEMO_TEACHERS[target]
    student_options = {k: v for k, v in student_options.items() if v is not None}
    if "hflip" in d:
        student_options.setdefault("hflip", d["hflip"])
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = _data(target, log)
    task_file = _task_file(workdir, root, target, keep, selection)
    log(
        f"server: {d.get('arch', 'the auto recipe')} teacher → ONNX → scores → {selection.strategy} {keep}"
        + (" + Safety-Net" if selection.safety_net else "")
    )
    report = build_tasks(task_file, log=log)[target]
    cache = load_task_file(task_file)["cache"]
    payload = cache / json.loads((cache / "tasks.json").read_text())[target]["payload"]
    log(f"device: learn from {payload.name} ({report['bytes']:,} bytes)")
    m = learn(
        payload, root / "offline-mix", workdir / "student", target=root / "targets" / f"{target}.npz", **student_options
    )
    return {
        "target": target,
        "payload_bytes": report["bytes"],
        "k": report["k"],
        "pool": report["n"],
        "teacher_acc": m["teacher_test_acc"],
        "student_acc": m["test_acc"],
        "ratio": m["ratio_to_teacher"],
        "student": m["arch"],
        "recipe": m.get("recipe"),
        "strategy": selection.strategy,
        "keep": keep,
        "safety_net": selection.safety_net,
        "spread": (read_payload(payload).header.get("selection") or {}).get("spread", selection.spread),
        "seconds": time.perf_counter() - t0,
        "workdir": str(workdir),
    }


def _data(target: str, log) -> Path:
    """The benchmark data the demo needs, built once (the pool and fmnist/digits; an icon theme's target)."""
    from .core.targets import data_dir
    from .data.offline import build_offline_data
    from .data.suite import THEMES, build_suite

    root = data_dir()
    if not (root / "offline-mix" / "manifest.json").exists() or (
        target not in THEMES and not (root / "targets" / f"{target}.npz").exists()
    ):
        log(f"building the offline benchmark data in {root} (once)")
        build_offline_data(root, log=log)
    if target in THEMES and not (root / "targets" / f"{target}.npz").exists():
        log(f"building the {target} target from its icon theme (once)")
        build_suite((target,), root, log=log)
    return root


def _task_file(workdir: Path, root: Path, target: str, keep: str, selection: SelectionConfig) -> Path:
    """The demo's tasks.toml: one task on the pool, the teacher settings of DEMO_TEACHERS, the selection."""
    task_file = workdir / "tasks.toml"
    task_file.write_text(
        "[server]\n"
        f'cache = "cache"\nreference = "{(root / "offline-mix").resolve()}"\n\n'
        f"[tasks.{target}]\n"
        f'target = "{(root / "targets" / f"{target}.npz").resolve()}"\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in DEMO_TEACHERS[target].items())
        + f'keep = "{keep}"\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in asdict(selection).items())
    )
    return task_file


def format_table(r: dict) -> str:
    rows = [
        ("target", r["target"]),
        (
            "selection",
            f"{r['strategy']} {r['keep']}"
            + (" + Safety-Net" if r["safety_net"] else "")
            + (f", spread {r['spread']:.3g}" if isinstance(r.get("spread"), (int, float)) and r["spread"] != 1 else ""),
        ),
        ("payload", f"{r['payload_bytes']:,} bytes for {r['k']:,} of {r['pool']:,} pool images"),
        ("teacher accuracy", f"{r['teacher_acc']:.4f}"),
        (
            "student accuracy",
            f"{r['student_acc']:.4f}  ({r['student']}, {r.get('recipe') or 'given'} recipe, from the payload only)",
        ),
        ("student / teacher", f"{r['ratio']:.3f}"),
        ("wall time", f"{r['seconds'] / 60:.1f} min"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
