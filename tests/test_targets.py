"""Target tasks: .npz and ImageFolder loading, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_png

from plada_edge.core.targets import Target, load_target, save_target


def test_npz_roundtrip_and_lookup_by_name(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    t = Target(
        "tiny",
        rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        np.array([0, 1, 2, 0, 1, 2]),
        rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
        np.array([2, 1, 0]),
        ["x", "y", "z"],
    )
    save_target(tmp_path / "targets" / "tiny.npz", t)
    monkeypatch.setenv("PLADA_EDGE_DATA", str(tmp_path))
    back = load_target("tiny")
    np.testing.assert_array_equal(back.x_train, t.x_train)
    assert back.class_names == ["x", "y", "z"] and back.native_size == 8 and back.channels == 1
    with pytest.raises(FileNotFoundError, match="build_offline_data"):
        load_target("missing")


def test_named_targets_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    import plada_edge
    from plada_edge.core.targets import data_dir

    monkeypatch.delenv("PLADA_EDGE_DATA", raising=False)
    checkout = data_dir()
    monkeypatch.chdir(tmp_path)
    assert data_dir() == checkout == Path(plada_edge.__file__).resolve().parents[1] / "data"
    monkeypatch.setenv("PLADA_EDGE_DATA", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"


def test_image_folder(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                write_png(tmp_path / "pets" / split / c / f"{i}.png", rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    t = load_target(tmp_path / "pets")
    assert t.class_names == ["cat", "dog"] and len(t.y_train) == 6 and t.x_test.shape == (4, 10, 10, 3)


def test_bad_targets_are_refused():
    x = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="labels"):
        Target("bad", x, np.array([0, 5]), x, np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="uint8"):
        Target("bad", x.astype(np.float32), np.array([0, 1]), x, np.array([0, 1]), ["a", "b"])


def test_the_holdout_is_drawn_as_the_test_split_was(tmp_path):
    """Whole groups (an icon's every size) when the target records them; single images otherwise."""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(2), 40)
    groups = np.arange(80) // 4  # twenty "icons" of four sizes, ten per class
    x = rng.integers(0, 256, (80, 8, 8), dtype=np.uint8)
    grouped = Target("icons", x, y, x[:4], y[:4], ["a", "b"], groups)
    held = grouped.holdout()
    assert len(held) == 16 and len(np.unique(groups[held])) == 4  # four whole icons
    for g in np.unique(groups[held]):  # every held-out icon is held out at every size
        assert set(np.flatnonzero(groups == g)) <= set(held.tolist())
    assert np.bincount(y[held]).tolist() == [8, 8]  # HOLDOUT_SHARE of each class
    plain = Target("plain", x, y, x[:4], y[:4], ["a", "b"])
    assert len(plain.holdout()) == 16 and not np.array_equal(plain.holdout(), held)
    save_target(tmp_path / "icons.npz", grouped)
    back = load_target(tmp_path / "icons.npz")
    np.testing.assert_array_equal(back.groups, groups)
    np.testing.assert_array_equal(back.holdout(), held)
    assert back.sha256() != plain.sha256()  # other groups, another holdout: a teacher trained under them is another
    with pytest.raises(ValueError, match="groups_train must be one whole-number id per training image"):
        Target("bad", x, y, x[:4], y[:4], ["a", "b"], groups[:10])
