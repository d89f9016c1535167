"""Strategy nearest: the teacher's anchors, the graph's distance output, and selection by it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from plada_edge.core.config import NEAR_COPY_QUANTILE, NEAR_COPY_RATIO, NEAREST_K
from plada_edge.server.scoring import score_pack
from plada_edge.server.selection import near_copy_ratio, select
from plada_edge.server.teacher import export_onnx, load_teacher, onnx_metadata


@pytest.fixture(scope="module")
def nearest_scores(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("nearest")
    onnx = tiny["root"] / "teacher.onnx"
    return score_pack(onnx, tiny["pack"], out / "scores", batch_size=32, chunk=64, progress=False)


def test_teacher_keeps_normalised_anchors_of_its_training_images(tiny):
    _, meta = load_teacher(tiny["root"] / "teacher")
    anchors = np.asarray(meta["anchors"], np.float32)
    held_out = tiny["target"].holdout()  # the forecast's images: never anchors, so no selection is drawn to them
    assert len(held_out) == 36 and meta["target"]["holdout"] == held_out.tolist()
    assert anchors.shape[0] == len(tiny["target"].y_train) - 36  # 180 images, under NEAREST_ANCHORS: all the rest
    np.testing.assert_allclose(np.linalg.norm(anchors, axis=1), 1.0, atol=2e-3)  # float16 storage
    assert tiny["export"]["anchors"] == 144
    assert onnx_metadata(tiny["root"] / "teacher.onnx")["outputs"] == ["logits", "features", "distance"]


def test_graph_distance_equals_its_numpy_definition(tiny):
    import onnxruntime as ort

    _, meta = load_teacher(tiny["root"] / "teacher")
    anchors = np.asarray(meta["anchors"], np.float32)
    sess = ort.InferenceSession(str(tiny["root"] / "teacher.onnx"), providers=["CPUExecutionProvider"])
    images = tiny["pack"].read(0, 200)
    features, distance = sess.run(["features", "distance"], {"images": images})
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    want = 1.0 - np.sort(unit @ anchors.T, axis=1)[:, -NEAREST_K:].mean(1)
    np.testing.assert_allclose(distance, want, atol=1e-4)


def test_scores_keep_the_distance_and_in_domain_images_are_nearer(nearest_scores):
    d = np.asarray(nearest_scores.distance)
    assert d.shape == (500,) and np.isfinite(d).all()
    # pool images 0..119 are drawn like the target's training images, the other 380 are noise
    assert np.median(d[:120]) < np.median(d[120:])


def test_nearest_fills_each_quota_with_its_nearest_images(nearest_scores):
    sc = nearest_scores
    sel = select(sc, strategy="nearest", count=30, safety_net=True, alpha=0.0, share=1.0, spread=1.0)
    assert sel.strategy == "nearest" and sel.k == 30 and not sel.warnings
    d, lab = np.asarray(sc.distance), np.asarray(sc.label)
    for c in range(3):
        members = np.flatnonzero(lab == c)
        np.testing.assert_array_equal(
            np.sort(members[np.argsort(d[members], kind="stable")[:10]]), sel.indices[sel.labels == c]
        )
    assert (sel.indices < 120).mean() >= 0.8  # mostly the in-domain images, not noise


def test_nearest_falls_back_to_energy_without_anchors(tiny, tmp_path):
    plain = tmp_path / "plain.onnx"
    report = export_onnx(tiny["root"] / "teacher", plain, input_size=16, nearest=False)
    assert report["anchors"] == 0 and report["outputs"] == ["logits", "features"]
    sc = score_pack(plain, tiny["pack"], tmp_path / "scores", batch_size=32, chunk=64, progress=False)
    assert sc.distance is None
    sel = select(sc, count=30, strategy="nearest")
    want = select(sc, count=30, strategy="energy")
    np.testing.assert_array_equal(sel.indices, want.indices)
    assert any("no distance" in w and "used energy" in w for w in sel.warnings)


def _with_distance(scores, distance):
    import copy

    other = copy.copy(scores)
    other.distance = distance
    return other


def _with_meta(scores, **changes):
    import copy

    other = copy.copy(scores)
    other.meta = copy.deepcopy(scores.meta)
    for key, value in changes.items():
        if key == "gray":
            other.meta["view"]["gray"] = value
        else:
            other.meta[key] = value
    return other


def test_by_teacher_default_is_nearest_for_pretrained_and_energy_for_scratch(tiny, nearest_scores):
    scratch = nearest_scores  # the tiny teacher starts from random weights, and its export says so
    assert onnx_metadata(tiny["root"] / "teacher.onnx")["pretrained"] is False
    assert scratch.meta["pretrained"] is False
    # the tiny pool's first 120 images are drawn like the target's training images: near-copies, so nearest
    assert near_copy_ratio(scratch) < NEAR_COPY_RATIO
    # the same distances squeezed into a narrow band: no pool image much nearer than the rest, so energy
    d = np.asarray(scratch.distance, np.float32)
    far = _with_distance(scratch, 0.5 + 0.1 * (d - d.min()) / (d.max() - d.min()))
    assert near_copy_ratio(far) > NEAR_COPY_RATIO
    energy = select(scratch, count=30, strategy="energy")
    nearest = select(scratch, count=30, strategy="nearest")
    assert energy.chosen_by is None and nearest.chosen_by is None  # asked for by name
    assert not np.array_equal(energy.indices, nearest.indices)  # else this test could not tell the two apart
    for scores, want, why in [
        (scratch, "nearest", "was trained from scratch and the pool holds near-copies"),
        (far, "energy", "was trained from scratch and the pool holds no near-copies"),
        (_with_meta(far, gray=False), "energy", "holds no near-copies"),  # the teacher's start decides, not its view
        (_with_meta(far, pretrained=True), "nearest", "started from ImageNet weights"),
        (_with_meta(far, pretrained=True, gray=False), "nearest", "started from ImageNet weights"),
    ]:
        sel = select(scores, count=30)
        assert sel.strategy == want and not sel.warnings
        assert sel.report()["chosen_by"].startswith("by-teacher: the teacher") and why in sel.chosen_by
        np.testing.assert_array_equal(sel.indices, select(scores, count=30, strategy=want).indices)


def test_near_copy_ratio_is_the_quantile_ratio_numpy_computes(nearest_scores):
    rng = np.random.default_rng(3)
    for d in [rng.uniform(0, 2, 500), rng.gamma(2.0, 0.05, 500), np.full(500, 0.25)]:
        d = d.astype(np.float32)
        q = np.quantile(d, [NEAR_COPY_QUANTILE, 0.5], method="inverted_cdf")  # a sample's own quantiles
        assert near_copy_ratio(_with_distance(nearest_scores, d)) == pytest.approx(q[0] / q[1], rel=1e-3, abs=1e-4)
    assert near_copy_ratio(_with_distance(nearest_scores, None)) is None  # no anchors: nothing to measure


def test_by_teacher_without_the_flag_and_by_view_resolve_by_the_view(nearest_scores):
    for pretrained in (None, True, False):
        for gray, want in [(True, "energy"), (False, "nearest")]:
            scores = _with_meta(nearest_scores, gray=gray, pretrained=pretrained)
            assert select(scores, count=30, strategy="by-view").strategy == want
            if pretrained is None:  # older scores, exported before the flag
                sel = select(scores, count=30)
                assert sel.strategy == want and "does not say" in sel.chosen_by


def test_target_quotas_take_the_square_root_in_nearest_order_and_the_proportions_in_energy_order(nearest_scores):
    from plada_edge.core.config import TARGET_POWER

    counts = [40 * (c + 1) ** 2 for c in range(nearest_scores.num_classes)]  # an imbalanced target
    near = select(nearest_scores, count=30, strategy="nearest", quotas="target", target_counts=counts)
    assert near.safety_net["target_power"] == TARGET_POWER["nearest"] == 0.5
    same = select(nearest_scores, count=30, strategy="nearest", quotas="target", target_counts=counts, target_power=0.5)
    np.testing.assert_array_equal(near.indices, same.indices)
    energy = select(nearest_scores, count=30, strategy="energy", quotas="target", target_counts=counts)
    assert energy.safety_net["target_power"] == 1.0
    for power in (0.0, 1.0):  # a number is taken as it is, in any order
        sel = select(
            nearest_scores, count=30, strategy="nearest", quotas="target", target_counts=counts, target_power=power
        )
        assert sel.safety_net["target_power"] == power
