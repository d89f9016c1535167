"""The reference pack: the unlabeled image set every server and device share (paper §3).

A pack is a directory:
  images.npy     (N, H, W, 3) uint8 in index order, a plain .npy that numpy can memory-map
  manifest.json  format version, N, H, W, sources with index ranges, build settings, skipped
                 inputs and the fingerprint
  paths-K.txt    for each folder source K, the relative path of every kept image, one per line

The fingerprint is SHA-256 over the shape and the pixels in index order. It travels in every
payload; a device never trains on a payload whose fingerprint differs from its own pack's.
Nothing here reads the whole pack into memory: building streams, gather reads k images, verify
streams in chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import atomic, native
from .errors import ConfigError, PackError
from .images import DEFAULT_MAX_PIXELS, RESIZE_METHODS, ImageSkipped, array_to_rgb_tiles, decode_file
from .locks import output_lock
from .progress import bar
from .sources import Source, list_folder, load_array, parse_source
from .storage import (
    BLOB,
    OFFSETS,
    EncodedImages,
    ImageFile,
    check_store,
    encode_tiles,
    npy_header,
    unmap_rows,
    write_images,
)

PACK_FORMAT = 1
IMAGES, MANIFEST = "images.npy", "manifest.json"
_HEADER_BYTES = 128  # fixed .npy header size, so the final N can be written after streaming
_CHUNK = 4096  # images per streamed chunk (12 MiB at 32 px)
_GATHER_BLOCK = 64  # rows gathered before their pages are unmapped (a touch can map a 2 MiB folio)
SHARD = 8192  # inputs per committed build shard: 25 MB of 32 px tiles, the most a killed build loses


def _npy_header(shape: tuple[int, ...]) -> bytes:
    d = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    pad = _HEADER_BYTES - 10 - len(d) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} too long for the fixed header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10) + (d + " " * pad + "\n").encode("latin1")


def _fingerprint(pixel_digest: bytes, n: int, h: int, w: int) -> str:
    return hashlib.sha256(b"plada-pack-v1" + struct.pack("<QIII", n, h, w, 3) + pixel_digest).hexdigest()


def _decode_batch(args):
    root, rels, size, method, max_pixels = args
    out = []
    for rel in rels:
        try:
            out.append((rel, decode_file(Path(root, rel), size, method, max_pixels), None))
        except ImageSkipped as exc:
            out.append((rel, None, str(exc)))
    return out


def _encode_block(args):
    tiles, kind, quality = args
    return encode_tiles(tiles, kind, quality)


def _encoded(block: np.ndarray, store: dict, pool) -> list[bytes]:
    """encode_tiles over a shard, in blocks across the build's worker processes (same bytes as serial)."""
    step = 512
    jobs = [(block[i : i + step], store["kind"], store["quality"]) for i in range(0, len(block), step)]
    results = pool.imap(_encode_block, jobs) if pool is not None and len(jobs) > 1 else map(_encode_block, jobs)
    return [b for part in results for b in part]


def _decoder_pool(workers: int):
    if workers <= 1:
        return None
    import multiprocessing as mp

    return mp.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers)


def _decoded_folder(src: Source, items: list[str], size: int, method: str, max_pixels: int, pool):
    """Yield (relative path, tile or None, skip reason) for ``items`` in their order, decoding in parallel."""
    batch = 64
    jobs = [(str(src.path), items[i : i + batch], size, method, max_pixels) for i in range(0, len(items), batch)]
    results = pool.imap(_decode_batch, jobs) if pool is not None and len(jobs) > 1 else map(_decode_batch, jobs)
    for res in results:  # ordered: the index order never depends on timing
        yield from res


