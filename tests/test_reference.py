"""Reference packs: build, memory-map, gather, fingerprint, and refusing anything inconsistent."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
from conftest import sigkill_when, write_png
from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.core.reference import PackError, ReferencePack, build_pack
from plada_edge.core.sources import list_folder, read_idx


def test_folder_order_is_sorted_relative_paths(tiny_folder, tmp_path):
    pack = build_pack([str(tiny_folder)], tmp_path / "pack", size=16, workers=2)
    rels = [pack.origin(i)["path"] for i in range(pack.n)]
    assert rels == sorted(rels)
    assert rels == list_folder(tiny_folder)
    assert "notes.txt" not in rels and pack.n == 12


def test_rebuild_is_byte_identical(tiny_folder, tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (7, 20, 20), dtype=np.uint8)
    np.save(tmp_path / "arr.npy", arr)
    srcs = [str(tiny_folder), str(tmp_path / "arr.npy")]
    a = build_pack(srcs, tmp_path / "p1", size=16, workers=1)
    b = build_pack(srcs, tmp_path / "p2", size=16, workers=2)
    assert a.fingerprint == b.fingerprint
    for name in ("images.npy", "manifest.json", "paths-0.txt"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    assert a.verify(progress=False) == a.fingerprint


def test_corrupt_truncated_and_oversized_files_are_skipped_and_listed(tiny_folder, tmp_path):
    (tiny_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    good = (tiny_folder / "c.png").read_bytes()
    (tiny_folder / "cut.png").write_bytes(good[: len(good) // 2])
    write_png(tiny_folder / "huge.png", np.zeros((300, 300, 3), np.uint8))
    pack = build_pack([str(tiny_folder)], tmp_path / "pack", size=16, max_pixels=200 * 200)
    skipped = {s["path"]: s["reason"] for s in pack.manifest["skipped"]}
    assert set(skipped) == {"broken.png", "cut.png", "huge.png"}
    assert "too large" in skipped["huge.png"]
    assert pack.n == 12 and pack.manifest["sources"][0]["skipped"] == 3


def test_decompression_bomb_is_skipped(tiny_folder, tmp_path, monkeypatch):
    from PIL import Image

    write_png(tiny_folder / "bomb.png", np.zeros((200, 200, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # Pillow warns above this, errors at 2x
    pack = build_pack([str(tiny_folder)], tmp_path / "pack", size=8, workers=1)
    reasons = {s["path"]: s["reason"] for s in pack.manifest["skipped"]}
    assert "decompression bomb" in reasons["bomb.png"]


def test_modes_become_rgb_and_alpha_goes_on_white(tmp_path):
    from PIL import Image

    root = tmp_path / "modes"
    root.mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(root / "a_transparent.png")
    Image.fromarray(np.full((8, 8), 77, np.uint8), "L").save(root / "b_gray.png")
    pack = build_pack([str(root)], tmp_path / "pack", size=8)
    np.testing.assert_array_equal(pack.images[0], 255)
    np.testing.assert_array_equal(pack.images[1], 77)


def test_idx_and_npz_sources(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (5, 6, 6), dtype=np.uint8)
    header = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 5, 6, 6)
    (tmp_path / "x-idx3-ubyte").write_bytes(header + arr.tobytes())
    with gzip.open(tmp_path / "y-idx3-ubyte.gz", "wb") as f:
        f.write(header + arr.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "y-idx3-ubyte.gz"), arr)
    np.savez(tmp_path / "d.npz", imgs=arr, other=arr)
    pack = build_pack(
        [f"raw={tmp_path / 'x-idx3-ubyte'}", f"gz={tmp_path / 'y-idx3-ubyte.gz'}", f"{tmp_path / 'd.npz'}:imgs"],
        tmp_path / "pack",
        size=6,
    )
    assert pack.n == 15
    np.testing.assert_array_equal(pack.images[:5, :, :, 0], arr)
    np.testing.assert_array_equal(pack.images[5:10], pack.images[10:15])
    assert pack.origin(12) == {"source": "d", "index": 2}
    np.testing.assert_array_equal(pack.source_ids([0, 4, 5, 14]), [0, 0, 1, 2])
    (tmp_path / "bad-idx3-ubyte").write_bytes(header + arr.tobytes()[:-3])
    with pytest.raises(ValueError, match="holds"):
        read_idx(tmp_path / "bad-idx3-ubyte")


def test_gather_unsorted_and_duplicate_indices(tmp_path):
    arr = np.arange(50 * 4 * 4, dtype=np.uint32).reshape(50, 4, 4).astype(np.uint8)
    arr[:, 0, 0] = np.arange(50)  # each image carries its index
    np.save(tmp_path / "a.npy", arr)
    pack = build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4)
    idx = [42, 3, 3, 49, 0, 17, 42]
    got = pack.gather(idx)
    np.testing.assert_array_equal(got[:, 0, 0, 0], idx)
    np.testing.assert_array_equal(got, pack.images[idx])
    assert pack.gather([]).shape == (0, 4, 4, 3)
    with pytest.raises(IndexError, match="50"):
        pack.gather([1, 50])
    with pytest.raises(IndexError):
        pack.gather([-1])
    with pytest.raises(TypeError):
        pack.gather(np.array([1.5]))


def test_size_mismatch_and_tampering_are_refused(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    pack = build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=8)
    images = pack.path / "images.npy"
    del pack
    data = images.read_bytes()
    images.write_bytes(data[:-10])
    with pytest.raises(PackError, match="truncated"):
        ReferencePack.open(tmp_path / "pack")
    images.write_bytes(data)
    manifest = json.loads((tmp_path / "pack/manifest.json").read_text())
    manifest["n"] = 21
    (tmp_path / "pack/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match="manifest says"):
        ReferencePack.open(tmp_path / "pack")
    manifest["n"] = 20
    (tmp_path / "pack/manifest.json").write_text(json.dumps(manifest))
    flipped = bytearray(data)
    flipped[-1] ^= 1
    images.write_bytes(bytes(flipped))
    with pytest.raises(PackError, match="modified"):
        ReferencePack.open(tmp_path / "pack").verify(progress=False)
    with pytest.raises(PackError, match="not a reference pack"):
        ReferencePack.open(tmp_path)


def test_existing_pack_is_not_overwritten_without_force(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4)
    with pytest.raises(FileExistsError):
        build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4)
    build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4, overwrite=True)


def test_interrupted_build_leaves_no_pack_and_resumes(tiny_folder, tmp_path, monkeypatch):
    import plada_edge.core.reference as ref

    calls = {"n": 0}
    real = ref._BuildDir.commit

    def commit_then_die(self, *args):
        calls["n"] += 1
        real(self, *args)
        raise KeyboardInterrupt

    np.save(tmp_path / "a.npy", np.random.default_rng(0).integers(0, 256, (9000, 4, 4), dtype=np.uint8))
    with monkeypatch.context() as m:
        m.setattr(ref._BuildDir, "commit", commit_then_die)
        with pytest.raises(KeyboardInterrupt):
            build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4, shard=1000)
    assert calls["n"] == 1
    assert not (tmp_path / "pack").exists()  # never a pack that looks complete
    resumed = build_pack([str(tmp_path / "a.npy")], tmp_path / "pack", size=4, shard=1000)
    clean = build_pack([str(tmp_path / "a.npy")], tmp_path / "clean", size=4, shard=1000)
    assert resumed.fingerprint == clean.fingerprint
    assert (tmp_path / "pack" / "images.npy").read_bytes() == (tmp_path / "clean" / "images.npy").read_bytes()
    assert not (tmp_path / ".pack.build").exists()


def test_killed_build_leaves_no_pack_that_opens(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(400):
        write_png(tmp_path / "src" / f"{i:04d}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    # each 64-image batch is slowed down, so the kill always lands while the build is running
    code = (
        "import time; import plada_edge.core.reference as r; real = r._decode_batch;"
        "r._decode_batch = lambda a: (time.sleep(0.3), real(a))[1];"
        f"r.build_pack([{str(tmp_path / 'src')!r}], {str(tmp_path / 'pack')!r}, size=32, workers=1, progress=False,"
        " shard=64)"
    )

    def some_shards_committed() -> bool:
        try:
            return len(json.loads((tmp_path / ".pack.build" / "progress.json").read_text())["shards"]) >= 2
        except (OSError, ValueError):
            return False

    sigkill_when(code, some_shards_committed)
    with pytest.raises(PackError):
        ReferencePack.open(tmp_path / "pack")
    # a rerun continues from the committed shards and ends byte-identical to a clean build
    resumed = build_pack([str(tmp_path / "src")], tmp_path / "pack", size=32, workers=1, progress=False, shard=64)
    clean = build_pack([str(tmp_path / "src")], tmp_path / "clean", size=32, workers=1, progress=False, shard=64)
    assert resumed.fingerprint == clean.fingerprint and resumed.manifest == {**clean.manifest}


def test_cli_build_info_verify(tiny_folder, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pack"
    r = runner.invoke(app, ["reference", "build", str(tiny_folder), "--size", "16", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    built = json.loads(r.output)
    r = runner.invoke(app, ["reference", "info", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["fingerprint"] == built["fingerprint"]
    r = runner.invoke(app, ["reference", "verify", str(out)])
    assert r.exit_code == 0 and "ok" in r.output
    r = runner.invoke(app, ["reference", "info", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "not a reference pack" in r.output


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_gather_kernels_agree(impl):
    from plada_edge.core import native, twins

    if impl == "native" and native._native is None:
        pytest.skip("native kernels not built")
    fn = native._native.gather_rows if impl == "native" else twins.gather_rows
    images = np.random.default_rng(5).integers(0, 256, (3000, 5, 5, 3), dtype=np.uint8)
    idx = np.random.default_rng(6).integers(0, 3000, 20000).astype(np.int32)  # many duplicates
    for threads in (1, 2, 0):
        np.testing.assert_array_equal(fn(images, idx, threads), images[idx])
    assert fn(images, np.array([], np.int64), 0).shape == (0, 5, 5, 3)
    with pytest.raises(IndexError, match="3000"):
        fn(images, np.array([0, 3000]), 0)
    with pytest.raises(TypeError):
        fn(images, np.array([0.5]), 0)
    with pytest.raises(ValueError):
        fn(images, np.zeros((2, 2), np.int64), 0)
