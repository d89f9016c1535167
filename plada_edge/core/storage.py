"""How a reference pack stores its pixels: raw uint8, or each image JPEG- or WebP-encoded (paper §3.3).

A device stores the whole reference set but trains on the ~1 % a payload names. Raw 64 px tiles
of ImageNet-21K take 175 GB; encoded ones take a fraction, and a device decodes only what it gathers.

    raw     images.npy: (N, H, W, 3) uint8, memory-mapped (the default: no decode cost at all)
    jpeg    images.bin: the N encoded images back to back; offsets.npy: N + 1 int64 byte offsets
    webp    the same layout, WebP

An encoded pack's fingerprint covers the stored bytes and the decoder settings (format, size,
quality), so two devices that agree on it hold the same bytes; decoding them is deterministic for
a given Pillow (libjpeg/libwebp) build, which the manifest records. ``EncodedImages`` reads rows
[start, stop) and arbitrary gathers, decoding in parallel threads (Pillow releases the GIL).
"""

from __future__ import annotations

import io
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import atomic
from .config import STORES
from .errors import ConfigError, PackError

BLOB, OFFSETS = "images.bin", "offsets.npy"


def check_store(store: str, quality: int) -> None:
    if store not in STORES:
        raise ConfigError(f"store must be one of {', '.join(STORES)}, got {store!r}")
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ConfigError(f"quality must be 1..100, got {quality!r}")


def encode_tiles(tiles: np.ndarray, store: str, quality: int) -> list[bytes]:
    """Each (H, W, 3) uint8 tile as JPEG (4:4:4, no chroma subsampling: tiles are small) or WebP bytes."""
    from PIL import Image

    out = []
    for tile in tiles:
        buf = io.BytesIO()
        img = Image.fromarray(np.ascontiguousarray(tile))
        if store == "jpeg":
            img.save(buf, format="JPEG", quality=quality, subsampling=0)
        else:
            img.save(buf, format="WEBP", quality=quality, method=4)
        out.append(buf.getvalue())
    return out


def _decode(blob: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.shape != (size, size, 3):
        raise PackError(f"an encoded image decoded to {arr.shape}, the pack holds {size}x{size}x3")
    return arr


def _torchvision_decoder():
    """torchvision's libjpeg-turbo / libwebp decode (3-4x Pillow's per-image cost on small tiles), when installed."""
    import warnings

    # torchvision 0.29 deprecates its decoders in favour of torchcodec; until they go, they are the fast path
    # (and where they are gone, Pillow decodes)
    warnings.filterwarnings(
        "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
    )
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None

    def decode(blob: bytes) -> np.ndarray:
        try:
            return (
                decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), ImageReadMode.RGB)
                .permute(1, 2, 0)
                .numpy()
            )
        except RuntimeError as exc:
            raise PackError(f"an encoded image does not decode ({exc})") from None

    return decode


class EncodedImages:
    """The encoded store of a pack: ``read`` a range, ``gather`` any rows; only those are decoded."""

    def __init__(self, folder: Path, n: int, size: int, threads: int = 0):
        self.folder, self.n, self.size = folder, n, size
        self.offsets = np.load(folder / OFFSETS, mmap_mode="r")
        if self.offsets.shape != (n + 1,) or self.offsets.dtype != np.int64:
            raise PackError(
                f"{folder / OFFSETS}: holds {self.offsets.dtype} {self.offsets.shape}, expected int64 ({n + 1},)"
            )
        blob_size = (folder / BLOB).stat().st_size
        if n and (int(self.offsets[0]) != 0 or int(self.offsets[-1]) != blob_size):
            raise PackError(
                f"{folder / BLOB} is {blob_size:,} bytes but the offsets end at {int(self.offsets[-1]):,}: "
                "the pack is truncated or was modified"
            )
        self.threads = threads or min(8, os.cpu_count() or 1)
        self._fd = os.open(folder / BLOB, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def _blobs(self, rows: np.ndarray) -> list[bytes]:
        lo, hi = self.offsets[rows], self.offsets[rows + 1]
        return [os.pread(self._fd, int(b - a), int(a)) for a, b in zip(lo, hi)]

    def _decode_all(self, blobs: list[bytes]) -> np.ndarray:
        out = np.empty((len(blobs), self.size, self.size, 3), np.uint8)
        decode = _torchvision_decoder() or (lambda b: _decode(b, self.size))

        def run(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                arr = decode(blobs[i])
                if arr.shape != (self.size, self.size, 3):
                    raise PackError(
                        f"an encoded image decoded to {arr.shape}, the pack holds {self.size}x{self.size}x3"
                    )
                out[i] = arr

        step = 256
        if len(blobs) <= step or self.threads <= 1:
            run(0, len(blobs))
            return out
        with ThreadPoolExecutor(self.threads) as ex:  # the decoders release the GIL
            list(ex.map(lambda lo: run(lo, min(lo + step, len(blobs))), range(0, len(blobs), step)))
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Decoded images [start, stop): one read of their bytes, then parallel decodes."""
        if not 0 <= start <= stop <= self.n:
            raise PackError(f"rows [{start}, {stop}) out of range for a pack of {self.n}")
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        data = os.pread(self._fd, b - a, a) if b > a else b""
        offs = np.asarray(self.offsets[start : stop + 1]) - a
        return self._decode_all([data[int(offs[i]) : int(offs[i + 1])] for i in range(stop - start)])

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Decoded images at ``indices``, in the caller's order; read in index order."""
        idx = np.asarray(indices, np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise PackError(f"indices out of range for a pack of {self.n}")
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), self.size, self.size, 3), np.uint8)
        out[order] = self._decode_all(self._blobs(idx[order]))
        return out


