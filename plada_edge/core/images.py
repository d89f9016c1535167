"""Turning arbitrary images into the reference pack's square RGB uint8 tiles.

One deterministic function per step, so the same inputs always give the same bytes (and the same
pack fingerprint) on every machine with the same Pillow:
- ``to_rgb``: RGBA/LA/P-with-transparency composited on white; grayscale, palette, CMYK → RGB.
- ``square``: "crop" = resize the shorter side to ``size`` then center-crop (default), or
  "pad" = fit the longer side, then pad with white. Bicubic resampling with Pillow's antialiasing.
- ``decode_file``: open with decompression-bomb protection and a pixel limit, then the above.
"""

from __future__ import annotations

import warnings

import numpy as np

from .config import RESIZE_METHODS
from .errors import ConfigError, PackError

DEFAULT_MAX_PIXELS = 4096 * 4096  # larger images are skipped, never decoded


class ImageSkipped(Exception):
    """An input that the builder skips and lists (unreadable, corrupt, truncated, too large)."""


def to_rgb(img):
    from PIL import Image

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size and arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8))
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        img = Image.fromarray(((arr - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8))
    return img.convert("RGB")


def square(img, size: int, method: str = "crop"):
    """Resize an RGB PIL image to size x size by center crop or white padding."""
    from PIL import Image

    if method not in RESIZE_METHODS:
        raise ConfigError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")
    w, h = img.size
    if w == 0 or h == 0:
        raise ImageSkipped("empty image")
    bicubic = Image.Resampling.BICUBIC
    if method == "crop":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), bicubic, reducing_gap=None)
        left, top = (nw - size) // 2, (nh - size) // 2
        return img.crop((left, top, left + size, top + size))
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = img.resize((nw, nh), bicubic, reducing_gap=None)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def decode_file(path, size: int, method: str = "crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image file to a (size, size, 3) uint8 array, or raise ImageSkipped(reason)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageSkipped(f"too large ({w}x{h} > {max_pixels} pixels)")
                if img.format == "JPEG" and method == "crop":
                    # decode at the smallest DCT scale that still covers SIZE on the shorter side (2-8x less work);
                    # deterministic, so the same file always gives the same pixels
                    short = min(w, h)
                    img.draft("RGB", (max(1, w * size // short), max(1, h * size // short)))
                img.load()  # raises on truncated or corrupt data
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                out = square(to_rgb(img), size, method)
    except ImageSkipped:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageSkipped(f"decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises many types for bad files; all mean "skip it"
        raise ImageSkipped(f"{type(exc).__name__}: {exc}") from None
    arr = np.asarray(out, dtype=np.uint8)
    if arr.shape != (size, size, 3):  # defensive: never let a wrong shape into a pack
        raise ImageSkipped(f"decoded to shape {arr.shape}")
    return arr


def array_to_rgb_tiles(batch: np.ndarray, size: int, method: str = "crop") -> np.ndarray:
    """(n, H, W) / (n, H, W, 1|3|4) uint8 arrays → (n, size, size, 3) uint8, same rules as files."""
    from PIL import Image

    batch = np.asarray(batch)
    if batch.dtype != np.uint8:
        raise PackError(f"array sources must be uint8, got {batch.dtype}")
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if batch.ndim not in (3, 4) or (batch.ndim == 4 and batch.shape[-1] not in (3, 4)):
        raise PackError(f"array sources must be (n, H, W) or (n, H, W, 1|3|4), got {batch.shape}")
    out = np.empty((len(batch), size, size, 3), np.uint8)
    same = (batch.ndim == 3 and batch.shape[1:] == (size, size)) or (
        batch.ndim == 4 and batch.shape[1:] == (size, size, 3)
    )
    if same:
        out[:] = batch[..., None] if batch.ndim == 3 else batch
        return out
    for i, a in enumerate(batch):
        out[i] = np.asarray(square(to_rgb(Image.fromarray(a)), size, method), dtype=np.uint8)
    return out
