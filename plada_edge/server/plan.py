"""Server step 4a (paper §3.2, and ours): the selection plan, resolved once from the facts.

``plan_selection(facts, config)`` turns what is known of the scores (``SelectionFacts``: how the teacher
started, its view, whether the pool holds near-copies of the target, the target's class counts) and a
``SelectionConfig`` into a frozen ``SelectionPlan``: the order images are taken in, how the Safety-Net
sizes its class quotas and with what power, the spread, and the teacher's frame. Each choice carries the
rule that made it (a constant of plada_edge.core.config, described in ``RULES``) or ``asked`` when the
config named it, and why. This is the only place the "auto" and "by-*" rules are applied: picking images
from a plan (plada_edge.server.selection) reads no metadata, ``select --explain`` prints ``explain()``,
and the selection report and the payload header record it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.config import (
    AUTO_SPREAD,
    NEAR_COPY_QUANTILE,
    NEAR_COPY_RATIO,
    QUOTA_IMBALANCE,
    RULES,
    TARGET_POWER,
    TEACHER_STRATEGY,
    VIEW_STRATEGY,
    SelectionConfig,
    parse_spread,
    parse_target_power,
)
from ..core.errors import ConfigError

ORDERS = ("energy", "opposite", "entropy", "random", "nearest")  # what a plan's strategy can be
RESOLVED = ("by-teacher", "by-view")  # strategies that name one of ORDERS by rule
ASKED = "asked"  # the rule of a choice the config made itself


@dataclass(frozen=True)
class SelectionFacts:
    """What a plan depends on, read once from the scores (plada_edge.server.selection.selection_facts)."""

    colour: bool  # the teacher's view is colour
    pretrained: bool | None  # the teacher started from ImageNet weights (None: its export does not say)
    has_distance: bool  # the scores carry each image's distance to the target's images (strategy nearest)
    near_copy_ratio: float | None  # the pool's nearest-distance quantile over its median (None: not measured)
    target_counts: tuple[int, ...] | None  # the target's training images per class (None: not known)
    frame: str = "none"  # how the teacher's view frames images


@dataclass(frozen=True)
class Choice:
    """One decision of a plan: its value, the rule that made it (a RULES name, or "asked") and why."""

    value: Any
    rule: str
    why: str


@dataclass(frozen=True)
class SelectionPlan:
    """How to select, resolved: everything picking needs except the budget."""

    strategy: Choice  # the order: one of ORDERS
    quotas: Choice  # "pool" (K_c ∝ N_c^alpha for share of the budget), "target" (the whole budget) or "off"
    target_power: Choice | None  # quotas "target": K_c ∝ n_c^power of the target's counts
    spread: Choice  # a number >= 1, or "gray" / "colour": AUTO_SPREAD's band, sized per budget (spread_at)
    frame: Choice  # the teacher's, as its export recorded it
    alpha: float
    share: float
    seed: int
    target_counts: tuple[int, ...] | None  # what quotas "target" follows
    notes: tuple[str, ...] = ()  # fallbacks a user should hear of (issued as warnings with the selection)

    def spread_at(self, k: int, valid: int) -> float:
        """The spread for a selection of ``k`` of ``valid`` selectable images."""
        return _spread_value(self.spread.value, k, valid)

    def choices(self) -> dict[str, Choice]:
        out = {"strategy": self.strategy, "quotas": self.quotas}
        if self.target_power is not None:
            out["target_power"] = self.target_power
        return {**out, "spread": self.spread, "frame": self.frame}

    def to_dict(self) -> dict:
        """The plan as the selection report (and ``select --json``) records it."""
        out = {name: asdict(c) for name, c in self.choices().items()}
        out.update(alpha=self.alpha, share=self.share, seed=self.seed, notes=list(self.notes))
        return out

    def explain(self, spread: float | None = None) -> list[str]:
        """One line per choice: what, by which rule, why; then the evidence behind each rule used.
        ``spread``: the number an "auto" band came to at the selection's budget."""
        choices = self.choices()
        if spread is not None and self.spread.value in AUTO_SPREAD:
            s = self.spread
            choices["spread"] = Choice(float(f"{spread:.3g}"), s.rule, f"{s.why}; {spread:.3g}x at this budget")
        lines = [f"{name:<13} {_shown(c.value):<8} {c.rule:<16} {c.why}" for name, c in choices.items()]
        used = sorted({c.rule for c in self.choices().values()} & set(RULES))
        lines += [f"{rule}: {RULES[rule].does} ({RULES[rule].evidence})" for rule in used]
        return lines + [f"note: {n}" for n in self.notes]


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_selection(facts: SelectionFacts, config: SelectionConfig, orders=ORDERS) -> SelectionPlan:
    """The plan for these facts under ``config``: every rule applied here, once, with its reason.
    ``orders``: the strategies that name an order themselves (a registry may add to ORDERS)."""
    notes: list[str] = []
    strategy = _strategy(facts, config.strategy, notes, tuple(orders))
    quotas, counts = _quotas(facts, config, notes)
    power = _power(config.target_power, strategy.value) if quotas.value == "target" else None
    return SelectionPlan(
        strategy=strategy,
        quotas=quotas,
        target_power=power,
        spread=_spread(config.spread, facts.colour),
        frame=Choice(facts.frame, "FRAME", "the teacher's view, as trained"),
        alpha=config.alpha,
        share=config.share,
        seed=config.seed,
        target_counts=counts,
        notes=tuple(notes),
    )


