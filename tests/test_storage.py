"""Compressed packs (--store jpeg|webp): deterministic, verifiable, decoded only where read."""

from __future__ import annotations

import numpy as np
import pytest

from plada_edge.core.errors import ConfigError, PackError
from plada_edge.core.reference import ReferencePack, build_pack


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:24]
    smooth = ((np.sin(xx[None] / (2 + rng.random((3000, 1, 1)) * 4)) + 1) * 100).astype(np.uint8)
    np.save(root / "a.npy", np.stack([smooth, smooth[:, ::-1], smooth.transpose(0, 2, 1)], axis=-1))
    return root


@pytest.mark.parametrize("store", ["jpeg", "webp"])
def test_encoded_packs_read_like_raw_ones(source, tmp_path, store):
    raw = build_pack([str(source / "a.npy")], tmp_path / "raw", size=24)
    enc = build_pack([str(source / "a.npy")], tmp_path / store, size=24, store=store, quality=90, shard=700, workers=2)
    again = build_pack(  # encoded serially: the same bytes as across worker processes
        [str(source / "a.npy")], tmp_path / f"{store}2", size=24, store=store, quality=90, shard=700, workers=1
    )
    assert enc.fingerprint == again.fingerprint != raw.fingerprint  # deterministic, and a fingerprint of its own
    assert enc.store == store and enc.n == raw.n == 3000 and enc.verify() == enc.fingerprint
    assert enc.info()["bytes"] < raw.info()["bytes"] / 2
    idx = np.array([2999, 5, 1200, 5, 0])
    got, want = enc.gather(idx), raw.gather(idx)
    assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 6
    np.testing.assert_array_equal(enc.read(100, 164), enc.gather(np.arange(100, 164)))
    chunks = [imgs for _, imgs in enc.iter_chunks(1000)]
    assert sum(len(c) for c in chunks) == 3000
    reopened = ReferencePack.open(tmp_path / store)
    assert reopened.fingerprint == enc.fingerprint and reopened.sources[0].stop == 3000


def test_encoded_pack_scores_and_trains(tiny, tmp_path):
    from plada_edge.device.student import learn
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import score_pack

    pool = tiny["root"] / "pool.npy"
    pack = build_pack([str(pool)], tmp_path / "pack", size=16, store="jpeg", quality=95)
    sc = score_pack(tiny["root"] / "teacher.onnx", pack, tmp_path / "s", batch_size=32, chunk=64, progress=False)
    p, _, _ = make_payload(sc, tmp_path / "p.plada", count=40)
    m = learn(tmp_path / "p.plada", pack, tmp_path / "st", arch="tiny_cnn", epochs=1, progress=False)
    assert m["k"] == 40 and m["pack_fingerprint"] == pack.fingerprint


def test_tampered_or_truncated_encoded_packs_are_refused(source, tmp_path):
    build_pack([str(source / "a.npy")], tmp_path / "p", size=24, store="jpeg")
    blob = tmp_path / "p" / "images.bin"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(PackError, match="modified"):
        ReferencePack.open(tmp_path / "p").verify()
    blob.write_bytes(bytes(data[:-10]))
    with pytest.raises(PackError, match="truncated"):
        ReferencePack.open(tmp_path / "p")
    with pytest.raises(ConfigError, match="store must be"):
        build_pack([str(source / "a.npy")], tmp_path / "q", size=24, store="png")


@pytest.mark.parametrize("store", ["jpeg", "webp"])
def test_both_decoders_give_the_same_pixels(source, tmp_path, store):
    from plada_edge.core import storage

    pytest.importorskip("torchvision")
    pack = build_pack([str(source / "a.npy")], tmp_path / "p", size=24, store=store)
    blobs = pack._encoded._blobs(np.arange(0, 3000, 37))
    fast = storage._torchvision_decoder()
    for b in blobs:
        np.testing.assert_array_equal(fast(b), storage._decode(b, 24))


def test_gather_to_writes_the_gather_and_reads_rows_back(source, tmp_path):
    from plada_edge.core.storage import ImageFile

    pack = build_pack([str(source / "a.npy")], tmp_path / "raw", size=24)
    idx = np.sort(np.random.default_rng(1).choice(pack.n, 2500, replace=False))
    images = pack.gather_to(idx, tmp_path / "g.npy", block=300)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), pack.gather(idx))
    assert len(images) == 2500 and images.shape == (2500, 24, 24, 3)
    for rows in np.random.default_rng(2).permutation(2500).reshape(-1, 100)[:5]:  # training batches
        np.testing.assert_array_equal(images[rows], pack.gather(idx[rows]))
    np.testing.assert_array_equal(images[10:20], pack.gather(idx[10:20]))
    np.testing.assert_array_equal(images[np.array([-1, 0])], pack.gather(idx[[-1, 0]]))
    np.testing.assert_array_equal(np.asarray(images), pack.gather(idx))
    assert images[5:5].shape == (0, 24, 24, 3)
    with pytest.raises(IndexError):
        images[np.array([2500])]
    (tmp_path / "g.npy").write_bytes((tmp_path / "g.npy").read_bytes()[:-5])
    with pytest.raises(PackError, match="truncated"):
        ImageFile(tmp_path / "g.npy")
