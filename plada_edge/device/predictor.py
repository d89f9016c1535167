"""Using a trained student on the device (paper §3.3's end product): the model card and ``predict``.

``learn`` writes three things a user needs into the student folder:
- ``student.onnx``: uint8 images in, logits out, the view (resize, colour, normalisation) inside
  the graph, so any ONNX runtime can run it (docs/student-format.md states the contract);
- ``student.json``, the model card: that input contract, the classes in output order, the view and
  frame, the teacher, the payload it learnt from, the recipe and the accuracy it reached;
- ``metrics.json``: the training run's full record.

``load_student(DIR)`` reads the card and opens the graph in onnxruntime; ``Student.predict`` takes
uint8 HWC arrays, batches of them, PIL images, image files or folders, resizes anything that is not
the card's size by the pack's rule (shorter side to size, centre crop) and returns a ``Predictions``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import ModelError, TargetError

CARD_FILE = "student.json"
CARD_FORMAT = "plada-student-card-v1"
ONNX_FILE = "student.onnx"


def input_contract(size: int) -> dict:
    """What student.onnx takes and gives (docs/student-format.md)."""
    return {
        "input": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "shape": ["N", size, size, 3],
        "channels": "RGB, 0-255 (grayscale repeated into all three)",
        "output": "logits",
        "output_shape": ["N", "num_classes"],
        "resize": "shorter side to size, centre crop (bicubic); the graph does the rest of the view",
    }


def write_card(out: Path, onnx_path: Path, size: int, class_names: list[str], view: dict, header: dict, **run) -> dict:
    """Write ``out/student.json`` atomically; ``header`` is the payload's, ``run`` the recipe and accuracy."""
    card = {
        "format": CARD_FORMAT,
        "onnx": onnx_path.name,
        "onnx_sha256": atomic.file_sha256(onnx_path),
        "contract": input_contract(size),
        "input_size": size,
        "classes": list(class_names),
        "view": view,
        "frame": view.get("frame", "none"),
        "task": header.get("task"),
        "teacher": header.get("teacher"),
        **run,
    }
    atomic.write_json(out / CARD_FILE, card)
    return card


def read_card(student: str | os.PathLike) -> tuple[Path, dict]:
    """(student.onnx path, its card) for a student folder or a student.onnx; a card-less graph gets one from its
    ONNX metadata (students from before the card)."""
    path = Path(student)
    if path.is_dir():
        path = path / ONNX_FILE
    if not path.is_file():
        raise ModelError(f"no student model at {path} (run plada-edge learn first)")
    card_path = path.with_name(CARD_FILE)
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{card_path} is not a readable model card ({type(exc).__name__})") from None
        if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
            raise ModelError(f"{card_path} is not a plada-edge model card (format {card.get('format')!r})")
        if card.get("onnx_sha256") != atomic.file_sha256(path):
            raise ModelError(f"{card_path} describes another student.onnx (SHA-256 differs); run learn again")
        return path, card
    return path, _card_from_onnx(path)


def _card_from_onnx(path: Path) -> dict:
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a graph
        raise ModelError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    if props.get("plada.format") != "plada-student-v1":
        raise ModelError(f"{path} is not a plada-edge student (no plada.format metadata)")
    size = int(props["plada.input_size"])
    view = json.loads(props.get("plada.view", "{}"))
    names = json.loads(props["plada.class_names"])
    return {"format": CARD_FORMAT, "contract": input_contract(size), "input_size": size, "classes": names,
            "view": view, "frame": view.get("frame", "none")}  # fmt: skip


@dataclass(frozen=True)
class Predictions:
    """What a student said of each image: its top classes, their probabilities and (for files) the paths."""

    labels: np.ndarray  # (n,) the top class of each image
    top_labels: np.ndarray  # (n, top)
    top_probs: np.ndarray  # (n, top), softmax probabilities
    classes: list[str]
    sources: list[str] = field(default_factory=list)  # file paths, or "#i" for arrays

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> list[str]:
        return [self.classes[i] for i in self.labels]

    def to_dict(self) -> list[dict]:
        return [
            {
                "source": src,
                "label": int(top[0]),
                "class": self.classes[top[0]],
                "top": [{"class": self.classes[c], "label": int(c), "prob": float(p)} for c, p in zip(top, probs)],
            }
            for src, top, probs in zip(self.sources, self.top_labels, self.top_probs)
        ]

    def __repr__(self) -> str:
        shown = ", ".join(f"{n} ({p:.2f})" for n, p in zip(self.names[:4], self.top_probs[:4, 0]))
        more = ", ..." if len(self) > 4 else ""
        return f"Predictions({len(self)} images: {shown}{more})"


