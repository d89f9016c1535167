"""Shared fixtures: tiny image folders and arrays generated on the fly (no downloads)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def write_png(path: Path, rgb: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(rgb)
    if mode:
        img = img.convert(mode)
    img.save(path)


@pytest.fixture(autouse=True)
def own_trust_store(tmp_path, monkeypatch):
    """Every test gets its own device trust store (learn --trust writes to it), never the user's."""
    monkeypatch.setenv("PLADA_EDGE_TRUST_STORE", str(tmp_path / "trust-store.json"))
    return tmp_path / "trust-store.json"


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """A nested folder of 12 small images of mixed modes and sizes, plus a non-image file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    names = [
        "b/2.png",
        "a/10.png",
        "a/9.png",
        "c.png",
        "b/1.jpg",
        "a/sub/x.png",
        "z.png",
        "m.bmp",
        "a/0.png",
        "k.png",
        "b/3.png",
        "e.png",
    ]
    for i, name in enumerate(names):
        h, w = int(rng.integers(8, 60)), int(rng.integers(8, 60))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mode = ["RGB", "L", "P", "RGBA"][i % 4] if not name.endswith(".jpg") else "RGB"
        write_png(root / name, arr, mode)
    (root / "notes.txt").write_text("not an image")
    return root


def stripes(rng, n, kind, size=16):
    """Three easy classes: horizontal stripes, vertical stripes, a bright centre blob."""
    x = rng.integers(0, 60, (n, size, size)).astype(np.int64)
    if kind == 0:
        x[:, ::4, :] += 180
    elif kind == 1:
        x[:, :, ::4] += 180
    else:
        x[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += 180
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A whole tiny task: 3-class target, 500-image pack, trained teacher, its ONNX export."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from plada_edge.core.reference import build_pack
    from plada_edge.core.targets import Target, save_target
    from plada_edge.server.teacher import export_onnx, train_teacher

    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    xs = [stripes(rng, 60, k) for k in range(3)]
    xt = [stripes(rng, 20, k) for k in range(3)]
    target = Target(
        "stripes",
        np.concatenate(xs),
        np.repeat(np.arange(3), 60),
        np.concatenate(xt),
        np.repeat(np.arange(3), 20),
        ["h", "v", "blob"],
    )
    save_target(root / "stripes.npz", target)
    pool = np.concatenate(
        [stripes(rng, 40, k) for k in range(3)] + [rng.integers(0, 256, (380, 16, 16), dtype=np.uint8)]
    )
    np.save(root / "pool.npy", pool)
    pack = build_pack([str(root / "pool.npy")], root / "pack", size=16)
    metrics = train_teacher(
        root / "stripes.npz",
        root / "teacher",
        arch="tiny_cnn",
        epochs=4,
        size=16,
        batch_size=32,
        lr=3e-3,
        progress=False,
    )
    report = export_onnx(root / "teacher", root / "teacher.onnx", input_size=16)
    return {"root": root, "pack": pack, "metrics": metrics, "export": report, "target": target}


class Interrupted(BaseException):
    """Stands in for Ctrl-C or a kill between two steps of a long run (nothing catches it)."""


def interrupt_after(monkeypatch, owner, name: str, calls: int) -> None:
    """Let ``owner.name`` run ``calls`` times, then raise Interrupted instead of the next call.

    Long steps write one unit of progress per call (a chunk, a checkpoint), so this stops a run
    after exactly ``calls`` units, as a kill at that moment would.
    """
    real = getattr(owner, name)
    done = {"calls": 0}

    def wrapper(*args, **kwargs):
        if done["calls"] >= calls:
            raise Interrupted(f"{name} stopped after {calls} calls")
        done["calls"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def sigkill_when(code: str, ready, timeout: float = 60.0) -> None:
    """Run ``code`` in a fresh Python, wait until ``ready()`` is true, then SIGKILL it mid-run.

    Fails the test if the child finished before it could be killed (the kill must land mid-run).
    """
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.005)
    time.sleep(0.05)
    assert proc.poll() is None, "the child finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