def build_pack(
    sources,
    out: str | os.PathLike,
    size: int = 32,
    resize: str = "crop",
    workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool | None = None,
    shard: int = SHARD,
    store: str = "raw",
    quality: int = 90,
) -> ReferencePack:
    """Build a pack from sources (specs as in plada_edge.core.sources) into directory ``out``.

    Same inputs → byte-identical images.npy, manifest and fingerprint. Unreadable, corrupt,
    truncated or oversized files are skipped and listed in the manifest. The pack appears at
    ``out`` only when complete. Work goes in shards of ``shard`` inputs into ``.OUT.build/`` beside
    it, each committed with an fsync: a build killed at image 900,000 and run again continues from
    its last shard and ends byte-identical to an uninterrupted one. A second build into the same
    folder while one runs is refused. ``store``: raw (memory-mapped uint8), or jpeg / webp at
    ``quality`` (each image encoded; plada_edge.core.storage).
    """
    if resize not in RESIZE_METHODS:
        raise ConfigError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    if not 1 <= size <= 4096:
        raise ConfigError(f"size must be in 1..4096, got {size}")
    if shard < 1:
        raise ConfigError(f"shard must be >= 1, got {shard}")
    check_store(store, quality)
    workers = workers or native.hardware_threads()
    srcs = [parse_source(s) for s in sources]
    if not srcs:
        raise ConfigError("a reference pack needs at least one source")
    names = [s.name for s in srcs]
    if len(set(names)) != len(names):
        raise ConfigError(f"source names must be unique, got {names} (name them as NAME=PATH)")
    out = Path(out)
    with output_lock(out, out.parent / f".{out.name}.lock"):  # two builds into one folder: the second is refused
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists (pass overwrite/--force to replace it)")
        counts = []
        for s in srcs:
            s.items = list_folder(s.path) if s.kind == "folder" else []
            counts.append(len(s.items) if s.kind == "folder" else len(load_array(s)))
        plan = {
            "size": size,
            "resize": resize,
            "max_pixels": max_pixels,
            "pillow": _pillow_version(),
            "shard": shard,
            "store": {"kind": store, "quality": quality} if store != "raw" else {"kind": "raw"},
            "sources": [dict(s.describe(), identity=_source_identity(s), count=c) for s, c in zip(srcs, counts)],
        }
        work = _BuildDir(out.parent / f".{out.name}.build", plan, size)
        with bar("building pack", sum(counts), progress, unit="img") as b:
            b.advance(work.inputs_done)
            pool = _decoder_pool(workers)
            try:
                for k, (s, count) in enumerate(zip(srcs, counts)):
                    method = s.resize or resize
                    for j, lo in enumerate(range(0, count, shard)):
                        hi = min(lo + shard, count)
                        if work.done((k, j)):
                            continue
                        block, kept, skipped = _shard(s, lo, hi, size, method, max_pixels, pool)
                        work.commit((k, j), block, kept, skipped, hi - lo, pool)
                        b.advance(hi - lo)
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
        return work.finish(out, srcs, overwrite)


def _shard(s, lo: int, hi: int, size: int, method: str, max_pixels: int, pool):
    """Inputs [lo, hi) of a source as pack tiles: (block, the folder paths kept or None, what was skipped)."""
    if s.kind != "folder":
        return array_to_rgb_tiles(load_array(s)[lo:hi], size, method), None, []
    kept, tiles, skipped = [], [], []
    for rel, tile, reason in _decoded_folder(s, s.items[lo:hi], size, method, max_pixels, pool):
        if tile is None:
            skipped.append({"source": s.name, "path": rel, "reason": reason})
        else:
            kept.append(rel)
            tiles.append(tile)
    return (np.stack(tiles) if tiles else np.zeros((0, size, size, 3), np.uint8)), kept, skipped


def _hash_raw(images: Path, n: int, size: int, bounds, per_source) -> str:
    """Fingerprint of a raw pack from its images.npy, one streaming pass; also feeds each source's digest."""
    tile = size * size * 3
    total = hashlib.sha256()
    with open(images, "rb") as f:
        f.seek(_HEADER_BYTES)
        for row in range(0, n, _CHUNK):
            step = min(_CHUNK, n - row)
            buf = f.read(step * tile)
            total.update(buf)
            for k, (lo, hi) in enumerate(bounds):  # sources are contiguous: split the chunk among them
                a, c = max(lo, row), min(hi, row + step)
                if a < c:
                    per_source[k].update(buf[(a - row) * tile : (c - row) * tile])
    return _fingerprint(total.digest(), n, size, size)


