"""The one "sensor" view through which every model sees images (teacher, ONNX graph, student).

A target task can have a native resolution below the pack's (8x8 scanned digits against a 32 px
pack). Reference images are then seen the way the task's sensor would see them: area-downsample
to the native size, then resize to the model's input size. Grayscale tasks also see the pool in
grayscale (ITU-R 601 luma, as Pillow's ``convert("L")``), replicated to 3 channels.

The spatial part is a fixed linear map, ``out = M @ img @ M.T`` with ``M = up(model <- native) @
area(native <- input)``, so it is exact, identical in torch, numpy and ONNX (two MatMuls), and
cheap. ``ViewSpec`` is what a payload header carries so the device builds the very same view.

``frame="ink"`` (grayscale views) first brings every image to the frame a glyph-like target is
drawn in, the way MNIST was made (size-normalised and centred): light-on-dark polarity (an image
whose border is bright is inverted), the ink's bounding box (luma > INK_LEVEL) widened to a square
about its centre and resampled to fill the image (bilinear, zero outside), then, after the spatial
map, a per-image contrast stretch to [0, 1]. A pool digit drawn small, faint or dark-on-light then
looks like the target's own (docs/results.md, "suite", the frame table). Each step is a per-image matrix or
min/max, so it too is identical in torch, numpy and ONNX.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .config import FRAMES
from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)
INK_LEVEL = 40 / 255  # luma above this, after polarity, is ink
STRETCH_FLOOR = 1 / 255  # an image flatter than this is stretched by at most 255x


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights averaging each output pixel's footprint (exact for any ratio)."""
    m = np.zeros((dst, src), np.float64)
    scale = src / dst
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(src, int(np.ceil(hi)))):
            m[i, j] = min(hi, j + 1) - max(lo, j)
    return m / m.sum(axis=1, keepdims=True)


def bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) bilinear upsampling weights, half-pixel centres (align_corners=False)."""
    m = np.zeros((dst, src), np.float64)
    for i in range(dst):
        x = min(max((i + 0.5) * src / dst - 0.5, 0.0), src - 1.0)
        j0 = int(np.floor(x))
        j1 = min(j0 + 1, src - 1)
        w = x - j0
        m[i, j0] += 1 - w
        m[i, j1] += w
    return m


def resize_matrix(src: int, dst: int) -> np.ndarray:
    if dst == src:
        return np.eye(src)
    return area_matrix(src, dst) if dst < src else bilinear_matrix(src, dst)


@dataclass(frozen=True)
class ViewSpec:
    """How images reach a model: native sensor size, model input size, colour and normalisation."""

    native_size: int
    model_size: int
    gray: bool = False
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)
    frame: str = "none"  # none | ink (grayscale only): see the module docstring

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ConfigError(f"view frame must be one of {', '.join(FRAMES)}, got {self.frame!r}")
        if self.frame == "ink" and not self.gray:
            raise ConfigError("view frame 'ink' needs a grayscale view")

    def matrix(self, input_size: int) -> np.ndarray:
        """(model_size, input_size) spatial map for images stored at ``input_size`` pixels."""
        native = min(self.native_size, input_size)
        return resize_matrix(native, self.model_size) @ resize_matrix(input_size, native)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.frame == "none":  # as written before frames existed, so older readers and hashes agree
            del d["frame"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ViewSpec:
        return cls(
            int(d["native_size"]),
            int(d["model_size"]),
            bool(d["gray"]),
            tuple(d["mean"]),
            tuple(d["std"]),
            str(d.get("frame", "none")),
        )


def ink_frame_numpy(x: np.ndarray) -> np.ndarray:
    """float (n, s, s) luma in [0, 1] → the same images light-on-dark, their ink's square box filling the frame."""
    s = x.shape[1]
    pos = np.arange(s, dtype=np.float32)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).mean(axis=1)
    x = np.where((border > 0.5)[:, None, None], 1 - x, x)
    ink = x > INK_LEVEL
    starts, sides = [], []
    for axis in (2, 1):  # rows (any ink across columns), then columns
        hit = ink.any(axis=axis)
        lo = np.where(hit, pos, s).min(axis=1)
        hi = np.where(hit, pos + 1, 0).max(axis=1)
        empty = ~hit.any(axis=1)
        lo, hi = np.where(empty, 0, lo), np.where(empty, s, hi)
        starts.append((lo + hi) / 2)
        sides.append(hi - lo)
    side = np.maximum(*sides).astype(np.float32)
    grid = (pos + 0.5) / s - 0.5  # output pixel centres, as a share of the box
    mats = []
    for centre in starts:
        u = centre[:, None] + grid[None, :] * side[:, None] - 0.5  # (n, s) source coordinate of each output pixel
        mats.append(np.maximum(0, 1 - np.abs(u[:, :, None] - pos)))  # bilinear, zero outside
    rows, cols = mats
    return np.einsum("nhi,niw,njw->nhj", rows, x, cols, optimize=True)