class Student:
    """A trained student, opened from its folder by ``load_student``; ``predict`` runs it."""

    def __init__(self, onnx_path: Path, card: dict, device: str = "auto", providers=None):
        import onnxruntime as ort

        from ..core.devices import onnx_providers

        self.path, self.card = onnx_path, card
        self.classes: list[str] = list(card["classes"])
        self.input_size: int = int(card["input_size"])
        self._session = ort.InferenceSession(str(onnx_path), providers=onnx_providers(providers, device))

    def __repr__(self) -> str:
        return f"Student({self.path.parent.name!r}: {len(self.classes)} classes, {self.input_size} px)"

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for uint8 (n, size, size, 3) images already at the card's size."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise TargetError(
                f"student takes uint8 (n, {self.input_size}, {self.input_size}, 3) images, got {images.dtype} "
                f"{images.shape}"
            )
        parts = [
            self._session.run(["logits"], {"images": np.ascontiguousarray(images[b : b + batch_size])})[0]
            for b in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images, top: int = 1, batch_size: int = 256) -> Predictions:
        """Classify ``images``: a uint8 HWC array or a batch (n, H, W[, 3]), a PIL image, a path to an image or a
        folder of them, or a list of any of these. Images of another size are resized by the pack's rule."""
        if not (isinstance(top, int) and top >= 1):
            raise TargetError(f"top must be a whole number >= 1, got {top!r}")
        x, sources = to_batch(images, self.input_size)
        logits = self.logits(x, batch_size).astype(np.float64)
        z = np.exp(logits - logits.max(1, keepdims=True))
        probs = z / z.sum(1, keepdims=True)
        k = min(top, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return Predictions(
            labels=order[:, 0].copy() if len(order) else np.zeros(0, np.int64),
            top_labels=order,
            top_probs=np.take_along_axis(probs, order, 1).astype(np.float32),
            classes=self.classes,
            sources=sources,
        )


def load_student(student: str | os.PathLike, device: str = "auto", providers=None) -> Student:
    """Open a student folder (or its student.onnx) written by ``learn``, ready to ``predict``."""
    path, card = read_card(student)
    return Student(path, card, device, providers)


def to_batch(images, size: int) -> tuple[np.ndarray, list[str]]:
    """Any accepted input as uint8 (n, size, size, 3) and a source name for each image."""
    from PIL import Image

    from ..core.images import ImageSkipped, array_to_rgb_tiles, decode_file, square, to_rgb
    from ..core.sources import image_extensions

    if isinstance(images, np.ndarray):
        batch = _array_batch(images, size, array_to_rgb_tiles)
        return batch, [f"#{i}" for i in range(len(batch))]
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    tiles, sources = [], []
    for i, item in enumerate(items):
        if isinstance(item, Image.Image):
            tiles.append(np.asarray(square(to_rgb(item), size), np.uint8)[None])
            sources.append(f"#{i}")
        elif isinstance(item, np.ndarray):
            tiles.append(_array_batch(item, size, array_to_rgb_tiles))
            sources += [f"#{i}"] * len(tiles[-1])
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            files = _image_files(path, image_extensions())
            for f in files:
                try:
                    tiles.append(decode_file(f, size)[None])
                except ImageSkipped as exc:
                    raise TargetError(f"{f}: not a readable image ({exc})") from None
                sources.append(str(f))
        else:
            raise TargetError(f"cannot read images from a {type(item).__name__}: give arrays, PIL images or paths")
    if not tiles:
        raise TargetError("no images to predict")
    return np.concatenate(tiles), sources


def _array_batch(a: np.ndarray, size: int, resize) -> np.ndarray:
    """One uint8 image (H, W[, C]) or a batch (n, H, W[, C]) as (n, size, size, 3)."""
    if a.dtype != np.uint8:
        raise TargetError(f"image arrays must be uint8 (0-255), got {a.dtype}")
    single = a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4))
    batch = a[None] if single else a
    if batch.ndim not in (3, 4) or 0 in batch.shape:
        raise TargetError(f"image arrays must be (H, W[, C]) or (n, H, W[, C]), got shape {a.shape}")
    if batch.ndim == 4 and batch.shape[1:] == (size, size, 3):
        return batch
    return resize(batch, size)


def _image_files(path: Path, extensions) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            raise TargetError(f"{path}: no image files in this folder")
        return files
    if not path.exists():
        raise TargetError(f"{path}: no such file or folder")
    return [path]
