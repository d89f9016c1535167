"""Device side: learn from a payload, refuse wrong packs and corrupt payloads, resume exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("faiss")

from conftest import Interrupted, interrupt_after

from plada_edge.core import atomic, train
from plada_edge.core.payload import PayloadError
from plada_edge.core.reference import build_pack
from plada_edge.device.index import build_index, expand_labels
from plada_edge.device.student import evaluate, learn
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack


@pytest.fixture(scope="module")
def task(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    scores = score_pack(
        tiny["root"] / "teacher.onnx", tiny["pack"], root / "scores", batch_size=64, chunk=128, progress=False
    )
    payload, sel, data = make_payload(scores, root / "task.plada", count=90, safety_net=True, alpha=0.0, share=1.0)
    return {**tiny, "dir": root, "payload": root / "task.plada", "k": payload.k}


def test_learn_end_to_end_beats_chance(task, tmp_path):
    m = learn(
        task["payload"],
        task["pack"],
        tmp_path / "s",
        arch="tiny_cnn",
        epochs=8,
        batch_size=32,
        lr=3e-3,
        target=task["target"],
        progress=False,
    )
    assert m["k"] == task["k"] == 90 and m["trained_on"] == 90
    assert m["test_acc"] > 0.6  # 3 classes: chance is 1/3
    assert m["onnx_max_abs_diff"] <= 1e-4
    assert m["teacher_test_acc"] == pytest.approx(task["metrics"]["test_acc"])
    for f in ("student.pt", "student.onnx", "metrics.json"):
        assert (tmp_path / "s" / f).exists()
    ev = evaluate(tmp_path / "s", task["target"])  # onnxruntime path agrees with the torch evaluation
    assert ev["test_acc"] == pytest.approx(m["test_acc"], abs=1e-9)


def test_student_at_its_own_resolution(task, tmp_path):
    import onnx

    m = learn(
        task["payload"],
        task["pack"],
        tmp_path / "s",
        arch="tiny_cnn",
        epochs=1,
        batch_size=32,
        model_size=24,
        target=task["target"],
        progress=False,
    )
    assert m["model_size"] == 24 and m["onnx_max_abs_diff"] <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "s" / "student.onnx")).metadata_props}
    assert json.loads(props["plada.view"])["model_size"] == 24
    assert props["plada.input_size"] == "16"  # still takes the sensor's native images
    assert evaluate(tmp_path / "s", task["target"])["test_acc"] == pytest.approx(m["test_acc"], abs=1e-9)
    with pytest.raises(ValueError, match="model_size"):
        learn(task["payload"], task["pack"], tmp_path / "t", arch="tiny_cnn", epochs=1, model_size=2, progress=False)


def test_wrong_pack_is_refused_before_training(task, tmp_path):
    np.save(tmp_path / "other.npy", np.zeros((500, 16, 16), np.uint8))
    other = build_pack([str(tmp_path / "other.npy")], tmp_path / "other", size=16)
    with pytest.raises(PayloadError) as err:
        learn(task["payload"], other, tmp_path / "s", arch="tiny_cnn", epochs=1, progress=False)
    assert task["pack"].fingerprint in str(err.value) and other.fingerprint in str(err.value)
    assert not (tmp_path / "s").exists()  # nothing was trained or written


def test_corrupt_payload_is_refused(task, tmp_path):
    data = bytearray(task["payload"].read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / "bad.plada").write_bytes(bytes(data))
    with pytest.raises(PayloadError, match="checksum"):
        learn(tmp_path / "bad.plada", task["pack"], tmp_path / "s", arch="tiny_cnn", epochs=1, progress=False)
    (tmp_path / "cut.plada").write_bytes(bytes(data[:50]))
    with pytest.raises(PayloadError, match="truncated"):
        learn(tmp_path / "cut.plada", task["pack"], tmp_path / "s", arch="tiny_cnn", epochs=1, progress=False)


def test_auto_strategy_under_a_byte_budget_is_chosen_once(task, tmp_path, monkeypatch):
    """`pack --strategy auto --max-bytes 2KB` once failed: each probe of the size search re-ran the choice."""
    from plada_edge.server import auto
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import Scores

    calls = []
    real = auto.choose_strategy
    monkeypatch.setattr(auto, "choose_strategy", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    scores = Scores.open(task["dir"] / "scores")
    one = len(make_payload(scores, None, count=1)[2])
    payload, sel, data = make_payload(
        scores, None, max_bytes=one + 40, strategy="auto", target=task["target"], pack=task["pack"]
    )
    assert len(calls) == 1 and calls[0]["count"] > 1 and calls[0]["keep"] is None
    assert len(data) <= one + 40 and sel.k > 1 and sel.auto["chosen"] == sel.strategy


def test_interrupted_training_resumes_to_the_same_weights(task, tmp_path, monkeypatch):
    import torch

    kw = dict(arch="tiny_cnn", epochs=4, batch_size=32, lr=3e-3, progress=False)
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    learn(task["payload"], task["pack"], tmp_path / "full", **kw)
    with monkeypatch.context() as m:
        interrupt_after(m, train, "save_checkpoint", 2)  # killed after epoch 2's checkpoint
        with pytest.raises(Interrupted):
            learn(task["payload"], task["pack"], tmp_path / "cut", **kw)
    assert not (tmp_path / "cut" / "student.pt").exists()
    learn(task["payload"], task["pack"], tmp_path / "cut", **kw)  # resumes from checkpoint.pt
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "student.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hist = json.loads((tmp_path / "cut" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]


def test_images_kept_on_the_device_train_to_the_same_weights_as_host_gathered_batches(task, tmp_path, monkeypatch):
    """The GPU path (the whole subset uploaded once, each batch cut there) against the host's gather thread.

    On this CPU machine the "resident" copy is a CPU tensor; the code path past the upload is the one
    a GPU runs, and it must change no weight.
    """
    import torch

    kw = dict(arch="tiny_cnn", epochs=2, batch_size=32, lr=3e-3, shift=2, hflip=True, progress=False)
    learn(task["payload"], task["pack"], tmp_path / "host", **kw)
    uploads = []

    def resident(images, device):
        uploads.append(len(images))
        return torch.from_numpy(np.array(images))

    monkeypatch.setattr(train, "resident_images", resident)
    monkeypatch.setattr(train, "batches", None)  # the host gather must not run at all
    learn(task["payload"], task["pack"], tmp_path / "resident", **kw)
    assert len(uploads) == 1  # once per fit, not per epoch
    a = torch.load(tmp_path / "host" / "student.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resident" / "student.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoints_are_timed_and_the_last_epoch_always_has_one(task, tmp_path, monkeypatch):
    saved_epochs = []
    real = train.save_checkpoint

    def counting(path, state):
        saved_epochs.append(state["epoch"])
        real(path, state)

    monkeypatch.setattr(train, "save_checkpoint", counting)
    kw = dict(arch="tiny_cnn", epochs=4, batch_size=32, lr=3e-3, progress=False)
    learn(task["payload"], task["pack"], tmp_path / "timed", **kw)
    assert saved_epochs == [4]  # these epochs take well under CHECKPOINT_SECONDS: only the last is written
    saved_epochs.clear()
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)
    learn(task["payload"], task["pack"], tmp_path / "every", **kw)
    assert saved_epochs == [1, 2, 3, 4]


def test_label_expansion_adds_unanimous_neighbours(task, tmp_path):
    meta = build_index(task["pack"], "pixels", out=tmp_path / "index", chunk=128, progress=False)
    assert meta["complete"] and meta["n"] == 500 and meta["index"] == "Flat"
    from plada_edge.core.payload import read_payload

    p = read_payload(task["payload"])
    new_idx, new_lab, rep = expand_labels(
        task["pack"], p.indices, p.labels, k=5, embedder="pixels", out=tmp_path / "index"
    )
    assert rep["added"] == len(new_idx) > 0
    assert not set(new_idx) & set(p.indices)
    # the rule: every payload image that retrieved an added neighbour carries its label
    import faiss

    index = faiss.read_index(str(tmp_path / "index" / "pixels.faiss"))
    emb = np.load(tmp_path / "index" / "pixels.npy").astype(np.float32)
    _, nn = index.search(emb[p.indices], 6)
    for j, y in zip(new_idx[:20], new_lab[:20]):
        voters = p.labels[(nn == j).any(axis=1)]
        assert len(voters) and (voters == y).all()


def test_index_build_resumes(task, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after(m, atomic, "save_npy", 2)
        with pytest.raises(Interrupted):
            build_index(task["pack"], "pixels", out=tmp_path / "ix", chunk=100, progress=False)
    assert len(list((tmp_path / "ix" / "pixels.chunks").glob("*.npy"))) == 2
    full = build_index(task["pack"], "pixels", out=tmp_path / "ix", chunk=100, progress=False)
    build_index(task["pack"], "pixels", out=tmp_path / "ref", chunk=100, progress=False)
    assert full["complete"]
    np.testing.assert_array_equal(np.load(tmp_path / "ix" / "pixels.npy"), np.load(tmp_path / "ref" / "pixels.npy"))


def test_byte_budget_finds_the_largest_selection_that_fits(task, tmp_path):
    from plada_edge.core.payload import read_payload
    from plada_edge.server.packing import make_payload, parse_bytes
    from plada_edge.server.scoring import Scores

    scores = Scores.open(task["dir"] / "scores")
    assert parse_bytes("2KB") == 2000 and parse_bytes("2KiB") == 2048 and parse_bytes(512) == 512
    one = len(make_payload(scores, None, count=1, safety_net=True)[2])
    limit = one + 60
    payload, sel, data = make_payload(scores, tmp_path / "b.plada", max_bytes=f"{limit}B", safety_net=True)
    assert len(data) <= limit and sel.k > 0
    _, _, bigger = make_payload(scores, None, count=sel.k + 1, safety_net=True)
    assert len(bigger) > limit  # one more image would not fit
    assert read_payload(tmp_path / "b.plada").k == sel.k
    with pytest.raises(ValueError, match="hold no image: a payload of one image needs"):
        make_payload(scores, None, max_bytes="10B")
    with pytest.raises(ValueError, match="count must be >= 1"):
        make_payload(scores, None, count=0)
    with pytest.raises(ValueError, match="not both"):
        make_payload(scores, None, budget="1KB", keep="1%")  # budget: max_bytes' old name, still taken


def test_cli_pack_inspect_learn(task, tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    r = CliRunner()
    out = r.invoke(
        app,
        [
            "pack",
            str(task["dir"] / "scores"),
            "--count",
            "30",
            "--safety-net",
            "--alpha",
            "0",
            "--share",
            "1",
            "--codec",
            "model",
            "--out",
            str(tmp_path / "t.plada"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["codec"] == "model"
    out = r.invoke(app, ["inspect", str(tmp_path / "t.plada"), "--json"])
    rep = json.loads(out.output)
    assert out.exit_code == 0 and rep["k"] == 30 and rep["header"]["pack_fingerprint"] == task["pack"].fingerprint
    assert rep["bits_per_image"] == pytest.approx(rep["bytes"] * 8 / 30)
    assert rep["floor_bits"] > 0 and rep["body_to_floor"] > 0
    out = r.invoke(app, ["inspect", str(tmp_path / "nope.plada")])
    assert out.exit_code == 2 and "does not exist" in out.output
    (tmp_path / "junk.plada").write_bytes(b"junk")
    out = r.invoke(app, ["inspect", str(tmp_path / "junk.plada")])
    assert out.exit_code == 2 and "bad magic" in out.output
    out = r.invoke(
        app,
        [
            "learn",
            str(tmp_path / "t.plada"),
            "--reference",
            str(task["pack"].path),
            "--arch",
            "tiny_cnn",
            "--epochs",
            "2",
            "-t",
            str(task["root"] / "stripes.npz"),
            "--out",
            str(tmp_path / "s"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    m = json.loads(out.output)
    assert m["k"] == 30 and 0 <= m["test_acc"] <= 1
    out = r.invoke(app, ["evaluate", str(tmp_path / "s"), "--target", str(task["root"] / "stripes.npz"), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["test_acc"] == pytest.approx(m["test_acc"])


def test_strategy_auto_measures_both_directions(task, tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    r = CliRunner().invoke(
        app,
        [
            "pack",
            str(task["dir"] / "scores"),
            "--count",
            "45",
            "--safety-net",
            "--strategy",
            "auto",
            "--target",
            str(task["root"] / "stripes.npz"),
            "--reference",
            str(task["pack"].path),
            "--out",
            str(tmp_path / "a.plada"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    cands = rep["auto"]["candidates"]
    assert set(cands) == {"energy", "opposite"} and rep["auto"]["held_out"] > 0
    assert rep["strategy"] == rep["auto"]["chosen"] == max(cands, key=lambda n: cands[n]["held_out_acc"])
    r = CliRunner().invoke(
        app,
        [
            "pack",
            str(task["dir"] / "scores"),
            "--count",
            "45",
            "--strategy",
            "auto",
            "--out",
            str(tmp_path / "b.plada"),
        ],
    )
    assert r.exit_code == 2 and "needs the target" in r.output


def test_safety_net_is_the_default_everywhere(task, tmp_path):
    """Plain energy drops classes (docs/results.md): library, CLI and tasks.toml all default to quotas."""
    from typer.testing import CliRunner

    from plada_edge.cli import app
    from plada_edge.core.payload import read_payload
    from plada_edge.server.scoring import Scores
    from plada_edge.server.selection import select
    from plada_edge.server.tasks import DEFAULTS

    scores = Scores.open(task["dir"] / "scores")
    default, quotas, plain = (
        select(scores, count=30),
        select(scores, count=30, safety_net=True),
        select(scores, count=30, safety_net=False),
    )
    assert default.safety_net is not None and plain.safety_net is None
    np.testing.assert_array_equal(default.indices, quotas.indices)
    assert DEFAULTS["safety_net"] is True
    r = CliRunner()
    for flags, on in (([], True), (["--no-safety-net"], False)):
        out = r.invoke(
            app, ["pack", str(task["dir"] / "scores"), "--count", "30", *flags, "--out", str(tmp_path / "d.plada")]
        )
        assert out.exit_code == 0, out.output
        p = read_payload(tmp_path / "d.plada")
        assert bool(p.header["selection"]["safety_net"]) is on
        np.testing.assert_array_equal(p.indices, (default if on else plain).indices)


def test_cli_spread_reaches_the_header(task, tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app
    from plada_edge.core.payload import read_payload
    from plada_edge.server.scoring import Scores
    from plada_edge.server.selection import select

    out = CliRunner().invoke(
        app,
        [
            "pack",
            str(task["dir"] / "scores"),
            "--count",
            "30",
            "--spread",
            "3",
            "--seed",
            "2",
            "--out",
            str(tmp_path / "s.plada"),
        ],
    )
    assert out.exit_code == 0, out.output
    p = read_payload(tmp_path / "s.plada")
    assert p.header["selection"]["spread"] == 3
    np.testing.assert_array_equal(
        p.indices, select(Scores.open(task["dir"] / "scores"), count=30, spread=3, seed=2).indices
    )
    bad = CliRunner().invoke(
        app,
        ["pack", str(task["dir"] / "scores"), "--count", "30", "--spread", "0.5", "--out", str(tmp_path / "b.plada")],
    )
    assert bad.exit_code != 0 and "spread" in bad.output and not (tmp_path / "b.plada").exists()
