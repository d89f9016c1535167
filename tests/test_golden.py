"""Cross-architecture identity: the same inputs give byte-identical payloads and matching energy
statistics on every machine (x86_64 here; aarch64 under emulation in tools/test_aarch64.sh).

Golden outputs were written on x86_64 by tools/make_golden.py; inputs come from fixed seeds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from plada_edge.core import native
from plada_edge.core.codecs import list_codecs
from plada_edge.core.payload import decode_payload, encode_payload

GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_inputs():
    rng = np.random.default_rng(20260227)
    selections = {}
    for n, c, k in [(14_197_122, 200, 5_000), (100_181, 10, 1_002), (5_000, 65_536, 300), (97, 1, 40)]:
        idx = np.sort(rng.choice(n, k, replace=False))
        runs = np.repeat(rng.integers(0, c, k // 7 + 1), 7)[:k]
        selections[f"n{n}-c{c}-k{k}"] = (idx, runs, n, c)
    logits = (rng.standard_normal((257, 1000)) * rng.uniform(0.5, 8.0, (257, 1))).astype(np.float32)
    logits[3, 17] = np.nan
    logits[5] = -np.inf
    return selections, logits


# version 3's addition: a selection whose Safety-Net quotas follow the target, with their power
V3_SELECTION = {
    "strategy": "nearest",
    "budget": 1002,
    "safety_net": {"quotas": "target", "target_power": 0.5, "alpha": -0.2, "share": 1.0},
    "spread": 32.0,
}


V3_RELEASE = {"version": 3, "expires": 1_893_456_000}  # 2030-01-01 UTC: version 3 holds a signed release too


def payload_digests(selections, version: int = 1) -> dict:
    out = {}
    for name, (idx, lab, n, c) in selections.items():
        head = {
            "task": name,
            "class_names": [str(i) for i in range(c)],
            "pack_fingerprint": "f" * 64,
            "n": n,
            "image_size": 32,
        }
        if version == 3:
            head["selection"] = V3_SELECTION
            head["release"] = V3_RELEASE
        for codec in list_codecs():
            data = encode_payload(idx, lab, head, codec, version=version)
            p = decode_payload(data)
            assert np.array_equal(p.indices, idx) and np.array_equal(p.labels, lab)
            out[f"{name}/{codec}"] = hashlib.sha256(data).hexdigest()
    return out


def test_payload_bytes_match_golden():
    want = json.loads((GOLDEN / "payloads.json").read_text())
    got = payload_digests(golden_inputs()[0])
    assert got == want


def test_v2_payload_bytes_match_golden():
    want = json.loads((GOLDEN / "payloads-v2.json").read_text())
    got = payload_digests(golden_inputs()[0], version=2)
    assert got == want


def test_v3_payload_bytes_match_golden():
    want = json.loads((GOLDEN / "payloads-v3.json").read_text())
    got = payload_digests(golden_inputs()[0], version=3)
    assert got == want


@pytest.mark.parametrize("level", ["auto", "scalar"])
def test_energy_stats_match_golden(level):
    _, logits = golden_inputs()
    if level == "scalar":
        if native._native is None:
            pytest.skip("native kernels not built")
        previous = native.simd_level()
        native.set_simd_level("scalar")
    try:
        stats = native.energy_stats(logits, nan_policy="flag")
    finally:
        if level == "scalar":
            native.set_simd_level(previous)
    want = np.load(GOLDEN / "energy.npy")
    np.testing.assert_array_equal(stats.label, np.load(GOLDEN / "labels.npy"))
    for got, ref in zip((stats.energy, stats.entropy), want):
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isfinite(got), finite)
        np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-6, atol=1e-6)
