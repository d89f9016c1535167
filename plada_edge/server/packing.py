"""Server step 5 (paper §3.3): turn a selection into a ``.plada`` payload, optionally as large as fits ``max_bytes``.

``make_payload`` selects (plada_edge.server.selection), fills the header from the scores (task,
classes, pack fingerprint, sensor view, teacher metrics) and encodes with a codec
(plada_edge.core.codecs). With ``max_bytes`` it finds the largest k whose payload fits, by binary
search over k: selections never rescore, so each probe costs one selection and one encode.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from ..core import atomic
from ..core.config import GOAL_MAX_KEEP, SelectionConfig, with_options
from ..core.errors import ConfigError
from ..core.payload import Payload, decode_payload, encode_payload
from .plan import Choice, plan_selection
from .scoring import Scores, as_scores
from .selection import Selection, budget_size, class_counts, list_orders, pick, selection_facts, warn_about

_log = logging.getLogger(__name__)


def parse_bytes(text: str | int, name: str = "max_bytes") -> int:
    """'100KB' → 100000, '100KiB' → 102400, '1.5MB' → 1500000, 4096 → 4096; at least 1 byte."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ConfigError(f"{name} must be a size such as 100KB or a number of bytes, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kKmMgG]i?)?[bB]?\s*", text)
        if not m:
            raise ConfigError(f"{name} must look like 100KB, 64KiB or 4096, got {text!r}")
        unit = (m.group(2) or "").lower()
        scale = {"": 1, "k": 10**3, "ki": 2**10, "m": 10**6, "mi": 2**20, "g": 10**9, "gi": 2**30}[unit]
        value = int(float(m.group(1)) * scale)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 byte, got {text!r}")
    return value


def fit_budget(scores: Scores, select_k, encode, limit: int) -> tuple[Selection, bytes]:
    """The largest selection ``select_k(k)`` whose payload ``encode(sel)`` fits ``limit`` bytes (bisection on k)."""
    one = select_k(1)
    data = encode(one)
    if len(data) > limit:
        raise ConfigError(f"{limit:,} bytes hold no image: a payload of one image needs {len(data):,}")
    lo, hi, best = 1, int(class_counts(scores).sum()), (one, data)
    while lo < hi:  # largest k with size <= limit
        mid = (lo + hi + 1) // 2
        sel = select_k(mid)
        data = encode(sel)
        if len(data) <= limit:
            lo, best = mid, (sel, data)
        else:
            hi = mid - 1
    return best


