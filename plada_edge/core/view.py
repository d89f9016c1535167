"""The one "sensor" view through which every model sees images (teacher, ONNX graph, student).

A target task can have a native resolution below the pack's (8x8 scanned digits against a 32 px
pack). Reference images are then seen the way the task's sensor would see them: area-downsample
to the native size, then resize to the model's input size. Grayscale tasks also see the pool in
grayscale (ITU-R 601 luma, as Pillow's ``convert("L")``), replicated to 3 channels.

The spatial part is a fixed linear map, ``out = M @ img @ M.T`` with ``M = up(model <- native) @
area(native <- input)``, so it is exact, identical in torch, numpy and ONNX (two MatMuls), and
cheap. ``ViewSpec`` is what a payload header carries so the device builds the very same view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)


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

    def matrix(self, input_size: int) -> np.ndarray:
        """(model_size, input_size) spatial map for images stored at ``input_size`` pixels."""
        native = min(self.native_size, input_size)
        return resize_matrix(native, self.model_size) @ resize_matrix(input_size, native)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ViewSpec:
        return cls(int(d["native_size"]), int(d["model_size"]), bool(d["gray"]), tuple(d["mean"]), tuple(d["std"]))


def view_numpy(images: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """uint8 (n, s, s, 3) or (n, s, s) → float32 (n, 3, model, model), normalised. The reference."""
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)
    if spec.gray:
        x = np.repeat((x @ np.array(LUMA, np.float32))[..., None], 3, axis=3)
    m = spec.matrix(x.shape[1]).astype(np.float32)
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

        def forward(self, x):  # x: uint8 (n, s, s, 3)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if self.gray:
                x = (x * self.luma).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
            x = torch.matmul(torch.matmul(self.m, x), self.mt)
            return (x - self.mean) / self.std

    return SensorView()


def as_nhwc3(images: np.ndarray) -> np.ndarray:
    """Grayscale (n, h, w) → (n, h, w, 3) uint8; RGB passes through."""
    return np.repeat(images[..., None], 3, axis=3) if images.ndim == 3 else images
