"""PLADA end to end through the public Python API (the README's quick example).

    .venv/bin/python examples/quickstart.py runs/quickstart     # offline-mix + fmnist (tools/build_offline_data.py)
    .venv/bin/python examples/quickstart.py runs/tiny --tiny    # a synthetic 3-class task, seconds on a laptop

Everything it writes goes under DIR. Server: train a teacher on the target, export it to ONNX, score
every reference image by energy, select 1 % with the Safety-Net, write the payload. Device: check the
payload against its own pack, train a student on the named images alone, evaluate it, and classify
a few images with it. Only names from ``plada_edge`` itself are used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import plada_edge as plada


def tiny_task(root: Path) -> tuple[Path, Path]:
    """A 3-class target as users have one (an ImageFolder of 16 px PNGs) and a 600-image pool holding some of each."""
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

    folder = root / "stripes"
    for split, n in (("train", 60), ("test", 20)):
        for kind, name in enumerate(["h", "v", "blob"]):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(images(kind, n)):
                Image.fromarray(img).save(folder / split / name / f"{i:03d}.png")
    pool = np.concatenate([images(k, 40) for k in range(3)] + [rng.integers(0, 256, (480, 16, 16), dtype=np.uint8)])
    np.save(root / "pool.npy", pool)
    if not (root / "pack").exists():
        plada.build_pack([str(root / "pool.npy")], root / "pack", size=16)
    return folder, root / "pack"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="where everything goes (the tiny task's data too)")
    ap.add_argument("--tiny", action="store_true", help="build and use a synthetic task in DIR")
    args = ap.parse_args()
    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)

    if args.tiny:
        folder, pack_path = tiny_task(work)
        target = plada.load_target(folder, size=16)  # the same Target object serves both sides
        teacher = plada.TeacherConfig.from_options(arch="tiny_cnn", size=16, epochs=4, batch_size=32, lr=3e-3)
        student = plada.StudentConfig.from_options(arch="tiny_cnn", epochs=6, batch_size=32, lr=3e-3)
        keep = "10%"
    else:
        target, pack_path = plada.load_target("fmnist"), "data/offline-mix"
        teacher, student, keep = plada.TeacherConfig(), plada.StudentConfig(), "1%"

    # server (paper §3)
    pack = plada.open_pack(pack_path)
    metrics = plada.train_teacher(target, work / "teacher", teacher)
    plada.export_teacher(work / "teacher", work / "teacher.onnx", input_size=pack.size)
    scores = plada.score(work / "teacher.onnx", pack, work / "scores")
    sel = plada.select(scores, plada.SelectionConfig(), keep=keep)
    print(f"teacher test accuracy {metrics.test_acc:.3f}; {sel!r}")
    made = plada.make_payload(scores, work / "task.plada", keep=keep)
    print(f"payload: {made!r}")

    # device (paper §3.3): verify, gather, train, evaluate, use
    received = plada.read_payload(work / "task.plada")
    m = plada.learn(received, pack, work / "student", student, target=target)
    e = plada.evaluate(work / "student", target)
    ratio = m.ratio_to_teacher
    print(f"student test accuracy {m.test_acc:.3f} (onnxruntime {e.test_acc:.3f}), {ratio:.2f} of the teacher")
    predictions = plada.load_student(work / "student").predict(target.x_test[:3], top=2)
    print(predictions)


if __name__ == "__main__":
    main()
