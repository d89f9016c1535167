"""The selection plan: one resolver, its rules in one table, today's choices on the suite's targets pinned.

tests/golden/suite-facts.json holds what the plan reads of each suite target's scores (written by
`python -m benchmarks suite --report-only --facts` from the built targets and docs/results-suite.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plada_edge.core.config import RULES, SelectionConfig
from plada_edge.core.errors import ConfigError
from plada_edge.server.plan import ASKED, SelectionFacts, plan_selection

FACTS = json.loads((Path(__file__).resolve().parent / "golden" / "suite-facts.json").read_text())

# (strategy, quotas, target_power, spread band, frame) under the defaults: the choices the suite page measured
PINNED = {
    "fmnist/scratch": ("nearest", "pool", None, "gray", "ink"),  # near-copies of fashion-mnist in the pool
    "fmnist/pretrained": ("nearest", "pool", None, "gray", "ink"),
    "digits/scratch": ("nearest", "pool", None, "gray", "ink"),
    "digits/pretrained": ("nearest", "pool", None, "gray", "ink"),
    "tango/scratch": ("energy", "target", 1.0, "colour", "none"),  # scratch, no near-copies: the paper's order
    "tango/pretrained": ("nearest", "target", 0.5, "colour", "none"),
    "gnome/scratch": ("energy", "target", 1.0, "colour", "none"),
    "gnome/pretrained": ("nearest", "target", 0.5, "colour", "none"),
    "elementary/scratch": ("energy", "target", 1.0, "colour", "none"),
    "elementary/pretrained": ("nearest", "target", 0.5, "colour", "none"),
    "papirus/scratch": ("nearest", "target", 0.5, "colour", "none"),
    "papirus/pretrained": ("nearest", "target", 0.5, "colour", "none"),
}


def _facts(name: str) -> SelectionFacts:
    f = FACTS[name]
    return SelectionFacts(**{**f, "target_counts": tuple(f["target_counts"])})


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_plans_on_the_suite_are_todays_choices(name):
    plan = plan_selection(_facts(name), SelectionConfig())
    power = plan.target_power.value if plan.target_power else None
    got = (plan.strategy.value, plan.quotas.value, power, plan.spread.value, plan.frame.value)
    assert got == PINNED[name]
    for choice in plan.choices().values():  # every default names its rule, and the rule its evidence
        assert choice.rule in RULES and choice.why, choice
    text = "\n".join(plan.explain())
    for rule in {c.rule for c in plan.choices().values()}:
        assert f"{rule}: {RULES[rule].does}" in text and RULES[rule].evidence in text


def test_a_config_that_names_a_choice_is_taken_as_asked():
    facts = _facts("tango/pretrained")
    plan = plan_selection(facts, SelectionConfig(strategy="energy", quotas="pool", spread=4, safety_net=True))
    assert (plan.strategy.rule, plan.quotas.rule, plan.spread.rule) == (ASKED, ASKED, ASKED)
    assert plan.target_power is None and plan.spread_at(100, 10_000) == 4.0
    off = plan_selection(facts, SelectionConfig(safety_net=False))
    assert off.quotas.value == "off" and off.target_power is None
    powered = plan_selection(facts, SelectionConfig(target_power=0.25))
    assert powered.target_power.value == 0.25 and powered.target_power.rule == ASKED
    with pytest.raises(ConfigError, match="unknown strategy 'lowest'"):
        plan_selection(facts, SelectionConfig(strategy="lowest"))


def test_fallbacks_are_noted_and_the_spread_band_sizes_per_budget():
    bare = SelectionFacts(colour=True, pretrained=None, has_distance=False, near_copy_ratio=None, target_counts=None)
    plan = plan_selection(bare, SelectionConfig(quotas="target"))
    assert plan.strategy.value == "energy" and plan.strategy.rule == "VIEW_STRATEGY"  # nearest, but no distances
    assert plan.quotas.value == "pool" and len(plan.notes) == 2  # no distance; no target counts
    assert plan.spread_at(1000, 100_000) == 32.0 and plan.spread_at(50_000, 100_000) == 1.0
    assert json.loads(json.dumps(plan.to_dict()))["strategy"]["rule"] == "VIEW_STRATEGY"


def test_select_explain_prints_the_plan_and_json_records_it(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from plada_edge.cli import app
    from plada_edge.server.scoring import score_pack

    score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    out = CliRunner().invoke(app, ["select", str(tmp_path / "scores"), "--count", "30", "--explain"])
    assert out.exit_code == 0, out.output
    plan = out.stdout.split("plan:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in plan[:4]] == ["strategy", "quotas", "spread", "frame"]
    assert "TEACHER_STRATEGY" in plan[0] and "x at this budget" in plan[2]
    out = CliRunner().invoke(app, ["select", str(tmp_path / "scores"), "--count", "30", "--json"])
    recorded = json.loads(out.stdout)["plan"]
    assert recorded["strategy"]["rule"] == "TEACHER_STRATEGY" and recorded["quotas"]["value"] == "pool"
