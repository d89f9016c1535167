"""The contact sheet's energy histogram marks a cut only where the selection was made in energy order."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("strategy, cut", [("energy", True), ("nearest", False), ("random", False)])
def test_energy_cut_is_drawn_for_energy_order_only(tiny, tmp_path, monkeypatch, strategy, cut):
    import numpy as np

    from plada_edge.core import sheets
    from plada_edge.core.payload import read_payload
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import score_pack

    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    make_payload(scores, tmp_path / "t.plada", count=30, strategy=strategy)
    seen = {}
    real = sheets.energy_histogram

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sheets, "energy_histogram", spy)
    png = sheets.payload_sheet(read_payload(tmp_path / "t.plada"), tiny["pack"], np.asarray(scores.energy))
    assert png.startswith(b"\x89PNG") and seen["cut"] is cut
    assert ("no energy cut" in seen["title"]) is (not cut)
