"""Predicted transfer (issue 35): the server forecasts the device's student from held-out training images only."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from plada_edge.core.errors import ConfigError, PladaWarning
from plada_edge.core.payload import decode_payload
from plada_edge.server.forecast import (
    Forecast,
    Trial,
    _prediction_reach,
    blind_folds,
    forecast,
    smallest_for,
    wilson,
)
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack


class Forbidden:
    """Stands in for a test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the forecast read the test split ({name})")

    def __getitem__(self, key):
        raise AssertionError("the forecast read the test split")

    def __len__(self):
        raise AssertionError("the forecast read the test split")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the forecast read the test split")


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast")
    return score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], out / "scores", progress=False)


def quick(**kw):  # a student recipe that trains in a second: the mechanics, not the fidelity
    return dict(arch="tiny_cnn", epochs=3, batch_size=32, lr=3e-3, **kw)


def test_the_forecast_reads_no_test_image_and_judges_on_the_held_out_ones(tiny, scored):
    target = copy.copy(tiny["target"])
    target.x_test, target.y_test = Forbidden(), Forbidden()  # after validation: any read of them fails
    assert scored.meta["target"]["holdout"] == tiny["target"].holdout().tolist()  # what the teacher set aside
    folds = blind_folds(scored, tiny["pack"], tiny["target"])
    assert len(folds) == 5  # 36 images a fold: every training image held out once
    trials = []
    for fold, blind in zip(tiny["target"].holdout_folds(), folds):
        assert blind.meta["target"]["holdout"] == fold.tolist()  # each blind teacher records what it never saw
        sel = make_payload(blind, None, count=60).selection
        trials.append(Trial(blind, sel.indices, sel.labels))
    f = forecast(scored, trials, tiny["pack"], target, **quick())
    assert isinstance(f, Forecast) and f.images == 180 and f.folds == 5 and f.trained_on == 60
    assert 0 <= f.low <= f.accuracy <= f.high <= 1 and f.arch == "tiny_cnn"
    teacher = scored.meta["teacher_test_acc"]
    held = np.mean([b.meta["teacher_holdout_acc"] for b in folds])  # equal folds: the pooled blind accuracy
    assert f.teacher_held_out == pytest.approx(held)  # the teacher's recipe, each fold without its images
    assert scored.meta["teacher_holdout_acc"] == folds[0].meta["teacher_holdout_acc"]  # fold 0: the recorded one
    assert f.accuracy == pytest.approx(min(1.0, f.held_out * teacher / held))  # read as a share of the teacher
    assert len(f.fold_estimates) == 5 and min(f.fold_estimates) <= f.accuracy + 1e-9  # each fold on its own too
    reach = _prediction_reach(list(f.fold_estimates))  # the interval holds where one more teacher may land
    assert f.low <= max(0.0, f.accuracy - reach) + 1e-9 and f.high >= min(1.0, f.accuracy + reach) - 1e-9


def test_the_payload_carries_its_forecast(tiny, scored, tmp_path, monkeypatch):
    import plada_edge.server.forecast as fc

    real = fc.forecast
    monkeypatch.setattr(fc, "forecast", lambda *a, **k: real(*a, **{**k, **quick()}))
    made = make_payload(scored, tmp_path / "f.plada", count=60, forecast=True, target=tiny["target"],
                        pack=tiny["pack"])  # fmt: skip
    header = decode_payload((tmp_path / "f.plada").read_bytes()).header
    assert made.data[6] == 3 and header["forecast"] == made.selection.forecast.header()
    assert made.to_dict()["forecast"]["images"] == 180
    with pytest.raises(ConfigError, match="needs the target"):
        make_payload(scored, None, count=60, forecast=True)


def test_a_goal_picks_the_fewest_images_whose_forecast_reaches_it_within_the_byte_cap(tiny, scored, monkeypatch):
    import plada_edge.server.forecast as fc

    asked = []

    def by_count(scores, trials, pack, target, **kw):  # accuracy grows with the images sent
        k = len(trials[0].indices)
        asked.append(k)
        acc = min(1.0, k / 100)
        return Forecast(acc, acc, acc, 36, acc, None, k, "scratch", "stub", 0.0)

    monkeypatch.setattr(fc, "forecast", by_count)
    made = make_payload(scored, None, goal_acc=0.42, target=tiny["target"], pack=tiny["pack"])
    k = made.selection.k  # the fewest that reach it, to the search's resolution (1.1x)
    assert 42 <= k <= 42 * 1.1 and made.selection.forecast.accuracy >= 0.42 and len(set(asked)) <= 10
    with pytest.warns(PladaWarning, match="stays under the goal 0.900.*max_bytes"):
        capped = make_payload(scored, None, goal_acc=0.9, max_bytes=160, target=tiny["target"], pack=tiny["pack"])
    assert len(capped.data) <= 160 and capped.selection.forecast.accuracy < 0.9  # the cap wins, and says so
    asked.clear()
    with pytest.warns(PladaWarning, match="GOAL_MAX_KEEP"):  # out of reach, no cap: a tenth of the pool, not all
        bounded = make_payload(scored, None, goal_acc=0.99, target=tiny["target"], pack=tiny["pack"])
    assert bounded.selection.k == 50 == max(asked) and scored.n == 500
    teacher = scored.meta["teacher_test_acc"]
    share = make_payload(scored, None, goal=0.5, target=tiny["target"], pack=tiny["pack"])
    assert int(np.ceil(50 * teacher)) <= share.selection.k <= 1.1 * np.ceil(50 * teacher)
    with pytest.raises(ConfigError, match="goal_acc must be an accuracy"):
        make_payload(scored, None, goal_acc=1.5, target=tiny["target"], pack=tiny["pack"])


