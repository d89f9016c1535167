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
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import ConfigError, PackError

STORES = ("raw", "jpeg", "webp")
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
