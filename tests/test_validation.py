"""Bad input through the command line: one 'error:' line on stderr, exit 2, no traceback (issue 34).

A table of cases, each a command line and the words its error must contain. Every case is refused
before any work: none writes its output.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from plada_edge.cli import app
from plada_edge.core.targets import Target, save_target
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack

runner = CliRunner()


def _folder(root, classes: dict[str, int], size: int = 16):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def world(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], root / "scores", batch_size=64, progress=False)
    make_payload(scores, root / "task.plada", count=60)
    t = tiny["target"]
    names = t.class_names
    permuted = Target("permuted", t.x_train, t.y_train, t.x_test, t.y_test, [names[1], names[0], *names[2:]])
    save_target(root / "renamed.npz", permuted)
    two = t.y_train < 2, t.y_test < 2
    fewer = Target("fewer", t.x_train[two[0]], t.y_train[two[0]], t.x_test[two[1]], t.y_test[two[1]], names[:2])
    save_target(root / "fewer.npz", fewer)
    _folder(root / "one-class", {"only": 6})
    _folder(root / "empty-class", {"cats": 6, "dogs": 6, "ghosts": 0})
    _folder(root / "unreadable", {"cats": 6, "dogs": 5})
    (root / "unreadable" / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "photo.png")
    (root / "binary.toml").write_bytes(bytes(range(256)) * 4)
    (root / "a-folder.plada").mkdir()
    return {**tiny, "root": root, "scores": root / "scores", "payload": root / "task.plada"}


# (id, argv with {root}/{scores}/{payload}/{pack}/{out} placeholders, words the error line must hold)
CASES = [
    ("keep 1.2.3%", ["pack", "{scores}", "--keep", "1.2.3%", "-o", "{out}"], "keep must look like"),
    ("keep bare 1", ["pack", "{scores}", "--keep", "1", "-o", "{out}"], "write 1% or 100%"),
    ("keep bare 5", ["select", "{scores}", "--keep", "5"], "write 5% or use --count 5"),
    ("keep 0%", ["pack", "{scores}", "--keep", "0%", "-o", "{out}"], "keep must be in"),
    ("keep 150%", ["pack", "{scores}", "--keep", "150%", "-o", "{out}"], "keep must be in"),
    ("keep nan", ["pack", "{scores}", "--keep", "nan", "-o", "{out}"], "keep must look like"),
    ("max-bytes 1.2.3KB", ["pack", "{scores}", "--max-bytes", "1.2.3KB", "-o", "{out}"], "max_bytes must look like"),
    ("max-bytes .KB", ["pack", "{scores}", "--max-bytes", ".KB", "-o", "{out}"], "max_bytes must look like"),
    ("max-bytes 0", ["pack", "{scores}", "--max-bytes", "0KB", "-o", "{out}"], "max_bytes must be at least"),
    ("budget, its old name", ["pack", "{scores}", "--budget", "0KB", "-o", "{out}"], "max_bytes must be at least"),
    ("count 0", ["pack", "{scores}", "--count", "0", "-o", "{out}"], "count must be >= 1"),
    ("count 0 select", ["select", "{scores}", "--count", "0"], "count must be >= 1"),
    ("one class", ["teacher", "train", "-t", "{root}/one-class", "--test-split", "0.3", "-o", "{out}"], "two classes"),
    (
        "empty class",
        ["teacher", "train", "-t", "{root}/empty-class", "--test-split", "0.3", "-o", "{out}"],
        "ghosts: no images",
    ),
    (
        "unreadable image",
        ["teacher", "train", "-t", "{root}/unreadable", "--test-split", "0.3", "-o", "{out}"],
        "broken.png: not a readable image",
    ),
    ("png as target", ["teacher", "train", "-t", "{root}/photo.png", "-o", "{out}"], "not a target"),
    (
        "target size 0",
        ["teacher", "train", "-t", "{root}/empty-class", "--target-size", "0", "-o", "{out}"],
        "target-size must be",
    ),
    ("model size 0", ["teacher", "train", "-t", "{root}/renamed.npz", "--size", "0", "-o", "{out}"], "size must be"),
    ("payload is a folder", ["learn", "{root}/a-folder.plada", "-r", "{pack}", "-o", "{out}"], "is a directory"),
    ("bad url", ["learn", "http://[::1", "-r", "{pack}", "-o", "{out}"], "not a valid URL"),
    (
        "eval classes differ",
        ["learn", "{payload}", "-r", "{pack}", "-o", "{out}", "--target", "{root}/renamed.npz"],
        "classes differ",
    ),
    (
        "eval fewer classes",
        ["learn", "{payload}", "-r", "{pack}", "-o", "{out}", "--eval", "{root}/fewer.npz"],
        "has 2 classes but payload",
    ),
    ("evaluate classes differ", ["evaluate", "{root}/student", "-t", "{root}/renamed.npz"], "classes differ"),
    ("evaluate fewer classes", ["evaluate", "{root}/student", "-t", "{root}/fewer.npz"], "has 2 classes but student"),
    ("binary tasks.toml (build)", ["build", "{root}/binary.toml"], "not a readable task file"),
    ("binary tasks.toml (serve)", ["serve", "{root}/binary.toml", "--no-build"], "not a readable task file"),
    # parsing errors read the same way, with where to look
    ("bad choice", ["select", "{scores}", "--quotas", "bogus"], "'bogus' is not one of 'auto', 'target', 'pool'"),
    ("unknown option", ["select", "{scores}", "--bogus"], "No such option: --bogus"),
    ("missing option", ["pack", "{scores}"], "Missing option '--out' / '-o'. (see 'plada-edge pack -h')"),
    ("unknown command", ["learnn"], "No such command 'learnn'"),
    ("port 0", ["serve", "{root}/binary.toml", "--port", "0"], "'--port'"),
    (
        "new and old name",
        ["learn", "{payload}", "-r", "{pack}", "-o", "{out}", "-t", "{root}/fewer.npz", "--eval", "{root}/fewer.npz"],
        "give --target once (--eval is its old name)",
    ),
    (
        "size and model-size",
        ["learn", "{payload}", "-r", "{pack}", "-o", "{out}", "--size", "16", "--model-size", "16"],
        "give --size once (--model-size is its old name)",
    ),
    (
        "bad engine",
        ["score", "--teacher", "t.onnx", "-r", "{pack}", "-o", "{out}", "--engine", "gpu"],
        "'gpu' is not one",
    ),
]


@pytest.fixture(scope="module")
def student(world):
    from plada_edge.device.student import learn

    learn(world["payload"], world["pack"], world["root"] / "student", arch="tiny_cnn", epochs=1, progress=False)
    return world["root"] / "student"


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_exit_2(world, student, tmp_path, argv, words):
    out = tmp_path / "out"
    fill = {"root": world["root"], "scores": world["scores"], "payload": world["payload"], "pack": world["pack"].path}
    args = [a.format(**fill, out=out) for a in argv]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in result.output and not out.exists()
