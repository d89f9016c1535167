"""Server step 4b (paper §3.2): pick the (image, pseudo-label) pairs a plan asks for.

``select(scores, config, keep=... | count=...)`` reads the facts of the scores (``selection_facts``),
resolves a plan once (plada_edge.server.plan: the only home of the rules) and picks by it (``pick``).

Orders (a registry, ``list_orders``; ``list_strategies`` adds the rules by-teacher and by-view):
  energy    lowest energy first: the paper's order, most in-distribution
  opposite  highest energy first: the paper's mode for far-out-of-domain targets
  entropy   lowest softmax entropy first: the confidence baseline the paper compares against
  random    a seeded random order: the control
  nearest   closest to the target's own training images in the teacher's features (ours): each
            image's ``distance`` to up to NEAREST_ANCHORS training images (plada_edge.server.teacher)

Safety-Net (paper §3.2): quotas first, then the rest of the budget globally from the images not yet
taken. Pool quotas reserve ``share`` of the budget K as K_c ∝ N_c^alpha over the pack's pseudo-label
counts N_c (empty classes get none, K_c is capped at N_c; alpha 0 with share 1 is equal quotas);
target quotas (ours) split all of K as K_c ∝ n_c^power of the target's training counts. Quotas are
rounded by largest remainder, ties to the lower class.

Spread (ours): with s > 1 each quota (and the remainder) draws its m images at random, seeded, from
its s·m best instead of taking the m best: purity traded for diversity. s = 1 is the strict order.

Memory (issue 18): every pass reads the scores CHUNK rows at a time. Strict picks merge each chunk's
best (the native class_topk kernel) into a running best of at most k rows; a spread's band is never
listed: its per-class thresholds come from a radix select (four passes of per-class byte
histograms), so a selection holds one chunk, k candidates and classes x 256 counts at any N.
Flagged rows (NaN, +inf, all -inf logits) are never selected. Every selection reports its label
histogram and warns when classes vanish. Scores are never recomputed: selecting again with another
budget, order or quota only re-reads the memory-mapped scores.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core import native
from ..core.config import (
    KEEP,
    NEAR_COPY_QUANTILE,
    SelectionConfig,
    with_options,
)
from ..core.errors import ConfigError, PladaWarning
from .plan import ASKED, RESOLVED, SelectionFacts, SelectionPlan, plan_selection
from .scoring import Scores, as_scores, gather_rows, read_rows

CHUNK = 1 << 18  # rows of scores a selection pass reads at a time: its memory, whatever N is
_STRATEGIES: dict[str, Callable] = {}
_DOCS: dict[str, str] = {}


def register_strategy(name: str, doc: str):
    """Register fn(scores, seed) -> (key(lo, hi): float32 keys of rows [lo, hi), largest_first)."""

    def deco(fn):
        _STRATEGIES[name] = fn
        _DOCS[name] = doc
        return fn

    return deco


def list_orders() -> list[str]:
    """The registered orders: strategies that rank images themselves (a plan's strategy is one of them)."""
    return sorted(_STRATEGIES)


def list_strategies() -> list[str]:
    """Selection strategies ``select(strategy=...)`` knows: the orders, and the rules that pick one (by-teacher,
    by-view; plada_edge.server.plan)."""
    return sorted((*_STRATEGIES, *RESOLVED))


def _field(name: str, largest: bool = False):
    return lambda s, seed: ((lambda lo, hi: read_rows(getattr(s, name), lo, hi)), largest)


register_strategy("energy", "lowest energy first (paper default)")(_field("energy"))
register_strategy("opposite", "highest energy first (far-OOD targets)")(_field("energy", largest=True))
register_strategy("entropy", "lowest softmax entropy first")(_field("entropy"))
register_strategy("random", "seeded random order (control)")(lambda s, seed: (_RandomChunks(seed).rows, False))


@register_strategy("nearest", "closest to the target's training images in the teacher's features first")
def _nearest(scores: Scores, seed: int):
    if scores.distance is None:
        raise ConfigError(
            f"strategy nearest needs scores with a distance; {scores.path} has none (its teacher kept no anchors: "
            "retrain it, or export it again with --target, and score again)"
        )
    return (lambda lo, hi: read_rows(scores.distance, lo, hi)), False


def near_copy_ratio(scores: Scores) -> float | None:
    """The pool's NEAR_COPY_QUANTILE nearest-distance quantile over its median (None without a distance):
    well under 1 when some pool images are near-copies of the target's training images. Read from a
    histogram of 2^16 bins over the distance's range [0, 2], chunk by chunk: exact to 3e-5, flat in N."""
    if scores.distance is None:
        return None
    bins = 1 << 16
    hist = np.zeros(bins, np.int64)
    for lo, hi, _, ok in _Pass(scores, None, False):
        d = np.asarray(read_rows(scores.distance, lo, hi), np.float64)[ok]
        d = d[np.isfinite(d)]
        hist += np.bincount(np.clip((d * (bins / 2)).astype(np.int64), 0, bins - 1), minlength=bins)
    cum = np.cumsum(hist)
    if not cum[-1]:
        return None
    upper = [(np.searchsorted(cum, max(1.0, q * cum[-1])) + 1) * 2 / bins for q in (NEAR_COPY_QUANTILE, 0.5)]
    return float(upper[0] / upper[1])


def parse_keep(keep: str | float) -> float:
    """A share of the pack: '1%' → 0.01, '0.5%' → 0.005, '0.01' → 0.01 (a fraction below 1).

    The one rule for a bare number: it is a fraction, so it must be below 1. '1' or '5' is refused,
    since it could mean 1 % or 100 % (or five images): write 1%, 100%, or use count.
    """
    if isinstance(keep, str):
        m = re.fullmatch(r"\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*", keep)
        if not m:
            raise ConfigError(f"keep must look like 1% or 0.01, got {keep!r}")
        value = float(m.group(1)) / (100 if m.group(2) else 1)
        if not m.group(2) and value >= 1:
            number = m.group(1)
            hint = "write 1% or 100%" if value == 1 else f"write {number}% or use --count {number}"
            raise ConfigError(f"keep {number} without % is ambiguous: {hint}")
    else:
        value = float(keep)
    if not 0 < value <= 1:
        raise ConfigError(f"keep must be in (0, 100%], got {keep!r}")
    return value


def safety_net_quotas(
    class_counts: np.ndarray, budget: int, alpha: float, share: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-class quotas K_c ∝ N_c^alpha (or ∝ ``weights``) over non-empty classes, summing to
    round(share*budget), capped at N_c."""
    if not 0 <= share <= 1:
        raise ConfigError(f"share must be in [0, 1], got {share}")
    counts = np.asarray(class_counts, np.int64)
    total = int(round(share * budget))
    eligible = counts > 0
    if weights is not None:
        eligible &= np.asarray(weights, np.float64) > 0
    quotas = np.zeros(len(counts), np.int64)
    if total == 0 or not eligible.any():
        return quotas
    w = np.zeros(len(counts))
    w[eligible] = counts[eligible].astype(np.float64) ** alpha if weights is None else np.asarray(weights)[eligible]
    raw = total * w / w.sum()
    quotas = np.floor(raw).astype(np.int64)
    left = total - int(quotas.sum())
    if left > 0:  # largest remainder, ties to the lower class index
        frac = np.where(eligible, raw - quotas, -1.0)
        order = np.lexsort((np.arange(len(counts)), -frac))
        quotas[order[:left]] += 1
    return np.minimum(quotas, counts)


def target_weights(class_counts, power: float) -> np.ndarray:
    """quotas=target's weights: n_c^power for the target's classes with training images, 0 for the rest."""
    counts = np.asarray(class_counts, np.float64)
    return np.where(counts > 0, np.maximum(counts, 1.0) ** power, 0.0)


def target_class_counts(scores: Scores) -> np.ndarray | None:
    """The target's training labels per class, as the teacher recorded them (None: not recorded)."""
    counts = (scores.meta.get("target") or {}).get("train_class_counts")
    if counts is None or len(counts) != scores.num_classes:
        return None
    return np.asarray(counts, np.int64)


@dataclass
class Selection:
    indices: np.ndarray  # sorted ascending (the payload's order)
    labels: np.ndarray  # teacher's hard labels for those indices
    num_classes: int
    class_names: list[str]
    strategy: str
    k: int
    budget: int
    pack_n: int
    pack_fingerprint: str
    safety_net: dict | None = None
    spread: float = 1.0
    warnings: list[str] = field(default_factory=list)
    auto: dict | None = None  # strategy=auto: each candidate's proxy score (plada_edge.server.auto)
    chosen_by: str | None = None  # by-teacher / by-view: why this strategy (plada_edge.server.plan)
    plan: SelectionPlan | None = None  # how it was chosen: every choice with its rule and reason
    forecast: object | None = None  # what its student should reach (plada_edge.server.forecast), when asked

    @property
    def histogram(self) -> np.ndarray:
        return np.bincount(self.labels.astype(np.int64), minlength=self.num_classes)

    def report(self, pack=None) -> dict:
        hist = self.histogram
        r = {
            "strategy": self.strategy,
            "chosen_by": self.chosen_by,
            "k": self.k,
            "budget": self.budget,
            "pack_n": self.pack_n,
            "keep": self.k / self.pack_n if self.pack_n else 0.0,
            "safety_net": self.safety_net,
            "spread": self.spread,
            "label_histogram": {self.class_names[c]: int(hist[c]) for c in range(self.num_classes)},
            "classes_present": int((hist > 0).sum()),
            "warnings": self.warnings,
        }
        if self.plan is not None:
            r["plan"] = self.plan.to_dict()
        if self.forecast is not None:
            r["forecast"] = self.forecast.to_dict()
        if pack is not None:
            sid = pack.source_ids(self.indices)
            r["sources"] = {s.name: int((sid == i).sum()) for i, s in enumerate(pack.sources)}
        return r

    def to_dict(self) -> dict:
        """The report as a plain dict (what ``select --json`` prints)."""
        return self.report()

    def __repr__(self) -> str:
        present = int((self.histogram > 0).sum())
        return (
            f"Selection({self.strategy}, k={self.k:,} of {self.pack_n:,}, "
            f"{present} of {self.num_classes} classes, {len(self.warnings)} warnings)"
        )


def budget_size(n: int, keep: str | float | None, count: int | None) -> int:
    """The number of images a budget of ``keep`` (a share of the pack) or ``count`` asks for; neither: KEEP."""
    if keep is not None and count is not None:
        raise ConfigError("give exactly one of keep (a fraction, e.g. 1%) or count (a number of images)")
    if keep is None and count is None:
        keep = KEEP
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ConfigError(f"count must be >= 1 (a payload of no images teaches nothing), got {count!r}")
        return int(count)
    k = int(round(parse_keep(keep) * n))
    if k < 1 and n > 0:
        raise ConfigError(f"keep {keep} of {n:,} images is no image at all: raise it, or give count")
    return k


def is_colour(scores: Scores) -> bool:
    """Whether the teacher sees colour (its view; scores without one count as grayscale, the older rule)."""
    return not (scores.meta.get("view") or {}).get("gray", True)


class _RandomChunks:
    """Rows [lo, hi) of default_rng(seed).random(N, float32), drawn chunk by chunk (the same numbers)."""

    def __init__(self, seed):
        self.seed, self.rng, self.at = seed, None, 0

    def rows(self, lo: int, hi: int) -> np.ndarray:
        if self.rng is None or lo < self.at:  # passes run in index order: restart only for a new pass
            self.rng, self.at = np.random.default_rng(self.seed), 0
        if lo > self.at:
            self.rng.random(lo - self.at, dtype=np.float32)
        self.at = hi
        return self.rng.random(hi - lo, dtype=np.float32)


def _ordered(key: np.ndarray, largest: bool) -> np.ndarray:
    """float32 keys as uint32 in the same order (largest first: reversed); -0.0 and 0.0 tie."""
    b = (np.asarray(key, np.float32) + np.float32(0)).view(np.uint32)
    u = np.where(b >> np.uint32(31), ~b, b | np.uint32(0x80000000))
    return ~u if largest else u


class _Pass:
    """The scores read in chunks of CHUNK rows (memory stays flat in N): labels and what may be picked."""

    def __init__(self, scores, exclude: np.ndarray | None, per_class: bool):
        self.scores, self.exclude, self.per_class = scores, exclude, per_class

    def __iter__(self):
        s = self.scores
        for lo in range(0, s.n, CHUNK):
            hi = min(lo + CHUNK, s.n)
            ok = read_rows(s.flags, lo, hi) == 0
            if self.exclude is not None and len(self.exclude):  # sorted global indices
                a, b = np.searchsorted(self.exclude, [lo, hi])
                ok[self.exclude[a:b] - lo] = False
            lab = read_rows(s.label, lo, hi) if self.per_class else np.zeros(hi - lo, np.uint8)
            yield lo, hi, lab, ok


class _Band:
    """Per class, the rows among its ``need`` best by a key: those under the threshold t, and the
    first ``ties`` rows (by index) equal to it. Found by radix select, one byte per pass: four
    passes over the scores holding classes x 256 counts, whatever N is."""

    def __init__(self, rows: _Pass, key, largest: bool, need: np.ndarray):
        self.rows, self.key, self.largest = rows, key, largest
        need = np.asarray(need, np.int64).copy()
        classes = len(need)
        prefix = np.zeros(classes, np.uint32)
        for shift in (24, 16, 8, 0):
            high = np.uint32((0xFFFFFFFF << (shift + 8)) & 0xFFFFFFFF)  # the bytes already fixed
            hist = np.zeros(classes * 256, np.int64)
            for lo, hi, lab, ok in rows:
                u = _ordered(key(lo, hi), largest)
                lab = lab.astype(np.intp)
                m = ok & (need[lab] > 0) & ((u & high) == (prefix[lab] & high))
                hist += np.bincount(lab[m] * 256 + ((u[m] >> np.uint32(shift)) & np.uint32(255)), minlength=hist.size)
            hist = hist.reshape(classes, 256)
            if shift == 24:
                need = np.minimum(need, hist.sum(1))  # a class smaller than its need gives all it has
            cum = hist.cumsum(1)
            digit = np.argmax(cum >= need[:, None], axis=1)
            need -= np.where(digit > 0, cum[np.arange(classes), digit - 1], 0) * (need > 0)
            prefix |= (digit.astype(np.uint32) << np.uint32(shift)) * (need > 0)
        self.threshold, self.ties = prefix, need

    def members(self):
        """Yield (lo, hi, lab, ok) with ok narrowed to the band, in index order (ties: lowest indices)."""
        taken = np.zeros(len(self.ties), np.int64)
        for lo, hi, lab, ok in self.rows:
            u = _ordered(self.key(lo, hi), self.largest)
            li = lab.astype(np.intp)
            t = self.threshold[li]
            inside = ok & (u < t)
            eq = np.flatnonzero(ok & (u == t) & (self.ties[li] > 0))
            if len(eq):
                le = li[eq]
                order = np.argsort(le, kind="stable")
                rank = np.empty(len(eq), np.int64)
                rank[order] = np.arange(len(eq)) - np.searchsorted(le[order], le[order], side="left")
                inside[eq[rank + taken[le] < self.ties[le]]] = True
                taken += np.bincount(le, minlength=len(taken))
            yield lo, hi, lab, inside


def _best(chunks, key, largest: bool, quotas: np.ndarray, threads: int) -> np.ndarray:
    """Per class c, the quotas[c] best rows by key (ties to the lower index), sorted by index.

    Each chunk's own best (native.class_topk) are merged into the running best, so memory holds
    one chunk plus sum(quotas) candidates."""
    quotas = np.asarray(quotas, np.int64)
    idx, keys, labs = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint32)
    for lo, hi, lab, ok in chunks:
        k = np.ascontiguousarray(key(lo, hi), np.float32)
        lab32 = lab.astype(np.uint32)
        local = native.class_topk(k, lab32, quotas, (~ok).view(np.uint8), largest, threads)
        if not len(local):
            continue
        local.sort()
        idx = np.concatenate([idx, local + lo])  # ascending: earlier chunks hold lower indices
        keys, labs = np.concatenate([keys, k[local]]), np.concatenate([labs, lab32[local]])
        keep = np.sort(native.class_topk(keys, labs, quotas, None, largest, threads))
        idx, keys, labs = idx[keep], keys[keep], labs[keep]
    return idx


def class_counts(scores: Scores) -> np.ndarray:
    """Selectable (unflagged) images per pseudo-label, counted chunk by chunk."""
    counts = np.zeros(scores.num_classes, np.int64)
    for _, _, lab, ok in _Pass(scores, None, True):
        counts += np.bincount(lab[ok].astype(np.intp), minlength=len(counts))[: len(counts)]
    return counts


def select(
    scores: Scores | str | os.PathLike,
    config: SelectionConfig | None = None,
    *,
    keep: str | float | None = None,
    count: int | None = None,
    threads: int = 0,
    target_counts=None,
    **options,
) -> Selection:
    """Choose images within a budget of ``keep`` (fraction) or ``count`` images; ``scores`` or their folder.

    With ``quotas="target"`` the Safety-Net splits the whole budget in the target's training class
    proportions: ``target_counts`` when given, else what the teacher recorded; a teacher that
    recorded none (an imported one) falls back to ``quotas="pool"`` with a warning.
    ``quotas="auto"`` (the default) is "target" when those counts are imbalanced (the largest class
    QUOTA_IMBALANCE times the smallest or more), else "pool", silently.

    ``config`` (a SelectionConfig) says how; keyword ``options`` override its fields, so
    ``select(scores, keep="1%", strategy="random")`` works. The Safety-Net is on by default: plain
    lowest-energy selection drops whole classes at small keeps and lost to it on both offline
    targets (docs/results.md, "Defaults, and why"). What the selection warns of (classes that
    vanished, fallbacks) is both in ``Selection.warnings`` and issued as a ``PladaWarning``.
    """
    sel = select_quietly(
        as_scores(scores), config, keep=keep, count=count, threads=threads, target_counts=target_counts, **options
    )
    warn_about(sel)
    return sel


def save_selection(path: str | os.PathLike, sel: Selection) -> None:
    """A selection's indices and labels as an .npz (``select --out``), written atomically."""
    import io

    from ..core import atomic

    buf = io.BytesIO()
    np.savez(buf, indices=sel.indices, labels=sel.labels)
    atomic.write_bytes(path, buf.getvalue())


def warn_about(sel: Selection) -> None:
    """Issue a selection's warnings through ``warnings.warn`` (the CLI prints each as one line)."""
    for message in sel.warnings:
        warnings.warn(message, PladaWarning, stacklevel=3)


def select_quietly(
    scores: Scores,
    config: SelectionConfig | None = None,
    *,
    keep: str | float | None = None,
    count: int | None = None,
    threads: int = 0,
    target_counts=None,
    **options,
) -> Selection:
    """``select`` without issuing its warnings (they stay in ``Selection.warnings``)."""
    cfg = with_options(config, SelectionConfig, options)
    plan = plan_selection(selection_facts(scores, cfg, target_counts), cfg, orders=list_orders())
    return pick(scores, plan, budget_size(scores.n, keep, count), threads, requested=cfg.strategy)


def selection_facts(scores: Scores, config: SelectionConfig | None = None, target_counts=None) -> SelectionFacts:
    """What a plan depends on, read from the scores (and ``target_counts``, which win over what the teacher
    recorded). The near-copy ratio is measured only where ``config``'s strategy needs it (one pass)."""
    cfg = config or SelectionConfig()
    if target_counts is not None:
        counts = np.asarray(target_counts, np.int64)
        if len(counts) != scores.num_classes:
            raise ConfigError(f"target_counts has {len(counts)} classes, the scores have {scores.num_classes}")
    else:
        counts = target_class_counts(scores)
    pretrained = scores.meta.get("pretrained")
    needs_ratio = cfg.strategy == "by-teacher" and pretrained is False
    return SelectionFacts(
        colour=is_colour(scores),
        pretrained=None if pretrained is None else bool(pretrained),
        has_distance=scores.distance is not None,
        near_copy_ratio=near_copy_ratio(scores) if needs_ratio else None,
        target_counts=None if counts is None else tuple(int(c) for c in counts),
        frame=(scores.meta.get("view") or {}).get("frame", "none"),
    )


def pick(scores: Scores, plan: SelectionPlan, budget: int, threads: int = 0, requested: str | None = None) -> Selection:
    """The images a plan takes within ``budget``: per-class quotas first, then the rest globally, each part
    its best (or drawn from its spread band) in the plan's order. Reads the scores' columns, no metadata."""
    counts = class_counts(scores)
    valid = int(counts.sum())
    k = min(budget, valid)
    spread = plan.spread_at(k, valid)
    key, largest = _STRATEGIES[plan.strategy.value](scores, plan.seed)
    draw = _RandomChunks([plan.seed, 0x5EED]).rows  # with spread: the random order within a band

    def best(quotas: np.ndarray, exclude: np.ndarray | None, per_class: bool) -> np.ndarray:
        rows = _Pass(scores, exclude, per_class)
        if spread == 1 or not quotas.any():
            return _best(rows, key, largest, quotas, threads)
        band = _Band(rows, key, largest, np.ceil(spread * quotas).astype(np.int64))
        return _best(band.members(), draw, False, quotas, threads)

    net = None
    if plan.quotas.value == "off":
        chosen = best(np.array([k]), None, False)
    else:
        if plan.quotas.value == "target":  # the whole budget by the target's own class counts, tempered
            weights = target_weights(plan.target_counts, plan.target_power.value)
            quotas = safety_net_quotas(counts, k, 1.0, 1.0, weights=weights)
            sizing = {"quotas": "target", "target_power": plan.target_power.value}
        else:  # pool quotas keep the header they always had: the power sizes target quotas only
            quotas = safety_net_quotas(counts, k, plan.alpha, plan.share)
            sizing = {"quotas": "pool"}
        picked = best(quotas, None, True)
        rest = best(np.array([k - len(picked)]), picked, False)
        chosen = np.concatenate([picked, rest])
        net = {
            **sizing,
            "alpha": plan.alpha,
            "share": plan.share if plan.quotas.value == "pool" else 1.0,
            "quota_total": int(quotas.sum()),
            "quota_filled": int(len(picked)),
        }
    indices = np.sort(chosen)
    by_rule = requested in RESOLVED and plan.strategy.rule != ASKED
    sel = Selection(
        indices,
        gather_rows(scores.label, indices),
        scores.num_classes,
        scores.class_names,
        plan.strategy.value,
        int(len(indices)),
        budget,
        scores.n,
        scores.meta["pack_fingerprint"],
        net,
        spread=spread,
        chosen_by=f"{requested}: {plan.strategy.why}" if by_rule else None,
        plan=plan,
    )
    sel.warnings.extend([*plan.notes, *_warnings(sel, valid)])
    return sel


def _warnings(sel: Selection, valid: int) -> list[str]:
    """What a selection should tell its user: nothing kept, more asked than there is, classes that vanished."""
    out = []
    if sel.k == 0:
        out.append(f"the selection is empty: a budget of {sel.budget:,} images of {sel.pack_n:,} keeps nothing")
    if sel.budget > valid:
        out.append(f"budget {sel.budget:,} exceeds the {valid:,} selectable images; kept all of them")
    missing = [sel.class_names[c] for c in np.flatnonzero(sel.histogram == 0)]
    if missing and sel.k:
        out.append(
            f"{len(missing)} of {sel.num_classes} classes have no images in this selection: "
            f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}"
            + ("" if sel.plan.quotas.value != "off" else " (the Safety-Net is off)")
        )
    return out
