"""Targets as users have them: ImageFolders of mixed sizes and modes, one folder + --test-split, CSV, HF layout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_png
from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.core.errors import TargetError
from plada_edge.core.targets import load_target, stratified_split


def _class_images(root, classes=("cat", "dog", "owl"), per=10, modes=("RGB", "L", "RGBA", "P"), seed=0):
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        for i in range(per):
            h, w = int(rng.integers(12, 70)), int(rng.integers(12, 70))  # every size differs
            arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            arr[..., k % 3] += 150  # class = dominant colour channel
            write_png(root / c / f"{i}.png", arr, modes[i % len(modes)])


def test_imagefolder_with_mixed_sizes_and_modes(tmp_path):
    _class_images(tmp_path / "t" / "train")
    _class_images(tmp_path / "t" / "test", per=4, seed=1)
    t = load_target(tmp_path / "t")
    assert t.x_train.shape == (30, 32, 32, 3) and t.x_test.shape == (12, 32, 32, 3)
    assert t.class_names == ["cat", "dog", "owl"] and np.bincount(t.y_test).tolist() == [4, 4, 4]
    assert load_target(tmp_path / "t", size=48).native_size == 48


def test_huggingface_layout_uses_validation_as_test(tmp_path):
    _class_images(tmp_path / "hf" / "train")
    _class_images(tmp_path / "hf" / "validation", per=3, seed=2)
    t = load_target(tmp_path / "hf")
    assert len(t.y_test) == 9


def test_one_folder_needs_and_gets_a_stratified_seeded_split(tmp_path):
    _class_images(tmp_path / "one", per=10)
    with pytest.raises(TargetError, match="--test-split"):
        load_target(tmp_path / "one")
    a = load_target(tmp_path / "one", test_split=0.2)
    b = load_target(tmp_path / "one", test_split=0.2)
    assert np.bincount(a.y_test).tolist() == [2, 2, 2] and np.bincount(a.y_train).tolist() == [8, 8, 8]
    np.testing.assert_array_equal(a.x_test, b.x_test)  # seeded: the same split every time
    held = stratified_split(np.repeat(np.arange(3), [5, 1, 2]), 0.2)
    assert held.sum() == 1 + 0 + 1  # a class of one keeps its image for training
    with pytest.raises(TargetError, match="share"):
        load_target(tmp_path / "one", test_split=1.5)


def test_grayscale_folders_stay_grayscale(tmp_path):
    _class_images(tmp_path / "g", per=4, modes=("L",))
    t = load_target(tmp_path / "g", test_split=0.25)
    assert t.x_train.ndim == 3 and t.channels == 1


def test_csv_manifest(tmp_path):
    _class_images(tmp_path / "imgs", classes=("2", "10"), per=5)
    lines = ["path,label,split"] + [
        f"imgs/{c}/{i}.png,{c},{'test' if i == 0 else 'train'}" for c in ("2", "10") for i in range(5)
    ]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    t = load_target(tmp_path / "m.csv")
    assert t.class_names == ["2", "10"] and len(t.y_test) == 2  # whole-number labels keep their order
    (tmp_path / "nosplit.csv").write_text(
        "path,label\n" + "\n".join(f"imgs/{c}/{i}.png,{c}" for c in ("2", "10") for i in range(5)) + "\n"
    )
    assert len(load_target(tmp_path / "nosplit.csv", test_split=0.2).y_test) == 2
    for bad in ("1.5", "nan", ""):
        (tmp_path / "bad.csv").write_text(f"path,label\nimgs/2/0.png,{bad}\n")
        with pytest.raises(TargetError, match="not a class name"):
            load_target(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("imgs/2/0.png,2\n")
    with pytest.raises(TargetError, match="header"):
        load_target(tmp_path / "nohead.csv")


def test_bad_layouts_are_named(tmp_path):
    _class_images(tmp_path / "x" / "train", classes=("a", "b"), per=3)
    _class_images(tmp_path / "x" / "test", classes=("a", "c"), per=2)
    with pytest.raises(TargetError, match=r"\['c'\] have test images but no training images"):
        load_target(tmp_path / "x")
    (tmp_path / "y" / "train" / "a").mkdir(parents=True)
    (tmp_path / "y" / "test" / "a").mkdir(parents=True)
    with pytest.raises(TargetError, match="no images"):
        load_target(tmp_path / "y")
    (tmp_path / "z" / "a").mkdir(parents=True)
    (tmp_path / "z" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    write_png(tmp_path / "z" / "a" / "good.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TargetError, match="at least two classes, found 1"):
        load_target(tmp_path / "z", test_split=0.5)
    (tmp_path / "z" / "b").mkdir()
    write_png(tmp_path / "z" / "b" / "good.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TargetError, match="not a readable image"):
        load_target(tmp_path / "z", test_split=0.5)


def test_folder_targets_train_end_to_end(tiny, tmp_path):
    _class_images(tmp_path / "one", per=10)
    r = CliRunner()
    out = r.invoke(
        app,
        [
            "teacher",
            "train",
            "-t",
            str(tmp_path / "one"),
            "--test-split",
            "0.2",
            "--arch",
            "tiny_cnn",
            "--epochs",
            "1",
            "--size",
            "32",
            "-o",
            str(tmp_path / "t1"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    _class_images(tmp_path / "mixed" / "train")
    _class_images(tmp_path / "mixed" / "test", per=3, seed=4)
    out = r.invoke(
        app,
        [
            "teacher",
            "train",
            "-t",
            str(tmp_path / "mixed"),
            "--arch",
            "tiny_cnn",
            "--epochs",
            "1",
            "--target-size",
            "16",
            "--size",
            "16",
            "-o",
            str(tmp_path / "t2"),
        ],
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(
        app, ["teacher", "export", str(tmp_path / "t2"), "-o", str(tmp_path / "t2.onnx"), "--input-size", "16"]
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(
        app,
        [
            "score",
            "--teacher",
            str(tmp_path / "t2.onnx"),
            "-r",
            str(tiny["pack"].path),
            "-o",
            str(tmp_path / "s"),
            "--batch-size",
            "32",
            "--chunk",
            "64",
        ],
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(app, ["pack", str(tmp_path / "s"), "--count", "30", "-o", str(tmp_path / "p.plada")])
    assert out.exit_code == 0, out.output
    out = r.invoke(
        app,
        [
            "learn",
            str(tmp_path / "p.plada"),
            "-r",
            str(tiny["pack"].path),
            "-o",
            str(tmp_path / "st"),
            "--arch",
            "tiny_cnn",
            "--epochs",
            "1",
            "--eval",
            str(tmp_path / "mixed"),
            "--target-size",
            "16",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
