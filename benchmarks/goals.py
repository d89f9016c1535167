"""Issue 15's colour goals over independent draws: the gaps both the suite page and the draws benchmark read.

Pure functions of recorded runs (no training): ``paired_gap`` between two rows' students, and ``gaps``, a
target's gaps against random selection and the scratch recipe with their verdicts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (recipe, row): the default, and the two baselines issue 15 holds it to
ROWS = (("auto", "default"), ("auto", "random"), ("scratch", "default"))
GOAL_MARGIN = 0.05  # issue 15: 5 points over random (plain and macro) and over the scratch recipe (plain)
# the runs behind the section, committed: --report-only takes a target from here when runs/suite lacks its teachers
DRAWS_RECORD = Path(__file__).resolve().parent.parent / "docs" / "results-draws.json"


def mean_of(runs: list[dict], key: str = "test_acc") -> float | None:
    """The mean of ``key`` over runs (None for none)."""
    return float(np.mean([r[key] for r in runs])) if runs else None


def paired_gap(a: list[dict], b: list[dict], key: str) -> tuple[float, float, float, int] | None:
    """Mean of runs a minus mean of runs b, the lowest and highest gap between runs of the same seed, and how
    many seeds both have (None when either side has no runs)."""
    if not (a and b):
        return None
    by_seed = {r["seed"]: r[key] for r in b}
    paired = [r[key] - by_seed[r["seed"]] for r in a if r["seed"] in by_seed]
    mean = mean_of(a, key) - mean_of(b, key)
    return (mean, min(paired), max(paired), len(paired)) if paired else (mean, mean, mean, 0)


def gaps(res: dict) -> dict:
    """A target's goal gaps over its draws: "random" (plain, macro) and "scratch" (plain), each (mean, lo, hi)
    or None, and whether each goal holds on the means (None where its rows are missing)."""
    d, r, s = (res["rows"].get(f"{name}:{row}", {}).get("students") or [] for name, row in ROWS)
    plain, macro, scratch = (
        paired_gap(d, r, "test_acc"),
        paired_gap(d, r, "macro_acc"),
        paired_gap(d, s, "test_acc"),
    )
    if res["auto"] == "scratch":
        scratch = None
    return {
        "plain": plain,
        "macro": macro,
        "scratch": scratch,
        "draws": len(d),
        "random holds": None if not (plain and macro) else plain[0] >= GOAL_MARGIN and macro[0] >= GOAL_MARGIN,
        "scratch holds": None if not scratch else scratch[0] >= GOAL_MARGIN,
    }
