"""Payload format v2: compact binary header, checksum or Ed25519 signature, a bounded reader."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from plada_edge.core.errors import PayloadError
from plada_edge.core.keys import SigningKey, generate_keys, key_id, load_public_key
from plada_edge.core.payload import MAGIC, decode_payload, encode_payload, read_payload

FP = "ab" * 32


def header(n=100_181, c=10, **kw):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return dict(
        task="fmnist",
        class_names=(names * (c // 10 + 1))[:c],
        pack_fingerprint=FP,
        n=n,
        image_size=32,
        view={"native_size": 28, "model_size": 32, "gray": True, "mean": [0.5] * 3, "std": [0.5] * 3},
        selection={
            "strategy": "energy",
            "keep": 0.01,
            "budget": 1002,
            "safety_net": {"alpha": -0.2, "share": 0.5},
            "spread": 7.99,
        },
        teacher={"arch": "resnet18", "test_acc": 0.8823, "sha256": "cd" * 32},
        target={"name": "fmnist", "native_size": 28, "channels": 1},
        **kw,
    )


def selection(n=100_181, k=1002, c=10, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, k, replace=False))
    return idx, np.repeat(rng.integers(0, c, k // 7 + 1), 7)[:k]


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    generate_keys(d / "server.key")
    return SigningKey(d / "server.key"), load_public_key(d / "server.key.pub"), d


def test_v2_round_trip_keeps_what_the_device_needs():
    idx, lab = selection()
    data = encode_payload(idx, lab, header(), "model")
    p = decode_payload(data)
    assert p.format_version == 2 and data[:6] == MAGIC and data[6] == 2
    np.testing.assert_array_equal(p.indices, idx)
    np.testing.assert_array_equal(p.labels, lab)
    h = p.header
    assert h["class_names"] == header()["class_names"] and h["pack_fingerprint"] == FP and h["n"] == 100_181
    assert h["view"] == header()["view"] and h["teacher"]["test_acc"] == 0.8823 and h["teacher"]["arch"] == "resnet18"
    assert h["selection"]["safety_net"] == {"alpha": -0.2, "share": 0.5} and h["selection"]["spread"] == 7.99
    assert h["selection"]["strategy"] == "energy" and h["selection"]["budget"] == 1002
    assert h["target"] == {"name": "fmnist", "native_size": 28, "channels": 1}
    assert p.header_bytes + p.body_bytes + p.trailer_bytes == p.total_bytes == len(data) and p.trailer_bytes == 4
    # any other view normalisation, strategy and free-form keys travel too
    other = header(c=3, note={"by": "test"})
    other["view"] = {"native_size": 8, "model_size": 32, "gray": False, "mean": [0.1, 0.2, 0.3], "std": [0.9, 0.8, 0.7]}
    other["selection"]["strategy"] = "my-strategy"
    q = decode_payload(encode_payload(idx, lab % 3, other, "varint")).header
    assert q["view"] == other["view"] and q["selection"]["strategy"] == "my-strategy" and q["note"] == {"by": "test"}


def _target_quotas(**kw):
    h = header(**kw)
    net = {"quotas": "target", "target_power": 0.5, "alpha": -0.2, "share": 1}
    h["selection"] = dict(h["selection"], safety_net=net)
    return h


def test_v3_records_target_quotas_and_is_written_only_when_needed():
    idx, lab = selection()
    plain = encode_payload(idx, lab, header(), "model")
    assert plain[6] == 2  # nothing v2 cannot say: v2 bytes, readable by every device that reads v2
    data = encode_payload(idx, lab, _target_quotas(), "model")
    p = decode_payload(data)
    assert data[6] == 3 and p.format_version == 3
    assert len(data) - len(plain) <= 8  # a flag bit, the power, an empty field list (the meta may be zstd'd)
    assert p.header["selection"]["safety_net"] == {"alpha": -0.2, "share": 1.0, "quotas": "target", "target_power": 0.5}
    with pytest.raises(PayloadError, match="needs payload version 3"):
        encode_payload(idx, lab, _target_quotas(), "model", version=2)
    v3_anyway = decode_payload(encode_payload(idx, lab, header(), "model", version=3))
    assert v3_anyway.format_version == 3 and v3_anyway.header["selection"] == decode_payload(plain).header["selection"]


def test_v3_extension_fields_critical_unknown_refused_informative_skipped(monkeypatch):
    import plada_edge.core.payload as payload

    idx, lab = selection()

    def with_field(tag):  # the writer's meta with one extension field in place of the empty list
        def pack_meta(h, version=2, extra_fields=None):
            out = bytearray(original(h, version, extra_fields))
            assert out[-1] == 0  # the empty field list the writer ends the v3 meta with
            out[-1:] = bytes([1, tag, 3]) + b"abc"
            return bytes(out)

        return pack_meta

    original = payload._pack_meta
    monkeypatch.setattr(payload, "_pack_meta", with_field(4))  # even, and assigned to nothing yet
    informative = encode_payload(idx, lab, _target_quotas(), "varint")
    monkeypatch.setattr(payload, "_pack_meta", with_field(5))
    critical = encode_payload(idx, lab, _target_quotas(), "varint")
    monkeypatch.setattr(payload, "_pack_meta", original)
    assert decode_payload(informative).format_version == 3
    with pytest.raises(PayloadError, match="critical field 5 is not known to this reader"):
        decode_payload(critical)
    newer = bytearray(encode_payload(idx, lab, header(), "varint"))
    newer[6] = 4
    with pytest.raises(PayloadError, match="unsupported payload version 4 .* update plada-edge"):
        decode_payload(bytes(newer))


def test_v2_header_is_small_next_to_the_body():
    idx, lab = selection()
    v1 = encode_payload(idx, lab, header(), "model", version=1)
    p = decode_payload(encode_payload(idx, lab, header(), "model"))
    assert p.header_bytes + p.trailer_bytes < 0.15 * p.body_bytes  # the goal: total <= 1.15 x body
    assert p.total_bytes < len(v1) - 500  # the v1 JSON header was ~700 B of this payload


def test_signed_payloads_verify_and_trust_is_enforced(key, tmp_path):
    signer, public, d = key
    idx, lab = selection()
    data = encode_payload(idx, lab, header(), signer=signer)
    p = decode_payload(data, trusted=public)
    assert p.signer == public and p.signer_id == key_id(public) and p.trailer_bytes == 96
    unsigned = encode_payload(idx, lab, header())
    assert len(data) - len(unsigned) <= 100  # a signature costs at most 100 bytes more
    with pytest.raises(PayloadError, match="not signed"):
        decode_payload(unsigned, trusted=public)
    with pytest.raises(PayloadError, match="not signed"):
        decode_payload(encode_payload(idx, lab, header(), version=1), trusted=public)
    generate_keys(tmp_path / "other.key")
    with pytest.raises(PayloadError, match="signed by key"):
        decode_payload(encode_payload(idx, lab, header(), signer=SigningKey(tmp_path / "other.key")), trusted=public)
    # an attacker rewrites a label and recomputes what a checksum would need: the signature fails
    tampered = bytearray(data)
    tampered[len(tampered) - 96 - 5] ^= 0x10
    with pytest.raises(PayloadError, match="signature mismatch"):
        decode_payload(bytes(tampered))
    # ... or re-signs with its own key: the device's trust refuses it
    forged = bytes(tampered[:-96])
    other = SigningKey(tmp_path / "other.key")
    with pytest.raises(PayloadError, match="signed by key"):
        decode_payload(forged + other.public + other.sign(forged), trusted=public)
    with pytest.raises(PayloadError, match="cannot be signed"):
        encode_payload(idx, lab, header(), version=1, signer=signer)


def test_key_files(key, tmp_path):
    _, public, d = key
    assert (d / "server.key").stat().st_mode & 0o777 == 0o600
    assert load_public_key(public.hex()) == public
    with pytest.raises(PayloadError.__mro__[1], match="already exists"):
        generate_keys(d / "server.key")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(PayloadError.__mro__[1], match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


def _v1_with(fields: dict) -> bytes:
    import struct

    head = json.dumps(fields, sort_keys=True).encode()
    blob = MAGIC + struct.pack("<HI", 1, len(head)) + head + struct.pack("<Q", 0) + b""
    return blob + hashlib.sha256(blob).digest()


def _v1_raw(head: bytes, body: bytes = b"") -> bytes:
    import struct

    blob = MAGIC + struct.pack("<HI", 1, len(head)) + head + struct.pack("<Q", len(body)) + body
    return blob + hashlib.sha256(blob).digest()


def test_the_reported_attacks_are_cheap_one_line_errors():
    base = dict(task="t", class_names=["a", "b"], pack_fingerprint=FP, image_size=32, codec="model", format_version=1)
    cases = {
        "over the limit|denser": _v1_with(dict(base, n=10**8, k=10**8)),
        "n must be": _v1_with(dict(base, n=2**40, k=2**40)),
        "teacher must be an object": _v1_with(dict(base, n=10, k=0, teacher="x")),
        "n must be a whole number": _v1_with(dict(base, n=True, k=0)),
        "task must be": _v1_with(dict(base, task=7, n=10, k=0)),
        "class names must be": _v1_with(dict(base, class_names=[1, 2], n=10, k=0)),
        "pack_fingerprint": _v1_with(dict(base, pack_fingerprint="x", n=10, k=0)),
        "not a number|n must": _v1_raw(json.dumps(dict(base, k=0)).encode()[:-1] + b',"n":1e999}'),
        "not an object": _v1_raw(b"[1, 2]"),
        "bmp|n must": _v1_with(dict(base, codec="paper-bmp", n=2**33, k=1)),
    }
    for expected, blob in cases.items():
        t0 = time.perf_counter()
        with pytest.raises(PayloadError, match=expected):
            decode_payload(blob)
        assert time.perf_counter() - t0 < 0.5, expected


def test_v2_numbers_are_bounded_before_anything_is_allocated():
    idx, lab = selection(n=5000, k=50)
    good = encode_payload(idx, lab, header(n=5000), "model")

    def with_counts(n: int, k: int) -> bytes:
        def varint(v):
            out = bytearray()
            while True:
                out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
                v >>= 7
                if not v:
                    return bytes(out)

        rest = good[8:]
        for _ in range(2):  # skip the old n and k
            while rest[0] & 0x80:
                rest = rest[1:]
            rest = rest[1:]
        blob = good[:8] + varint(n) + varint(k) + rest
        blob = blob[:-4]
        return blob + hashlib.sha256(blob).digest()[:4]

    for (n, k), expected in {
        (10**8, 10**8): "denser",
        (2**40, 1): "over the limit",
        (5000, 6000): "over the limit",
        (2**27, 2**27): "denser",
    }.items():
        t0 = time.perf_counter()
        with pytest.raises(PayloadError, match=expected):
            decode_payload(with_counts(n, k))
        assert time.perf_counter() - t0 < 0.5


def test_dense_selections_are_refused_by_the_writer_too():
    n = 200_000
    with pytest.raises(PayloadError, match="denser than the format allows"):
        encode_payload(np.arange(n), np.zeros(n, np.int64), header(n=n), "model")


FUZZ = textwrap.dedent("""
    import hashlib, resource, sys, time
    import numpy as np
    from plada_edge.core.errors import PayloadError
    from plada_edge.core.keys import SigningKey
    from plada_edge.core.payload import decode_payload, encode_payload
    sys.path.insert(0, sys.argv[2])
    from test_payload_v2 import header, selection
    signer = SigningKey(sys.argv[1])
    rng = np.random.default_rng(7)
    seeds = []
    for i, codec in enumerate(["model", "paper-idx", "paper-bmp", "varint"]):
        idx, lab = selection(n=20_000, k=400, seed=i)
        seeds.append((encode_payload(idx, lab, header(n=20_000), codec), False))
        seeds.append((encode_payload(idx, lab, header(n=20_000), codec, signer=signer), True))
    seeds.append((encode_payload(np.arange(0), np.arange(0), header(n=5, c=300), "model"), False))
    v3 = header(n=20_000)
    net = {"quotas": "target", "target_power": 0.5, "alpha": 0, "share": 1}
    v3["selection"] = dict(v3["selection"], safety_net=net)
    v3["release"] = {"version": 12, "expires": 1_893_456_000}  # the signed release's field, fuzzed too
    seeds.append((encode_payload(*selection(n=20_000, k=400, seed=9), v3, "model"), False))  # version 3
    seeds.append((encode_payload(*selection(n=20_000, k=400, seed=9), v3, "model", signer=signer), True))
    from plada_edge.core.payload import SoftLabels
    si, sl = selection(n=20_000, k=400, seed=11)
    soft = SoftLabels.of((sl + 1) % 10, np.linspace(0.5, 1, 400), 3)
    seeds.append((encode_payload(si, sl, v3, "model", soft=soft), False))  # soft labels, fuzzed too

    def seal(prefix, signed):
        return prefix + (signer.public + signer.sign(prefix) if signed else hashlib.sha256(prefix).digest()[:4])

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worst, tried, bad, reached = 0.0, 0, [], 0
    for i in range(int(sys.argv[3])):
        data, signed = seeds[i % len(seeds)]
        trailer = 96 if signed else 4
        body = bytearray(data[:-trailer])
        op = i % 6
        if op == 0:  # flip bytes anywhere before the trailer, reseal: the parsers and codecs are reached
            for _ in range(rng.integers(1, 6)):
                body[rng.integers(6, len(body))] ^= int(rng.integers(1, 256))
            blob = seal(bytes(body), signed)
        elif op == 1:  # truncate
            blob = data[: rng.integers(0, len(data))]
        elif op == 2:  # random bytes behind the magic
            blob = data[:8] + rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8).tobytes()
        elif op == 3:  # large numbers in the first varints, resealed
            pos = 8 + int(rng.integers(0, 4))
            big = int(rng.integers(1, 2**62))
            enc = bytearray()
            while True:
                enc.append((big & 0x7F) | (0x80 if big >> 7 else 0))
                big >>= 7
                if not big:
                    break
            blob = seal(bytes(body[:pos]) + bytes(enc) + bytes(body[pos + 1:]), signed)
        elif op == 4:  # random tail (meta and body) behind a valid fixed header, resealed
            blob = seal(bytes(body[:45]) + rng.integers(0, 256, rng.integers(0, 600), dtype=np.uint8).tobytes(), signed)
        else:  # flip without resealing
            raw = bytearray(data)
            raw[rng.integers(0, len(raw))] ^= 0xFF
            blob = bytes(raw)
        t0 = time.perf_counter()
        try:
            decode_payload(blob)
        except PayloadError as exc:
            reached += "body does not match" in str(exc) or "decodes to" in str(exc)
        except Exception as exc:
            bad.append(f"{type(exc).__name__}: {exc}")
        worst = max(worst, time.perf_counter() - t0)
        tried += 1
    extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    print(tried, len(bad), round(worst, 3), round(extra_mb, 1), reached)
    print(bad[:5])
""")


def test_fuzz_v2_reader_only_raises_payload_error_fast_and_small(key):
    """>= 10,000 mutations (raw, and re-checksummed / re-signed so the parsers and codecs are reached)."""
    from pathlib import Path

    _, _, d = key
    out = subprocess.run(
        [sys.executable, "-c", FUZZ, str(d / "server.key"), str(Path(__file__).parent), "10200"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tried, bad, worst, extra_mb, reached = out.stdout.splitlines()[0].split()
    assert int(tried) >= 10_000 and int(reached) >= 500  # many mutations got past the trailer into the codecs
    assert int(bad) == 0, out.stdout
    assert float(worst) < 1.0  # no input takes a second
    assert float(extra_mb) <= 64  # peak memory above the baseline


def test_read_payload_refuses_huge_files_without_reading_them(tmp_path):
    big = tmp_path / "big.plada"
    with open(big, "wb") as f:
        f.write(MAGIC)
        f.truncate(300 << 20)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PayloadError, match="over the"):
        read_payload(big)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024