def test_bisection_terminates_and_the_interval_is_wilsons():
    calls = []
    best, tried = smallest_for(0.5, lambda k: calls.append(k) or k / 1000, 1, 100_000)
    assert len(calls) <= 8 and 500 <= best <= 550  # eight forecasts at most, never below the goal, within 1.1x
    assert all(acc >= 0.5 for k, acc in tried if k == best)
    calls.clear()
    best, _ = smallest_for(0.5, lambda k: calls.append(k) or k / 1000, 1, 100_000, steps=40, resolution=1.0)
    assert best == 500 and len(calls) <= 40  # to the image, given the steps
    best, _ = smallest_for(2.0, lambda k: 1.0, 5, 50)
    assert best == 50  # never reached: the cap
    assert _prediction_reach([0.4, 0.6]) == pytest.approx(12.706 * 0.1414214 * 1.2247449, rel=1e-5)
    assert _prediction_reach([0.5, 0.5, 0.5]) == 0.0
    lo, hi = wilson(36, 36)
    assert hi == 1.0 and 0.90 < lo < 0.91
    assert wilson(0, 0) == (0.0, 1.0)


def test_by_forecast_keeps_the_candidate_plan_with_the_best_forecast(tiny, scored, monkeypatch):
    import plada_edge.server.forecast as fc

    calls = []

    def by_indices(scores, trials, pack, target, **kw):  # any deterministic judgement of a selection
        acc = float(np.mean(np.concatenate([t.indices for t in trials]) % 7 == 0))
        calls.append(acc)
        return Forecast(acc, acc, acc, 36, acc, None, len(trials[0].indices), "scratch", "stub", 0.0)

    monkeypatch.setattr(fc, "forecast", by_indices)
    made = make_payload(scored, None, count=60, strategy="by-forecast", target=tiny["target"], pack=tiny["pack"])
    report = made.selection.auto
    judged = {n: c["accuracy"] for n, c in report["candidates"].items() if "accuracy" in c}
    assert len(judged) >= 2 and report["chosen"] == max(judged, key=judged.get)
    assert list(judged.values()) == calls[: len(judged)]  # each candidate judged on its own images, same size or not
    assert made.selection.plan.strategy.rule == "by-forecast" and made.selection.k == 60
    assert all(c["same_as"] in judged for c in report["candidates"].values() if "same_as" in c)  # no plan twice
    with pytest.raises(ConfigError, match="by-forecast needs the target"):
        make_payload(scored, None, count=60, strategy="by-forecast")


def test_the_trial_payload_is_picked_and_labelled_by_the_blind_teacher(tiny, scored, monkeypatch, tmp_path):
    """The held-out images judge a student whose teacher never saw them, as the test split judges the device's:
    each fold's trial is picked and labelled by that fold's blind teacher."""
    import shutil

    import plada_edge.server.forecast as fc
    from plada_edge.core.train import load_checkpoint
    from plada_edge.server.teacher import blind_name, blind_path, onnx_metadata

    folds = tiny["target"].holdout_folds()
    twin = blind_path(tiny["root"] / "teacher.onnx")
    assert twin == tiny["root"] / "teacher.blind.onnx" and twin.is_file()
    assert blind_path(tiny["root"] / "teacher.onnx", 4) == tiny["root"] / "teacher.blind-4.onnx"
    assert tiny["export"]["blind"] == [str(blind_path(tiny["root"] / "teacher.onnx", f)) for f in range(len(folds))]
    for f, fold in enumerate(folds):
        graph = onnx_metadata(blind_path(tiny["root"] / "teacher.onnx", f))
        assert graph["blind_of"] == scored.meta["checkpoint_sha256"]
        blind_ckpt = load_checkpoint(tiny["root"] / "teacher" / blind_name(f) / "teacher.pt")
        assert blind_ckpt["target"]["holdout"] == fold.tolist()
    recorded = []

    def record(scores, trials, pack, target, **kw):
        recorded.append(trials)
        return Forecast(0.5, 0.4, 0.6, 36, 0.5, None, len(trials[0].indices), "scratch", "stub", 0.0)

    monkeypatch.setattr(fc, "forecast", record)
    made = make_payload(scored, None, count=60, forecast=True, target=tiny["target"], pack=tiny["pack"])
    (trials,) = recorded
    assert len(trials) == len(folds)
    for f, trial in enumerate(trials):
        blind = fc.blind_scores(scored, tiny["pack"], fold=f)
        assert blind.path == scored.path / blind_name(f) == trial.blind.path
        assert blind.meta["blind_of"] == scored.meta["checkpoint_sha256"]
        assert len(trial.indices) == made.selection.k == 60
        np.testing.assert_array_equal(trial.labels, np.asarray(blind.label)[trial.indices])  # its labels
    assert len(np.setdiff1d(trials[0].indices, made.selection.indices)) > 0  # not the shipped images
    # scores whose teacher has no blind twin get a one-line error, not a flattering forecast
    moved = tmp_path / "scores"
    shutil.copytree(scored.path, moved, ignore=shutil.ignore_patterns("blind*"))
    meta = json.loads((moved / "meta.json").read_text())
    (moved / "meta.json").write_text(json.dumps({**meta, "teacher_path": str(tmp_path / "gone.onnx")}))
    with pytest.raises(ConfigError, match="blind twin"):
        make_payload(moved, None, count=60, forecast=True, target=tiny["target"], pack=tiny["pack"])


