"""timm architectures as teachers and students, with weights from a local .safetensors file."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

from plada_edge.core.errors import ModelError  # noqa: E402
from plada_edge.core.models import create_model, describe_models  # noqa: E402
from plada_edge.server.teacher import export_onnx, train_teacher  # noqa: E402


def test_timm_model_with_local_safetensors_weights_trains_and_exports(tiny, tmp_path):
    source = create_model("timm:resnet10t", 1000)
    safetensors_torch.save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors")
    )
    model = create_model("timm:resnet10t", 3, tmp_path / "w.safetensors")
    key = "conv1.0.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])  # the backbone came from the file
    assert model.state_dict()["fc.weight"].shape == (3, 512)  # the head was resized, not loaded
    m = train_teacher(
        tiny["root"] / "stripes.npz",
        tmp_path / "t",
        arch="timm:resnet10t",
        size=16,
        epochs=1,
        batch_size=32,
        weights=str(tmp_path / "w.safetensors"),
        progress=False,
    )
    assert m["arch"] == "timm:resnet10t"
    r = export_onnx(tmp_path / "t", tmp_path / "t.onnx", input_size=16)
    assert r["max_abs_logit_diff"] <= 1e-4


def test_timm_errors_are_clear(tmp_path):
    with pytest.raises(ModelError, match="timm has no model"):
        create_model("timm:not_a_model", 3)
    with pytest.raises(ModelError, match="no ImageNet weights installed for timm:resnet10t"):
        create_model("timm:resnet10t", 3, "imagenet")
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a readable weights file"):
        create_model("timm:resnet10t", 3, tmp_path / "bad.safetensors")
    assert "timm:NAME" in describe_models()
