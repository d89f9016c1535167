"""Shared fixtures: tiny image folders and arrays generated on the fly (no downloads)."""

from __future__ import annotations

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


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """A nested folder of 12 small images of mixed modes and sizes, plus a non-image file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    names = ["b/2.png", "a/10.png", "a/9.png", "c.png", "b/1.jpg", "a/sub/x.png",
             "z.png", "m.bmp", "a/0.png", "k.png", "b/3.png", "e.png"]
    for i, name in enumerate(names):
        h, w = int(rng.integers(8, 60)), int(rng.integers(8, 60))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mode = ["RGB", "L", "P", "RGBA"][i % 4] if not name.endswith(".jpg") else "RGB"
        write_png(root / name, arr, mode)
    (root / "notes.txt").write_text("not an image")
    return root