FOLIO_SLACK = 1 << 21  # bytes either side of a read that a fault may have mapped too (a PMD-mapped folio: 2 MiB)


def unmap_rows(mapping: mmap.mmap | None, offset: int, row_bytes: int, start: int, stop: int) -> None:
    """Drop this process's pages of rows [start, stop) of a read-only map (the page cache keeps them).

    Pages a read touched stay mapped, and count in the resident set, until dropped: a pass over 14M
    rows, or a gather of 142k, would otherwise leave the process holding the whole file.
    """
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED") or stop <= start:
        return
    page = mmap.PAGESIZE
    # a fault maps whole folios, up to FOLIO_SLACK past the rows read: without the slack 4-12 % stayed mapped
    a = max(0, (offset + start * row_bytes - FOLIO_SLACK) // page * page)
    b = min(len(mapping), -(-(offset + stop * row_bytes + FOLIO_SLACK) // page) * page)
    if b > a:
        mapping.madvise(mmap.MADV_DONTNEED, a, b - a)


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, byte offset of the data) of an .npy file, or PackError."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError as exc:
            raise PackError(f"{path}: not a valid .npy file ({exc})") from None
        return tuple(shape), fortran, dtype, f.tell()


class ImageFile:
    """An (n, H, W, 3) uint8 .npy read with pread: ``images[rows]`` reads just those rows into a new
    array. Nothing is memory-mapped, so training epochs over a large gathered set hold one batch (a
    map would fault in a whole folio, up to 2 MiB, per row touched)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        shape, fortran, dtype, self._offset = npy_header(self.path)
        if dtype != np.uint8 or fortran or len(shape) != 4 or shape[-1] != 3:
            raise PackError(f"{self.path}: holds {dtype} {shape}, expected uint8 (n, H, W, 3)")
        need = self._offset + int(np.prod(shape))
        if os.fstat(self._fd).st_size != need:
            raise PackError(f"{self.path} is not {need:,} bytes: truncated or modified")
        self.shape, self.dtype = tuple(int(x) for x in shape), np.dtype(np.uint8)
        self._row = int(np.prod(shape[1:]))

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """Rows by a slice (step 1) or an array of row numbers, as a new array."""
        if isinstance(rows, slice):
            lo, hi, step = rows.indices(len(self))
            if step != 1:
                return self[np.arange(lo, hi, step)]
            out = np.empty((max(0, hi - lo), *self.shape[1:]), np.uint8)
            self._read_into(out, lo)
            return out
        r = np.asarray(rows, np.int64).reshape(-1)
        if r.size and (r.min() < -len(self) or r.max() >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} images")
        r = np.where(r < 0, r + len(self), r)
        out = np.empty((len(r), *self.shape[1:]), np.uint8)
        for i, row in enumerate(r.tolist()):
            self._read_into(out[i : i + 1], row)
        return out

    def _read_into(self, out: np.ndarray, row: int) -> None:
        if not out.size:
            return
        view, done, at = memoryview(out.reshape(-1)), 0, self._offset + row * self._row
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], at + done)
            if got <= 0:
                raise PackError(f"{self.path} ended early: truncated while being read")
            done += got

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def write_images(path: str | os.PathLike, shape: tuple[int, int, int, int], blocks) -> Path:
    """Write an (n, H, W, 3) uint8 .npy from ``blocks`` (arrays of rows, in order) atomically, one block
    in memory at a time."""
    with atomic.writing(path) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": tuple(int(x) for x in shape)}
        )
        rows = 0
        for block in blocks:
            f.write(np.ascontiguousarray(block, np.uint8).tobytes())
            rows += len(block)
        if rows != shape[0]:
            raise PackError(f"wrote {rows} rows to {path}, expected {shape[0]}")
    return Path(path)