def _hash_encoded(folder: Path, offsets: np.ndarray, bounds, per_source, plan: dict) -> str:
    """Fingerprint of an encoded pack: the decoder settings, the offsets and every stored byte, in index order."""
    store = json.dumps({"store": plan["store"], "size": plan["size"]}, sort_keys=True).encode()
    blob_sha = hashlib.sha256()
    with open(folder / BLOB, "rb") as f:
        for k, (lo, hi) in enumerate(bounds):
            f.seek(int(offsets[lo]))
            remaining = int(offsets[hi] - offsets[lo])
            while remaining:
                buf = f.read(min(remaining, 1 << 24))
                remaining -= len(buf)
                blob_sha.update(buf)
                per_source[k].update(buf)
    n, size = len(offsets) - 1, plan["size"]
    body = hashlib.sha256(store + offsets.astype("<i8").tobytes() + blob_sha.digest()).digest()
    return hashlib.sha256(b"plada-pack-v1-encoded" + struct.pack("<QIII", n, size, size, 3) + body).hexdigest()


def _source_identity(s: Source) -> str:
    """What a resumed build must find unchanged: array files by size and mtime, folders by every file's."""
    h = hashlib.sha256()
    if s.kind == "folder":
        for rel in s.items:
            st = os.stat(s.path / rel)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    else:
        st = os.stat(s.path)
        h.update(f"{st.st_size}\0{st.st_mtime_ns}\0{s.key}".encode())
    return h.hexdigest()


