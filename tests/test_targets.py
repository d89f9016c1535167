"""Target tasks: .npz and ImageFolder loading, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_png

from plada_edge.core.errors import TargetError
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


def test_held_out_folds_are_disjoint_whole_groups_that_cover_a_small_target():
    """A small target holds out fold after fold (each with a blind teacher of its own): together every training
    image once, fold 0 the holdout a teacher records, each fold whole icons and its share of each class."""
    from plada_edge.core.config import HOLDOUT_FOLDS

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(2), 40)
    groups = np.arange(80) // 4
    x = rng.integers(0, 256, (80, 8, 8), dtype=np.uint8)
    grouped = Target("icons", x, y, x[:4], y[:4], ["a", "b"], groups)
    folds = grouped.holdout_folds()
    assert len(folds) == HOLDOUT_FOLDS and np.array_equal(folds[0], grouped.holdout())
    assert sorted(np.concatenate(folds).tolist()) == list(range(80))  # disjoint, and every image once
    for i, fold in enumerate(folds):
        np.testing.assert_array_equal(grouped.holdout(i), fold)
        assert np.bincount(y[fold], minlength=2).tolist() == [8, 8]
        assert all(set(np.flatnonzero(groups == g)) <= set(fold.tolist()) for g in np.unique(groups[fold]))
    with pytest.raises(TargetError, match="holds out 5 folds, not fold 5"):
        grouped.holdout(5)
    big = np.repeat(np.arange(2), 2500)  # HOLDOUT_MAX images in one fold already: no second
    xb = np.zeros((5000, 2, 2), np.uint8)
    assert [len(f) for f in Target("big", xb, big, xb[:2], big[:2], ["a", "b"]).holdout_folds()] == [1000]
