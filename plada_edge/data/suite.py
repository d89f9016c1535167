"""The benchmark suite the defaults are chosen on: fmnist, digits and four small colour tasks.

The paper evaluates on ten targets it never tuned for. Here the two grayscale targets of
plada_edge.data.offline are joined by four colour tasks a user could plausibly bring: icon themes
that are *not* in offline-mix (which holds oxygen only), each icon classified by its freedesktop
context (actions, apps, devices, mimetypes, places, status …). They are small like real user tasks
(a few hundred to ~2,000 training images, RGB, 32 px) and related to, but drawn differently from,
the pool's icons and clip art.

- Every size variant a theme ships of an icon is one image (designers redraw small sizes), drawn on
  white and padded to 32 px exactly as the pool's icons are (plada_edge.core.images).
- Train and test are split by icon *name*, stratified by context, so no icon is in both.
- Test images with a near duplicate in train, and any image with a near duplicate in the reference
  pack (plada_edge.core.dedup, the audit's rule), are dropped. tools/build_suite.py then runs the
  audit (``plada-edge audit``) on each and saves its report beside the target.

    build_suite()                      # data/targets/{tango,gnome,elementary,papirus}.npz
    load_target("tango")
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import TargetError
from ..core.targets import Target, data_dir, save_target

SIZE = 32
SUITE = ("fmnist", "digits", "tango", "gnome", "elementary", "papirus")
CONTEXTS = ("actions", "apps", "categories", "devices", "emblems", "emotes", "mimetypes", "places", "status")


@dataclass(frozen=True)
class IconTheme:
    """Where a Debian icon theme keeps its icons, and which of them make the task."""

    package: str
    root: str
    layout: str  # "size/context" (/usr/share/icons/T/48x48/apps) or "context/size" (T/apps/48)
    sizes: tuple[str, ...]  # size folders whose drawings become images
    min_names: int = 12  # a context with fewer distinct icons is not a class
    max_names: int = 150  # per class, so one huge context (papirus apps) does not swamp the rest


THEMES = {
    "tango": IconTheme(
        "tango-icon-theme", "/usr/share/icons/Tango", "size/context", ("16x16", "22x22", "24x24", "32x32")
    ),
    "gnome": IconTheme(
        "gnome-icon-theme", "/usr/share/icons/gnome", "size/context", ("16x16", "22x22", "32x32", "48x48", "256x256")
    ),
    "elementary": IconTheme("elementary-icon-theme", "/usr/share/icons/elementary", "context/size", ("24", "32", "48")),
    "papirus": IconTheme("papirus-icon-theme", "/usr/share/icons/Papirus", "size/context", ("22x22", "32x32", "48x48")),
}
CONTEXT_ALIASES = {"mimes": "mimetypes"}  # elementary's name for the same context


def icon_files(theme: IconTheme) -> dict[tuple[str, str], list[Path]]:
    """{(context, icon name): [files, one per size folder]}; links and symbolic icons are skipped."""
    root = Path(theme.root)
    if not root.is_dir():
        raise TargetError(f"{root} is missing: install the Debian package {theme.package} (tools/setup.sh does)")
    found: dict[tuple[str, str], list[Path]] = {}
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for first in folders:
        for second in sorted(p for p in first.iterdir() if p.is_dir()):
            size, context = (first.name, second.name) if theme.layout == "size/context" else (second.name, first.name)
            context = CONTEXT_ALIASES.get(context, context)
            if size not in theme.sizes or context not in CONTEXTS:
                continue
            for f in sorted(second.iterdir()):
                if f.is_symlink() or f.suffix not in (".png", ".svg") or "symbolic" in f.name:
                    continue
                found.setdefault((context, f.stem), []).append(f)
    return _unambiguous(found)


def _unambiguous(found: dict[tuple[str, str], list[Path]]) -> dict[tuple[str, str], list[Path]]:
    """One home per drawing: a file found in two contexts (papirus ships every app again under
    categories) stays in the first by name; identical drawings under several names count once."""
    import hashlib

    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for files in found.values() for f in files}
    contexts: dict[str, set[str]] = {}
    for (context, _), files in found.items():
        for f in files:
            contexts.setdefault(digest[f], set()).add(context)
    seen: set[str] = set()
    kept = {}
    for key, files in sorted(found.items()):
        ok = [f for f in files if min(contexts[digest[f]]) == key[0] and digest[f] not in seen]
        seen.update(digest[f] for f in ok)
        if ok:
            kept[key] = ok
    return kept


def render_icon(path: Path, size: int = SIZE) -> np.ndarray:
    """One icon as a (size, size, 3) uint8 tile on white: PNGs as the pool's icons are, SVGs via rsvg-convert."""
    import io

    from PIL import Image

    from ..core.images import square, to_rgb

    if path.suffix == ".svg":
        try:
            png = subprocess.run(
                ["rsvg-convert", "-w", str(size), "-h", str(size), "-a", str(path)],
                capture_output=True,
                check=True,
                timeout=30,
            ).stdout
        except FileNotFoundError:
            raise TargetError("SVG icons need rsvg-convert: apt install librsvg2-bin (tools/setup.sh does)") from None
        img = Image.open(io.BytesIO(png))
    else:
        img = Image.open(path)
    with img:
        return np.asarray(square(to_rgb(img), size, "pad"))


