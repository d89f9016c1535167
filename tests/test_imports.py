"""teacher import: a torchvision export and a hand-built graph with other conventions, through the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from plada_edge.cli import app  # noqa: E402
from plada_edge.core.errors import ModelError  # noqa: E402
from plada_edge.device.student import learn  # noqa: E402
from plada_edge.server.imports import import_onnx, teacher_test_accuracy  # noqa: E402
from plada_edge.server.packing import make_payload  # noqa: E402
from plada_edge.server.scoring import score_pack  # noqa: E402
from plada_edge.server.teacher import onnx_metadata  # noqa: E402


@pytest.fixture(scope="module")
def torchvision_onnx(tmp_path_factory):
    """A torchvision classifier as users export it: NCHW floats in 0-1, ImageNet mean/std, 64 px, logits."""
    import torchvision

    path = tmp_path_factory.mktemp("tv") / "resnet18.onnx"
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 64, 64),),
        str(path),
        input_names=["input"],
        output_names=["scores"],
        dynamic_axes={"input": {0: "b"}, "scores": {0: "b"}},
        dynamo=False,
    )
    return path


@pytest.fixture(scope="module")
def hand_onnx(tmp_path_factory):
    """Other conventions: NHWC floats in 0-255, no normalisation, 16 px, a softmax at the end, names in metadata."""
    path = tmp_path_factory.mktemp("hand") / "hand.onnx"
    w = np.random.default_rng(0).standard_normal((16 * 16 * 3, 3)).astype(np.float32) * 1e-3
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["p"], axis=1),
        ],
        "hand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 16, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "classes", json.dumps(["horizontal", "vertical", "blob"])
    onnx.save(model, str(path))
    return path


def test_torchvision_export_goes_through_score_pack_learn(torchvision_onnx, tiny, tmp_path):
    r = import_onnx(torchvision_onnx, tmp_path / "t.onnx", input_size=16)
    assert r["max_abs_logit_diff"] <= 1e-4 and r["layout"] == "nchw" and r["model_size"] == [64, 64]
    meta = onnx_metadata(tmp_path / "t.onnx")
    assert meta["class_names"] == ["class_0", "class_1", "class_2"] and meta["input_size"] == 16
    sc = score_pack(tmp_path / "t.onnx", tiny["pack"], tmp_path / "s", batch_size=32, chunk=64, progress=False)
    assert np.isfinite(np.asarray(sc.energy)).all()
    p, sel, _ = make_payload(sc, tmp_path / "p.plada", count=60)
    m = learn(tmp_path / "p.plada", tiny["pack"], tmp_path / "st", arch="tiny_cnn", epochs=1, progress=False)
    assert m["k"] == 60 and (tmp_path / "st" / "student.onnx").is_file()


def test_hand_built_graph_with_other_conventions(hand_onnx, tiny, tmp_path):
    r = import_onnx(hand_onnx, tmp_path / "h.onnx", input_size=16, scale=255, normalisation="none", probabilities=True)
    assert r["max_abs_logit_diff"] <= 1e-4 and r["layout"] == "nhwc" and r["class_names"][0] == "horizontal"
    assert "entropy" in r["warning"]
    acc = teacher_test_accuracy(tmp_path / "h.onnx", tiny["target"], record=True)
    assert onnx_metadata(tmp_path / "h.onnx")["test_acc"] == pytest.approx(acc)
    sc = score_pack(tmp_path / "h.onnx", tiny["pack"], tmp_path / "s", batch_size=32, chunk=64, progress=False)
    p, _, _ = make_payload(sc, tmp_path / "p.plada", count=30, strategy="entropy")
    assert p.header["teacher"]["test_acc"] == pytest.approx(acc, abs=1e-4)
    m = learn(
        tmp_path / "p.plada",
        tiny["pack"],
        tmp_path / "st",
        arch="tiny_cnn",
        epochs=1,
        progress=False,
        target=tiny["target"],
    )
    assert m["k"] == 30 and 0 <= m["test_acc"] <= 1


def test_cli_import_and_build_with_an_imported_teacher(hand_onnx, tiny, tmp_path):
    from plada_edge.server.tasks import build_tasks

    r = CliRunner().invoke(
        app,
        [
            "teacher",
            "import",
            str(hand_onnx),
            "--out",
            str(tmp_path / "h.onnx"),
            "--input-size",
            "16",
            "--scale",
            "255",
            "--normalisation",
            "none",
            "--probabilities",
            "--target",
            str(tiny["root"] / "stripes.npz"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{") :])["test_acc"] is not None
    (tmp_path / "tasks.toml").write_text(
        f'[server]\ncache = "cache"\nreference = "{tiny["pack"].path}"\n\n'
        '[tasks.mine]\nteacher = "h.onnx"\ncount = 30\nstrategy = "entropy"\n'
    )
    rep = build_tasks(tmp_path / "tasks.toml")["mine"]
    assert rep["steps"]["teacher"] == "given" and rep["k"] == 30


def test_import_errors_are_one_line(tiny, torchvision_onnx, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    r = CliRunner().invoke(app, ["teacher", "import", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "o.onnx")])
    assert r.exit_code == 2 and "not a readable ONNX model" in r.output
    (tmp_path / "names.txt").write_text("a\nb\n")
    with pytest.raises(ModelError, match="2 class names for a model with 3 outputs"):
        import_onnx(torchvision_onnx, tmp_path / "o.onnx", classes=tmp_path / "names.txt")
    with pytest.raises(ModelError, match="layout"):
        import_onnx(torchvision_onnx, tmp_path / "o.onnx", layout="chwn")
    assert not (tmp_path / "o.onnx").exists()
