"""The server pipeline end to end on tiny data: train → export → score → select."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import Interrupted, interrupt_after, sigkill_when

from plada_edge.core.config import FRAME
from plada_edge.core.reference import build_pack
from plada_edge.server import scoring
from plada_edge.server.scoring import Scores, ScoresError, score_pack
from plada_edge.server.selection import select
from plada_edge.server.teacher import onnx_metadata


def test_teacher_learns_and_exports_faithfully(tiny):
    assert tiny["metrics"]["test_acc"] > 0.9  # an easy task: the loop must actually learn
    assert tiny["export"]["max_abs_logit_diff"] <= 1e-4
    meta = onnx_metadata(tiny["root"] / "teacher.onnx")
    assert meta["class_names"] == ["h", "v", "blob"] and meta["input_size"] == 16
    assert meta["outputs"] == ["logits", "features", "distance"]
    assert meta["view"]["gray"] and meta["view"]["frame"] == FRAME["gray"] == "ink"  # grayscale: framed by its ink
    assert (
        json.loads((tiny["root"] / "teacher" / "metrics.json").read_text())["test_acc"] == tiny["metrics"]["test_acc"]
    )


def test_score_and_select(tiny):
    sc = score_pack(
        tiny["root"] / "teacher.onnx", tiny["pack"], tiny["root"] / "scores", batch_size=32, chunk=64, progress=False
    )
    assert sc.n == 500 and not np.asarray(sc.flags).any()
    # the 120 in-domain pool images (indices 0..119) should score lower energy than noise
    e = np.asarray(sc.energy)
    assert np.median(e[:120]) < np.median(e[120:])
    sel = select(sc, strategy="energy", count=60, safety_net=True, alpha=0.0, share=1.0)
    assert sel.k == 60 and np.all(np.diff(sel.indices) > 0)
    assert (sel.histogram == 20).all()  # equal quotas over 3 classes
    lab = np.asarray(sc.label)
    assert (sel.labels == lab[sel.indices]).all()
    for c in range(3):  # each quota holds that class's 20 lowest energies
        members = np.flatnonzero(lab == c)
        np.testing.assert_array_equal(
            np.sort(members[np.argsort(e[members], kind="stable")[:20]]), sel.indices[sel.labels == c]
        )
    vanilla = select(sc, strategy="energy", keep="10%", safety_net=False)
    assert vanilla.k == 50
    np.testing.assert_array_equal(vanilla.indices, np.sort(np.argsort(e, kind="stable")[:50]))
    opposite = select(sc, strategy="opposite", count=50, safety_net=False)
    assert set(opposite.indices).isdisjoint(vanilla.indices)
    assert select(sc, strategy="random", count=50, seed=1).k == 50


def test_scores_refuse_another_pack(tiny, tmp_path):
    np.save(tmp_path / "other.npy", np.zeros((10, 16, 16), np.uint8))
    other = build_pack([str(tmp_path / "other.npy")], tmp_path / "other", size=16)
    score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "s", batch_size=32, chunk=64, progress=False)
    with pytest.raises(ScoresError, match="not on"):
        Scores.open(tmp_path / "s", other)
    with pytest.raises(ScoresError, match="another pack"):
        score_pack(tiny["root"] / "teacher.onnx", other, tmp_path / "s", batch_size=32, chunk=64, progress=False)


def test_interrupted_scoring_resumes_to_identical_output(tiny, tmp_path, monkeypatch):
    onnx = tiny["root"] / "teacher.onnx"
    full = score_pack(onnx, tiny["pack"], tmp_path / "full", batch_size=32, chunk=64, progress=False)
    with monkeypatch.context() as m:
        interrupt_after(m, scoring, "write_chunk", 3)
        with pytest.raises(Interrupted):
            score_pack(onnx, tiny["pack"], tmp_path / "cut", batch_size=32, chunk=64, progress=False)
    with pytest.raises(ScoresError, match="did not finish"):
        Scores.open(tmp_path / "cut")
    assert len(list((tmp_path / "cut" / "chunks").glob("*.npz"))) == 3
    resumed = score_pack(onnx, tiny["pack"], tmp_path / "cut", batch_size=32, chunk=64, progress=False)
    for f in ("energy", "label", "entropy", "flags"):
        np.testing.assert_array_equal(getattr(resumed, f), getattr(full, f))


def test_kill9_during_scoring_then_rerun(tiny, tmp_path):
    onnx, pack = tiny["root"] / "teacher.onnx", tiny["pack"].path
    # every chunk is slowed down, so the kill always lands while scoring is running
    code = (
        "import time; import plada_edge.server.scoring as s; real = s.score_chunk;"
        "s.score_chunk = lambda *a, **k: (time.sleep(0.2), real(*a, **k))[1];"
        f"s.score_pack({str(onnx)!r}, {str(pack)!r}, {str(tmp_path / 'k')!r}, batch_size=32, chunk=32, progress=False)"
    )
    sigkill_when(code, lambda: len(list((tmp_path / "k" / "chunks").glob("*.npz"))) >= 2)
    full = score_pack(onnx, tiny["pack"], tmp_path / "ref", batch_size=32, chunk=32, progress=False)
    resumed = score_pack(onnx, tiny["pack"], tmp_path / "k", batch_size=32, chunk=32, progress=False)
    for f in ("energy", "label", "entropy", "flags"):
        np.testing.assert_array_equal(getattr(resumed, f), getattr(full, f))


def test_cli_pipeline(tiny, tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    r = CliRunner()
    out = r.invoke(
        app,
        [
            "score",
            "--teacher",
            str(tiny["root"] / "teacher.onnx"),
            "--reference",
            str(tiny["pack"].path),
            "--out",
            str(tmp_path / "sc"),
            "--batch-size",
            "32",
            "--chunk",
            "64",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(
        app,
        [
            "select",
            str(tmp_path / "sc"),
            "--keep",
            "2%",
            "--reference",
            str(tiny["pack"].path),
            "--out",
            str(tmp_path / "sel.npz"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert rep["k"] == 10 and sum(rep["label_histogram"].values()) == 10 and sum(rep["sources"].values()) == 10
    with np.load(tmp_path / "sel.npz") as z:
        assert len(z["indices"]) == 10
    out = r.invoke(app, ["select", str(tmp_path / "sc"), "--keep", "2%", "--count", "3"])
    assert out.exit_code == 2 and "exactly one" in out.output
    # the teacher recorded its target's class counts, so quotas=target needs nothing more
    out = r.invoke(
        app, ["select", str(tmp_path / "sc"), "--keep", "2%", "--quotas", "target", "--strategy", "energy", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["safety_net"]["quotas"] == "target"
    assert json.loads(out.output)["safety_net"]["target_power"] == 1.0  # auto, in energy order: the proportions
    out = r.invoke(app, ["select", str(tmp_path / "sc"), "--keep", "2%", "--quotas", "target", "--target-power", "0.5"])
    assert out.exit_code == 0 and "quotas=target (power 0.5)" in out.output, out.output
    out = r.invoke(app, ["select", str(tmp_path / "sc"), "--keep", "2%", "--target-power", "2"])
    assert out.exit_code == 2 and "target_power must be 'auto' or in [0, 1]" in out.output
    out = r.invoke(app, ["select", str(tmp_path / "sc"), "--keep", "2%", "--quotas", "prior"])
    assert out.exit_code == 2 and "'prior' is not one of 'auto', 'target', 'pool'" in out.output