def test_pack_forecast_on_the_command_line(tiny, scored, monkeypatch, tmp_path):
    """`pack --forecast` prints the estimate and writes it into the header; a teacher without a blind twin is a
    one-line error and no payload."""
    import shutil

    from typer.testing import CliRunner

    import plada_edge.server.forecast as fc
    from plada_edge.cli import app

    real = fc.forecast
    monkeypatch.setattr(fc, "forecast", lambda *a, **k: real(*a, **{**k, **quick()}))
    where = ["-t", str(tiny["root"] / "stripes.npz"), "-r", str(tiny["pack"].path)]
    out = tmp_path / "f.plada"
    got = CliRunner().invoke(app, ["pack", str(scored.path), "--count", "60", "--forecast", "-o", str(out), *where])
    assert got.exit_code == 0, got.output
    assert "forecast: the device's student, estimated: " in got.output and out.is_file()
    shown = CliRunner().invoke(app, ["inspect", str(out)])
    assert "forecast" in shown.output and "180 held-out images" in shown.output
    lone = tmp_path / "lone.onnx"  # the teacher's graph without its twin
    shutil.copy(tiny["root"] / "teacher.onnx", lone)
    moved = tmp_path / "scores"
    shutil.copytree(scored.path, moved, ignore=shutil.ignore_patterns("blind*"))
    bad = tmp_path / "bad.plada"
    got = CliRunner().invoke(
        app, ["pack", str(moved), "--count", "60", "--forecast", "--teacher", str(lone), "-o", str(bad), *where]
    )
    assert got.exit_code != 0 and "blind twin" in got.output and not bad.exists()
    assert len([ln for ln in got.output.splitlines() if ln.strip()]) == 1, got.output


def test_teacher_export_writes_a_blind_teacher_per_held_out_fold(tiny, tmp_path):
    """`teacher export` writes the teacher's blind twins beside its graph, one per fold, and says where."""
    from typer.testing import CliRunner

    from plada_edge.cli import app
    from plada_edge.server.teacher import blind_path, onnx_metadata

    out = tmp_path / "t.onnx"
    got = CliRunner().invoke(
        app, ["teacher", "export", str(tiny["root"] / "teacher"), "-o", str(out), "--input-size", "16"]
    )
    assert got.exit_code == 0, got.output
    folds = len(tiny["target"].holdout_folds())
    assert f"{folds} blind teachers for --forecast: {blind_path(out)}" in got.output
    sha = onnx_metadata(out)["checkpoint_sha256"]
    for f in range(folds):
        graph = onnx_metadata(blind_path(out, f))
        assert graph["blind_of"] == sha and graph["target"]["holdout"] == tiny["target"].holdout(f).tolist()
    assert not blind_path(out, folds).exists()


def test_the_interval_counts_an_icon_once_however_many_sizes_it_is_drawn_at():
    from plada_edge.server.forecast import held_out_interval

    rng = np.random.default_rng(1)
    icons = rng.random(40) < 0.6  # 40 icons, each right or wrong at all of its 5 sizes
    right, groups = np.repeat(icons, 5), np.repeat(np.arange(40), 5)
    assert held_out_interval(right) == wilson(int(right.sum()), 200)  # no groups: 200 independent images
    assert held_out_interval(right, np.arange(200)) == wilson(int(right.sum()), 200)  # one image a group
    low, high = held_out_interval(right, groups)
    wide, narrow = high - low, np.subtract(*wilson(int(right.sum()), 200)[::-1])
    assert wide > 1.8 * narrow  # 40 draws of the task, not 200: about sqrt(5) wider
    assert low <= right.mean() <= high and held_out_interval(right, groups) == (low, high)  # and repeatable
