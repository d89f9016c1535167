"""The served HTML page and the pictures behind it (``plada-edge serve``, GET /).

A person checks pictures before numbers: for each published task the page shows the payload's
size, keep, classes and teacher accuracy, its contact sheet (plada_edge.core.sheets: per class, the
selected images in energy order, and the pool's energy histogram with the cut) and its label
histogram. The pictures are drawn when the task is built and cached beside its payload, so serving
never touches the pack.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from ..core import atomic


def draw_task_pictures(scores, pack, payload, out_stem: str | os.PathLike, per_class: int = 12) -> dict[str, str]:
    """Write OUT_STEM.sheet.png and OUT_STEM.labels.png (kept when present); returns their file names."""
    from ..core.sheets import label_histogram, payload_sheet

    stem = Path(out_stem)
    files = {"sheet": stem.with_name(stem.name + ".sheet.png"), "labels": stem.with_name(stem.name + ".labels.png")}
    if not files["sheet"].exists():
        atomic.write_bytes(files["sheet"], payload_sheet(payload, pack, np.asarray(scores.energy), per_class))
    if not files["labels"].exists():
        h = payload.header
        atomic.write_bytes(files["labels"], label_histogram(payload.labels, h["class_names"], f"{h['task']}: labels"))
    return {kind: p.name for kind, p in files.items()}


def render_page(tasks: dict) -> str:
    """The task list as one self-contained HTML page (``tasks`` as plada_edge.server.http.load_published)."""
    rows, sections = [], []
    for name, task in sorted(tasks.items()):
        m, h = task["meta"], task["header"]
        acc = (h.get("teacher") or {}).get("test_acc")
        signed = m.get("signed_by")
        f = h.get("forecast")
        expected = "not forecast" if f is None else f"{f['accuracy']:.3f} ({f['low']:.3f}–{f['high']:.3f})"
        release = (h.get("release") or {}).get("version")
        rows.append(
            f"<tr><td><a href='#{html.escape(name)}'>{html.escape(name)}</a></td><td>{m['bytes']:,}</td>"
            f"<td>{m['k']:,} / {m['n']:,} ({m['k'] / m['n']:.2%})</td><td>{m['classes']}</td>"
            f"<td>{'n/a' if acc is None else f'{acc:.4f}'}</td><td>{expected}</td><td>{html.escape(m['codec'])}</td>"
            f"<td>{html.escape(signed) if signed else 'no'}</td><td>{release or '–'}</td></tr>"
        )
        pics = "".join(
            f"<img src='/v1/tasks/{html.escape(name)}/{kind}.png' alt='{html.escape(name)} {kind}'>"
            for kind in ("sheet", "labels")
            if task.get(kind)
        )
        sections.append(
            f"<section id='{html.escape(name)}'><h2>{html.escape(name)}</h2>"
            f"<p><a href='/v1/tasks/{html.escape(name)}/payload'>payload</a> · "
            f"<a href='/v1/tasks/{html.escape(name)}'>metadata</a></p>{pics}</section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>plada-edge tasks</title>
<style>
 body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
 table {{ border-collapse: collapse; }}
 td, th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: right; }}
 td:first-child, th:first-child {{ text-align: left; }} img {{ display: block; margin: 8px 0; max-width: 100%; }}
 #status {{ color: #777; }}
</style></head>
<body>
<h1>plada-edge: {len(tasks)} task{"s" if len(tasks) != 1 else ""}</h1>
<p>Each task is shipped as (reference index, label) pairs over a reference pack every device stores.</p>
<table><tr><th>task</th><th>payload bytes</th><th>kept</th><th>classes</th><th>teacher accuracy</th>
<th>student, forecast</th><th>codec</th><th>signed by</th><th>release</th></tr>
{"".join(rows)}
</table>
{"".join(sections)}
<p id="status">loading pictures…</p>
<script>
window.addEventListener("load", () => {{
  const imgs = [...document.images];
  imgs.forEach(i => i.dataset.naturalWidth = i.naturalWidth);
  const broken = imgs.filter(i => !i.naturalWidth).length;
  document.getElementById("status").textContent =
    broken ? `${{broken}} of ${{imgs.length}} pictures failed to load` : `${{imgs.length}} pictures loaded`;
}});
</script>
</body></html>
"""