def _render_all(files: list[Path], workers: int) -> np.ndarray:
    from concurrent.futures import ThreadPoolExecutor  # rsvg-convert runs in its own process

    with ThreadPoolExecutor(max(1, workers)) as ex:
        return np.stack(list(ex.map(render_icon, files)))


def icon_target(name: str, seed: int = 0, test_share: float = 0.3, workers: int = 0) -> Target:
    """The ``name`` theme's icons classified by context; train/test split by icon name, stratified."""
    from ..core import native
    from ..core.dedup import near_duplicate_mask

    theme = THEMES[name]
    icons = icon_files(theme)
    by_class: dict[str, list[str]] = {}
    for context, icon in icons:
        by_class.setdefault(context, []).append(icon)
    classes = sorted(c for c, names in by_class.items() if len(names) >= theme.min_names)
    if len(classes) < 2:
        raise TargetError(f"{theme.root}: fewer than 2 contexts with {theme.min_names}+ icons")
    rng = np.random.default_rng(seed)
    files = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    groups = {"train": [], "test": []}  # the icon's name as an id: the unit of the split (and of the holdout)
    for label, context in enumerate(classes):
        names = sorted(by_class[context])
        names = [names[i] for i in np.sort(rng.permutation(len(names))[: theme.max_names])]
        order = rng.permutation(len(names))
        n_test = max(2, round(test_share * len(names)))
        for rank, i in enumerate(order):
            split = "test" if rank < n_test else "train"
            for f in icons[(context, names[i])]:
                files[split].append(f)
                labels[split].append(label)
                groups[split].append(len(classes) * rank + label)  # one id per (context, name)
    workers = workers or native.hardware_threads()
    x = {s: _render_all(files[s], workers) for s in files}
    y = {s: np.asarray(labels[s], np.int64) for s in labels}
    keep = ~near_duplicate_mask(x["test"], x["train"])  # the same drawing under two names
    x["test"], y["test"] = x["test"][keep], y["test"][keep]
    return Target(name, x["train"], y["train"], x["test"], y["test"], list(classes), np.asarray(groups["train"]))


def drop_pack_duplicates(target: Target, pack, chunk: int = 16384) -> tuple[Target, dict]:
    """``target`` without images that have a near duplicate in the reference pack (the audit's rule).

    The pack streams through in chunks, so a pack of any size fits; a chunk offers each target
    image its nearest candidates within the chunk, so no duplicate the whole pack would show is missed.
    """
    from ..core.dedup import near_duplicate_mask

    splits = {s: (getattr(target, f"x_{s}"), getattr(target, f"y_{s}")) for s in ("train", "test")}
    leak = {s: np.zeros(len(x), bool) for s, (x, _) in splits.items()}
    for _, pool in pack.iter_chunks(chunk):
        for s, (x, _) in splits.items():
            if len(x):
                leak[s] |= near_duplicate_mask(x, pool)
    clean = Target(
        target.name,
        *(a[~leak["train"]] for a in splits["train"]),
        *(a[~leak["test"]] for a in splits["test"]),
        target.class_names,
        None if target.groups is None else target.groups[~leak["train"]],
    )
    return clean, {s: int(m.sum()) for s, m in leak.items()}


def build_suite(
    names: tuple[str, ...] = tuple(THEMES),
    root: str | os.PathLike | None = None,
    pack_dir: str | os.PathLike | None = None,
    log=print,
) -> dict:
    """Build each colour target into ROOT/targets/NAME.npz without images the pack already holds.

    Returns {name: summary}. Run the audit (plada_edge.server.audit) on the result to confirm.
    """
    from ..core.reference import ReferencePack

    unknown = [name for name in names if name not in THEMES]
    if unknown:  # before any work
        raise TargetError(f"unknown suite target(s) {unknown}; colour targets: {', '.join(THEMES)}")
    root = Path(root) if root else data_dir()
    pack = ReferencePack.open(pack_dir or root / "offline-mix")
    summary = {}
    for name in names:
        log(f"[{name}] rendering {THEMES[name].package}")
        target, dropped = drop_pack_duplicates(icon_target(name), pack)
        for split in ("train", "test"):
            if len(set(getattr(target, f"y_{split}").tolist())) < target.num_classes:
                raise TargetError(f"[{name}] a class lost every {split} image to deduplication")
        path = save_target(root / "targets" / f"{name}.npz", target)
        summary[name] = {
            **target.describe(),
            "path": str(path),
            "dropped_as_pool_duplicates": dropped,
            "package": THEMES[name].package,
        }
        log(
            f"[{name}] {len(target.y_train):,} train / {len(target.y_test):,} test, {target.num_classes} classes; "
            f"dropped {dropped['train'] + dropped['test']} pool duplicates"
        )
    return summary
