"""Target tasks: the labelled data a server trains its teacher on (paper §3, "target dataset").

A target is stored either as
- an ``.npz`` with ``x_train, y_train, x_test, y_test, class_names`` (images uint8, (n, h, w) for
  grayscale or (n, h, w, 3) for RGB, at the task's native resolution), or
- an ImageFolder tree ``root/{train,test}/<class name>/<image>`` (class order = sorted names).

``native_size`` is the task's own resolution (8 for scikit-learn's 8x8 digits). The pipeline views
reference images through that resolution (see plada_edge.core.view) so teacher and student see the
pool the way the task's sensor would.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .errors import TargetError


def data_dir() -> Path:
    """Where built benchmark data lives: $PLADA_EDGE_DATA, else ./data."""
    return Path(os.environ.get("PLADA_EDGE_DATA", "data"))


@dataclass
class Target:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
                raise TargetError(
                    f"target {self.name}: x_{split} must be uint8 (n, h, w) or (n, h, w, 3), got {x.dtype} {x.shape}"
                )
            if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise TargetError(
                    f"target {self.name}: y_{split} must be a 1-D array of whole-number labels, "
                    f"got {getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}"
                )
            if len(x) != len(y):
                raise TargetError(f"target {self.name}: {len(x)} {split} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise TargetError(f"target {self.name}: {split} labels outside 0..{len(self.class_names) - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise TargetError(
                f"target {self.name}: train images {self.x_train.shape[1:]} differ from test {self.x_test.shape[1:]}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def native_size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.x_train.ndim == 3 else 3

    def sha256(self) -> str:
        """A digest of every image, label and class name: what a checkpoint was trained on."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.x_train, self.y_train.astype(np.int64), self.x_test, self.y_test.astype(np.int64)):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("\0".join(self.class_names).encode())
        return h.hexdigest()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "classes": self.num_classes,
            "class_names": self.class_names,
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "native_size": self.native_size,
            "channels": self.channels,
        }


def save_target(path: str | os.PathLike, target: Target) -> Path:
    import io

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        x_train=target.x_train,
        y_train=target.y_train.astype(np.int64),
        x_test=target.x_test,
        y_test=target.y_test.astype(np.int64),
        class_names=np.array(target.class_names),
        name=np.array(target.name),
    )
    return atomic.write_bytes(path, buf.getvalue())


def _load_folder(root: Path) -> Target:
    from PIL import Image

    from .sources import list_folder

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    splits = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for k, c in enumerate(classes):
            d = root / split / c
            for rel in list_folder(d) if d.is_dir() else []:
                with Image.open(d / rel) as img:
                    xs.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
                ys.append(k)
        if not xs:
            raise TargetError(f"{root / split}: no images")
        splits[split] = (np.stack(xs), np.array(ys, np.int64))
    return Target(root.name, *splits["train"], *splits["test"], classes)


def load_target(spec: str | os.PathLike) -> Target:
    """Load a target by path (.npz or ImageFolder root) or by name from data_dir()/targets/."""
    path = Path(spec)
    if not path.exists():
        named = data_dir() / "targets" / f"{spec}.npz"
        if named.exists():
            path = named
        else:
            raise FileNotFoundError(
                f"target {str(spec)!r} not found (neither a path nor {named}); "
                "build the benchmark targets with: python tools/build_offline_data.py"
            )
    if path.is_dir():
        return _load_folder(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise TargetError(f"{path}: a target is an .npz archive of arrays, not a single .npy array")
            missing = {"x_train", "y_train", "x_test", "y_test", "class_names"} - set(z.files)
            if missing:
                raise TargetError(f"{path}: target .npz lacks {sorted(missing)}")
            arrays = {key: z[key] for key in ("x_train", "y_train", "x_test", "y_test", "class_names")}
            name = str(z["name"]) if "name" in z.files else path.stem
    except TargetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # truncated, empty or not an archive
        raise TargetError(f"{path}: not a readable target archive ({type(exc).__name__}: {exc})") from None
    names = [str(c) for c in np.atleast_1d(arrays.pop("class_names"))]
    return Target(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], names)
