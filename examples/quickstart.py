"""PLADA end to end through the public Python API (the README's quick example).

    .venv/bin/python examples/quickstart.py                      # offline-mix + fmnist (tools/build_offline_data.py)
    .venv/bin/python examples/quickstart.py --tiny runs/tiny     # a synthetic 3-class task, seconds on a laptop

Server: train a teacher on the target, export it to ONNX, score every reference image by energy,
select 1 % with the Safety-Net, write the payload. Device: check the payload against its own pack,
train a student on the named images alone, evaluate it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import plada_edge as plada


def tiny_task(root: Path) -> tuple[Path, Path]:
    """A 3-class target (stripes and blobs, 16 px) and a 600-image pool that holds some of each."""
    rng = np.random.default_rng(0)

    def images(kind: int, n: int) -> np.ndarray:
        x = rng.integers(0, 60, (n, 16, 16)).astype(np.int64)
        if kind == 0:
            x[:, ::4, :] += 180
        elif kind == 1:
            x[:, :, ::4] += 180
        else:
            x[:, 4:12, 4:12] += 180
        return np.clip(x, 0, 255).astype(np.uint8)

    from plada_edge.core.targets import Target, save_target

    target = Target(
        "stripes",
        np.concatenate([images(k, 60) for k in range(3)]),
        np.repeat(np.arange(3), 60),
        np.concatenate([images(k, 20) for k in range(3)]),
        np.repeat(np.arange(3), 20),
        ["h", "v", "blob"],
    )
    save_target(root / "stripes.npz", target)
    pool = np.concatenate([images(k, 40) for k in range(3)] + [rng.integers(0, 256, (480, 16, 16), dtype=np.uint8)])
    np.save(root / "pool.npy", pool)
    if not (root / "pack").exists():
        plada.build_pack([str(root / "pool.npy")], root / "pack", size=16)
    return root / "stripes.npz", root / "pack"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", type=Path, help="build and use a synthetic task in this folder")
    ap.add_argument("--workdir", type=Path, default=Path("runs/quickstart"))
    args = ap.parse_args()

    if args.tiny:
        args.tiny.mkdir(parents=True, exist_ok=True)
        target, pack_path = tiny_task(args.tiny)
        teacher = plada.TeacherConfig.from_options(arch="tiny_cnn", size=16, epochs=4, batch_size=32, lr=3e-3)
        student = plada.StudentConfig.from_options(arch="tiny_cnn", epochs=6, batch_size=32, lr=3e-3)
        keep = "10%"
    else:
        target, pack_path = "fmnist", "data/offline-mix"
        teacher, student, keep = plada.TeacherConfig(), plada.StudentConfig(), "1%"
    work = args.workdir

    # server (paper §3)
    pack = plada.open_pack(pack_path)
    metrics = plada.train_teacher(target, work / "teacher", teacher)
    plada.export_teacher(work / "teacher", work / "teacher.onnx", input_size=pack.size)
    scores = plada.score(work / "teacher.onnx", pack, work / "scores")
    sel = plada.select(scores, plada.SelectionConfig(), keep=keep)
    print(
        f"teacher test accuracy {metrics['test_acc']:.3f}; selected {sel.k} images, "
        f"{sel.report()['classes_present']} of {sel.num_classes} classes"
    )
    payload, _, data = plada.make_payload(scores, work / "task.plada", keep=keep)
    print(f"payload: {len(data):,} bytes for {payload.k:,} of {payload.n:,} reference images")

    # device (paper §3.3): verify, gather, train, evaluate
    received = plada.read_payload(work / "task.plada")
    m = plada.learn(received, pack, work / "student", student, target=target)
    e = plada.evaluate(work / "student", target)
    print(
        f"student test accuracy {m['test_acc']:.3f} (onnxruntime {e['test_acc']:.3f}), "
        f"{m['ratio_to_teacher']:.2f} of the teacher"
    )


if __name__ == "__main__":
    main()
