"""The transfer suite's colour targets, recipes and pretrained weights (plada_edge.data.suite, core.recipes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from plada_edge.core.config import TrainConfig  # noqa: E402
from plada_edge.core.errors import ConfigError, ModelError  # noqa: E402
from plada_edge.core.recipes import TargetFacts, student_options, teacher_options  # noqa: E402


@pytest.fixture(scope="module")
def tango_pack(tmp_path_factory):
    """A 32 px pack of noise with five of tango's own icons hidden in it (which the build must drop)."""
    from plada_edge.core.reference import build_pack
    from plada_edge.data.suite import icon_target

    root = tmp_path_factory.mktemp("suite")
    raw = icon_target("tango")
    rng = np.random.default_rng(0)
    pool = np.concatenate([rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), raw.x_train[:5]])
    np.save(root / "pool.npy", pool)
    return {"root": root, "raw": raw, "pack": build_pack([str(root / "pool.npy")], root / "pack", size=32)}


def test_icon_target_is_split_by_name_and_free_of_duplicates(tango_pack):
    from plada_edge.core.dedup import near_duplicate_mask

    t = tango_pack["raw"]
    assert t.x_train.shape[1:] == (32, 32, 3) and t.channels == 3
    assert t.class_names == sorted(t.class_names) and "actions" in t.class_names
    assert 100 <= len(t.y_train) <= 3000  # as small as real user tasks
    assert set(np.unique(t.y_test)) == set(range(t.num_classes))
    assert not near_duplicate_mask(t.x_test, t.x_train).any()  # no drawing in both splits


def test_build_suite_drops_pool_duplicates_audits_and_runs_the_pipeline(tango_pack, tmp_path):
    from plada_edge.core.payload import read_payload
    from plada_edge.core.targets import load_target
    from plada_edge.data.suite import build_suite
    from plada_edge.device.student import learn
    from plada_edge.server.audit import audit_leakage
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import score_pack
    from plada_edge.server.teacher import export_onnx, train_teacher

    summary = build_suite(("tango",), root=tmp_path, pack_dir=tango_pack["pack"].path, log=lambda *_: None)["tango"]
    assert summary["dropped_as_pool_duplicates"]["train"] >= 5
    target = load_target(tmp_path / "targets" / "tango.npz")
    audit = audit_leakage(target, tango_pack["pack"], progress=False)
    assert all(audit[k][split] == 0 for k in ("exact", "near") for split in ("train", "test"))
    assert audit_leakage(tango_pack["raw"], tango_pack["pack"], progress=False)["near"]["train"] >= 5  # it would see
    assert len(target.y_train) == len(tango_pack["raw"].y_train) - summary["dropped_as_pool_duplicates"]["train"]

    m = train_teacher(target, tmp_path / "t", arch="tiny_cnn", epochs=1, progress=False)
    assert m["recipe"] == "scratch" and m["test_acc"] is not None
    export_onnx(tmp_path / "t", tmp_path / "t.onnx", input_size=32)
    scores = score_pack(tmp_path / "t.onnx", tango_pack["pack"], tmp_path / "scores", progress=False)
    make_payload(scores, tmp_path / "p.plada", keep="10%")
    assert read_payload(tmp_path / "p.plada").k == 30  # 10 % of 305, rounded down
    s = learn(tmp_path / "p.plada", tango_pack["pack"], tmp_path / "s", arch="tiny_cnn", epochs=1, target=target)
    assert s["recipe"] == "scratch" and 0 <= s["test_acc"] <= 1


def test_auto_recipe_follows_colour_and_installed_weights(monkeypatch):
    import plada_edge.core.models as models

    colour, gray = TargetFacts(3, 32, 600, 7), TargetFacts(1, 28, 10_000, 10)
    monkeypatch.setattr(models, "pretrained_weights", lambda arch: "imagenet" if arch == "efficientnet_lite0" else None)
    t = teacher_options(colour)
    assert t["recipe"] == "pretrained" and t["arch"] == "efficientnet_lite0" and t["size"] == 64
    assert teacher_options(gray) == {"recipe": "scratch"}  # the dataclass defaults, untouched
    assert teacher_options(colour, "scratch") == {"recipe": "scratch"}
    assert teacher_options(colour, options={"epochs": 3, "lr": None})["epochs"] == 3  # the user's option wins
    assert teacher_options(colour, options={"arch": "tiny_cnn"}) == {"arch": "tiny_cnn", "recipe": "scratch"}
    assert student_options(gray=False)["model_size"] == 64 and student_options(gray=True) == {"recipe": "scratch"}
    monkeypatch.setattr(models, "pretrained_weights", lambda arch: None)
    assert teacher_options(colour) == {"recipe": "scratch"}  # nothing installed: auto falls back
    with pytest.raises(ModelError, match="no ImageNet weights installed"):
        teacher_options(colour, "pretrained")
    with pytest.raises(ConfigError, match="recipe must be one of"):
        teacher_options(colour, "fancy")


