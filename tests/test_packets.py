"""Payloads over lossy one-way links (issue 36): fountain-coded packets, rebuilt from any sufficient subset."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

pytest.importorskip("raptorq")

from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.core.errors import ConfigError, PayloadError
from plada_edge.core.keys import SigningKey, generate_keys, load_public_key
from plada_edge.core.packets import HEAD, assemble, make_packets, parse_overhead, read_packet
from plada_edge.core.payload import decode_payload, encode_payload

FP = "cd" * 32


def one_percent_payload(signer=None) -> bytes:
    """A payload the size of the suite's 1 % payloads: 1,002 of 100,181 images, runs of labels, 10 classes."""
    rng = np.random.default_rng(7)
    idx = np.sort(rng.choice(100_181, 1_002, replace=False))
    labels = np.repeat(rng.integers(0, 10, 1_002 // 5 + 1), 5)[:1_002]
    head = {"task": "links", "class_names": [f"c{i}" for i in range(10)], "pack_fingerprint": FP, "n": 100_181,
            "image_size": 32}  # fmt: skip
    return encode_payload(idx, labels, head, signer=signer)


def test_any_80_percent_of_packets_with_30_percent_overhead_rebuilds_it():
    data = one_percent_payload()
    packets = make_packets(data, size=64, overhead="30%")
    rng = random.Random(36)
    rebuilt = 0
    for _ in range(1000):
        try:
            rebuilt += assemble(rng.sample(packets, int(0.8 * len(packets)))) == data
        except PayloadError:
            pass
    assert rebuilt >= 999, rebuilt
    assert all(len(p) == 64 for p in packets) and 1_000 < len(data) < 2_000


def test_a_corrupted_packet_never_yields_a_payload_that_verifies():
    data = one_percent_payload()
    packets = make_packets(data, size=64, overhead="30%")
    rng = random.Random(7)
    outcomes = {"same": 0, "refused": 0}
    for trial in range(300):
        bad = [bytearray(p) for p in packets]
        for i in rng.sample(range(len(bad)), 3):
            bad[i][rng.randrange(HEAD.size, len(bad[i]))] ^= rng.randrange(1, 256)
            if trial % 2:  # an adversary who recomputes the CRC: the damage reaches the decoder
                bad[i][HEAD.size - 4 : HEAD.size] = b"\0\0\0\0"
                crc = zlib.crc32(bytes(bad[i]))
                bad[i][HEAD.size - 4 : HEAD.size] = crc.to_bytes(4, "little")
        try:
            got = assemble(bytes(b) for b in bad)
        except PayloadError:
            outcomes["refused"] += 1
            continue
        assert got == data  # whatever is returned is the payload itself, never a look-alike
        outcomes["same"] += 1
    assert outcomes["same"] > 0 and outcomes["refused"] > 0, outcomes  # both paths were exercised


def test_the_packet_reader_takes_anything_without_crashing():
    packets = make_packets(one_percent_payload(), size=48, overhead=0.5)
    rng = np.random.default_rng(0)
    for i in range(3000):
        p = bytearray(packets[i % len(packets)])
        kind = i % 3
        if kind == 0:
            p = p[: rng.integers(0, len(p))]
        elif kind == 1:
            p[rng.integers(0, len(p))] ^= int(rng.integers(1, 256))
        else:
            p = rng.integers(0, 256, rng.integers(0, 100), dtype=np.uint8).tobytes()
        got = read_packet(bytes(p))
        assert got is None or got[2] == packets[i % len(packets)][HEAD.size :]
    with pytest.raises(PayloadError, match="no intact packet"):
        assemble([b"PQ\x01" + b"\0" * 60, b""])
    with pytest.raises(PayloadError, match="are the least that can rebuild"):
        assemble(packets[:3])
    with pytest.raises(ConfigError, match="packet size must be"):
        make_packets(b"x" * 100, size=20)
    with pytest.raises(ConfigError, match="overhead must look like"):
        parse_overhead("lots")


def test_cli_packets_then_assemble_with_a_trusted_signature(tmp_path):
    generate_keys(tmp_path / "k.key")
    data = one_percent_payload(SigningKey(tmp_path / "k.key"))
    (tmp_path / "t.plada").write_bytes(data)
    runner = CliRunner()
    out = runner.invoke(app, ["packets", str(tmp_path / "t.plada"), "-o", str(tmp_path / "pk"), "--overhead", "40%"])
    assert out.exit_code == 0 and "packets of 64 bytes" in out.output, out.output
    files = sorted((tmp_path / "pk").iterdir())
    for f in random.Random(1).sample(files, len(files) // 4):  # a quarter lost on the way
        f.unlink()
    pub = str(tmp_path / "k.key.pub")
    out = runner.invoke(app, ["assemble", str(tmp_path / "pk"), "-o", str(tmp_path / "back.plada"), "--trust", pub])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "back.plada").read_bytes() == data
    assert decode_payload(data, load_public_key(pub)).signer_id
    generate_keys(tmp_path / "other.key")
    other = str(tmp_path / "other.key.pub")
    out = runner.invoke(app, ["assemble", str(tmp_path / "pk"), "-o", str(tmp_path / "x.plada"), "--trust", other])
    assert out.exit_code == 2 and "trusts only key" in out.stderr and not (tmp_path / "x.plada").exists()
