"""``plada-edge demo``: the whole of PLADA on this machine, from nothing to a trained student.

1. builds the offline benchmark data if missing (offline-mix pool + targets, ~1 minute),
2. server: trains a teacher on the target, exports it to ONNX, scores every pool image by
   energy and packs the selected (index, label) pairs into a payload (``plada-edge build``),
3. device: verifies the payload, gathers its images from the pool, trains a student and
   evaluates it on the target's test split (``plada-edge learn``),
4. prints payload bytes, teacher and student accuracy and their ratio.

Defaults are the ones chosen from the measurements in docs/results.md: energy selection with
the Safety-Net (so no class vanishes), at 1 % of the pool.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from .core.config import SelectionConfig, StudentConfig, with_options
from .core.errors import ConfigError

DEMO_TEACHERS = {  # teachers a little shorter than the benchmark's, to finish in minutes
    "digits": {"arch": "resnet18", "epochs": 20, "hflip": False},
    "fmnist": {"arch": "resnet18", "epochs": 8, "hflip": True},
}


def run_demo(
    target: str = "digits",
    workdir: str | os.PathLike = "runs/demo",
    keep: str = "1%",
    selection: SelectionConfig | None = None,
    student: StudentConfig | None = None,
    log=print,
) -> dict:
    """Teacher → energy → payload → student on offline data; returns the summary ``format_table`` prints."""
    from .core.targets import data_dir
    from .data.offline import build_offline_data
    from .device.student import learn
    from .server.tasks import build_tasks, load_task_file

    if target not in DEMO_TEACHERS:
        raise ConfigError(f"demo targets: {', '.join(DEMO_TEACHERS)}")
    selection = selection or SelectionConfig()
    d = DEMO_TEACHERS[target]
    student = with_options(student, StudentConfig, {"hflip": d["hflip"]})
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = data_dir()
    if not (root / "offline-mix" / "manifest.json").exists() or not (root / "targets" / f"{target}.npz").exists():
        log(f"building the offline benchmark data in {root} (once)")
        build_offline_data(root, log=log)
    task_file = workdir / "tasks.toml"
    task_file.write_text(
        "[server]\n"
        f'cache = "cache"\nreference = "{(root / "offline-mix").resolve()}"\n\n'
        f"[tasks.{target}]\n"
        f'target = "{(root / "targets" / f"{target}.npz").resolve()}"\n'
        f'arch = "{d["arch"]}"\nepochs = {d["epochs"]}\nhflip = {str(d["hflip"]).lower()}\n'
        f'keep = "{keep}"\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in asdict(selection).items())
    )
    log(
        f"server: teacher {d['arch']} → ONNX → energy scores → {selection.strategy} {keep}"
        + (" + Safety-Net" if selection.safety_net else "")
    )
    report = build_tasks(task_file, log=log)[target]
    cache = load_task_file(task_file)["cache"]
    payload = cache / json.loads((cache / "tasks.json").read_text())[target]["payload"]
    log(f"device: learn from {payload.name} ({report['bytes']:,} bytes)")
    m = learn(payload, root / "offline-mix", workdir / "student", student, target=root / "targets" / f"{target}.npz")
    return {
        "target": target,
        "payload_bytes": report["bytes"],
        "k": report["k"],
        "pool": report["n"],
        "teacher_acc": m["teacher_test_acc"],
        "student_acc": m["test_acc"],
        "ratio": m["ratio_to_teacher"],
        "student": student.arch,
        "strategy": selection.strategy,
        "keep": keep,
        "safety_net": selection.safety_net,
        "spread": selection.spread,
        "seconds": time.perf_counter() - t0,
        "workdir": str(workdir),
    }


def format_table(r: dict) -> str:
    rows = [
        ("target", r["target"]),
        (
            "selection",
            f"{r['strategy']} {r['keep']}"
            + (" + Safety-Net" if r["safety_net"] else "")
            + (f", spread {r['spread']}" if r.get("spread", 1) != 1 else ""),
        ),
        ("payload", f"{r['payload_bytes']:,} bytes for {r['k']:,} of {r['pool']:,} pool images"),
        ("teacher accuracy", f"{r['teacher_acc']:.4f}"),
        ("student accuracy", f"{r['student_acc']:.4f}  ({r['student']}, trained only on the payload)"),
        ("student / teacher", f"{r['ratio']:.3f}"),
        ("wall time", f"{r['seconds'] / 60:.1f} min"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