def test_imagenet_weights_resolve_from_the_weights_folder(monkeypatch, tmp_path):
    from plada_edge.core.models import create_model, describe_models, resolve_weights

    monkeypatch.setenv("PLADA_EDGE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError, match=f"put tiny_cnn.safetensors or tiny_cnn.pth in {tmp_path}"):
        resolve_weights("tiny_cnn", "imagenet")
    source = create_model("tiny_cnn", 1000)
    torch.save(source.state_dict(), tmp_path / "tiny_cnn.pth")
    assert resolve_weights("tiny_cnn", "IMAGENET") == str(tmp_path / "tiny_cnn.pth")
    assert resolve_weights("tiny_cnn", "my.pt") == "my.pt"  # anything else passes through
    model = create_model("tiny_cnn", 4, "imagenet")
    assert torch.equal(model[0][0].weight, source[0][0].weight)  # the backbone came from the file
    assert model[-1].out_features == 4
    assert str(tmp_path / "tiny_cnn.pth") in describe_models()["tiny_cnn"]


def test_frozen_backbone_trains_only_the_head(tmp_path):
    from plada_edge.core.models import create_model
    from plada_edge.core.train import fit
    from plada_edge.core.view import ViewSpec, torch_view

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 64)
    view = torch_view(ViewSpec(16, 16), 16)
    fit(model, view, x, y, TrainConfig(epochs=1, batch_size=16, backbone_lr=0.0, augment="trivial"), tmp_path)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"10.weight", "10.bias"}  # the head moved; weights and BN statistics stayed


def test_trivial_augment_is_seeded_and_keeps_shape():
    from plada_edge.core.train import trivial_augment

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    a, b = trivial_augment(x, 3), trivial_augment(x, 3)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    with pytest.raises(ConfigError, match="augment must be one of"):
        TrainConfig(augment="mixup")
    with pytest.raises(ConfigError, match="backbone_lr must be in"):
        TrainConfig(backbone_lr=2.0)


def test_self_training_adds_confident_pool_images_without_payload_bytes(tiny, tmp_path):
    from plada_edge.core.payload import read_payload
    from plada_edge.device.student import learn
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import score_pack

    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    make_payload(scores, tmp_path / "p.plada", keep="6%")
    k = read_payload(tmp_path / "p.plada").k
    kw = dict(arch="tiny_cnn", epochs=2, batch_size=16, lr=3e-3, target=tiny["target"], progress=False)
    plain = learn(tmp_path / "p.plada", tiny["pack"], tmp_path / "plain", **kw)
    m = learn(tmp_path / "p.plada", tiny["pack"], tmp_path / "st", self_train=1.0, self_train_confidence=0.5, **kw)
    st = m["self_training"]
    assert plain["self_training"] is None and m["payload_bytes"] == plain["payload_bytes"]
    assert 0 < st["added"] <= k and st["candidates"] >= st["confident"] >= st["added"]
    assert m["trained_on"] == k + st["added"] and sum(st["per_class"]) == st["added"]
    again = learn(tmp_path / "p.plada", tiny["pack"], tmp_path / "st", self_train=1.0, self_train_confidence=0.5, **kw)
    assert again["test_acc"] == m["test_acc"]  # both rounds resume from their checkpoints to the same weights
    with pytest.raises(ConfigError, match="self_train must be in"):
        learn(tmp_path / "p.plada", tiny["pack"], tmp_path / "bad", self_train=-1, **kw)


def test_tasks_toml_takes_a_recipe(tmp_path):
    from plada_edge.server.tasks import load_task_file

    def task(extra: str) -> dict:
        (tmp_path / "tasks.toml").write_text(f'[server]\nreference = "pack"\n[tasks.t]\ntarget = "t.npz"\n{extra}\n')
        return load_task_file(tmp_path / "tasks.toml")["tasks"]["t"]

    t = task('recipe = "scratch"\nepochs = 3')
    assert t["recipe"] == "scratch" and t["epochs"] == 3 and t["arch"] is None  # unset: the recipe decides
    assert task("")["recipe"] == "auto"
    with pytest.raises(ConfigError, match="recipe must be one of"):
        task('recipe = "fancy"')


def test_cli_models_and_a_missing_weight(tiny, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    monkeypatch.setenv("PLADA_EDGE_WEIGHTS", str(tmp_path / "none"))
    runner = CliRunner()
    r = runner.invoke(app, ["models", "--json"])
    assert r.exit_code == 0
    listed = json.loads(r.stdout)
    assert listed["models"]["tiny_cnn"]["imagenet"] is None and listed["weights_dir"] == str(tmp_path / "none")
    r = runner.invoke(
        app,
        ["teacher", "train", "-t", str(tiny["root"] / "stripes.npz"), "-a", "tiny_cnn", "--weights", "imagenet"]
        + ["--out", str(tmp_path / "t")],
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1  # one line, no traceback
    assert "no ImageNet weights installed for tiny_cnn" in r.output and str(tmp_path / "none") in r.output
    assert not (tmp_path / "t" / "teacher.pt").exists()


def test_linear_probe_reports_the_same_accuracy_as_the_full_model(tiny, tmp_path):
    from plada_edge.server.teacher import teacher_accuracy, train_teacher

    kw = dict(arch="tiny_cnn", epochs=6, size=16, batch_size=32, lr=3e-2, backbone_lr=0.0, progress=False)
    m = train_teacher(tiny["root"] / "stripes.npz", tmp_path / "t", **kw)
    # metrics' test_acc comes from cached features; teacher_accuracy runs the saved model end to end
    assert m["test_acc"] == pytest.approx(teacher_accuracy(tmp_path / "t", tiny["target"]), abs=1e-9)
    assert len({h["test_acc"] for h in m["history"]}) > 1  # the head did learn between checks
