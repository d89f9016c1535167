"""Using a student: load_student/predict, the model card, and `plada-edge predict` (issue 34)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from plada_edge import load_student
from plada_edge.cli import app
from plada_edge.core.errors import ModelError, TargetError
from plada_edge.device.predictor import CARD_FILE, CARD_FORMAT
from plada_edge.device.student import evaluate, learn
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack

runner = CliRunner()


@pytest.fixture(scope="module")
def student(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], root / "scores", batch_size=64, progress=False)
    make_payload(scores, root / "task.plada", count=90)
    kw = dict(arch="tiny_cnn", epochs=6, batch_size=32, lr=3e-3, progress=False)
    metrics = learn(root / "task.plada", tiny["pack"], root / "s", target=tiny["target"], **kw)
    return {**tiny, "dir": root / "s", "metrics": metrics, "payload": root / "task.plada"}


def test_predict_agrees_with_evaluate(student):
    target = student["target"]
    ev = evaluate(student["dir"], target)
    p = load_student(student["dir"]).predict(target.x_test)  # grayscale (n, 16, 16) batch
    assert len(p) == len(target.y_test) == ev["n"]
    assert float((p.labels == target.y_test).mean()) == pytest.approx(ev["test_acc"], abs=1e-12)
    for c, acc in enumerate(ev["per_class"]):
        assert float((p.labels[target.y_test == c] == c).mean()) == pytest.approx(acc, abs=1e-12)
    assert p.names[0] in target.class_names and "Predictions(" in repr(p)


def test_top_k_probabilities_are_sorted_and_a_single_image_works(student):
    s = load_student(student["dir"])
    p = s.predict(student["target"].x_test[:5], top=3)
    assert p.top_labels.shape == p.top_probs.shape == (5, 3)
    assert np.all(np.diff(p.top_probs, axis=1) <= 0) and np.all(p.top_probs.sum(1) <= 1 + 1e-6)
    one = s.predict(np.repeat(student["target"].x_test[0][..., None], 3, 2))  # one HWC RGB image
    assert len(one) == 1 and one.labels[0] == p.labels[0]
    with pytest.raises(TargetError, match="uint8"):
        s.predict(student["target"].x_test.astype(np.float32))
    with pytest.raises(TargetError, match="top"):
        s.predict(student["target"].x_test[:1], top=0)


def test_the_model_card_round_trips(student):
    card = json.loads((student["dir"] / CARD_FILE).read_text())
    m = student["metrics"]
    assert card["format"] == CARD_FORMAT and card["classes"] == student["target"].class_names
    assert card["input_size"] == 16 and card["contract"]["dtype"] == "uint8" and card["contract"]["layout"] == "NHWC"
    assert card["payload"]["sha256"] == m["payload_sha256"] and card["payload"]["k"] == m["k"]
    assert card["accuracy"]["test_acc"] == m["test_acc"] and card["recipe"]["arch"] == "tiny_cnn"
    assert card["view"]["gray"] is True and card["teacher"]["test_acc"] == m["teacher_test_acc"]
    s = load_student(student["dir"])
    assert s.card == card and s.classes == card["classes"]


def test_a_card_for_another_graph_is_refused_and_a_missing_one_is_rebuilt(student, tmp_path):
    import shutil

    d = tmp_path / "s"
    shutil.copytree(student["dir"], d)
    card = json.loads((d / CARD_FILE).read_text())
    x = student["target"].x_test
    want = load_student(d).predict(x).labels
    (d / CARD_FILE).write_text(json.dumps({**card, "onnx_sha256": "0" * 64}))
    with pytest.raises(ModelError, match="another student.onnx"):
        load_student(d)
    (d / CARD_FILE).unlink()  # a student from before the card: read from the graph's metadata
    assert np.array_equal(load_student(d).predict(x).labels, want)
    (d / "student.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_student(d)


def test_predict_command_reads_files_and_folders(student, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    x = student["target"].x_test
    for i in range(4):  # upscaled to 48 px: predict resizes back by the pack's rule
        Image.fromarray(x[i]).resize((48, 48), Image.Resampling.NEAREST).save(
            folder / ("sub" if i % 2 else "") / f"{i}.png"
        )
    result = runner.invoke(app, ["predict", str(student["dir"]), str(folder), "--json", "--top", "2"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and all(len(r["top"]) == 2 for r in rows)
    api = load_student(student["dir"]).predict(folder, top=2).to_dict()
    assert rows == json.loads(json.dumps(api))
    plain = runner.invoke(app, ["predict", str(student["dir"]), str(folder / "0.png")])
    assert plain.exit_code == 0 and plain.stdout.startswith(str(folder / "0.png") + "\t" + rows[0]["class"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "empty", "no image files"),
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d / "junk.png", "not a readable image"),
    ],
    ids=["empty folder", "missing file", "not an image"],
)
def test_predict_command_bad_images_are_one_line(student, tmp_path, make, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.png").write_bytes(b"\x89PNG but not really")
    result = runner.invoke(app, ["predict", str(student["dir"]), str(make(tmp_path))])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