def _finite_or_none(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def payload_header(scores: Scores, sel: Selection, task: str | None = None, release: dict | None = None) -> dict:
    """What a payload says of itself: task, classes, pack, view, how it was chosen, its teacher; with ``release``
    ({"version": n, "expires": unix seconds or None}) the signed release a device checks against rollback."""
    meta = scores.meta
    header = {
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
    if release is not None:
        header["release"] = release
    return header


BY_FORECAST = "by-forecast"  # a strategy of its own: candidate plans judged by their forecasts


def _spread_number(change: dict, k: int, valid: int) -> dict:
    """A candidate's "spread=gray|colour" as the number that band gives at ``k`` images (the config takes numbers)."""
    band = change.get("spread")
    if band not in ("gray", "colour"):
        return change
    from .plan import resolve_spread

    return {**change, "spread": resolve_spread("auto", k, valid, colour=band == "colour")}


def _soft_labeller(bits: int, teacher, scores, pack):
    if not bits:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"soft labels take 1 to 8 bits, got {bits!r}")
    if teacher is None or pack is None:
        raise ConfigError("soft labels need the teacher's ONNX (--teacher) and the reference pack (--reference)")
    from .soft import SoftLabeller

    return SoftLabeller(teacher, scores, pack, bits)


def _next_version(out, task: str) -> int | None:
    """One more than the release of the same task's payload already at ``out`` (packing again into the same file
    makes the next release); None when there is none."""
    try:
        old = decode_payload(Path(out).read_bytes())
    except (OSError, ValueError):
        return None
    release = old.header.get("release") or {}
    return release["version"] + 1 if old.header["task"] == task and release.get("version") else None


def _release(version: int | None, expires, signed: bool) -> dict | None:
    """The release a payload carries: given, or version 1 for a signed one (its rollback protection), else none."""
    import time

    from ..core.config import parse_expiry

    expiry = parse_expiry(expires, time.time())
    if version is None and expiry is None and not signed:
        return None
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ConfigError(f"version must be a whole number >= 1, got {version!r}")
    return {"version": 1 if version is None else version, "expires": expiry}


class PayloadResult(NamedTuple):
    """What ``make_payload`` made: the payload as a device reads it, the selection behind it, its bytes.

    Unpacks as ``payload, selection, data = make_payload(...)``."""

    payload: Payload
    selection: Selection
    data: bytes

    def to_dict(self, pack=None) -> dict:
        """The selection report (with ``pack``: where the images come from) and the payload's size and codec."""
        p = self.payload
        return dict(
            self.selection.report(pack),
            bytes=len(self.data),
            codec=p.header["codec"],
            header_bytes=p.header_bytes,
            body_bytes=p.body_bytes,
            trailer_bytes=p.trailer_bytes,
            signed_by=p.signer_id,
        )

    def __repr__(self) -> str:
        p = self.payload
        signed = f", signed by {p.signer_id}" if p.signer_id else ""
        return f"PayloadResult({len(self.data):,} bytes, {p.header['codec']}, {p.k:,} of {p.n:,} images{signed})"


def make_payload(
    scores: Scores,
    out: str | os.PathLike | None = None,
    config: SelectionConfig | None = None,
    *,
    keep: str | float | None = None,
    count: int | None = None,
    max_bytes: str | int | None = None,
    codec: str = "auto",
    task: str | None = None,
    target=None,
    pack=None,
    signer=None,
    target_counts=None,
    version: int | None = None,
    expires: str | int | None = None,
    forecast: bool = False,
    goal: float | None = None,
    goal_acc: float | None = None,
    soft: int = 0,
    teacher: str | os.PathLike | None = None,
    budget: str | int | None = None,
    **options,
) -> PayloadResult:
    """Select and encode; with ``max_bytes`` (a size: 100KB, 64KiB, 4096), the largest selection that fits.
    (``budget`` is max_bytes' old name: "budget" now means images, as the paper's K.) ``version`` and
    ``expires`` (never, a duration such as 30d, or a date) make the payload a release a device can hold
    against rollback and staleness (plada_edge.device.trust); a signed payload is release 1 unless told.

    ``config`` (a SelectionConfig, or keyword ``options`` overriding its fields) says how to
    select; ``signer`` (a plada_edge.core.keys.SigningKey) signs the payload. ``strategy="auto"``
    picks energy or opposite with proxy students on held-out target data (plada_edge.server.auto);
    it needs ``target`` and ``pack``. ``target_counts`` (or ``target``'s training labels) size the
    Safety-Net's quotas=target; without either, what the teacher recorded.

    ``forecast`` (needs ``target`` and ``pack``) trains the device's student recipe on the selection and
    judges it on the target's held-out training images (plada_edge.server.forecast); the estimate goes into
    the report and the header. ``goal`` (a share of the teacher's test accuracy) or ``goal_acc`` (an
    accuracy) instead sizes the payload: the fewest images whose forecast reaches it, within ``max_bytes``.
    ``soft`` (bits, 1-8; needs ``teacher``, the ONNX the scores came from) adds soft labels: per image the
    teacher's runner-up class and its quantised confidence (plada_edge.server.soft); max_bytes counts them.
    """
    cfg = with_options(config, SelectionConfig, options)
    job = _Packing.prepare(scores, cfg, target, pack, target_counts, budget, max_bytes, keep, count)
    if version is None and signer is not None and out is not None:
        version = _next_version(out, task or job.scores.meta.get("target", {}).get("name") or "task")
    job.header_extra["release"] = _release(version, expires, signed=signer is not None)
    job.soft = _soft_labeller(soft, teacher, job.scores, job.pack)
    job.teacher = teacher

    def encode(sel: Selection) -> bytes:
        labels = job.soft(sel.indices) if job.soft else None
        return encode_payload(sel.indices, sel.labels, job.header(sel, task), codec, signer=signer, soft=labels)

    job.encode = encode
    plan, auto_report = job.plan(cfg, keep, count)
    goal_acc = job.goal(goal, goal_acc)
    forecast = forecast or goal_acc is not None
    if forecast:  # the byte cap holds the forecast's field too: sized with its largest values
        job.header_extra["forecast"] = {"accuracy": 1.0, "low": 1.0, "high": 1.0, "images": job.held_out_count()}
    if goal_acc is not None:
        sel = job.smallest_reaching(plan, goal_acc, cfg.strategy)
    elif job.limit is not None:
        sel = job.largest_fitting(plan, cfg.strategy)
    else:
        sel = pick(job.scores, plan, budget_size(job.scores.n, keep, count), requested=cfg.strategy)
    sel, data = job.finish(sel, plan, cfg.strategy, forecast)
    job.short_of(sel, goal_acc)
    if auto_report is not None:
        sel.auto = auto_report
    warn_about(sel)
    if out is not None:
        atomic.write_bytes(out, data)
    return PayloadResult(decode_payload(data), sel, data)


@dataclass
class _Packing:
    """What make_payload works with: the scores, pack and target, the byte cap, and the header's extras."""

    scores: Scores
    pack: Any
    target: Any
    counts: Any
    limit: int | None
    header_extra: dict = field(default_factory=dict)
    encode: Any = None
    soft: Any = None  # a SoftLabeller when the payload carries soft labels
    forecasts: dict = field(default_factory=dict)  # trial selection digest -> Forecast: none is judged twice
    teacher: Any = None  # the teacher's ONNX, where the forecast looks for its blind twin first
    blind: Any = None  # per held-out fold, (Scores, SoftLabeller or None) of its blind teacher, once needed

    @classmethod
    def prepare(cls, scores, cfg, target, pack, target_counts, budget, max_bytes, keep, count) -> _Packing:
        scores = as_scores(scores)
        if isinstance(pack, (str, os.PathLike)):
            from ..core.reference import ReferencePack

            pack = ReferencePack.open(pack)
        if isinstance(target, (str, os.PathLike)):
            from ..core.targets import load_target

            target = load_target(target)
        counts = target_counts
        if counts is None and target is not None:  # the Safety-Net's quotas=target proportions
            counts = target.class_counts()
        if budget is not None:
            if max_bytes is not None:
                raise ConfigError("give max_bytes once (budget is its old name)")
            max_bytes = budget
        if max_bytes is not None and (keep is not None or count is not None):
            raise ConfigError("give either max_bytes or keep/count, not both")
        return cls(scores, pack, target, counts, parse_bytes(max_bytes) if max_bytes is not None else None)

    def header(self, sel: Selection, task: str | None) -> dict:
        extra = {k: v for k, v in self.header_extra.items() if v is not None}
        return {**payload_header(self.scores, sel, task, extra.get("release")), **extra}

    def planned(self, cfg: SelectionConfig):
        return plan_selection(selection_facts(self.scores, cfg, self.counts), cfg, orders=list_orders())

    def largest_fitting(self, plan, requested: str) -> Selection:  # the plan is resolved once, not per probe
        select_k = lambda k: pick(self.scores, plan, k, requested=requested)  # noqa: E731
        return fit_budget(self.scores, select_k, self.encode, self.limit)[0]

    def plan(self, cfg: SelectionConfig, keep, count):
        """The plan: the rules' (plada_edge.server.plan), strategy auto's pick by proxy students, or by-forecast's
        best forecast among candidate plans."""
        if cfg.strategy not in ("auto", BY_FORECAST):
            return self.planned(cfg), None
        if self.target is None or self.pack is None:
            raise ConfigError(
                f"--strategy {cfg.strategy} needs the target (--target) and the reference pack (--reference)"
            )
        if cfg.strategy == BY_FORECAST:
            return self.best_forecast(cfg, keep, count)
        from .auto import choose_strategy

        if self.limit is not None:  # chosen once, at the size the budget holds under energy order (not per probe)
            energy = self.planned(with_options(cfg, SelectionConfig, {"strategy": "energy"}))
            count = self.largest_fitting(energy, "energy").k
            keep = None
        chosen, auto_report = choose_strategy(self.scores, self.pack, self.target, cfg, keep=keep, count=count)
        plan = self.planned(with_options(cfg, SelectionConfig, {"strategy": chosen}))
        why = "proxy students on held-out target data chose it"
        return replace(plan, strategy=Choice(chosen, "auto", why)), auto_report

    def best_forecast(self, cfg: SelectionConfig, keep, count):
        """Strategy by-forecast: the candidate plans (the rules' default, each order, each quota sizing, the other
        spread band) picked at the same budget, each forecast; the best estimate wins, ties to the default."""
        default = self.planned(with_options(cfg, SelectionConfig, {"strategy": "by-teacher"}))
        k = self.largest_fitting(default, "by-teacher").k if self.limit else budget_size(self.scores.n, keep, count)
        variants = {"default": {"strategy": "by-teacher"}, "energy": {"strategy": "energy"}}
        variants |= {"nearest": {"strategy": "nearest"}, "quotas=pool": {"quotas": "pool"}}
        variants |= {"quotas=target": {"quotas": "target"}}
        variants |= {"spread=" + band: {"spread": band} for band in ("gray", "colour")}
        report, seen, best = {"images": k, "candidates": {}}, {}, None
        valid = int(class_counts(self.scores).sum())
        for name, change in variants.items():
            change = {"strategy": "by-teacher", **_spread_number(change, k, valid)}
            plan = self.planned(with_options(cfg, SelectionConfig, change))
            key = (plan.strategy.value, plan.quotas.value, plan.spread_at(k, valid))
            if key in seen:  # the rules already resolve to it
                report["candidates"][name] = {"same_as": seen[key]}
                continue
            seen[key] = name
            f = self.forecast_of(plan, min(k, valid))
            chosen = {"strategy": plan.strategy.value, "quotas": plan.quotas.value, "spread": plan.spread_at(k, valid)}
            report["candidates"][name] = {**chosen, **f.to_dict()}
            if best is None or f.accuracy > best[1].accuracy:
                best = (name, f, plan)
        name, f, plan = best
        report["chosen"] = name
        why = f"the best forecast of {len(seen)} candidate plans ({name}: {f.accuracy:.3f})"
        return replace(plan, strategy=Choice(plan.strategy.value, BY_FORECAST, why)), report

    def goal(self, goal: float | None, goal_acc: float | None) -> float | None:
        """The accuracy a goal asks of the forecast: ``goal_acc``, or ``goal`` x the teacher's test accuracy."""
        if goal is None and goal_acc is None:
            return None
        if goal is not None and goal_acc is not None:
            raise ConfigError("give goal (a share of the teacher's accuracy) or goal_acc, not both")
        if self.target is None or self.pack is None:
            raise ConfigError("a goal needs the target (--target) and the reference pack (--reference)")
        if goal_acc is not None:
            if not 0 < goal_acc <= 1:
                raise ConfigError(f"goal_acc must be an accuracy in (0, 1], got {goal_acc!r}")
            return float(goal_acc)
        teacher = self.scores.meta.get("teacher_test_acc")
        if not 0 < goal <= 1.5:
            raise ConfigError(f"goal must be a share of the teacher's accuracy in (0, 1.5], got {goal!r}")
        if teacher is None:
            raise ConfigError(
                "--goal is a share of the teacher's test accuracy, which these scores lack: use --goal-acc"
            )
        return float(goal) * float(teacher)

    def held_out_count(self) -> int:
        return sum(len(fold) for fold in self.target.holdout_folds()) if self.target else 0

    def finish(self, sel: Selection, plan, requested: str, forecast: bool) -> tuple[Selection, bytes]:
        """The selection with its forecast, encoded; a forecast's bytes that still tip it over the cap cost an
        image (and a new forecast) at a time."""
        while True:
            if forecast:
                sel.forecast = self.forecast_of(plan, sel.k, requested)
                self.header_extra["forecast"] = sel.forecast.header()
            data = self.encode(sel)
            if self.limit is None or len(data) <= self.limit or sel.k <= 1:
                return sel, data
            sel = pick(self.scores, plan, sel.k - 1, requested=requested)

    def forecast_of(self, plan, k: int, requested: str | None = None):
        """The forecast of ``plan`` at ``k`` images: per held-out fold, the plan at that size picked from the fold's
        blind teacher's scores (its trial payload), the device's student trained on it and judged on the fold."""
        if self.target is None or self.pack is None:
            raise ConfigError("a forecast needs the target (--target) and the reference pack (--reference)")
        import hashlib

        import numpy as np

        from .forecast import Trial, blind_folds, forecast

        if self.blind is None:
            self.blind = []
            for scores in blind_folds(self.scores, self.pack, self.target, self.teacher):
                soft = None
                if self.soft:  # the blind teacher's own soft labels, as the device gets the teacher's
                    soft = _soft_labeller(self.soft.bits, scores.meta["teacher_path"], scores, self.pack)
                self.blind.append((scores, soft))
        picks = [(scores, soft, pick(scores, plan, k, requested=requested)) for scores, soft in self.blind]
        # keyed by the images and labels: by-forecast's candidates share a size, not a selection
        digest = hashlib.sha256()
        for _, _, trial in picks:
            digest.update(np.ascontiguousarray(trial.indices, np.int64).tobytes())
            digest.update(np.ascontiguousarray(trial.labels, np.int64).tobytes())
        key = digest.hexdigest()
        if key not in self.forecasts:
            trials = [Trial(b, t.indices, t.labels, soft(t.indices) if soft else None) for b, soft, t in picks]
            self.forecasts[key] = forecast(self.scores, trials, self.pack, self.target)
        return self.forecasts[key]

    def smallest_reaching(self, plan, goal_acc: float, requested: str) -> Selection:
        """The fewest images whose forecast reaches ``goal_acc`` (bisection), within the byte cap (or, without
        one, GOAL_MAX_KEEP of the pack); a goal not reached there is a warning, and the payload is the bound."""
        from .forecast import smallest_for

        hi = min(int(class_counts(self.scores).sum()), budget_size(self.scores.n, GOAL_MAX_KEEP, None))
        if self.limit is not None:
            hi = self.largest_fitting(plan, requested).k
        lo = min(hi, max(1, self.scores.num_classes))

        def accuracy_at(k: int) -> float:
            got = self.forecast_of(plan, k, requested)
            _log.info("forecast at %s images: %s", f"{k:,}", got)
            return got.accuracy

        k, _ = smallest_for(goal_acc, accuracy_at, lo, hi)
        return pick(self.scores, plan, k, requested=requested)

    def short_of(self, sel: Selection, goal_acc: float | None) -> None:
        """Warn (in ``sel.warnings``) when the payload's forecast stays under the goal: the search hit its bound."""
        if goal_acc is not None and sel.forecast is not None and sel.forecast.accuracy < goal_acc:
            bound = "max_bytes" if self.limit is not None else f"GOAL_MAX_KEEP, {GOAL_MAX_KEEP} of the pack"
            sel.warnings.append(f"the forecast stays under the goal {goal_acc:.3f} up to {sel.k:,} images "
                                f"({sel.forecast.accuracy:.3f}), the search's bound ({bound}): the payload is that "
                                "bound")  # fmt: skip
