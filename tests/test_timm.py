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


def _fake_hf_cache(root, repo: str, model) -> None:
    snap = root / f"models--timm--{repo}" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    safetensors_torch.save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "model.safetensors")
    )


def test_hf_cache_names_match_whole_and_misfit_checkpoints_are_refused(tmp_path, monkeypatch):
    from plada_edge.core.models import pretrained_weights

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("PLADA_EDGE_WEIGHTS", str(tmp_path / "none"))
    assert pretrained_weights("timm:resnet18") is None
    _fake_hf_cache(tmp_path / "hub", "resnet18d.ra2_in1k", create_model("timm:resnet18d", 1000))
    assert pretrained_weights("timm:resnet18") is None  # resnet18d's checkpoint is not resnet18's
    source = create_model("timm:resnet18", 1000)
    _fake_hf_cache(tmp_path / "hub", "resnet18.a1_in1k", source)
    r18, r18d = pretrained_weights("timm:resnet18"), pretrained_weights("timm:resnet18d")
    assert "models--timm--resnet18.a1_in1k" in r18 and "models--timm--resnet18d.ra2_in1k" in r18d
    assert pretrained_weights("timm:resnet18.a1_in1k") == r18  # a tagged name finds its own repository
    assert pretrained_weights("timm:resnet18.a2_in1k") is None

    model = create_model("timm:resnet18.a1_in1k", 4, "imagenet")  # tagged names build, weights from the cache
    assert torch.equal(model.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])
    with pytest.raises(ModelError, match=r"does not fit this ResNet: 13 of its tensors are missing \(conv1.weight"):
        create_model("timm:resnet18", 4, r18d)  # resnet18d's deep stem is not resnet18's
    with pytest.raises(ModelError, match="knows no weights tagged 'bogus'"):
        create_model("timm:resnet18.bogus", 4)


def test_loading_reports_what_it_skipped_and_ignored(tmp_path, caplog):
    from plada_edge.core.models import load_weights

    source = create_model("timm:resnet10t", 1000)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # as DataParallel saves it
    state["module.extra.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    model = create_model("timm:resnet10t", 3)
    with caplog.at_level("WARNING", logger="plada_edge"):
        r = load_weights(model, tmp_path / "w.pth")
    assert r["head_skipped"] == ["fc.bias", "fc.weight"] and r["ignored"] == ["extra.weight"]
    assert "1 tensors the model does not have were ignored (extra.weight)" in caplog.text
    del state["module.conv1.0.weight"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(ModelError, match=r"1 of its tensors are missing \(conv1.0.weight\)"):
        load_weights(model, tmp_path / "w.pth")
    torch.save({"epoch": 3}, tmp_path / "w.pth")
    with pytest.raises(ModelError, match="holds no state_dict"):
        load_weights(model, tmp_path / "w.pth")
