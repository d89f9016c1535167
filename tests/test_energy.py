"""energy_stats: native kernels and numpy twin against a float64 reference (paper §3 energy score)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from plada_edge.core import native, twins

IMPLS = {"numpy": twins.energy_stats}
if native._native is not None:
    IMPLS["native"] = native._native.energy_stats
    for _level in native.available_simd():

        def _at_level(logits, temperature=1.0, threads=0, nan_policy="raise", _level=_level):
            previous = native.simd_level()
            native.set_simd_level(_level)
            try:
                return native._native.energy_stats(logits, temperature, threads, nan_policy)
            finally:
                native.set_simd_level(previous)

        IMPLS[f"native-{_level}"] = _at_level


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def reference(logits: np.ndarray, temperature: float = 1.0):
    """float64 energy, entropy and first-argmax label, written independently of the kernels."""
    z = logits.astype(np.float64) / temperature
    m = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.exp(z - m)
        s = e.sum(axis=1)
        lse = m[:, 0] + np.log(s)
        p = e / s[:, None]
        h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(axis=1)
    return -temperature * lse, h, logits.argmax(axis=1)


def rel_err(got, want):
    """Relative error, measured against max(|want|, 1) so values crossing zero stay meaningful."""
    got = np.asarray(got, np.float64)
    return np.abs(got - want) / np.maximum(np.abs(want), 1.0)


@pytest.mark.parametrize("num_classes", [1, 2, 10, 1000, 21841])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e2, 1e4])
def test_matches_float64_reference(impl, num_classes, scale):
    rng = np.random.default_rng(num_classes)
    n = 37  # not a multiple of any SIMD width
    x = (rng.standard_normal((n, num_classes)) * scale).astype(np.float32)
    if num_classes > 2:  # some -inf entries, never the whole row
        x[rng.random(x.shape) < 0.1] = -np.inf
        x[:, 0] = np.float32(scale)
    energy, label, entropy, flags = impl(x)
    want_e, want_h, want_l = reference(x)
    assert energy.dtype == np.float32 and entropy.dtype == np.float32
    assert label.dtype == twins.label_dtype(num_classes)
    assert rel_err(energy, want_e).max() <= 1e-5
    np.testing.assert_allclose(entropy, want_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(label, want_l)
    assert not flags.any()


@pytest.mark.parametrize("temperature", [0.5, 2.0, 7.3])
def test_temperature(impl, temperature):
    x = np.random.default_rng(1).standard_normal((50, 300)).astype(np.float32) * 4
    energy, label, entropy, _ = impl(x, temperature)
    want_e, want_h, want_l = reference(x, temperature)
    assert rel_err(energy, want_e).max() <= 1e-5
    np.testing.assert_allclose(entropy, want_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(label, want_l)


def test_bad_rows_are_flagged_and_never_look_good(impl):
    x = np.random.default_rng(2).standard_normal((6, 40)).astype(np.float32)
    x[1, 17] = np.nan
    x[2, :] = -np.inf
    x[4, :] = np.nan
    energy, label, entropy, flags = impl(x)
    assert np.isnan(energy[1]) and np.isnan(entropy[1]) and flags[1] == twins.FLAG_NAN
    assert energy[2] == np.inf and flags[2] == twins.FLAG_EMPTY
    assert np.isnan(energy[4]) and flags[4] == twins.FLAG_NAN
    assert label[1] == label[2] == label[4] == 0
    good = [0, 3, 5]
    assert not flags[good].any() and np.isfinite(energy[good]).all()


def test_posinf_raises_naming_the_row_unless_flagged(impl):
    x = np.zeros((9, 12), np.float32)
    x[5, 3] = np.inf
    x[7, 0] = np.inf
    with pytest.raises(ValueError, match="row 5 "):
        impl(x)
    energy, _, _, flags = impl(x, nan_policy="flag")
    assert flags[5] == flags[7] == twins.FLAG_POSINF
    assert np.isnan(energy[[5, 7]]).all() and np.isfinite(energy[[0, 1, 2, 3, 4, 6, 8]]).all()


def test_energy_sign_follows_the_formula(impl):
    # E = -T * logsumexp(z / T): a confident row (large logits) scores lower, i.e. more
    # in-distribution, than a row whose logits are all small.
    confident = np.full(10, -5.0, np.float32)
    confident[3] = 12.0
    unsure = np.linspace(-1.0, 1.0, 10, dtype=np.float32)
    energy, label, entropy, _ = impl(np.stack([confident, unsure]))
    assert energy[0] < energy[1] < 0
    assert energy[0] == pytest.approx(-np.log(np.exp(12.0) + 9 * np.exp(-5.0)), rel=1e-6)
    # With the SAME maximum, a flat row has more total mass, hence lower energy, yet higher
    # entropy: the two scores disagree there, which is why "energy" and "entropy" selections differ.
    peaked = np.full(10, -5.0, np.float32)
    peaked[3] = 8.0
    flat = np.full(10, 8.0, np.float32)
    energy, label, entropy, _ = impl(np.stack([peaked, flat]))
    assert energy[1] == pytest.approx(-(8.0 + np.log(10.0)), rel=1e-6)
    assert energy[1] < energy[0] and entropy[0] < entropy[1]
    assert label[0] == 3 and label[1] == 0  # ties go to the lowest index


def test_ties_break_to_the_lowest_index_across_blocks(impl):
    x = np.zeros((4, 3000), np.float32)
    x[0, [2999, 1500, 7]] = 5.0  # three equal maxima, the first in block 0
    x[1, [2048, 1025]] = 5.0  # equal maxima in later blocks
    x[2, 8:16] = 1.0  # ties inside one SIMD register
    x[3, :] = 0.25  # all equal
    _, label, _, _ = impl(x)
    np.testing.assert_array_equal(label, [7, 1025, 8, 0])


def test_float16_input_matches_float32(impl):
    x = (np.random.default_rng(3).standard_normal((33, 129)) * 3).astype(np.float16)
    x[4, 7] = np.float16(6e-8)  # a subnormal half
    a = impl(x)
    b = impl(x.astype(np.float32))
    for got, want in zip(a, b):
        np.testing.assert_array_equal(got, want)


def test_non_contiguous_input_is_copied(impl):
    base = np.random.default_rng(4).standard_normal((64, 30)).astype(np.float32)
    view = base[::2, ::3]  # strided in both axes
    assert not view.flags.c_contiguous
    for got, want in zip(impl(view), impl(np.ascontiguousarray(view))):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((3, 4), np.float64), TypeError),
        (np.zeros((3, 4), np.int32), TypeError),
        (np.zeros(12, np.float32), ValueError),
        (np.zeros((2, 3, 4), np.float32), ValueError),
        (np.zeros((3, 0), np.float32), ValueError),
    ],
)
def test_wrong_input_gives_a_clear_error(impl, bad, error):
    with pytest.raises(error, match="logits"):
        impl(bad)


def test_bad_arguments(impl):
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="temperature"):
        impl(x, 0.0)
    with pytest.raises(ValueError, match="nan_policy"):
        impl(x, 1.0, 0, "ignore")
    with pytest.raises(ValueError, match="threads"):
        impl(x, 1.0, -1)


def test_empty_batch(impl):
    energy, label, entropy, flags = impl(np.zeros((0, 5), np.float32))
    assert energy.shape == label.shape == entropy.shape == flags.shape == (0,)


@pytest.mark.skipif(native._native is None, reason="native kernels not built")
def test_native_and_numpy_agree_and_threads_do_not_change_answers():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((20011, 100)) * rng.uniform(0.1, 20, (20011, 1))).astype(np.float32)
    x[rng.random(x.shape) < 0.01] = -np.inf
    x[[11, 999]] = np.nan
    one = native._native.energy_stats(x, 1.0, 1, "raise")
    many = native._native.energy_stats(x, 1.0, 4, "raise")
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)  # thread split must not change a single bit
    np.testing.assert_array_equal(one[1], twins.energy_stats(x)[1])
    np.testing.assert_array_equal(one[3], twins.energy_stats(x)[3])
    good = one[3] == 0
    assert rel_err(one[0][good], twins.energy_stats(x)[0][good].astype(np.float64)).max() <= 1e-6


@pytest.mark.skipif(len(native.available_simd()) < 2, reason="only one SIMD level on this CPU")
def test_simd_paths_agree_with_scalar():
    x = (np.random.default_rng(6).standard_normal((4099, 257)) * 5).astype(np.float32)
    results = {}
    previous = native.simd_level()
    try:
        for level in native.available_simd():
            native.set_simd_level(level)
            results[level] = native._native.energy_stats(x)
    finally:
        native.set_simd_level(previous)
    scalar = results.pop("scalar")
    for level, got in results.items():
        np.testing.assert_array_equal(got[1], scalar[1], err_msg=level)
        assert rel_err(got[0], scalar[0].astype(np.float64)).max() <= 1e-6, level


def test_public_api_wraps_results():
    import plada_edge

    stats = plada_edge.energy_stats(np.zeros((3, 4), np.float32))
    assert isinstance(stats, native.EnergyStats)  # the named tuple lives with the kernels
    np.testing.assert_allclose(stats.energy, -np.log(4.0), rtol=1e-6)


@pytest.mark.skipif(os.environ.get("PLADA_EDGE_NATIVE") == "0", reason="native kernels disabled on purpose")
@pytest.mark.parametrize("c", [1, 255, 256, 257, 65536, 65537])
def test_one_label_dtype_rule(c):
    # the C++ rule (kernels.h label_bytes_for) and its twin (twins.label_dtype) agree
    got = native.energy_stats(np.zeros((2, c), np.float32)).label.dtype
    assert got == twins.label_dtype(c)


def test_native_kernels_are_loaded():
    # tools/setup.sh always builds them: silently falling back to numpy would hide a broken build.
    assert native.BACKEND == "native", native.LOAD_ERROR
    assert native.simd_level() in native.available_simd()


@pytest.mark.parametrize("num_classes", [3, 100, 1000, 1025])
def test_a_row_gets_the_same_answer_wherever_it_sits(impl, num_classes):
    # short rows are scored 8 or 16 at a time (csrc/energy_row.h, GroupOps): a row's answer must not
    # depend on its neighbours, its place in a group, a partial last group, or special rows beside it
    rng = np.random.default_rng(num_classes)
    x = (rng.standard_normal((37, num_classes)) * rng.uniform(0.1, 30, (37, 1))).astype(np.float32)
    x[3, 1] = np.nan
    x[20] = -np.inf
    x[21, 2] = np.inf
    whole = impl(x, 1.0, 1, "flag")
    for start in (0, 1, 5, 17, 36):
        for stop in (start + 1, min(37, start + 9), 37):
            part = impl(np.ascontiguousarray(x[start:stop]), 1.0, 1, "flag")
            for got, want in zip(part, whole):
                np.testing.assert_array_equal(got, want[start:stop], err_msg=f"rows {start}:{stop}")
