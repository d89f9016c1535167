"""Server step 5 (paper §3.3): turn a selection into a ``.plada`` payload, optionally to a byte budget.

``make_payload`` selects (plada_edge.server.selection), fills the header from the scores (task,
classes, pack fingerprint, sensor view, teacher metrics) and encodes with a codec
(plada_edge.core.codecs). With ``budget`` it finds the largest k whose payload fits, by binary
search over k: selections never rescore, so each probe costs one selection and one encode.
"""

from __future__ import annotations

import math
import os
import re

from ..core import atomic
from ..core.config import SelectionConfig, with_options
from ..core.errors import ConfigError
from ..core.payload import Payload, decode_payload, encode_payload
from .scoring import Scores
from .selection import Selection, class_counts, select


def parse_bytes(text: str | int) -> int:
    """'100KB' → 100000, '100KiB' → 102400, '1.5MB' → 1500000, 4096 → 4096."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]i?)?[bB]?\s*", text)
    if not m:
        raise ConfigError(f"budget must look like 100KB, 64KiB or 4096, got {text!r}")
    unit = (m.group(2) or "").lower()
    scale = {"": 1, "k": 10**3, "ki": 2**10, "m": 10**6, "mi": 2**20, "g": 10**9, "gi": 2**30}[unit]
    return int(float(m.group(1)) * scale)


def _finite_or_none(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def payload_header(scores: Scores, sel: Selection, task: str | None = None) -> dict:
    meta = scores.meta
    return {
        "task": task or meta.get("target", {}).get("name") or "task",
        "class_names": scores.class_names,
        "pack_fingerprint": meta["pack_fingerprint"],
        "n": scores.n,
        "image_size": meta.get("image_size"),
        "view": meta["view"],
        "selection": {
            "strategy": sel.strategy,
            "keep": sel.k / scores.n if scores.n else 0.0,
            "budget": sel.budget,
            "safety_net": sel.safety_net,
            "spread": sel.spread,
        },
        "teacher": {
            "arch": meta.get("arch"),
            "test_acc": _finite_or_none(meta.get("teacher_test_acc")),
            "sha256": meta["teacher_sha256"],
        },
        # the class names are already above: keep only what the device needs to evaluate
        "target": {k: v for k, v in meta.get("target", {}).items() if k in ("name", "native_size", "channels")},
    }


def make_payload(
    scores: Scores,
    out: str | os.PathLike | None = None,
    config: SelectionConfig | None = None,
    *,
    keep: str | float | None = None,
    count: int | None = None,
    budget: str | int | None = None,
    codec: str = "auto",
    task: str | None = None,
    target=None,
    pack=None,
    signer=None,
    target_counts=None,
    **options,
) -> tuple[Payload, Selection, bytes]:
    """Select and encode; with ``budget`` (bytes), the largest selection whose payload fits.

    ``config`` (a SelectionConfig, or keyword ``options`` overriding its fields) says how to
    select; ``signer`` (a plada_edge.core.keys.SigningKey) signs the payload. ``strategy="auto"``
    picks energy or opposite with proxy students on held-out target data (plada_edge.server.auto);
    it needs ``target`` and ``pack``. ``target_counts`` (or ``target``'s training labels) size the
    Safety-Net's quotas=target; without either, what the teacher recorded.
    """
    cfg = with_options(config, SelectionConfig, options)
    counts = target_counts
    if counts is None and target is not None:  # the Safety-Net's quotas=target proportions
        counts = target.class_counts()
    auto_report = None
    if cfg.strategy == "auto":
        if target is None or pack is None:
            raise ConfigError("--strategy auto needs the target (--target) and the reference pack (--reference)")
        from .auto import choose_strategy

        chosen, auto_report = choose_strategy(
            scores, pack, target, cfg, keep=keep, count=count if budget is None else None
        )
        cfg = with_options(cfg, SelectionConfig, {"strategy": chosen})
    if budget is not None:
        if keep is not None or count is not None:
            raise ConfigError("give either a byte budget or keep/count, not both")
        limit = parse_bytes(budget)

        def encoded(k: int):
            sel = select(scores, cfg, count=k, target_counts=counts)
            return sel, encode_payload(sel.indices, sel.labels, payload_header(scores, sel, task), codec, signer=signer)

        lo_sel, lo_data = encoded(0)
        if len(lo_data) > limit:
            raise ConfigError(f"even an empty payload needs {len(lo_data)} bytes, more than the budget of {limit}")
        lo, hi = 0, int(class_counts(scores).sum())
        best = (lo_sel, lo_data)
        while lo < hi:  # largest k with size <= limit
            mid = (lo + hi + 1) // 2
            sel, data = encoded(mid)
            if len(data) <= limit:
                lo, best = mid, (sel, data)
            else:
                hi = mid - 1
        sel, data = best
    else:
        sel = select(scores, cfg, keep=keep, count=count, target_counts=counts)
        data = encode_payload(sel.indices, sel.labels, payload_header(scores, sel, task), codec, signer=signer)
    if auto_report is not None:
        sel.auto = auto_report
    if out is not None:
        atomic.write_bytes(out, data)
    return decode_payload(data), sel, data