class _BuildDir:
    """``.OUT.build/``: images.npy grown shard by shard, and progress.json naming the committed shards.

    A shard is committed only after its pixels are fsynced; a rerun truncates images.npy to the
    committed length and carries on. A work folder of another plan (other sources, sizes or
    settings) is discarded.
    """

    def __init__(self, path: Path, plan: dict, size: int):
        import shutil

        self.path, self.plan, self.tile = path, plan, size * size * 3
        state = None
        if (path / "progress.json").is_file():
            try:
                state = json.loads((path / "progress.json").read_text())
            except (OSError, ValueError):
                state = None
        self.encoded = plan["store"]["kind"] != "raw"
        self.data = path / (BLOB if self.encoded else IMAGES)
        if not state or state.get("plan") != plan:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            state = {"plan": plan, "shards": [], "images": 0, "inputs": 0, "skipped": [], "bytes": 0}
            with open(self.data, "wb") as f:
                if not self.encoded:
                    f.write(_npy_header((0, size, size, 3)))
            atomic.write_json(path / "progress.json", state)
        self.state = state
        self._done = {tuple(x) for x in state["shards"]}
        with open(self.data, "r+b") as f:  # drop the bytes of a shard that was written but never committed
            f.truncate(state["bytes"] if self.encoded else _HEADER_BYTES + state["images"] * self.tile)

    @property
    def inputs_done(self) -> int:
        return int(self.state["inputs"])

    def done(self, key: tuple[int, int]) -> bool:
        return key in self._done

    def commit(self, key, block: np.ndarray, kept, skipped: list[dict], inputs: int, pool=None) -> None:
        data = np.ascontiguousarray(block, dtype=np.uint8)
        with open(self.data, "r+b") as f:
            if self.encoded:
                blobs = _encoded(data, self.plan["store"], pool)
                atomic.save_npy(
                    self.path / f"lengths-{key[0]}-{key[1]}.npy", np.array([len(x) for x in blobs], np.int64)
                )
                f.seek(self.state["bytes"])
                for x in blobs:
                    f.write(x)
                self.state["bytes"] += sum(len(x) for x in blobs)
            else:
                f.seek(_HEADER_BYTES + self.state["images"] * self.tile)
                f.write(memoryview(data).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        if kept is not None:
            atomic.write_bytes(
                self.path / f"paths-{key[0]}-{key[1]}.txt",
                "".join(p + "\n" for p in kept).encode("utf-8", "surrogateescape"),
            )
        self.state["shards"].append(list(key))
        self.state["images"] += len(data)
        self.state["inputs"] += inputs
        self.state["skipped"] += skipped
        self.state.setdefault("counts", {})[f"{key[0]}/{key[1]}"] = len(data)
        atomic.write_json(self.path / "progress.json", self.state)  # the commit point
        self._done.add(tuple(key))

    def finish(self, out: Path, srcs: list, overwrite: bool) -> ReferencePack:
        """Seal the header, hash the pixels once (fingerprint and per-source SHA-256), write the manifest, publish."""
        plan, n, size = self.plan, self.state["images"], self.plan["size"]
        offsets = self._seal()
        described = self._sources(srcs)
        per_source = [hashlib.sha256() for _ in srcs]
        bounds = [(e["start"], e["stop"]) for e in described]
        if self.encoded:
            fingerprint = _hash_encoded(self.path, offsets, bounds, per_source, plan)
        else:
            fingerprint = _hash_raw(self.path / IMAGES, n, size, bounds, per_source)
        for entry, sha in zip(described, per_source):
            entry["sha256"] = sha.hexdigest()
        manifest = {
            "format": "plada-reference-pack",
            "format_version": PACK_FORMAT,
            "n": n,
            "height": size,
            "width": size,
            "channels": 3,
            "build": {
                "size": size,
                "resize": plan["resize"],
                "max_pixels": plan["max_pixels"],
                "pillow": plan["pillow"],
            },
            "store": plan["store"],
            "sources": described,
            "skipped": self.state["skipped"],
            "fingerprint": fingerprint,
        }
        atomic.write_json(self.path / MANIFEST, manifest)
        (self.path / "progress.json").unlink()
        return self._publish(out)

    def _seal(self) -> np.ndarray | None:
        """Raw: the .npy header over the written pixels. Encoded: the offsets of every image (returned)."""
        n, size = self.state["images"], self.plan["size"]
        if not self.encoded:
            with open(self.path / IMAGES, "r+b") as f:
                f.write(_npy_header((n, size, size, 3)))
                f.flush()
                os.fsync(f.fileno())
            return None
        shards = [tuple(x) for x in self.state["shards"]]
        lengths = [np.load(self.path / f"lengths-{k}-{j}.npy") for k, j in shards]
        offsets = (
            np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
            if lengths
            else np.zeros(1, np.int64)
        )
        atomic.save_npy(self.path / OFFSETS, offsets)
        for k, j in shards:
            (self.path / f"lengths-{k}-{j}.npy").unlink()
        return offsets

    def _sources(self, srcs: list) -> list[dict]:
        """Each source's span of the pack and what it skipped; a folder's paths joined from its shards."""
        described, start, shards_of = [], 0, {}
        for k, j in (tuple(x) for x in self.state["shards"]):
            shards_of.setdefault(k, []).append(j)
        for k, s in enumerate(srcs):
            got = sum(self.state["counts"][f"{k}/{j}"] for j in sorted(shards_of.get(k, [])))
            skipped = self.plan["sources"][k]["count"] - got
            entry = dict(s.describe(), start=start, stop=start + got, count=got, skipped=skipped)
            if s.kind == "folder":
                entry["paths"] = f"paths-{k}.txt"
                with open(self.path / entry["paths"], "wb") as f:
                    for j in sorted(shards_of.get(k, [])):
                        part = self.path / f"paths-{k}-{j}.txt"
                        f.write(part.read_bytes())
                        part.unlink()
            described.append(entry)
            start += got
        return described

    def _publish(self, out: Path) -> ReferencePack:
        """The finished pack renamed into place (an existing one swapped out, then removed)."""
        import shutil

        os.chmod(self.path, atomic.file_mode(0o777))
        if out.exists():  # overwrite: swap, then drop the old pack
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(self.path, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, out)
        return ReferencePack.open(out)


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


@dataclass(frozen=True)
class SourceRange:
    name: str
    kind: str
    start: int
    stop: int


class ReferencePack:
    """A memory-mapped reference pack. Open with ``ReferencePack.open(path)``."""

    def __init__(
        self, path: Path, manifest: dict, images: np.ndarray | None, mapping=None, encoded=None, offset: int = 0
    ):
        self.path, self.manifest, self.images = path, manifest, images  # images: None for an encoded pack
        self._mapping, self._offset = mapping, offset  # the mmap behind ``images`` and where row 0 starts in it
        self._encoded = encoded  # plada_edge.core.storage.EncodedImages for jpeg / webp packs

    @property
    def store(self) -> str:
        return "raw" if self._encoded is None else self.manifest["store"]["kind"]

    def read(self, start: int, stop: int) -> np.ndarray:
        """A writable copy of images [start, stop), decoded when the pack is encoded."""
        if self._encoded is not None:
            return self._encoded.read(start, stop)
        out = np.array(self.images[start:stop])
        self.release(start, stop)
        return out

    @classmethod
    def open(cls, path: str | os.PathLike) -> ReferencePack:
        path = Path(path)
        mpath, ipath = path / MANIFEST, path / IMAGES
        if not mpath.is_file():
            raise PackError(f"{path} is not a reference pack (no {MANIFEST}; an interrupted build leaves none)")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PackError(f"{mpath}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != "plada-reference-pack":
            raise PackError(f"{mpath}: not a plada reference pack manifest")
        if manifest.get("format_version") != PACK_FORMAT:
            raise PackError(
                f"{mpath}: pack format {manifest.get('format_version')} is not supported (this is {PACK_FORMAT})"
            )
        try:
            n, h, w = (int(manifest[key]) for key in ("n", "height", "width"))
            if not isinstance(manifest.get("fingerprint"), str) or not isinstance(manifest.get("sources", []), list):
                raise TypeError("fingerprint or sources")
        except (KeyError, TypeError, ValueError) as exc:
            raise PackError(f"{mpath}: manifest lacks or garbles {exc}") from None
        store = (manifest.get("store") or {"kind": "raw"}).get("kind")
        if store != "raw":
            if not (path / BLOB).is_file() or not (path / OFFSETS).is_file():
                raise PackError(f"{path}: an encoded ({store}) pack needs {BLOB} and {OFFSETS}")
            return cls(path, manifest, None, encoded=EncodedImages(path, n, h))
        if not ipath.is_file():
            raise PackError(f"{path}: {IMAGES} is missing")
        shape, fortran, dtype, offset = npy_header(ipath)
        if dtype != np.uint8 or fortran or tuple(shape) != (n, h, w, 3):
            raise PackError(f"{ipath}: holds {dtype} {tuple(shape)}, manifest says uint8 {(n, h, w, 3)}")
        expected = offset + n * h * w * 3
        actual = ipath.stat().st_size
        if actual != expected:
            raise PackError(
                f"{ipath} is {actual:,} bytes but the manifest's {n:,} images of {h}x{w}x3 need {expected:,}: "
                "the pack is truncated or was modified"
            )
        if not n:
            return cls(path, manifest, np.zeros((0, h, w, 3), np.uint8))
        with open(ipath, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        images = np.frombuffer(mapping, np.uint8, count=n * h * w * 3, offset=offset).reshape(n, h, w, 3)
        return cls(path, manifest, images, mapping, offset=offset)

    def release(self, start: int = 0, stop: int | None = None) -> None:
        """Unmap the pages of rows [start, stop) from this process (the page cache keeps them).

        Pages a read touched stay mapped, and count in the process's resident set, until released:
        streaming 14M images or gathering 142k would otherwise leave the process holding the whole
        pack. Reading released rows again simply maps them again.
        """
        stop = self.n if stop is None else stop
        if self._mapping is not None:
            unmap_rows(self._mapping, self._offset, self.images.strides[0], start, stop)

    # --- what it is -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    def __len__(self) -> int:
        return self.n

    @property
    def size(self) -> int:
        return int(self.manifest["height"])

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @cached_property
    def sources(self) -> list[SourceRange]:
        return [SourceRange(s["name"], s["kind"], int(s["start"]), int(s["stop"])) for s in self.manifest["sources"]]

    def source_ids(self, indices) -> np.ndarray:
        """Index of the source each pack index came from (vectorised)."""
        starts = np.array([s.start for s in self.sources])
        return (np.searchsorted(starts, np.asarray(indices), side="right") - 1).astype(np.int32)

    def origin(self, index: int) -> dict:
        """Where image ``index`` came from: its source and relative path or array index."""
        if not 0 <= index < self.n:
            raise PackError(f"index {index} out of range for a pack of {self.n} images")
        k = int(self.source_ids([index])[0])
        s, entry = self.sources[k], self.manifest["sources"][k]
        if "paths" in entry:
            return {"source": s.name, "path": self._paths(k)[index - s.start]}
        return {"source": s.name, "index": index - s.start}

    def _paths(self, k: int) -> list[str]:
        cache = self.__dict__.setdefault("_path_cache", {})
        if k not in cache:
            text = (self.path / self.manifest["sources"][k]["paths"]).read_bytes().decode("utf-8", "surrogateescape")
            cache[k] = text.splitlines()
        return cache[k]

    def info(self) -> dict:
        m = self.manifest
        return {
            "path": str(self.path),
            "n": self.n,
            "size": [m["height"], m["width"], 3],
            "bytes": sum((self.path / f).stat().st_size for f in (IMAGES, BLOB, OFFSETS) if (self.path / f).exists()),
            "store": self.manifest.get("store", {"kind": "raw"}),
            "fingerprint": self.fingerprint,
            "sources": [{k: s[k] for k in ("name", "kind", "start", "stop", "count", "skipped")} for s in m["sources"]],
            "skipped": len(m["skipped"]),
            "build": m["build"],
        }

    # --- reading -----------------------------------------------------------------------------
    def gather(self, indices, threads: int = 0) -> np.ndarray:
        """Images at ``indices`` (any order, duplicates allowed), returned in the caller's order.

        Reads in ascending index order, so a selection walks the file front to back once; memory
        is the k images returned (native kernel: plada_edge.core.native.gather_rows).
        """
        idx = np.asarray(indices)
        if idx.size == 0 and idx.dtype.kind not in "iu":
            idx = idx.astype(np.int64)
        if self._encoded is not None:
            return self._encoded.gather(idx)
        with self._random_access():
            if idx.size <= _GATHER_BLOCK:
                out = native.gather_rows(self.images, idx, threads)
                if idx.size:
                    self.release(int(idx.min()), int(idx.max()) + 1)
                return out
            order = np.argsort(idx, kind="stable")
            out = np.empty((len(idx), *self.images.shape[1:]), np.uint8)
            for b0 in range(0, len(order), _GATHER_BLOCK):  # in blocks, unmapping each block's pages as it goes
                part = order[b0 : b0 + _GATHER_BLOCK]
                rows = idx[part]
                out[part] = native.gather_rows(self.images, rows, threads)
                self.release(int(rows[0]), int(rows[-1]) + 1)
            return out

    @contextlib.contextmanager
    def _random_access(self):
        """No readahead while gathering: on a cold page cache each scattered row would otherwise pull in
        its neighbours too, several times the bytes it needs (the cold column of benchmarks/storage.py)."""
        advise = self._mapping is not None and hasattr(mmap, "MADV_RANDOM")
        if advise:
            self._mapping.madvise(mmap.MADV_RANDOM)
        try:
            yield
        finally:
            if advise:
                self._mapping.madvise(mmap.MADV_NORMAL)

    def gather_to(self, indices, path: str | os.PathLike, block: int = 4096) -> ImageFile:
        """The images at ``indices`` written to the .npy ``path`` (atomically), one block of ``block``
        images in memory at a time; returned as ImageFile. A device gathers its 142k images of a
        14.2M pack this way in flat memory, and trains from the file."""
        idx = np.asarray(indices, np.int64)
        blocks = (self.gather(idx[b0 : b0 + block]) for b0 in range(0, len(idx), block))
        return ImageFile(write_images(path, (len(idx), self.size, self.size, 3), blocks))

    def iter_chunks(self, chunk: int = _CHUNK, start: int = 0, stop: int | None = None):
        """Yield (first index, images) over [start, stop) in chunks, in index order."""
        stop = self.n if stop is None else stop
        for c0 in range(start, stop, chunk):
            yield c0, self.read(c0, min(c0 + chunk, stop))

    def verify(self, progress: bool | None = None) -> str:
        """Recompute the fingerprint from what is stored; raise PackError if it differs."""
        if self._encoded is not None:
            bounds = [(s.start, s.stop) for s in self.sources]
            plan = {"store": self.manifest["store"], "size": self.size}
            offsets = np.asarray(self._encoded.offsets)
            got = _hash_encoded(self.path, offsets, bounds, [hashlib.sha256() for _ in bounds], plan)
        else:
            sha = hashlib.sha256()
            with bar("verifying", self.n, progress, unit="img") as b:
                for _, imgs in self.iter_chunks(16384):
                    sha.update(memoryview(np.ascontiguousarray(imgs)).cast("B"))
                    b.advance(len(imgs))
            got = _fingerprint(sha.digest(), self.n, self.size, int(self.manifest["width"]))
        if got != self.fingerprint:
            raise PackError(
                f"{self.path}: pixels hash to {got[:16]}…, manifest says {self.fingerprint[:16]}…: "
                "the pack was modified"
            )
        return got


def open_pack(path: str | os.PathLike) -> ReferencePack:
    """Open a reference pack built by ``build_pack`` (memory-mapped; reads the manifest, not the pixels)."""
    return ReferencePack.open(path)
