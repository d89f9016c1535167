"""Payload container and codecs: round trips, the paper's arithmetic, corruption, fuzzing."""

from __future__ import annotations

import hashlib
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plada_edge.core import codecs, model_codec, native
from plada_edge.core.codecs import get_codec, list_codecs
from plada_edge.core.payload import (
    PayloadError,
    decode_payload,
    encode_payload,
    information_floor_bits,
    read_payload,
    write_payload,
)

FP = "ab" * 32


def header(n, c, **kw):
    return dict(task="t", class_names=[f"c{i}" for i in range(c)], pack_fingerprint=FP, n=n, image_size=32, **kw)


def roundtrip(codec, idx, lab, n, c):
    body = get_codec(codec).encode(idx, lab, n, c)
    i2, l2 = get_codec(codec).decode(body, n, c, len(idx))
    np.testing.assert_array_equal(i2, idx)
    np.testing.assert_array_equal(l2, lab)
    return body


@st.composite
def selections(draw, max_n=5000):
    n = draw(st.integers(1, max_n))
    c = draw(st.sampled_from([1, 2, 10, 200, 65536]))
    kind = draw(st.sampled_from(["random", "clustered", "all", "empty"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "all":
        idx = np.arange(n)
    elif kind == "empty":
        idx = np.zeros(0, np.int64)
    elif kind == "random":
        idx = np.sort(rng.choice(n, draw(st.integers(0, n)), replace=False))
    else:  # runs of consecutive indices, as when a class folder is selected
        starts = rng.integers(0, n, draw(st.integers(1, 20)))
        idx = np.unique(np.concatenate([np.arange(s, min(n, s + rng.integers(1, 50))) for s in starts]))
    lab = (
        np.repeat(rng.integers(0, c, max(1, len(idx) // 7 + 1)), 7)[: len(idx)]
        if kind == "clustered"
        else rng.integers(0, c, len(idx))
    )
    return idx.astype(np.int64), lab.astype(np.int64), n, c


@pytest.mark.parametrize("codec", list_codecs())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sel=selections())
def test_codec_roundtrip(codec, sel):
    roundtrip(codec, *sel)


@pytest.mark.parametrize("codec", list_codecs())
def test_codec_edge_cases(codec):
    roundtrip(codec, np.zeros(0, np.int64), np.zeros(0, np.int64), 1, 1)  # empty
    roundtrip(codec, np.array([0]), np.array([0]), 1, 1)  # N = 1, k = N
    roundtrip(codec, np.arange(1000), np.arange(1000) % 65536, 1000, 65536)  # k = N, C = 65,536
    roundtrip(codec, np.array([0, 5, 7]), np.array([65535, 0, 65535]), 8, 65536)


@pytest.mark.parametrize("codec", list_codecs())
def test_codec_huge_n(codec):
    n = 2**32 - 1
    idx = np.array([0, 1, 2**31, 2**32 - 3, 2**32 - 2], np.int64)
    roundtrip(codec, idx, np.array([0, 1, 2, 3, 4]), n, 5)


def test_model_codec_native_and_python_twin_write_the_same_bytes():
    rng = np.random.default_rng(0)
    for n, c, k in [(1, 1, 1), (5000, 10, 300), (100_000, 200, 2000), (70_000, 1000, 500), (2**32 - 1, 65536, 100)]:
        idx = np.sort(rng.choice(min(n, 10**7), k, replace=False)) if n < 2**31 else np.unique(rng.integers(0, n, k))
        lab = rng.integers(0, c, len(idx))
        a = model_codec.model_encode(idx, lab, n, c)
        if native._native is not None:
            assert native._native.model_encode(idx, lab, n, c) == a
            i2, l2 = native._native.model_decode(a, n, c, len(idx))
            np.testing.assert_array_equal(i2, idx)
        i3, l3 = model_codec.model_decode(a, n, c, len(idx))
        np.testing.assert_array_equal(i3, idx)
        np.testing.assert_array_equal(l3, lab)


def test_paper_arithmetic():
    # N = 14,197,122 (ImageNet-21K), k = 1 % = 141,971: the paper's uncompressed sizes
    n, k = 14_197_122, 141_971
    assert round(n * 0.01) == k
    raw = k * (4 + 2)  # int32 index + uint16 label
    assert raw / 1024 == pytest.approx(831.86, abs=0.005)
    idx = np.sort(np.random.default_rng(0).choice(n, k, replace=False))
    gaps = codecs.gaps_of(idx)
    assert codecs.uint_for(int(gaps.max())) == np.uint16  # a random 1 % never gaps past 65,535
    compact = k * (2 + 1)  # uint16 gaps + uint8 labels (C <= 256)
    assert compact / 1024 == pytest.approx(415.93, abs=0.005)
    assert len(gaps.astype(np.uint16).tobytes()) + k == compact
    floor = information_floor_bits(n, idx, np.zeros(k, np.int64), 1)
    assert floor["index_bits"] / k == pytest.approx(8.08, abs=0.01)  # design notes: ~8.08 bits per kept image


def test_container_roundtrip_and_atomic_write(tmp_path):
    idx = np.array([3, 9, 10, 500])
    lab = np.array([1, 0, 1, 2])
    p = write_payload(tmp_path / "t.plada", idx, lab, header(1000, 3), codec="auto")
    assert p.header["codec"] in list_codecs()
    back = read_payload(tmp_path / "t.plada")
    np.testing.assert_array_equal(back.indices, idx)
    np.testing.assert_array_equal(back.labels, lab)
    assert back.k == 4 and back.fingerprint == FP
    assert not list(tmp_path.glob(".*tmp"))
    data = (tmp_path / "t.plada").read_bytes()
    for codec in list_codecs():  # auto picks the smallest
        assert len(encode_payload(idx, lab, header(1000, 3), codec)) >= len(data)


def _reseal(blob: bytes) -> bytes:
    body = blob[:-32]
    return body + hashlib.sha256(body).digest()


def test_every_kind_of_bad_payload_is_named():
    # the version 1 container, byte by byte (version 2 has its own test in test_payload_v2.py)
    good = encode_payload(np.array([1, 2, 3]), np.array([0, 1, 0]), header(10, 2), codec="paper-idx", version=1)
    cases = {
        "bad magic": b"XLADA\x00" + good[6:],
        "unsupported payload version": _reseal(good[:6] + struct.pack("<H", 9) + good[8:]),
        "truncated": good[:-40],
        "checksum mismatch": good[:-33] + bytes([good[-33] ^ 1]) + good[-32:],
        "trailing": good + b"\x00",
    }
    for expected, blob in cases.items():
        with pytest.raises(PayloadError, match=expected):
            decode_payload(blob)
    # a header that lies about the body: k says 4, body holds 3
    hlen = struct.unpack_from("<I", good, 8)[0]
    head = good[12 : 12 + hlen].replace(b'"k":3', b'"k":4')
    lying = good[:8] + struct.pack("<I", len(head)) + head + good[12 + hlen :]  # old checksum: resealed below
    with pytest.raises(PayloadError, match="body does not match the header|decodes to"):
        decode_payload(_reseal(lying))


def test_out_of_range_and_unsorted_content_is_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_payload(np.array([3, 3]), np.array([0, 0]), header(10, 2))
    with pytest.raises(ValueError, match="labels"):
        encode_payload(np.array([3]), np.array([2]), header(10, 2))
    # hand-built bodies that decode but break the rules: caught on read
    body = codecs._compress(bytes([1]) + np.array([5, 0], np.uint8).tobytes() + np.array([0, 0], np.uint8).tobytes())
    blob = _container(header(10, 2), "paper-idx", body, k=2)
    with pytest.raises(PayloadError, match="strictly increasing"):
        decode_payload(blob)
    body = codecs._compress(bytes([1]) + np.array([5, 9], np.uint8).tobytes() + np.array([0, 0], np.uint8).tobytes())
    with pytest.raises(PayloadError, match="out of range"):
        decode_payload(_container(header(10, 2), "paper-idx", body, k=2))
    body = codecs._compress(bytes([1]) + np.array([5, 1], np.uint8).tobytes() + np.array([0, 7], np.uint8).tobytes())
    with pytest.raises(PayloadError, match="label 7"):
        decode_payload(_container(header(10, 2), "paper-idx", body, k=2))


def _container(head: dict, codec: str, body: bytes, k: int) -> bytes:
    import json

    h = json.dumps(dict(head, k=k, codec=codec, format_version=1), sort_keys=True).encode()
    blob = b"PLADA\x00" + struct.pack("<HI", 1, len(h)) + h + struct.pack("<Q", len(body)) + body
    return blob + hashlib.sha256(blob).digest()


def test_fuzz_reader_raises_only_payload_error():
    """Version 1: 10,000+ mutated, truncated and random inputs: PayloadError or success, nothing else."""
    rng = np.random.default_rng(1)
    seeds = []
    for codec in list_codecs():
        idx = np.sort(rng.choice(5000, 200, replace=False))
        seeds.append(encode_payload(idx, rng.integers(0, 10, 200), header(5000, 10), codec, version=1))
    seeds.append(encode_payload(np.arange(0), np.arange(0), header(5, 300), "model", version=1))
    t0 = time.perf_counter()
    tried = 0
    for i in range(10_500):
        base = bytearray(seeds[i % len(seeds)])
        op = i % 5
        if op == 0:  # flip bytes, then reseal so the checksum passes and the parsers are exercised
            for _ in range(rng.integers(1, 8)):
                base[rng.integers(0, len(base) - 32)] ^= int(rng.integers(1, 256))
            blob = _reseal(bytes(base))
        elif op == 1:
            blob = bytes(base[: rng.integers(0, len(base))])
        elif op == 2:
            blob = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
        elif op == 3:  # random body behind a valid header
            hlen = struct.unpack_from("<I", base, 8)[0]
            body = rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8).tobytes()
            blob = _reseal(bytes(base[: 12 + hlen]) + struct.pack("<Q", len(body)) + body + b"\0" * 32)
        else:  # flip without resealing
            base[rng.integers(0, len(base))] ^= 0xFF
            blob = bytes(base)
        try:
            decode_payload(blob)
        except PayloadError:
            pass
        tried += 1
    assert tried >= 10_000
    assert time.perf_counter() - t0 < 120  # no hangs: bounded work per input


def test_zstd_bomb_is_refused():
    huge = codecs._compress(bytes([1]) + bytes(50_000_000))
    blob = _container(header(10, 2), "paper-idx", huge, k=2)
    with pytest.raises(PayloadError, match="expands"):
        decode_payload(blob)


def test_zstd_context_is_capped_and_uncapped_payloads_still_decode(monkeypatch):
    """The encoder caps zstd's window and tables (memory flat at 14.2M); a payload written with the
    level's own, larger tables (as before the cap) reads the same."""
    import zstandard

    raw = np.random.default_rng(4).integers(0, 2, 3_000_000, dtype=np.uint8).tobytes()
    assert zstandard.get_frame_parameters(codecs._compress(raw)).window_size <= 1 << codecs.ZSTD_MAX_LOG
    n = 14_197_122
    idx = np.sort(np.random.default_rng(3).choice(n, n // 100, replace=False))
    lab = (idx % 7).astype(np.int64)
    head = header(n, 7)
    capped = encode_payload(idx, lab, head, "paper-bmp")
    monkeypatch.setattr(
        codecs,
        "_compress",
        lambda raw: zstandard.ZstdCompressor(level=codecs.ZSTD_LEVEL, write_content_size=True).compress(raw),
    )
    uncapped = encode_payload(idx, lab, head, "paper-bmp")
    assert uncapped != capped and abs(len(uncapped) - len(capped)) < 0.02 * len(capped)
    for data in (capped, uncapped):
        p = decode_payload(data)
        np.testing.assert_array_equal(p.indices, idx)
        np.testing.assert_array_equal(p.labels, lab)
