"""Server step 4 (paper §3.2): choose which (image, pseudo-label) pairs to send.

Strategies (a registry; ``list_strategies()``):
  energy    lowest energy first: the paper's default, most in-distribution
  opposite  highest energy first: the paper's mode for far-out-of-domain targets
  entropy   lowest softmax entropy first: the confidence baseline the paper compares against
  random    a seeded random order: the control

Safety-Net (paper §3.2), optional: reserve ``share`` of the budget K for per-class quotas
K_c ∝ N_c^alpha, where N_c is the number of pack images pseudo-labelled c (unflagged); empty
classes get none, and K_c is capped at N_c. Each quota is filled with that class's best images
under the strategy; the rest of the budget is then filled globally from the images not yet
taken. alpha = 0 with share = 1 is equal per-class quotas. Quotas are rounded by largest
remainder (ties to the lower class), so they sum to round(share * K) before capping.

Spread (ours, not the paper's): the lowest energies are the most prototypical images, so a strict
top-k is pure but repetitive. With ``spread`` s > 1, each quota (and the global remainder) draws
its m images at random, seeded, from that part's s·m best candidates instead of taking the m best:
purity traded for diversity. s = 1 is the strict order above. ``spread="auto"`` draws from at most
the lowest AUTO_BAND of the pool and at most AUTO_SPREAD_MAX times the budget:
s = clip(AUTO_BAND · N / k, 1, AUTO_SPREAD_MAX). So small keeps get diversity and large keeps,
whose band would reach far out of distribution, stay strict.

Flagged rows (NaN, +inf, all -inf logits) are never selected. Every selection reports its label
histogram and warns when classes vanish: with a weak teacher, vanilla lowest energy can collapse
onto a few classes, and quotas fix it. Scores are never recomputed: selecting again with another
budget, strategy or quota only re-reads the memory-mapped scores.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core import native
from ..core.config import AUTO_BAND, AUTO_SPREAD_MAX, SelectionConfig, parse_spread, with_options
from ..core.errors import ConfigError
from .scoring import Scores

_STRATEGIES: dict[str, Callable] = {}
_DOCS: dict[str, str] = {}


def register_strategy(name: str, doc: str):
    """Register fn(scores, seed) -> (float32 key per image, largest_first)."""

    def deco(fn):
        _STRATEGIES[name] = fn
        _DOCS[name] = doc
        return fn

    return deco


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def describe_strategies() -> dict[str, str]:
    return dict(_DOCS)


register_strategy("energy", "lowest energy first (paper default)")(lambda s, seed: (np.asarray(s.energy), False))
register_strategy("opposite", "highest energy first (far-OOD targets)")(lambda s, seed: (np.asarray(s.energy), True))
register_strategy("entropy", "lowest softmax entropy first")(lambda s, seed: (np.asarray(s.entropy), False))
register_strategy("random", "seeded random order (control)")(
    lambda s, seed: (np.random.default_rng(seed).random(s.n, dtype=np.float32), False)
)


def parse_keep(keep: str | float) -> float:
    """'1%' → 0.01, '0.5' → 0.5 (fraction of the pack)."""
    if isinstance(keep, str):
        m = re.fullmatch(r"\s*([0-9.]+)\s*(%?)\s*", keep)
        if not m:
            raise ConfigError(f"keep must look like 1% or 0.01, got {keep!r}")
        value = float(m.group(1)) / (100 if m.group(2) else 1)
    else:
        value = float(keep)
    if not 0 < value <= 1:
        raise ConfigError(f"keep must be in (0, 100%], got {keep!r}")
    return value


def safety_net_quotas(class_counts: np.ndarray, budget: int, alpha: float, share: float) -> np.ndarray:
    """Per-class quotas K_c ∝ N_c^alpha over non-empty classes, summing to round(share*budget), capped at N_c."""
    if not 0 <= share <= 1:
        raise ConfigError(f"share must be in [0, 1], got {share}")
    counts = np.asarray(class_counts, np.int64)
    total = int(round(share * budget))
    eligible = counts > 0
    quotas = np.zeros(len(counts), np.int64)
    if total == 0 or not eligible.any():
        return quotas
    w = np.zeros(len(counts))
    w[eligible] = counts[eligible].astype(np.float64) ** alpha
    raw = total * w / w.sum()
    quotas = np.floor(raw).astype(np.int64)
    left = total - int(quotas.sum())
    if left > 0:  # largest remainder, ties to the lower class index
        frac = np.where(eligible, raw - quotas, -1.0)
        order = np.lexsort((np.arange(len(counts)), -frac))
        quotas[order[:left]] += 1
    return np.minimum(quotas, counts)


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

    @property
    def histogram(self) -> np.ndarray:
        return np.bincount(self.labels.astype(np.int64), minlength=self.num_classes)

    def report(self, pack=None) -> dict:
        hist = self.histogram
        r = {
            "strategy": self.strategy,
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
        if pack is not None:
            sid = pack.source_ids(self.indices)
            r["sources"] = {s.name: int((sid == i).sum()) for i, s in enumerate(pack.sources)}
        return r


def budget_size(n: int, keep: str | float | None, count: int | None) -> int:
    if (keep is None) == (count is None):
        raise ConfigError("give exactly one of keep (a fraction, e.g. 1%) or count (a number of images)")
    if count is not None:
        if count < 0:
            raise ConfigError(f"count must be >= 0, got {count}")
        return int(count)
    return int(round(parse_keep(keep) * n))


def resolve_spread(spread: float | str, k: int, valid: int) -> float:
    """The spread a selection of k from ``valid`` images uses; "auto" as in the module docstring."""
    spread = parse_spread(spread)
    if spread == "auto":
        return float(np.clip(AUTO_BAND * valid / k, 1.0, AUTO_SPREAD_MAX)) if k > 0 else 1.0
    return float(spread)


class _Picker:
    """Best-first picks under a key, or with spread > 1, seeded random picks from the spread·m best."""

    def __init__(self, key, largest: bool, labels, spread: float, seed: int, threads: int):
        self.key, self.largest, self.labels, self.spread, self.threads = key, largest, labels, spread, threads
        self._seed, self._rand = seed, None

    def _random_key(self):  # drawn once, only when needed: N float32s
        if self._rand is None:
            self._rand = np.random.default_rng([self._seed, 0x5EED]).random(len(self.key), dtype=np.float32)
        return self._rand

    def best(self, m: int, exclude: np.ndarray) -> np.ndarray:
        if self.spread == 1 or m == 0:
            return native.topk(self.key, m, exclude, self.largest, self.threads)
        band = native.topk(self.key, int(np.ceil(self.spread * m)), exclude, self.largest, self.threads)
        return native.topk(self._random_key(), m, _only(band, len(exclude)), False, self.threads)

    def per_class(self, quotas: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        if self.spread == 1 or not quotas.any():
            return native.class_topk(self.key, self.labels, quotas, exclude, self.largest, self.threads)
        bands = np.ceil(self.spread * quotas).astype(np.int64)
        band = native.class_topk(self.key, self.labels, bands, exclude, self.largest, self.threads)
        return native.class_topk(
            self._random_key(), self.labels, quotas, _only(band, len(exclude)), False, self.threads
        )


def _only(indices: np.ndarray, n: int) -> np.ndarray:
    """An exclude mask that leaves only ``indices`` selectable."""
    mask = np.ones(n, np.uint8)
    mask[indices] = 0
    return mask


def select(
    scores: Scores,
    config: SelectionConfig | None = None,
    *,
    keep: str | float | None = None,
    count: int | None = None,
    threads: int = 0,
    **options,
) -> Selection:
    """Choose images within a budget of ``keep`` (fraction) or ``count`` images.

    ``config`` (a SelectionConfig) says how; keyword ``options`` override its fields, so
    ``select(scores, keep="1%", strategy="random")`` works. The Safety-Net is on by default: plain
    lowest-energy selection drops whole classes at small keeps and lost to it on both offline
    targets (docs/results.md, "Defaults, and why").
    """
    cfg = with_options(config, SelectionConfig, options)
    strategy, seed = cfg.strategy, cfg.seed
    if strategy not in _STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(list_strategies())}")
    labels = np.asarray(scores.label)
    flags = np.asarray(scores.flags)
    exclude = (flags != 0).astype(np.uint8)
    valid = int(len(flags) - exclude.sum())
    budget = budget_size(scores.n, keep, count)
    k = min(budget, valid)
    spread = resolve_spread(cfg.spread, k, valid)
    key, largest = _STRATEGIES[strategy](scores, seed)
    key = np.ascontiguousarray(key, np.float32)
    net = None
    pick = _Picker(key, largest, labels, spread, seed, threads)
    if cfg.safety_net:
        counts = np.bincount(labels[exclude == 0].astype(np.int64), minlength=scores.num_classes)
        quotas = safety_net_quotas(counts, k, cfg.alpha, cfg.share)
        picked = pick.per_class(quotas, exclude)
        exclude[picked] = 1
        rest = pick.best(k - len(picked), exclude)
        chosen = np.concatenate([picked, rest])
        net = {
            "alpha": cfg.alpha,
            "share": cfg.share,
            "quota_total": int(quotas.sum()),
            "quota_filled": int(len(picked)),
        }
    else:
        chosen = pick.best(k, exclude)
    indices = np.sort(chosen)
    sel = Selection(
        indices,
        labels[indices],
        scores.num_classes,
        scores.class_names,
        strategy,
        int(len(indices)),
        budget,
        scores.n,
        scores.meta["pack_fingerprint"],
        net,
        spread=spread,
    )
    hist = sel.histogram
    if sel.k == 0:
        sel.warnings.append(f"the selection is empty: a budget of {budget:,} images of {scores.n:,} keeps nothing")
    if budget > valid:
        sel.warnings.append(f"budget {budget:,} exceeds the {valid:,} selectable images; kept all of them")
    missing = [scores.class_names[c] for c in np.flatnonzero(hist == 0)]
    if missing and sel.k:
        sel.warnings.append(
            f"{len(missing)} of {scores.num_classes} classes have no images in this selection: "
            f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}"
            + ("" if cfg.safety_net else " (the Safety-Net is off)")
        )
    return sel
