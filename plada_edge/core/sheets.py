"""Pictures of a selection: what a person checks first when a student comes out bad (paper §3.2).

``contact_sheet`` draws, per class, the selected reference images in energy order (lowest, the
most in-distribution, first): a wrong class in a quota, an off-domain cluster of icons or a run of
duplicates shows at a glance. ``energy_histogram`` draws the pool's energies with the selected
images' and the cut marked; ``label_histogram`` the selection's class counts. All return PNG bytes
and read only the k selected images from the memory-mapped pack.
"""

from __future__ import annotations

import io

import numpy as np


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def contact_sheet(
    pack,
    indices: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    energy: np.ndarray | None = None,
    per_class: int = 12,
    tile: int = 56,
    title: str = "",
) -> bytes:
    """A PNG grid: one row per class with its count and up to ``per_class`` selected images.

    ``energy`` (one value per selected image) orders each row lowest first; without it, index order.
    """
    from PIL import Image, ImageDraw

    indices, labels = np.asarray(indices, np.int64), np.asarray(labels, np.int64)
    key = np.asarray(energy, np.float64) if energy is not None else indices.astype(np.float64)
    rows = []
    for c in range(len(class_names)):
        mine = np.flatnonzero(labels == c)
        rows.append((c, len(mine), mine[np.argsort(key[mine], kind="stable")][:per_class]))
    shown = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0, np.int64)
    order = np.argsort(indices[shown], kind="stable")  # read the pack in index order, once
    images = {}
    if len(shown):
        gathered = pack.gather(indices[shown][order])
        for j, pos in enumerate(order):
            images[int(shown[pos])] = gathered[j]
    label_w, pad, head = 170, 4, 34 if title else 8
    width = label_w + per_class * (tile + pad) + pad
    height = head + max(1, len(rows)) * (tile + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(15), _font(12)
    if title:
        draw.text((pad + 4, 8), title, fill=(20, 20, 20), font=font)
    for r, (c, count, picks) in enumerate(rows):
        y = head + r * (tile + pad)
        name = class_names[c] if len(class_names[c]) <= 22 else class_names[c][:21] + "…"
        draw.text((pad + 4, y + tile // 2 - 16), name, fill=(20, 20, 20), font=font)
        draw.text(
            (pad + 4, y + tile // 2 + 2),
            f"{count:,} selected",
            fill=(200, 40, 40) if count == 0 else (90, 90, 90),
            font=small,
        )
        for j, row in enumerate(picks):
            im = Image.fromarray(images[int(row)]).resize((tile, tile), Image.NEAREST)
            sheet.paste(im, (label_w + pad + j * (tile + pad), y))
    return _png(sheet)


def energy_histogram(all_energy: np.ndarray, selected_energy: np.ndarray, title: str = "", cut: bool = True) -> bytes:
    """A PNG histogram of the pool's energies, the selected images' on top; with ``cut``, the energy the
    selection stopped at as a line (only an energy-order selection has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = np.asarray(all_energy, np.float64)
    e = e[np.isfinite(e)]
    s = np.asarray(selected_energy, np.float64)
    s = s[np.isfinite(s)]
    fig, ax = plt.subplots(figsize=(7.5, 2.6), dpi=100)
    bins = np.linspace(e.min(), e.max(), 80) if len(e) and e.max() > e.min() else 10
    ax.hist(e, bins=bins, color="#9aa7b4", label=f"pool ({len(e):,})")
    if len(s):
        ax.hist(s, bins=bins, color="#d1495b", label=f"selected ({len(s):,})")
        if cut:
            ax.axvline(float(s.max()), color="#d1495b", linestyle="--", linewidth=1)
            ax.text(float(s.max()), ax.get_ylim()[1] * 0.9, " cut", color="#d1495b", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("energy (lower = more in-distribution)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def label_histogram(labels: np.ndarray, class_names: list[str], title: str = "") -> bytes:
    """A PNG bar chart of how many selected images each class got (an empty class shows as a gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(class_names))
    fig, ax = plt.subplots(figsize=(7.5, 2.4), dpi=100)
    ax.bar(range(len(counts)), counts, color=["#d1495b" if c == 0 else "#3d7ea6" for c in counts])
    if len(class_names) <= 30:
        ax.set_xticks(range(len(counts)), [n[:12] for n in class_names], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def stack_png(*parts: bytes) -> bytes:
    """The PNGs one above the other, left-aligned, on white."""
    from PIL import Image

    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in parts]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height
    return _png(out)


def payload_sheet(payload, pack, energy: np.ndarray | None = None, per_class: int = 12) -> bytes:
    """The contact sheet of a payload's selection (checked against ``pack``); with the pool's ``energy``
    (one value per pack image), rows in energy order and the energy histogram below, with the cut where the
    selection was made in energy order (a nearest-order selection has no energy cut to draw)."""
    payload.check_pack(pack)
    h = payload.header
    title = f"{h['task']}: {payload.k:,} of {payload.n:,} images, {payload.num_classes} classes"
    selected = None if energy is None else np.asarray(energy[payload.indices], np.float64)
    sheet = contact_sheet(pack, payload.indices, payload.labels, h["class_names"], selected, per_class, title=title)
    if energy is None:
        return sheet
    order = (h.get("selection") or {}).get("strategy") or "energy"
    cut = order == "energy"
    title = "energy of every pool image" + ("" if cut else f" ({order} order: no energy cut)")
    return stack_png(sheet, energy_histogram(np.asarray(energy), selected, title=title, cut=cut))