def stretch_numpy(x: np.ndarray) -> np.ndarray:
    """float (n, ...) → each image's values mapped linearly onto [0, 1]."""
    flat = x.reshape(len(x), -1)
    lo = flat.min(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    hi = flat.max(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    return (x - lo) / np.maximum(hi - lo, STRETCH_FLOOR)


def view_numpy(images: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """uint8 (n, s, s, 3) or (n, s, s) → float32 (n, 3, model, model), normalised. The reference."""
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)
    if spec.gray:
        x = np.repeat((x @ np.array(LUMA, np.float32))[..., None], 3, axis=3)
    m = spec.matrix(x.shape[1]).astype(np.float32)
    if spec.frame == "ink":
        y = ink_frame_numpy(x[..., 0]).astype(np.float32)
        y = stretch_numpy(np.einsum("hi,niw,jw->nhj", m, y, m, optimize=True))
        x = np.repeat(y[:, None], 3, axis=1)
    else:
        x = np.einsum("hi,niwc,jw->nchj", m, x, m, optimize=True)
    mean = np.array(spec.mean, np.float32)[None, :, None, None]
    std = np.array(spec.std, np.float32)[None, :, None, None]
    return (x - mean) / std


def torch_view(spec: ViewSpec, input_size: int):
    """A torch.nn.Module doing view_numpy on uint8 NHWC batches; exported inside the ONNX graph."""
    import torch

    class SensorView(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("m", torch.tensor(spec.matrix(input_size), dtype=torch.float32))
            self.register_buffer("mt", torch.tensor(spec.matrix(input_size).T.copy(), dtype=torch.float32))
            self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))
            self.gray = spec.gray
            self.ink = spec.frame == "ink"

        def forward(self, x):  # x: uint8 (n, s, s, 3)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if self.gray:
                x = (x * self.luma).sum(dim=1, keepdim=True)
                if self.ink:
                    x = _ink_frame_torch(x)
                x = x.expand(-1, 3, -1, -1)
            x = torch.matmul(torch.matmul(self.m, x), self.mt)
            if self.ink:
                flat = x.flatten(1)
                lo = flat.amin(dim=1).view(-1, 1, 1, 1)
                hi = flat.amax(dim=1).view(-1, 1, 1, 1)
                x = (x - lo) / torch.clamp(hi - lo, min=STRETCH_FLOOR)
            return (x - self.mean) / self.std

    return SensorView()


def _ink_frame_torch(x):
    """ink_frame_numpy on (n, 1, s, s) torch luma, in ops ONNX exports (reductions, matmuls)."""
    import torch

    s = x.shape[-1]
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1).mean(dim=(1, 2))
    x = torch.where((border > 0.5).view(-1, 1, 1, 1), 1 - x, x)
    ink = (x[:, 0] > INK_LEVEL).float()
    pos = torch.arange(s, dtype=x.dtype, device=x.device)
    starts, sides = [], []
    for dim in (2, 1):  # rows (any ink across columns), then columns
        hit = ink.amax(dim=dim)  # (n, s): 1 where that row / column holds ink
        lo = (pos + s * (1 - hit)).amin(dim=1)
        hi = ((pos + 1) * hit).amax(dim=1)
        empty = (hit.amax(dim=1) == 0).to(x.dtype)  # no ink at all: the box is the whole image
        lo, hi = lo * (1 - empty), hi + empty * s
        starts.append((lo + hi) / 2)
        sides.append(hi - lo)
    side = torch.maximum(sides[0], sides[1])
    grid = (pos + 0.5) / s - 0.5
    rows, cols = (
        torch.clamp(1 - torch.abs((c[:, None] + grid[None, :] * side[:, None] - 0.5)[:, :, None] - pos), min=0)
        for c in starts
    )
    return torch.matmul(torch.matmul(rows[:, None], x), cols.transpose(1, 2)[:, None])


def as_nhwc3(images: np.ndarray) -> np.ndarray:
    """Grayscale (n, h, w) → (n, h, w, 3) uint8; RGB passes through."""
    return np.repeat(images[..., None], 3, axis=3) if images.ndim == 3 else images
