"""Selection kernels (native vs numpy twin) and the Safety-Net rules."""

from __future__ import annotations

import numpy as np
import pytest

from plada_edge.core import native, twins
from plada_edge.core.errors import PayloadError
from plada_edge.server.selection import safety_net_quotas

IMPLS = {"numpy": (twins.topk, twins.class_topk)}
if native._native is not None:
    IMPLS["native"] = (native._native.topk, native._native.class_topk)


def reference_topk(scores, k, exclude=None, largest=False):
    """Independent definition: sort (score, index) pairs, lower index first on ties."""
    idx = [i for i in range(len(scores)) if not np.isnan(scores[i]) and (exclude is None or not exclude[i])]
    idx.sort(key=lambda i: ((-scores[i] if largest else scores[i]), i))
    return np.array(idx[:k], np.int64)


CASES = {
    "random": lambda rng, n: rng.standard_normal(n).astype(np.float32),
    "all-equal": lambda rng, n: np.full(n, 0.5, np.float32),
    "few-values": lambda rng, n: rng.integers(-2, 3, n).astype(np.float32),
    "signed-zeros-infs": lambda rng, n: rng.choice(np.array([-0.0, 0.0, np.inf, -np.inf, 1.0], np.float32), n),
    "with-nan": lambda rng, n: np.where(rng.random(n) < 0.2, np.nan, rng.standard_normal(n)).astype(np.float32),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("largest", [False, True])
@pytest.mark.parametrize("k", [0, 1, 17, 500, 10_000])
def test_topk_matches_reference(case, largest, k):
    rng = np.random.default_rng([sorted(CASES).index(case), int(largest), k])  # the same inputs every run
    s = CASES[case](rng, 997)
    ex = (rng.random(997) < 0.15).astype(np.uint8)
    want = reference_topk(s, k, ex, largest)
    for name, (topk, _) in IMPLS.items():
        got = topk(s, k, ex, largest, 0)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_topk_large_multithreaded_native_equals_numpy():
    rng = np.random.default_rng(7)
    s = rng.standard_normal(3_000_001).astype(np.float32)
    s[rng.integers(0, len(s), 100_000)] = 0.25  # many ties
    ex = (rng.random(len(s)) < 0.05).astype(np.uint8)
    want = twins.topk(s, 30_000, ex)
    for name, (topk, _) in IMPLS.items():
        for threads in (1, 2, 4):
            np.testing.assert_array_equal(topk(s, 30_000, ex, False, threads), want, err_msg=f"{name}/{threads}")


@pytest.mark.parametrize("largest", [False, True])
def test_class_topk_matches_per_class_reference(largest):
    rng = np.random.default_rng(3)
    n, c = 5000, 7
    s = rng.integers(0, 50, n).astype(np.float32)  # heavy ties
    s[rng.random(n) < 0.05] = np.nan
    lab = rng.integers(0, c, n).astype(np.uint16)
    ex = (rng.random(n) < 0.1).astype(np.uint8)
    quotas = np.array([0, 1, 10, 100, 10_000, 3, 50])
    want = []
    for cls in range(c):
        sub = np.flatnonzero(lab == cls)
        pick = reference_topk(s[sub], int(quotas[cls]), ex[sub], largest)
        want.extend(sub[pick])
    for name, (_, class_topk) in IMPLS.items():
        np.testing.assert_array_equal(class_topk(s, lab, quotas, ex, largest, 0), want, err_msg=name)


def test_selection_kernels_reject_bad_input():
    for topk, class_topk in IMPLS.values():
        with pytest.raises(TypeError):
            topk(np.zeros(3), 1, None, False, 0)
        with pytest.raises(ValueError):
            topk(np.zeros((2, 2), np.float32), 1, None, False, 0)
        with pytest.raises(ValueError):
            topk(np.zeros(3, np.float32), -1, None, False, 0)
        with pytest.raises(ValueError, match="exclude"):
            topk(np.zeros(3, np.float32), 1, np.zeros(2, np.uint8), False, 0)
        with pytest.raises(ValueError, match="row 1"):
            class_topk(np.zeros(3, np.float32), np.array([0, 5, 1], np.uint8), np.array([1, 1]), None, False, 0)
        with pytest.raises(TypeError):
            class_topk(np.zeros(3, np.float32), np.array([0, 1, 1], np.int64), np.array([1, 1]), None, False, 0)


def test_safety_net_quotas():
    counts = np.array([1000, 10, 0, 100, 5])
    q = safety_net_quotas(counts, budget=100, alpha=0.0, share=1.0)
    # equal shares of 100 over the 4 non-empty classes, each capped at its N_c
    np.testing.assert_array_equal(q, [25, 10, 0, 25, 5])
    q = safety_net_quotas(counts, budget=1000, alpha=0.5, share=0.5)
    assert q.sum() <= 500 and q[0] > q[3] > q[1]  # alpha > 0 favours big classes
    q = safety_net_quotas(counts, budget=1000, alpha=-0.2, share=0.5)
    assert q[1] > 0 and q[4] == 5  # alpha < 0 lifts rare classes
    raw = safety_net_quotas(np.array([3, 3, 3]), budget=10, alpha=0.0, share=1.0)
    np.testing.assert_array_equal(raw, [3, 3, 3])
    np.testing.assert_array_equal(safety_net_quotas(np.array([9, 9, 9]), 10, 0.0, 1.0), [4, 3, 3])  # largest remainder
    with pytest.raises(ValueError):
        safety_net_quotas(counts, 10, 0.0, 1.5)


def test_class_topk_with_many_classes_uses_the_sorting_path_and_agrees():
    # 20,000 classes exceed the per-class histogram budget, so the native kernel counting-sorts
    rng = np.random.default_rng(11)
    n, c = 200_000, 20_000
    s = rng.integers(0, 1000, n).astype(np.float32)
    lab = rng.integers(0, c, n).astype(np.uint16)
    quotas = rng.integers(0, 12, c)
    want = twins.class_topk(s, lab, quotas)
    for name, (_, class_topk) in IMPLS.items():
        np.testing.assert_array_equal(class_topk(s, lab, quotas, None, False, 0), want, err_msg=name)


def _fake_scores(n=5000, c=5, seed=0):
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    label = rng.choice(c, n, p=[0.5, 0.3, 0.1, 0.07, 0.03]).astype(np.uint8)
    energy = (rng.standard_normal(n) + label).astype(np.float32)  # rarer classes sit at higher energy
    flags = (rng.random(n) < 0.02).astype(np.uint8)
    return SimpleNamespace(
        energy=energy,
        entropy=energy,
        label=label,
        flags=flags,
        n=n,
        num_classes=c,
        class_names=[str(i) for i in range(c)],
        meta={"pack_fingerprint": "f" * 64},
        distance=None,  # a teacher without anchors
    )


@pytest.mark.parametrize("safety_net", [True, False])
def test_spread_one_is_the_strict_order(safety_net):
    from plada_edge.server.selection import select

    sc = _fake_scores()
    strict = select(sc, count=300, safety_net=safety_net, spread=1)
    np.testing.assert_array_equal(select(sc, count=300, safety_net=safety_net, spread="1.0").indices, strict.indices)
    # "auto" is strict once the budget's band would pass AUTO_BAND of the pool
    big = select(sc, count=1000, safety_net=safety_net)
    assert big.spread == 1.0
    np.testing.assert_array_equal(big.indices, select(sc, count=1000, safety_net=safety_net, spread=1).indices)
    if not safety_net:
        ok = np.flatnonzero(sc.flags == 0)
        np.testing.assert_array_equal(strict.indices, np.sort(ok[np.argsort(sc.energy[ok], kind="stable")[:300]]))


def test_spread_draws_each_quota_from_its_band():
    from plada_edge.server.selection import safety_net_quotas, select

    sc = _fake_scores()
    k, spread = 300, 4.0
    sel = select(sc, count=k, spread=spread, seed=3)
    strict = select(sc, count=k, spread=1)
    assert sel.k == k and sel.spread == spread and len(np.unique(sel.indices)) == k
    assert not sc.flags[sel.indices].any()
    e, lab, ok = sc.energy, sc.label, sc.flags == 0
    quotas = safety_net_quotas(np.bincount(lab[ok], minlength=5), k, -0.2, 0.5)
    taken = np.zeros(sc.n, bool)
    for c in range(5):  # the quota part: q_c picks, all within the class's ceil(spread*q_c) lowest energies
        members = np.flatnonzero(ok & (lab == c))
        band = set(members[np.argsort(e[members], kind="stable")[: int(np.ceil(spread * quotas[c]))]].tolist())
        mine = [i for i in sel.indices if lab[i] == c and i in band]
        assert len(mine) >= quotas[c]
    for c in range(5):
        members = np.flatnonzero(ok & (lab == c))
        taken[members[np.argsort(e[members], kind="stable")[: int(np.ceil(spread * quotas[c]))]]] = True
    # nothing comes from beyond the union of the class bands and the remainder's band
    rest_k = k - int(quotas.sum())
    others = np.flatnonzero(ok & ~taken)
    rest_band = set(others[np.argsort(e[others], kind="stable")[: int(np.ceil(spread * rest_k))]].tolist())
    assert all(taken[i] or i in rest_band for i in sel.indices)
    # more diverse than strict: it reaches past the strict picks, and the seed decides how
    assert set(sel.indices) != set(strict.indices)
    assert not np.array_equal(select(sc, count=k, spread=spread, seed=4).indices, sel.indices)
    np.testing.assert_array_equal(select(sc, count=k, spread=spread, seed=3).indices, sel.indices)
    np.testing.assert_array_equal(sel.histogram[quotas > 0] >= quotas[quotas > 0], True)


def test_auto_spread_shrinks_with_the_budget():
    from plada_edge.core.config import AUTO_SPREAD
    from plada_edge.server.plan import resolve_spread
    from plada_edge.server.selection import select

    n = 100_000
    band, most = AUTO_SPREAD["gray"]
    assert resolve_spread("auto", 500, n) == most  # 0.5 %: capped
    assert resolve_spread("auto", int(band * n / 2), n) == pytest.approx(2.0)
    assert resolve_spread("auto", 10_000, n) == 1.0 and resolve_spread("auto", 0, n) == 1.0
    assert resolve_spread(" AUTO ", 1000, n) == pytest.approx(band * n / 1000)
    assert resolve_spread("3", 10, n) == 3.0 and resolve_spread(2, 10, n) == 2.0
    sc = _fake_scores()
    valid = int((sc.flags == 0).sum())
    sel = select(sc, count=100)  # the default is auto
    assert sel.spread == pytest.approx(min(most, band * valid / 100))
    np.testing.assert_array_equal(sel.indices, select(sc, count=100, spread=sel.spread).indices)


def test_auto_spread_is_wider_for_a_colour_view():
    from plada_edge.core.config import AUTO_SPREAD
    from plada_edge.server.plan import resolve_spread
    from plada_edge.server.selection import select

    n = 100_000
    (gray_band, gray_most), (band, most) = AUTO_SPREAD["gray"], AUTO_SPREAD["colour"]
    assert band > gray_band and most > gray_most
    assert resolve_spread("auto", 1000, n, colour=True) == pytest.approx(min(most, band * n / 1000))
    assert resolve_spread("auto", int(band * n / 2), n, colour=True) == pytest.approx(2.0)
    assert resolve_spread(4, 1000, n, colour=True) == 4.0  # a number is taken as given
    sc = _fake_scores()
    valid = int((sc.flags == 0).sum())
    gray = select(sc, count=100).spread
    sc.meta["view"] = {"gray": False}
    sel = select(sc, count=100)
    assert sel.spread == pytest.approx(min(most, band * valid / 100)) and sel.spread > gray
    np.testing.assert_array_equal(sel.indices, select(sc, count=100, spread=sel.spread).indices)


@pytest.mark.parametrize("bad", [0.5, 0.0, -1.0, float("nan"), float("inf"), "wide", ""])
def test_spread_must_be_at_least_one(bad):
    from plada_edge.server.selection import select

    with pytest.raises(ValueError, match="spread"):
        select(_fake_scores(), count=10, spread=bad)


def _whole_array_select(sc, k, safety_net, spread, seed, strategy="energy", alpha=-0.2, share=0.5):
    """The selection rule on whole in-memory arrays (the form select had before it streamed)."""
    from plada_edge.server.selection import safety_net_quotas

    key = {"energy": sc.energy, "opposite": sc.energy, "entropy": sc.entropy}.get(strategy)
    if strategy == "random":
        key = np.random.default_rng(seed).random(sc.n, dtype=np.float32)
    largest = strategy == "opposite"
    rand = np.random.default_rng([seed, 0x5EED]).random(sc.n, dtype=np.float32)
    exclude = (sc.flags != 0).astype(np.uint8)
    lab = sc.label.astype(np.uint32)

    def only(band):
        mask = np.ones(sc.n, np.uint8)
        mask[band] = 0
        return mask

    def best(m, exclude):
        if spread == 1 or m == 0:
            return twins.topk(key, m, exclude, largest)
        return twins.topk(rand, m, only(twins.topk(key, int(np.ceil(spread * m)), exclude, largest)))

    chosen = []
    if safety_net:
        counts = np.bincount(lab[exclude == 0], minlength=sc.num_classes)
        quotas = safety_net_quotas(counts, k, alpha, share)
        if spread == 1 or not quotas.any():
            picked = twins.class_topk(key, lab, quotas, exclude, largest)
        else:
            band = twins.class_topk(key, lab, np.ceil(spread * quotas).astype(np.int64), exclude, largest)
            picked = twins.class_topk(rand, lab, quotas, only(band))
        exclude = exclude.copy()
        exclude[picked] = 1
        chosen = [picked, best(k - len(picked), exclude)]
    else:
        chosen = [best(k, exclude)]
    return np.sort(np.concatenate(chosen))


@pytest.mark.parametrize("chunk", [64, 999, 1 << 18])
@pytest.mark.parametrize("strategy", ["energy", "opposite", "random"])
def test_streamed_selection_equals_the_whole_array_rule(monkeypatch, chunk, strategy):
    """select reads the scores in chunks (memory flat in N); the picks are those of the rule on whole
    arrays, chunk boundaries, ties, flags and -0.0 included."""
    from plada_edge.server import selection

    monkeypatch.setattr(selection, "CHUNK", chunk)
    sc = _fake_scores(n=7001, seed=5)
    sc.energy = np.round(sc.energy * 4) / 4  # many exact ties
    sc.energy[::97] = -0.0
    sc.energy[1::97] = 0.0
    sc.entropy = sc.energy
    for safety_net in (True, False):
        for k, spread in ((1, 1.0), (70, 1.0), (70, 8.0), (333, 3.5), (7001, 2.0), (200, 1.0)):
            got = selection.select(sc, count=k, strategy=strategy, safety_net=safety_net, spread=spread, seed=2)
            want = _whole_array_select(sc, min(k, int((sc.flags == 0).sum())), safety_net, spread, 2, strategy)
            np.testing.assert_array_equal(got.indices, want, err_msg=f"k={k} spread={spread} net={safety_net}")
            np.testing.assert_array_equal(got.labels, sc.label[want])
    with pytest.raises(ValueError, match="count must be >= 1"):
        selection.select(sc, count=0, strategy=strategy)


def test_target_quotas_follow_the_targets_class_counts_to_the_target_power():
    from plada_edge.core.config import SelectionConfig
    from plada_edge.server.selection import select

    sc = _fake_scores(n=20_000, seed=8)
    prior = np.array([1, 1, 4, 16, 4])  # the target's training images per class
    sel = select(sc, count=500, quotas="target", target_counts=prior, spread=1)  # energy order: auto is power 1
    assert sel.strategy == "energy" and sel.safety_net["target_power"] == 1.0
    assert sel.safety_net["quotas"] == "target" and sel.k == 500
    np.testing.assert_array_equal(sel.histogram, [19, 19, 77, 308, 77])  # 500 in the proportions 1:1:4:16:4
    for power, want in (("0.5", [50, 50, 100, 200, 100]), (0.0, [100] * 5)):  # ∝ sqrt(prior) = 1, 1, 2, 4, 2; equal
        got = select(sc, count=500, quotas="target", target_counts=prior, spread=1, target_power=power)
        np.testing.assert_array_equal(got.histogram, want, err_msg=f"power {power}")
        assert got.safety_net["target_power"] == float(power)
    for bad in (-0.1, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="target_power"):
            SelectionConfig(target_power=bad)
    pool = select(sc, count=500, spread=1)  # the default: pool quotas, the rest by energy
    assert pool.safety_net["quotas"] == "pool" and pool.histogram[0] > 100
    # what the teacher recorded is used when no counts are given; none recorded: pool quotas, with a warning
    sc.meta["target"] = {"train_class_counts": prior.tolist()}
    np.testing.assert_array_equal(select(sc, count=500, quotas="target", spread=1).indices, sel.indices)
    del sc.meta["target"]
    fallback = select(sc, count=500, quotas="target", spread=1)
    np.testing.assert_array_equal(fallback.indices, pool.indices)
    assert any("quotas=pool" in w for w in fallback.warnings)
    with pytest.raises(ValueError, match="target_counts"):
        select(sc, count=500, quotas="target", target_counts=[1, 2])
    with pytest.raises(ValueError, match="quotas"):
        SelectionConfig(quotas="prior")


def test_auto_quotas_follow_the_target_only_where_its_classes_are_imbalanced():
    from plada_edge.core.config import QUOTA_IMBALANCE
    from plada_edge.server.plan import imbalanced
    from plada_edge.server.selection import select

    sc = _fake_scores(n=20_000, seed=8)
    skewed = np.array([1, 1, 2, 4, 2]) * 30  # 4x between the largest and the smallest class
    even = np.array([30, 31, 29, 30, 32])
    assert imbalanced(skewed) and not imbalanced(even) and QUOTA_IMBALANCE <= 4
    assert imbalanced([int(QUOTA_IMBALANCE * 10), 10]) and not imbalanced([int(QUOTA_IMBALANCE * 10) - 1, 10])
    assert imbalanced([5, 0])  # a class without training images is the extreme case
    for counts, want in ((skewed, "target"), (even, "pool")):
        auto = select(sc, count=500, spread=1, target_counts=counts)  # auto is the default
        explicit = select(sc, count=500, spread=1, target_counts=counts, quotas=want)
        assert auto.safety_net["quotas"] == want and not auto.warnings
        np.testing.assert_array_equal(auto.indices, explicit.indices)
    sc.meta["target"] = {"train_class_counts": skewed.tolist()}  # what the teacher recorded serves too
    assert select(sc, count=500, spread=1).safety_net["quotas"] == "target"
    del sc.meta["target"]  # none recorded (an imported teacher): pool quotas, silently
    none = select(sc, count=500, spread=1)
    assert none.safety_net["quotas"] == "pool" and not any("quotas" in w for w in none.warnings)


def test_a_target_quota_selection_packs_into_a_payload(tmp_path):
    from plada_edge.core.payload import read_payload, write_payload
    from plada_edge.server.selection import select

    sc = _fake_scores(n=3000, seed=9)
    sel = select(sc, count=100, quotas="target", target_counts=[3, 1, 1, 1, 1])
    head = {"task": "t", "class_names": sc.class_names, "pack_fingerprint": "f" * 64, "n": sc.n, "image_size": 32}
    head["selection"] = {
        "strategy": sel.strategy,
        "budget": sel.budget,
        "safety_net": sel.safety_net,
        "spread": sel.spread,
    }
    for version in (1, 3):
        write_payload(tmp_path / f"v{version}.plada", sel.indices, sel.labels, head, version=version)
        np.testing.assert_array_equal(read_payload(tmp_path / f"v{version}.plada").indices, sel.indices)
    net = read_payload(tmp_path / "v3.plada").header["selection"]["safety_net"]
    assert net["quotas"] == "target" and net["target_power"] == sel.safety_net["target_power"]
    with pytest.raises(PayloadError, match="needs payload version 3"):  # version 2 cannot record target quotas
        write_payload(tmp_path / "v2.plada", sel.indices, sel.labels, head, version=2)
