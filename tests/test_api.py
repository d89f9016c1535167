"""The public API, the parameter objects, the error contract and the package's import rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

import plada_edge
from plada_edge.core.config import (
    ScoreConfig,
    SelectionConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    flat_defaults,
    with_options,
)
from plada_edge.core.errors import ConfigError, PladaError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plada_edge"


def test_public_api_lists_and_resolves_every_name():
    out = subprocess.run(
        [sys.executable, "-c", "import plada_edge as p; print(p.__all__)"], capture_output=True, text=True, check=True
    )
    names = ast.literal_eval(out.stdout.strip())
    assert names == plada_edge.__all__ and 12 <= len(names) <= 30
    for name in names:
        assert getattr(plada_edge, name) is not None, name
    assert sorted(dir(plada_edge)) == sorted(names)
    with pytest.raises(AttributeError):
        plada_edge.not_a_name  # noqa: B018


def test_import_is_cheap_and_names_are_stable_objects():
    code = (
        "import sys, plada_edge as p\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
        "a = p.doctor; b = p.doctor\n"
        "assert a is b and callable(a), type(a)\n"
        "import plada_edge.core.doctor\n"
        "assert p.doctor is a\n"
        "assert p.select is p.select\n"
        "print(p.doctor()['kernels'])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_has_one_home():
    from importlib.metadata import version

    assert version("plada-edge") == plada_edge.__version__
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


# --- parameter objects ----------------------------------------------------------------------------------------


def test_configs_are_frozen_and_validate():
    cfg = SelectionConfig()
    with pytest.raises(FrozenInstanceError):
        cfg.alpha = 1.0  # type: ignore[misc]
    for bad in (
        lambda: SelectionConfig(share=1.5),
        lambda: SelectionConfig(spread=0.5),
        lambda: SelectionConfig(spread="wide"),
        lambda: SelectionConfig(alpha=float("nan")),
        lambda: TrainConfig(epochs=0),
        lambda: TrainConfig(batch_size=0),
        lambda: TrainConfig(lr=-1.0),
        lambda: TeacherConfig(size=0),
        lambda: StudentConfig(model_size=2),
        lambda: ScoreConfig(chunk=-256),
        lambda: ScoreConfig(chunk=100, batch_size=64),
        lambda: ScoreConfig(engine="spark"),
    ):
        with pytest.raises(ConfigError):
            bad()
    assert SelectionConfig(spread="AUTO").spread == "auto" and SelectionConfig(spread="4").spread == 4.0


def test_flat_options_reach_the_nested_train_config():
    t = TeacherConfig.from_options(arch="tiny_cnn", epochs=3, lr=0.01)
    assert t.arch == "tiny_cnn" and t.train.epochs == 3 and t.train.lr == 0.01
    assert t.train.batch_size == TrainConfig().batch_size
    s = with_options(StudentConfig(), StudentConfig, {"hflip": True})
    assert s.train.hflip and s.train.epochs == StudentConfig().train.epochs  # the student's 30, not TrainConfig's 10
    with pytest.raises(ConfigError, match="unknown"):
        with_options(None, SelectionConfig, {"stratgy": "energy"})
    with pytest.raises(ConfigError, match="unknown"):
        TeacherConfig.from_options(epoch=3)


def _cli_defaults(*path: str) -> dict:
    import typer.main

    from plada_edge.cli import app

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: p.default for p in cmd.params}


def test_cli_toml_and_api_defaults_agree():
    import inspect

    from plada_edge.core.recipes import RECIPE_FIELDS
    from plada_edge.device.student import learn
    from plada_edge.server.tasks import DEFAULTS
    from plada_edge.server.teacher import train_teacher

    def agree(cli: dict, api: dict, names) -> None:
        for name in names:
            want = api[name]
            got = cli[name]
            if name in RECIPE_FIELDS and got is None:  # unset on the command line: the recipe fills it, as in the API
                continue
            assert (str(got) if name == "spread" else got) == (str(want) if name == "spread" else want), name

    teacher, student = flat_defaults(TeacherConfig), flat_defaults(StudentConfig)
    selection, scoring = flat_defaults(SelectionConfig), flat_defaults(ScoreConfig)
    cli_teacher, cli_student = _cli_defaults("teacher", "train"), _cli_defaults("learn")
    agree(cli_teacher, teacher, ["arch", "epochs", "size", "weights", "batch_size", "lr", "seed", "hflip"])
    agree(
        cli_student,
        student,
        [
            "arch",
            "epochs",
            "batch_size",
            "lr",
            "weights",
            "seed",
            "hflip",
            "expand",
            "expand_weight",
            "embedder",
            "model_size",
        ],
    )
    for fn, cli in ((train_teacher, cli_teacher), (learn, cli_student)):
        assert cli["recipe"] == inspect.signature(fn).parameters["recipe"].default == "auto"
        assert all(cli[name] is None for name in RECIPE_FIELDS if name in cli), "the CLI must leave these to the recipe"
    for command in ("select", "pack"):
        agree(_cli_defaults(command), selection, list(selection))
    agree(_cli_defaults("score"), scoring, list(scoring))
    for name, value in {**teacher, **selection}.items():
        assert DEFAULTS[name] == (None if name in RECIPE_FIELDS else value), name
    assert DEFAULTS["recipe"] == "auto"
    assert student["epochs"] == 30 and teacher["epochs"] == 10  # the measured defaults (docs/results.md)


# --- errors ---------------------------------------------------------------------------------------------------


def test_every_error_class_is_a_plada_error():
    from plada_edge.core import errors
    from plada_edge.core.codecs import CodecError

    for name in errors.__all__:
        kind = PladaError if name.endswith("Error") else UserWarning  # and PladaWarning, what went ahead anyway
        assert issubclass(getattr(errors, name), kind), name
    assert errors.__all__[-1] == "PladaWarning"
    assert issubclass(PladaError, ValueError) and issubclass(CodecError, errors.PayloadError)


def test_cli_prints_user_errors_in_one_line_and_bugs_with_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from plada_edge import cli
    from plada_edge.core import payload as payload_module

    r = CliRunner()
    (tmp_path / "bad.plada").write_bytes(b"PLADA\x00garbage")
    out = r.invoke(cli.app, ["inspect", str(tmp_path / "bad.plada")])
    assert out.exit_code == 2 and out.output.count("\n") == 1 and out.output.startswith("error: ")

    def bug(*_args):
        raise ZeroDivisionError("a coding bug")

    monkeypatch.setattr(payload_module, "inspect_payload", bug)
    out = r.invoke(cli.app, ["inspect", str(tmp_path / "bad.plada")])
    assert out.exit_code == 1 and isinstance(out.exception, ZeroDivisionError)  # not hidden as bad input


def test_quickstart_example_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart.py"),
            str(tmp_path / "work"),
            "--tiny",
        ],
        cwd=tmp_path,  # it writes under its DIR only
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "payload:" in out.stdout and "student test accuracy" in out.stdout
    assert (tmp_path / "work" / "task.plada").is_file() and (tmp_path / "work" / "student" / "student.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert "Predictions(" in out.stdout
    source = (ROOT / "examples" / "quickstart.py").read_text()
    assert "from plada_edge." not in source and "import plada_edge." not in source  # public names only


# --- import rules ---------------------------------------------------------------------------------------------


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    mods = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import in the file, deferred ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names]))
    return out


def _edges(package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = _modules(package)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for mod, names in _imports(name, path):
            for target in [f"{mod}.{n}" for n in names] + [mod]:
                if target in mods and target != name:
                    edges[name].add(target)
                    break
    return edges


def test_no_private_names_imported_across_modules():
    offenders = []
    for name, path in _modules().items():
        for mod, names in _imports(name, path):
            if mod.startswith("plada_edge") and mod != name:
                # _native is the compiled extension itself, loaded only by its gateway core/native.py
                allowed = {"__version__", "_native"}
                offenders += [f"{name}: from {mod} import {n}" for n in names if n.startswith("_") and n not in allowed]
    assert not offenders, offenders


@pytest.mark.parametrize("package", [PACKAGE, ROOT / "benchmarks"], ids=["plada_edge", "benchmarks"])
def test_no_import_cycles(package):
    edges = _edges(package)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert len(edges) > 10  # the package was found


def test_benchmarks_are_a_package_and_tools_holds_only_setup():
    """One entry point for the science (python -m benchmarks NAME); tools/ keeps setup, data and wheel scripts."""
    out = subprocess.run([sys.executable, "-m", "benchmarks"], capture_output=True, text=True, cwd=ROOT, check=True)
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")}
    assert {"suite", "draws", "budget", "kernel", "int8", "gpu_check"} <= listed
    assert not [p.name for p in (ROOT / "tools").glob("bench*.py")]


def test_layers_hold():
    # core is shared and imports neither side; the device never imports the server; data builders use core only
    forbidden = {
        "plada_edge.core": ("plada_edge.server", "plada_edge.device", "plada_edge.data", "plada_edge.cli"),
        "plada_edge.device": ("plada_edge.server", "plada_edge.data", "plada_edge.cli"),
        "plada_edge.server": ("plada_edge.device", "plada_edge.data", "plada_edge.cli"),
        "plada_edge.data": ("plada_edge.server", "plada_edge.device", "plada_edge.cli"),
    }
    bad = [
        f"{m} -> {t}"
        for m, targets in _edges().items()
        for layer, no in forbidden.items()
        if m.startswith(layer + ".")
        for t in targets
        if t.startswith(no)
    ]
    assert not bad, bad


# --- results and paths ------------------------------------------------------------------------------------------


def test_every_public_name_has_a_docstring():
    import plada_edge

    missing = [n for n in plada_edge.__all__ if n != "__version__" and not getattr(plada_edge, n).__doc__]
    assert not missing, missing


def test_results_read_as_dicts_and_attributes_and_print_briefly(tiny, tmp_path):
    import json
    import warnings

    import plada_edge as plada
    from plada_edge.core.errors import PladaWarning

    m = tiny["metrics"]
    assert m.test_acc == m["test_acc"] and json.loads(json.dumps(m)) == m.to_dict()
    assert repr(m).startswith("TeacherResult(target='stripes', arch='tiny_cnn'") and "history" not in repr(m)
    with pytest.raises(AttributeError, match="no field 'nope'"):
        _ = m.nope
    assert repr(tiny["export"]).startswith("ExportResult(onnx=")

    scores = plada.score(tiny["root"] / "teacher.onnx", tiny["pack"].path, tmp_path / "scores", progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = plada.select(tmp_path / "scores", keep="1%", safety_net=False)  # a folder works as the object does
    assert sel.k == 5 and sel.to_dict() == sel.report() and repr(sel).startswith("Selection(")
    assert [str(w.message) for w in caught if w.category is PladaWarning] == sel.warnings != []
    made = plada.make_payload(str(scores.path), tmp_path / "t.plada", count=30, pack=str(tiny["pack"].path))
    payload, selection, data = made  # unpacks as the 3-tuple it was
    assert made.to_dict()["bytes"] == len(data) == (tmp_path / "t.plada").stat().st_size
    assert repr(made) == f"PayloadResult({len(data):,} bytes, {payload.header['codec']}, 30 of 500 images)"


def test_cli_prints_each_selection_warning_once(tiny, tmp_path):
    from typer.testing import CliRunner

    from plada_edge.cli import app
    from plada_edge.server.scoring import score_pack

    score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "scores", progress=False)
    result = CliRunner().invoke(app, ["select", str(tmp_path / "scores"), "--count", "2", "--no-safety-net"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "classes have no images in this selection" in lines[0], result.stderr
    assert "warning" not in result.stdout


LONGEST = 60  # lines of code in a package function, its docstring not counted


def test_functions_read_in_one_screen_or_say_why():
    """A function over LONGEST lines (after its docstring) needs a '# long: REASON' comment on its def line or
    its first line of code: steps, not sagas (issue 37)."""
    long = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            documented = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
            first = body[1] if documented and len(body) > 1 else body[0]
            size = node.end_lineno - first.lineno + 1
            said = any("# long:" in lines[i - 1] for i in (node.lineno, first.lineno))
            if size > LONGEST and not said:
                long.append(f"{name}.{node.name}: {size} lines")
    assert not long, long
