"""score --engine torch: the teacher's graph run by torch, held to the ONNX path (plada_edge.server.engines)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from plada_edge.core.config import ScoreConfig  # noqa: E402
from plada_edge.core.errors import ConfigError  # noqa: E402
from plada_edge.server import engines, torch_scoring  # noqa: E402
from plada_edge.server.scoring import score_pack  # noqa: E402
from plada_edge.server.selection import select  # noqa: E402
from plada_edge.server.teacher import onnx_metadata  # noqa: E402


@pytest.fixture(scope="module")
def both(tiny, tmp_path_factory):
    """The tiny teacher's scores through onnxruntime and through torch (CPU, fp32)."""
    root = tmp_path_factory.mktemp("engines")
    onnx = tiny["root"] / "teacher.onnx"
    ort = score_pack(onnx, tiny["pack"], root / "ort", chunk=128, batch_size=64, progress=False)
    tch = score_pack(
        onnx, tiny["pack"], root / "torch", chunk=128, batch_size=64, engine="torch", device="cpu", progress=False
    )
    return ort, tch


def test_torch_engine_matches_onnxruntime(both):
    ort, tch = both
    assert tch.meta["engine"]["engine"] == "torch" and ort.meta["engine"]["engine"] == "onnxruntime"
    np.testing.assert_array_equal(tch.flags, ort.flags)
    e_ort, e_tch = np.asarray(ort.energy, np.float64), np.asarray(tch.energy, np.float64)
    assert np.abs(e_tch - e_ort).max() <= 1e-4 * max(1.0, np.abs(e_ort).max())
    assert (np.asarray(tch.label) == np.asarray(ort.label)).mean() >= 0.999
    np.testing.assert_allclose(tch.entropy, ort.entropy, atol=1e-4)
    assert ort.distance is not None and tch.distance is not None  # the tiny teacher keeps anchors
    np.testing.assert_allclose(tch.distance, ort.distance, atol=1e-5)


@pytest.mark.parametrize("keep", ["1%", "5%", "20%"])
def test_torch_engine_gives_the_default_selection(both, keep):
    ort, tch = both
    sel = select(ort, keep=keep)
    a, b = set(sel.indices.tolist()), set(select(tch, keep=keep).indices.tolist())
    assert len(a & b) / len(a | b) >= 0.98
    # the tiny pool holds copies of the target's images, so distances tie near 0 at float rounding;
    # an image may trade places only with one whose score is the same to within that rounding
    rank = np.asarray(ort.distance if sel.strategy == "nearest" else ort.energy, np.float64)
    for i in a - b:
        assert min(abs(rank[i] - rank[j]) for j in b - a) <= 1e-6


def test_a_chunk_scored_by_one_engine_resumes_under_the_other(tiny, tmp_path, both):
    import plada_edge.server.scoring as scoring
    from tests.conftest import Interrupted, interrupt_after

    onnx = tiny["root"] / "teacher.onnx"
    out = tmp_path / "mixed"
    with pytest.MonkeyPatch.context() as mp:
        interrupt_after(mp, scoring, "write_chunk", 2)
        with pytest.raises(Interrupted):
            score_pack(onnx, tiny["pack"], out, chunk=128, batch_size=64, progress=False)
    mixed = score_pack(onnx, tiny["pack"], out, chunk=128, batch_size=64, engine="torch", device="cpu", progress=False)
    np.testing.assert_allclose(mixed.energy, both[0].energy, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(mixed.energy)[:256], np.asarray(both[0].energy)[:256])


def _gpu_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(engines, "gpu_providers", lambda: [])  # the CPU-only onnxruntime wheel


def test_device_cuda_without_a_cuda_provider_plans_the_torch_engine_and_says_why(tiny, monkeypatch):
    _gpu_visible(monkeypatch)
    onnx = tiny["root"] / "teacher.onnx"
    plan = engines.plan_engine(onnx, onnx_metadata(onnx), ScoreConfig(device="cuda"))
    assert plan.engine == "torch" and plan.device == "cuda:0"
    assert plan.checkpoint == tiny["root"] / "teacher" / "teacher.pt"
    assert "no CUDA provider" in plan.reason and "torch engine on cuda:0" in plan.reason
    auto = engines.plan_engine(onnx, onnx_metadata(onnx), ScoreConfig())
    assert auto.engine == "torch" and auto.device == "cuda:0"  # a GPU server scores on its GPU by default


def test_device_cuda_never_falls_back_to_a_silent_cpu_run(tiny, tmp_path, monkeypatch, caplog):
    _gpu_visible(monkeypatch)
    lone = tmp_path / "lone.onnx"  # an export whose checkpoint is nowhere near it
    shutil.copy(tiny["root"] / "teacher.onnx", lone)
    with pytest.raises(ConfigError, match="--device cuda: onnxruntime here has no CUDA provider.*--checkpoint"):
        engines.plan_engine(lone, onnx_metadata(lone), ScoreConfig(device="cuda"))
    with caplog.at_level(logging.WARNING, logger="plada_edge"):  # auto: the CPU, but not in silence
        plan = engines.plan_engine(lone, onnx_metadata(lone), ScoreConfig())
    assert plan.engine == "onnxruntime" and "scoring on the CPU; pass --checkpoint" in caplog.text
    given = engines.plan_engine(
        lone, onnx_metadata(lone), ScoreConfig(device="cuda", checkpoint=str(tiny["root"] / "teacher"))
    )
    assert given.engine == "torch"


def test_a_checkpoint_that_is_not_the_graphs_is_refused(tiny, tmp_path):
    onnx = tiny["root"] / "teacher.onnx"
    other = tmp_path / "teacher.pt"
    other.write_bytes((tiny["root"] / "teacher" / "teacher.pt").read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="not the checkpoint teacher.onnx was exported from"):
        torch_scoring.find_checkpoint(onnx, onnx_metadata(onnx), other)


def test_cli_says_which_engine_scores(tiny, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    _gpu_visible(monkeypatch)
    real = torch_scoring.TorchRunner.__init__
    seen = {}

    def on_cpu(self, checkpoint, meta, input_size, device, precision="fp32", threads=0):
        seen["device"] = device  # the plan's GPU; run here on the CPU, as no GPU is present
        real(self, checkpoint, meta, input_size, "cpu", precision, threads)

    monkeypatch.setattr(torch_scoring.TorchRunner, "__init__", on_cpu)
    r = CliRunner().invoke(
        app,
        [
            "score",
            "--teacher",
            str(tiny["root"] / "teacher.onnx"),
            "-r",
            str(tiny["pack"].path),
            "-o",
            str(tmp_path / "s"),
            "--device",
            "cuda",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert seen["device"] == "cuda:0"
    assert "note: onnxruntime here has no CUDA provider" in r.stderr
    assert r.stdout.lstrip().startswith("{")  # results on stdout, notes on stderr


@pytest.mark.parametrize(
    "options, message",
    [
        ({"engine": "torch", "precision": "bf16", "device": "cpu"}, "bf16 needs a CUDA device"),
        ({"engine": "gpu"}, "engine must be one of local, torch, ray"),
        ({"precision": "int4"}, "precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_engine_options_are_one_line(tiny, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "s", progress=False, **options)
