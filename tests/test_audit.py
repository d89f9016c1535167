"""Leakage audit: planted exact and near duplicates are found, clean packs report zero."""

from __future__ import annotations

import numpy as np
import pytest

from plada_edge.core.reference import build_pack
from plada_edge.core.targets import Target, save_target
from plada_edge.server.audit import audit_leakage

pytest.importorskip("faiss")


def _target(rng, n_train=60, n_test=40):
    # smooth random blobs: distinct images that are not trivially similar
    def imgs(n):
        base = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
        return np.kron(base, np.ones((1, 7, 7), np.uint8))  # 28x28 gray

    return Target(
        "t", imgs(n_train), rng.integers(0, 3, n_train), imgs(n_test), rng.integers(0, 3, n_test), ["a", "b", "c"]
    )


def test_planted_duplicates_are_found_and_clean_pool_is_clean(tmp_path):
    rng = np.random.default_rng(0)
    target = _target(rng)
    noise = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "noise.npy", noise)
    clean = build_pack([str(tmp_path / "noise.npy")], tmp_path / "clean", size=32)
    report = audit_leakage(target, clean, progress=False)
    assert report["exact"]["train"] == report["exact"]["test"] == 0
    assert report["near"]["train"] == report["near"]["test"] == 0

    exact_copies = target.x_test[[3, 7, 11]]
    retoned = np.clip(target.x_test[[20, 21]].astype(int) + 2, 0, 255).astype(np.uint8)  # not exact: +2 levels
    train_copy = target.x_train[[5]]
    planted = np.concatenate([noise[:100], exact_copies, noise[100:200], retoned, train_copy, noise[200:]])
    np.save(tmp_path / "planted.npy", planted)
    leaky = build_pack([str(tmp_path / "planted.npy")], tmp_path / "leaky", size=32)
    report = audit_leakage(target, leaky, progress=False)
    assert report["exact"]["test"] == 3 and report["exact"]["train"] == 1
    assert report["near"]["test"] == 5 and report["near"]["train"] == 1
    assert {e["pack_index"] for e in report["exact"]["examples"]} >= {100, 101, 102}


def test_cli_audit(tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    rng = np.random.default_rng(1)
    target = _target(rng, 10, 10)
    save_target(tmp_path / "t.npz", target)
    np.save(tmp_path / "p.npy", np.concatenate([target.x_test[:2], rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)]))
    build_pack([str(tmp_path / "p.npy")], tmp_path / "pack", size=32)
    r = CliRunner().invoke(
        app, ["audit", "--target", str(tmp_path / "t.npz"), "--reference", str(tmp_path / "pack"), "--json"]
    )
    assert r.exit_code == 0, r.output
    import json

    assert json.loads(r.output)["exact"]["test"] == 2
