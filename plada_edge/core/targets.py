"""Target tasks: the labelled data a server trains its teacher on (paper §3, "target dataset").

A target is stored either as
- an ``.npz`` with ``x_train, y_train, x_test, y_test, class_names`` (images uint8, (n, h, w) for
  grayscale or (n, h, w, 3) for RGB, at the task's native resolution) and, optionally, ``groups_train``: the
  unit its test split was drawn by, one id per training image (an icon's name, all its sizes one group), or
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
    """Where built benchmark data lives, from any working directory: $PLADA_EDGE_DATA; else data/ of the
    source checkout plada-edge runs from (tools/setup.sh installs it editable); else ~/.local/share/plada-edge."""
    if os.environ.get("PLADA_EDGE_DATA"):
        return Path(os.environ["PLADA_EDGE_DATA"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "plada_edge").is_dir():
        return checkout / "data"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "plada-edge"


@dataclass
class Target:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    groups: np.ndarray | None = None  # per training image: the unit the test split was drawn by (None: each image)

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
        if self.groups is not None:
            g = self.groups
            if not isinstance(g, np.ndarray) or g.shape != self.y_train.shape or not np.issubdtype(g.dtype, np.integer):
                raise TargetError(
                    f"target {self.name}: groups_train must be one whole-number id per training image, "
                    f"got {getattr(g, 'dtype', type(g).__name__)} {getattr(g, 'shape', '')}"
                )
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
        if self.groups is not None:  # they decide the holdout, so a teacher trained under other groups is another
            h.update(b"groups" + np.ascontiguousarray(self.groups.astype(np.int64)).tobytes())
        return h.hexdigest()

    def class_counts(self) -> np.ndarray:
        """Training images per class."""
        return np.bincount(np.asarray(self.y_train, np.int64), minlength=self.num_classes)

    def holdout(self, fold: int = 0) -> np.ndarray:
        """The training images the forecast judges a trial student on, drawn as the test split was: about
        HOLDOUT_SHARE of each class (at most HOLDOUT_MAX in all, seeded) in whole ``groups`` (an icon's every
        size, when the target records them), single images otherwise. The held-out images then stand to the
        rest as the test split stands to the whole. ``fold`` > 0: a further such draw from the images no
        earlier fold holds (holdout_folds). Sorted indices."""
        folds = self.holdout_folds()
        if not 0 <= fold < len(folds):
            raise TargetError(f"target {self.name} holds out {len(folds)} folds, not fold {fold}")
        return folds[fold]

    def holdout_folds(self) -> list[np.ndarray]:
        """Disjoint held-out folds, each drawn as holdout() describes: further folds while fewer than HOLDOUT_MAX
        images are held out, at most HOLDOUT_FOLDS (the forecast trains a blind teacher per fold)."""
        cached = self.__dict__.get("_holdout_folds")
        if cached is not None:
            return cached
        from .config import HOLDOUT_FOLDS, HOLDOUT_MAX, HOLDOUT_SHARE

        groups = self.groups if self.groups is not None else np.arange(len(self.y_train))
        scale = min(HOLDOUT_SHARE, HOLDOUT_MAX / max(1, len(self.y_train)))
        taken = np.zeros(len(self.y_train), bool)
        folds: list[np.ndarray] = []
        while len(folds) < HOLDOUT_FOLDS and (not folds or taken.sum() < HOLDOUT_MAX):
            fold = self._draw_fold(groups, scale, taken, np.random.default_rng(20260 + len(folds)))
            if folds and len(fold) < 10:  # the last images left over: too few to judge a fold by
                break
            folds.append(fold)
            taken[fold] = True
        self.__dict__["_holdout_folds"] = folds
        return folds

    def _draw_fold(self, groups: np.ndarray, scale: float, taken: np.ndarray, rng) -> np.ndarray:
        out = []
        for c in range(self.num_classes):
            members = np.flatnonzero(self.y_train == c)
            want = int(np.floor(scale * len(members)))
            free = members[~taken[members]]
            held = np.zeros(len(free), bool)
            for g in rng.permutation(np.unique(groups[free])):
                if held.sum() >= want:
                    break
                group = groups[free] == g
                if held.sum() + group.sum() <= max(want, 1) * 1.5:  # a group too large would take the class
                    held |= group
            out.append(free[held])
        return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, np.int64)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "classes": self.num_classes,
            "class_names": self.class_names,
            "train": int(len(self.y_train)),
            # the Safety-Net's quotas=target splits a payload in these proportions
            "train_class_counts": self.class_counts().tolist(),
            # kept out of the nearest-order anchors: the images the forecast judges a trial student on
            "holdout": self.holdout().tolist(),
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
        **({} if target.groups is None else {"groups_train": target.groups.astype(np.int64)}),
    )
    return atomic.write_bytes(path, buf.getvalue())


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_TARGET_SIZE = 32  # mixed-size folders are resized to this side (the packs' default) unless told


def _decode_images(paths: list[Path], size: int | None) -> tuple[np.ndarray, int]:
    """Images as one uint8 array: their own size when all share one square size, else ``size`` (or 32) by the
    pack rule (shorter side, centre crop); grayscale when every file is, RGB (alpha on white) otherwise."""
    from PIL import Image

    from .images import square, to_rgb

    modes, sizes = set(), set()
    for p in paths:
        try:
            with Image.open(p) as img:
                modes.add(img.mode)
                sizes.add(img.size)
        except (OSError, ValueError) as exc:  # Pillow: UnidentifiedImageError (an OSError), truncated files
            raise TargetError(f"{p}: not a readable image ({type(exc).__name__}: {exc})") from None
    ((w, h),) = sizes if len(sizes) == 1 else ((0, 0),)
    side = size or (w if w == h and w > 0 else DEFAULT_TARGET_SIZE)
    gray = modes <= {"L", "1", "I", "I;16", "I;16B", "I;16L", "F"}
    out = np.empty((len(paths), side, side) if gray else (len(paths), side, side, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img.load()
                rgb = square(to_rgb(img), side) if img.size != (side, side) else to_rgb(img)
        except (OSError, ValueError) as exc:
            raise TargetError(f"{p}: not a readable image ({type(exc).__name__}: {exc})") from None
        arr = np.asarray(rgb, dtype=np.uint8)
        out[i] = arr[..., 0] if gray else arr
    return out, side


def _class_files(folder: Path) -> dict[str, list[Path]]:
    from .sources import list_folder

    return {
        c.name: [c / rel for rel in list_folder(c) if (c / rel).suffix.lower() in IMAGE_SUFFIXES]
        for c in sorted(p for p in folder.iterdir() if p.is_dir())
    }


def stratified_split(labels: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the held-out rows: ``share`` of each class (at least one where a class has two or more)."""
    if not 0 < share < 1:
        raise TargetError(f"test split must be a share in (0, 1), got {share!r}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        m = int(round(share * len(rows)))
        held[rows[: max(m, 1 if len(rows) >= 2 else 0)]] = True
    return held


def _from_lists(
    name: str, train: dict, test: dict | None, test_split: float | None, seed: int, size: int | None, where: Path
) -> Target:
    """A Target from {class: [files]} per split (``test`` None: split ``train`` by ``test_split``)."""
    classes = sorted(train)
    if test is not None:
        only_test = sorted(set(test) - set(train))
        if only_test:
            raise TargetError(f"{where}: classes {only_test} have test images but no training images")
    if not classes:
        raise TargetError(f"{where}: no class folders (expected CLASS/IMAGE files)")
    empty = [c for c in classes if not train[c]]
    if empty:  # a class without images would be a phantom output the student can never learn
        raise TargetError(
            f"{where}: class folder {empty[0]}: no images" + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
        )
    if len(classes) < 2:
        raise TargetError(
            f"{where}: a classification target needs at least two classes, found {len(classes)} ({classes[0]})"
        )
    files = [(f, k) for k, c in enumerate(classes) for f in train[c]]
    if test is None:
        if test_split is None:
            raise TargetError(
                f"{where}: one set of class folders and no test split: pass --test-split 0.2 "
                "(or add test/ or validation/ beside train/)"
            )
        y = np.array([k for _, k in files], np.int64)
        held = stratified_split(y, test_split, seed)
        train_files, test_files = [files[i] for i in np.flatnonzero(~held)], [files[i] for i in np.flatnonzero(held)]
    else:
        train_files = files
        test_files = [(f, classes.index(c)) for c in sorted(test) for f in test[c]]
    for split, rows in (("train", train_files), ("test", test_files)):
        if not rows:
            raise TargetError(f"{where}: the {split} split has no images")
    x_train, side = _decode_images([f for f, _ in train_files], size)
    x_test, _ = _decode_images([f for f, _ in test_files], side)
    return Target(
        name,
        x_train,
        np.array([k for _, k in train_files], np.int64),
        x_test,
        np.array([k for _, k in test_files], np.int64),
        classes,
    )


def _load_folder(root: Path, test_split: float | None, seed: int, size: int | None) -> Target:
    """ImageFolder (train/ + test/), Hugging Face imagefolder (train/ + validation/ or test/), or one
    folder of class folders split by ``test_split``."""
    if (root / "train").is_dir():
        test_dir = next((root / d for d in ("test", "validation", "val") if (root / d).is_dir()), None)
        if test_dir is not None and test_split is not None:
            raise TargetError(f"{root} has its own {test_dir.name}/ split; drop --test-split")
        train = _class_files(root / "train")
        test = _class_files(test_dir) if test_dir is not None else None
        return _from_lists(root.name, train, test, test_split, seed, size, root)
    return _from_lists(root.name, _class_files(root), None, test_split, seed, size, root)


def _load_csv(path: Path, test_split: float | None, seed: int, size: int | None) -> Target:
    """A manifest with columns path,label (and optionally split = train|test); paths relative to the file."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise TargetError(f"{path}: a target manifest needs a header with columns path,label (and optionally split)")
    labels = [r["label"].strip() for r in rows]
    for text in labels:
        if not text or text.lower() in ("nan", "none", "null") or (_is_number(text) and not text.lstrip("-").isdigit()):
            raise TargetError(f"{path}: label {text!r} is not a class name or a whole number")
    by_split: dict[str, dict[str, list[Path]]] = {"train": {}, "test": {}}
    for r, label in zip(rows, labels):
        split = (r.get("split") or "train").strip().lower()
        if split in ("validation", "val"):
            split = "test"
        if split not in by_split:
            raise TargetError(f"{path}: split {split!r} must be train or test")
        file = Path(r["path"]) if Path(r["path"]).is_absolute() else path.parent / r["path"]
        by_split[split].setdefault(label, []).append(file)
    numeric = all(lab.lstrip("-").isdigit() for lab in labels)
    if numeric:  # whole-number labels keep their order (2 < 10), not string order
        for split in by_split.values():
            for lab in list(split):
                split[f"{int(lab):09d}"] = split.pop(lab)
    target = _from_lists(path.stem, by_split["train"], by_split["test"] or None, test_split, seed, size, path)
    if numeric:
        target.class_names = [str(int(c)) for c in target.class_names]
    return target


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_target(
    spec: str | os.PathLike, test_split: float | None = None, size: int | None = None, seed: int = 0
) -> Target:
    """Load a target as users have them, by path or by name from data_dir()/targets/.

    - ``.npz`` with x_train, y_train, x_test, y_test, class_names;
    - an ImageFolder ``root/{train,test}/CLASS/IMAGE`` (Hugging Face's ``validation/`` works as test);
    - one folder of class folders, split by ``test_split`` (stratified, seeded by ``seed``);
    - a CSV manifest ``path,label[,split]``.
    Folders of mixed sizes and modes are resized by the pack rule to ``size`` (default 32).
    """
    if size is not None and not (isinstance(size, int) and 8 <= size <= 1024):
        raise TargetError(f"target-size must be 8..1024 pixels, got {size!r}")
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
        return _load_folder(path, test_split, seed, size)
    if path.suffix.lower() == ".csv":
        return _load_csv(path, test_split, seed, size)
    if path.suffix.lower() == ".npy":
        raise TargetError(f"{path}: a target is an .npz archive of arrays, not a single .npy array")
    if not zipfile.is_zipfile(path) and path.suffix.lower() == ".npz":
        raise TargetError(f"{path}: not a readable target archive (truncated, or not a zip of arrays)")
    if not zipfile.is_zipfile(path):
        raise TargetError(
            f"{path}: not a target (give an .npz archive, a folder of class folders or a CSV manifest path,label)"
        )
    if test_split is not None:
        raise TargetError(f"{path}: an .npz target carries its own test split; drop --test-split")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise TargetError(f"{path}: a target is an .npz archive of arrays, not a single .npy array")
            missing = {"x_train", "y_train", "x_test", "y_test", "class_names"} - set(z.files)
            if missing:
                raise TargetError(f"{path}: target .npz lacks {sorted(missing)}")
            arrays = {key: z[key] for key in ("x_train", "y_train", "x_test", "y_test", "class_names")}
            groups = z["groups_train"] if "groups_train" in z.files else None
            name = str(z["name"]) if "name" in z.files else path.stem
    except TargetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # truncated, empty or not an archive
        raise TargetError(f"{path}: not a readable target archive ({type(exc).__name__}: {exc})") from None
    names = [str(c) for c in np.atleast_1d(arrays.pop("class_names"))]
    return Target(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], names, groups)
