"""Where reference images come from: image folders, numpy arrays and IDX files.

A source spec is a string, as typed on the command line:
  ``path/to/folder``            every image Pillow reads, recursively, in sorted relative-path order
  ``images.npy``                a (n, H, W[, C]) uint8 array
  ``data.npz:key``              one array of an .npz
  ``train-images-idx3-ubyte.gz`` an IDX file (MNIST style), gzipped or raw
Prefix ``NAME=`` to name a source (``mnist=/data/mnist.npz:x``); the name defaults to the file or
folder name. The order of sources, and of items within each, is the pack's index order (paper §3:
the index is the only thing a payload sends, so the order is the contract).
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PackError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def image_extensions() -> frozenset[str]:
    """File extensions Pillow can open on this installation."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Source:
    spec: str  # as given
    name: str
    kind: str  # "folder" | "array" | "idx"
    path: Path
    key: str | None = None
    resize: str | None = None  # per-source override of the pack's resize method
    items: list = field(default_factory=list, repr=False)  # relative paths (folder) or array length

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "spec": self.spec}
        if self.resize:
            d["resize"] = self.resize
        return d


def parse_source(spec: str | Source) -> Source:
    if isinstance(spec, Source):
        return spec
    name = None
    body = spec
    if "=" in spec.split(os.sep)[0] and not Path(spec).exists():
        name, body = spec.split("=", 1)
    key = None
    path = Path(body)
    if not path.exists() and ":" in body:
        head, key = body.rsplit(":", 1)
        path = Path(head)
    if not path.exists():
        raise FileNotFoundError(f"reference source not found: {body!r}")
    if path.is_dir():
        kind = "folder"
    elif path.suffix == ".npy" or path.suffix == ".npz":
        kind = "array"
        if path.suffix == ".npz" and key is None:
            with np.load(path) as z:
                keys = list(z.keys())
            if len(keys) != 1:
                raise PackError(f"{path} holds arrays {keys}: name one as {path}:KEY")
            key = keys[0]
    elif "idx" in path.name or path.name.endswith("-ubyte") or path.name.endswith("-ubyte.gz"):
        kind = "idx"
    else:
        raise PackError(f"cannot tell what kind of source {body!r} is (folder, .npy, .npz:key or IDX)")
    return Source(spec=str(spec), name=name or path.name.split(".")[0], kind=kind, path=path, key=key)


def list_folder(root: Path, extensions: frozenset[str] | None = None) -> list[str]:
    """Relative posix paths of image files under root, sorted (byte order of the UTF-8 path)."""
    extensions = extensions or image_extensions()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            if Path(fn).suffix.lower() in extensions:
                out.append(Path(dirpath, fn).relative_to(root).as_posix())
    out.sort(key=lambda p: p.encode("utf-8", "surrogateescape"))
    return out


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST format), raw or gzipped, with its header checked against its size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise PackError(f"{path}: not an IDX file (bad magic)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise PackError(f"{path}: unknown IDX element type 0x{code:02x}")
    if len(data) < 4 + 4 * ndim:
        raise PackError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[code])
    need = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != need:
        raise PackError(f"{path}: IDX header says {shape} ({need} bytes) but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def load_array(src: Source) -> np.ndarray:
    try:
        if src.kind == "idx":
            arr = read_idx(src.path)
        elif src.path.suffix == ".npz":
            with np.load(src.path, allow_pickle=False) as z:
                if src.key not in z:
                    raise PackError(f"{src.path} has no array {src.key!r} (has {list(z.keys())})")
                arr = z[src.key]
        else:
            arr = np.load(src.path, mmap_mode="r", allow_pickle=False)
    except PackError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # empty, truncated or not numpy at all
        raise PackError(
            f"source {src.name}: {src.path} is not a readable numpy file ({type(exc).__name__}: {exc})"
        ) from None
    if arr.dtype != np.uint8:
        raise PackError(f"source {src.name}: images must be uint8, got {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise PackError(f"source {src.name}: expected (n, H, W[, C]) images, got shape {arr.shape}")
    return arr
