"""The command line: version, help on every command, doctor's report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import plada_edge
from plada_edge.cli import app
from plada_edge.core import native

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"plada-edge {plada_edge.__version__}"


def _commands(group, prefix=()):
    import typer.main

    cmd = typer.main.get_command(group)
    stack = [(prefix, cmd)]
    while stack:
        path, c = stack.pop()
        yield path
        for name, sub in getattr(c, "commands", {}).items():
            stack.append(((*path, name), sub))


@pytest.mark.parametrize("path", list(_commands(app)), ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_doctor_json_reports_the_backend():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kernels"] == native.BACKEND
    assert report["simd"] == native.simd_level()
    assert report["threads"] >= 1
    assert "torch" in report["packages"]


def test_doctor_text():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert "kernels" in result.output and "threads" in result.output


def test_demo_refuses_an_unknown_target_in_one_line(tmp_path):
    result = runner.invoke(app, ["demo", "--target", "cifar", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "'cifar' is not one of 'tango', 'digits', 'fmnist'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_demo_table_names_the_recipe_and_the_resolved_spread():
    from plada_edge.demo import format_table

    r = {
        "target": "tango",
        "payload_bytes": 1544,
        "k": 1002,
        "pool": 100_181,
        "teacher_acc": 0.5,
        "student_acc": 0.45,
        "ratio": 0.9,
        "student": "efficientnet_lite0",
        "recipe": "pretrained",
        "strategy": "energy",
        "keep": "1%",
        "safety_net": True,
        "spread": 31.99,
        "seconds": 150.0,
    }
    table = format_table(r)
    assert "spread 32" in table and "pretrained recipe" in table and "2.5 min" in table
    assert "spread" not in format_table(dict(r, spread=1.0))
