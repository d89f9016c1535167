"""teacher export --int8: a static QDQ teacher that scores like the fp32 one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.server.scoring import score_pack
from plada_edge.server.selection import select
from plada_edge.server.teacher import export_int8, onnx_metadata


def test_int8_teacher_scores_like_fp32(tiny, tmp_path):
    r = export_int8(tiny["root"] / "teacher", tmp_path / "t8.onnx", tiny["target"], input_size=16)
    assert r["argmax_agreement"] >= 0.95 and r["calibration_images"] == len(tiny["target"].y_train)
    meta = onnx_metadata(tmp_path / "t8.onnx")
    assert meta["class_names"] == ["h", "v", "blob"] and meta["input_size"] == 16
    s8 = score_pack(tmp_path / "t8.onnx", tiny["pack"], tmp_path / "s8", batch_size=32, chunk=64, progress=False)
    s32 = score_pack(tmp_path / "t8.fp32.onnx", tiny["pack"], tmp_path / "s32", batch_size=32, chunk=64, progress=False)
    # a 4-epoch toy teacher: the mechanics, not the fidelity (benchmarks/int8.py measures that on a real one)
    assert np.corrcoef(np.asarray(s8.energy), np.asarray(s32.energy))[0, 1] > 0.8
    assert select(s8, count=50).k == 50


def test_int8_needs_calibration_images(tiny, tmp_path):
    r = CliRunner().invoke(
        app,
        [
            "teacher",
            "export",
            str(tiny["root"] / "teacher"),
            "-o",
            str(tmp_path / "t.onnx"),
            "--input-size",
            "16",
            "--int8",
        ],
    )
    assert r.exit_code == 2 and "--target" in r.output and not (tmp_path / "t.onnx").exists()