def _strategy(facts: SelectionFacts, name: str, notes: list[str], orders: tuple[str, ...]) -> Choice:
    if name == "by-teacher":
        choice = _by_teacher(facts)
    elif name == "by-view":
        choice = _by_view(facts)
    elif name in orders:
        choice = Choice(name, ASKED, f"strategy {name}")
    else:
        raise ConfigError(f"unknown strategy {name!r}; choose from {', '.join(sorted((*orders, *RESOLVED)))}")
    if choice.value == "nearest" and not facts.has_distance:  # an imported or older teacher: the paper's order
        notes.append("strategy nearest: these scores have no distance (the teacher kept no anchors); used energy")
        return Choice("energy", choice.rule, choice.why + "; no distances in these scores, so energy")
    return choice


def _by_view(facts: SelectionFacts, said: str = "") -> Choice:
    kind = "colour" if facts.colour else "gray"
    return Choice(VIEW_STRATEGY[kind], "VIEW_STRATEGY", f"a {'colour' if facts.colour else 'grayscale'} teacher{said}")


def _by_teacher(facts: SelectionFacts) -> Choice:
    if facts.pretrained is None:
        return _by_view(facts, " (its export does not say how it started)")
    if facts.pretrained:
        return Choice(TEACHER_STRATEGY["pretrained"], "TEACHER_STRATEGY", "the teacher started from ImageNet weights")
    ratio = facts.near_copy_ratio
    if ratio is None:
        return Choice(TEACHER_STRATEGY["scratch"], "TEACHER_STRATEGY", "the teacher was trained from scratch")
    copies = ratio < NEAR_COPY_RATIO
    return Choice(
        TEACHER_STRATEGY["scratch, near-copies" if copies else "scratch"],
        "TEACHER_STRATEGY",
        f"the teacher was trained from scratch and the pool {'holds' if copies else 'holds no'} near-copies of "
        f"its training images: its nearest {NEAR_COPY_QUANTILE:.0%} lie at {ratio:.2f} of the median distance",
    )


def imbalanced(class_counts) -> bool:
    """Whether quotas="auto" sizes by these target counts: the largest class QUOTA_IMBALANCE x the smallest."""
    counts = np.asarray(class_counts, np.int64)
    return bool(len(counts)) and int(counts.max()) >= QUOTA_IMBALANCE * max(int(counts.min()), 1)


def _quotas(facts: SelectionFacts, config: SelectionConfig, notes: list[str]):
    counts = facts.target_counts
    if not config.safety_net:
        return Choice("off", ASKED, "the Safety-Net is off"), None
    if config.quotas == "pool":
        return Choice("pool", ASKED, "quotas pool"), None
    if config.quotas == "target":
        if counts is None:
            notes.append("quotas=target: the teacher recorded no training class counts; used quotas=pool")
            return Choice("pool", ASKED, "quotas target asked, but no target class counts are known"), None
        return Choice("target", ASKED, "quotas target"), counts
    if counts is None:
        return Choice("pool", "QUOTA_IMBALANCE", "the target's class counts are not known"), None
    ratio = max(counts) / max(min(counts), 1)
    if imbalanced(counts):
        why = f"the target's largest class has {ratio:.1f}x its smallest's training images"
        return Choice("target", "QUOTA_IMBALANCE", why), counts
    return Choice("pool", "QUOTA_IMBALANCE", f"the target's classes are balanced ({ratio:.1f}x at most)"), None


def _power(power: float | str, order: str) -> Choice:
    if parse_target_power(power) != "auto":
        return Choice(float(power), ASKED, f"target_power {float(power):g}")
    value = TARGET_POWER.get(order, 1.0)
    why = "the square root, in nearest order" if value == 0.5 else f"the target's own proportions, in {order} order"
    return Choice(value, "TARGET_POWER", why)


def resolve_spread(spread: float | str, k: int, valid: int, colour: bool = False) -> float:
    """The spread a selection of ``k`` of ``valid`` images uses: a number as given; "auto" by AUTO_SPREAD's band
    for the view, s = clip(band * valid / k, 1, most)."""
    return _spread_value(_spread(spread, colour).value, k, valid)


def _spread_value(value: float | str, k: int, valid: int) -> float:
    if value in AUTO_SPREAD:
        band, most = AUTO_SPREAD[value]
        return float(np.clip(band * valid / k, 1.0, most)) if k > 0 else 1.0
    return float(value)


def _spread(spread: float | str, colour: bool) -> Choice:
    spread = parse_spread(spread)
    if spread != "auto":
        return Choice(float(spread), ASKED, f"spread {float(spread):g}")
    kind = "colour" if colour else "gray"
    band, most = AUTO_SPREAD[kind]
    why = f"a {'colour' if colour else 'grayscale'} teacher: up to {most:g}x, within the pool's best {band:.0%}"
    return Choice(kind, "AUTO_SPREAD", why)


__all__ = ["SelectionFacts", "SelectionPlan", "Choice", "plan_selection", "imbalanced", "resolve_spread", "ORDERS"]
