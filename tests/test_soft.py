"""Soft labels (issue 35): a few bits per kept image of the teacher's runner-up and confidence."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from plada_edge.core.errors import ConfigError, PayloadError, ScoresError
from plada_edge.core.payload import SoftLabels, decode_payload, encode_payload
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack

HEAD = {"task": "soft", "class_names": [f"c{i}" for i in range(12)], "pack_fingerprint": "ab" * 32, "n": 50_000,
        "image_size": 32}  # fmt: skip


def selection(k=600, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(50_000, k, replace=False))
    labels = rng.integers(0, 12, k)
    soft = SoftLabels.of((labels + rng.integers(1, 12, k)) % 12, rng.uniform(0.5, 1, k), 3)
    return idx, labels, soft


def test_soft_labels_round_trip_bit_for_bit():
    idx, labels, soft = selection()
    data = encode_payload(idx, labels, HEAD, "model", soft=soft)
    p = decode_payload(data)
    assert data[6] == 3 and p.header["soft"] == {"bits": 3}
    assert np.array_equal(p.soft.runner_up, soft.runner_up) and np.array_equal(p.soft.confidence, soft.confidence)
    again = encode_payload(
        p.indices, p.labels, {k: v for k, v in p.header.items() if k != "soft"}, "model", soft=p.soft
    )
    assert again == data  # what a reader rebuilds writes the same bytes
    assert set(np.unique(soft.confidence * 14).round(6)) <= set(np.arange(7, 15, dtype=float))  # a 3-bit grid
    with pytest.raises(PayloadError, match="soft labels for 599 images, but 600"):
        encode_payload(idx, labels, HEAD, soft=SoftLabels(soft.runner_up[1:], soft.confidence[1:], 3))
    with pytest.raises(PayloadError, match="needs payload version 3"):
        encode_payload(idx, labels, HEAD, version=2, soft=soft)


def test_readers_without_soft_labels_refuse_them_in_one_line(monkeypatch):
    import plada_edge.core.payload as payload

    idx, labels, soft = selection()
    data = encode_payload(idx, labels, HEAD, soft=soft)
    monkeypatch.setattr(payload, "FIELD_SOFT", 99)  # a version-3 reader from before soft labels
    with pytest.raises(PayloadError, match="critical field 3 is not known to this reader .*: update it"):
        decode_payload(data)
    monkeypatch.setattr(payload, "BINARY_VERSIONS", (2,))  # a version-2 reader
    with pytest.raises(PayloadError, match="unsupported payload version 3"):
        decode_payload(data)


def test_a_tampered_soft_field_is_a_payload_error():
    idx, labels, soft = selection(k=300)
    data = bytearray(encode_payload(idx, labels, HEAD, "varint", soft=soft))
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(400):
        bad = bytearray(data)
        at = int(rng.integers(40, len(bad) - 4))
        bad[at] ^= int(rng.integers(1, 256))
        bad[-4:] = hashlib.sha256(bytes(bad[:-4])).digest()[:4]  # resealed: the parser and decoders are reached
        try:
            p = decode_payload(bytes(bad))
            outcomes.add("decoded")
            assert p.soft is None or len(p.soft.runner_up) == p.k
        except PayloadError:
            outcomes.add("refused")
    assert "refused" in outcomes


def test_pack_soft_labels_come_from_the_scores_own_teacher_and_count_under_the_cap(tiny, tmp_path):
    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    made = make_payload(scores, None, count=60, soft=2, teacher=tiny["root"] / "teacher.onnx", pack=tiny["pack"])
    soft = made.payload.soft
    assert soft.bits == 2 and len(soft.runner_up) == 60 and (soft.runner_up != made.payload.labels).all()
    hard = make_payload(scores, None, count=60)
    assert len(made.data) > len(hard.data)
    capped = make_payload(scores, None, max_bytes=len(hard.data), soft=2, teacher=tiny["root"] / "teacher.onnx",
                          pack=tiny["pack"])  # fmt: skip
    assert len(capped.data) <= len(hard.data) and capped.selection.k < 60  # the same bytes buy fewer images
    (tmp_path / "other.onnx").write_bytes(b"not the teacher")
    with pytest.raises(ScoresError, match="not the teacher these scores came from"):
        make_payload(scores, None, count=60, soft=2, teacher=tmp_path / "other.onnx", pack=tiny["pack"])
    with pytest.raises(ConfigError, match="need the teacher"):
        make_payload(scores, None, count=60, soft=2)


def test_learn_trains_on_soft_labels_at_soft_mix(tiny, tmp_path):
    import torch

    from plada_edge.device.student import learn

    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    p = make_payload(scores, None, count=60).payload  # a confident tiny teacher's shares round to 1: use 0.6
    soft = SoftLabels.of((p.labels + 1) % 3, np.full(60, 0.6), 3)
    (tmp_path / "s.plada").write_bytes(encode_payload(p.indices, p.labels, p.header, soft=soft))
    kw = dict(arch="tiny_cnn", epochs=2, batch_size=32, progress=False)

    def weights(out, **more):
        learn(tmp_path / "s.plada", tiny["pack"], tmp_path / out, **kw, **more)
        return torch.load(tmp_path / out / "student.pt", weights_only=False)["model"]

    hard, mixed, none = weights("hard", soft_mix=0.0), weights("mixed", soft_mix=0.5), weights("none", soft_mix=0.0)
    assert all(torch.equal(hard[k], none[k]) for k in hard)  # soft_mix 0: the hard label alone, repeatably
    assert any(not torch.equal(hard[k], mixed[k]) for k in hard)  # soft_mix 0.5: the soft targets move the weights
