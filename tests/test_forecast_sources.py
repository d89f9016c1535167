"""The holdouts benchmark's split of the forecast's error (benchmarks/holdouts.py): its arithmetic, on a made-up
record, so a wrong sign or a swapped column fails here rather than on the page."""

from __future__ import annotations

import pytest

from benchmarks import holdouts


def _row(seed, measured, forecast, on_test, sd):
    sources = {"forecast again": forecast, "trials on test": on_test, "held-out sd": sd, "groups": 40}
    return {"seed": seed, "measured": measured, "sources": sources}


def _bytes_record(low, high):
    return {"targets": {"tango": {"rows": {"hard@0.5%": [{"test_acc": low}], "hard@2%": [{"test_acc": high}]}}}}


def test_the_error_splits_into_held_out_against_test_and_teacher_against_blind(monkeypatch):
    # forecast 0.50 and 0.52 against measured 0.46 and 0.48: +4.0; the same students on the test split say 0.47
    # and 0.49, so folds against test +3.0 and blind teachers against the teacher +1.0
    rows = [_row(0, 0.46, 0.50, 0.47, 0.02), _row(1, 0.48, 0.52, 0.49, 0.04)]
    results = {"pack": "p", "targets": {"tango": {"rows": rows}}}
    monkeypatch.setattr(holdouts, "read_record", lambda path, pack: _bytes_record(0.40, 0.44))
    lines = holdouts._sources_lines(results, ["tango"])
    row = next(line for line in lines if line.startswith("| tango"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["+4.0", "+3.0", "+1.0"]
    assert cells[4] == "3.0 (40)"  # the mean of the draws' bootstrap sds
    # 4 points over a 4x span of images (2 doublings): 2 a doubling, times log2(1.5) for 1.5x
    assert float(cells[5]) == pytest.approx(2 * 0.585, abs=0.05)
    assert "exceeds what 1.5x more images buys on 1 of 1 targets" in lines[-1]


def test_targets_without_the_split_say_how_to_measure_it(monkeypatch):
    results = {"pack": "p", "targets": {"tango": {"rows": [{"seed": 0, "measured": 0.5}]}}}
    lines = holdouts._sources_lines(results, ["tango"])
    assert "not measured" in lines[-1] and "python -m benchmarks holdouts" in lines[-1]
