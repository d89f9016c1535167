"""--device and --providers on a machine without a GPU: CPU works, auto falls back, a missing one is one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from plada_edge.core import devices
from plada_edge.core.config import ScoreConfig, StudentConfig, TeacherConfig
from plada_edge.core.errors import ConfigError

torch = pytest.importorskip("torch")


def test_device_specs_are_checked_before_torch_is_asked():
    assert devices.check_device_spec(" CUDA:1 ") == "cuda:1"
    assert devices.check_device_spec("0") == "cuda:0"  # torch's and Ultralytics' bare GPU index
    assert devices.check_device_spec("1") == "cuda:1"
    for bad in ("gpu", "cuda:x", "tpu", "", "-1", "0,1"):
        with pytest.raises(ConfigError, match="device must be"):
            devices.check_device_spec(bad)
    with pytest.raises(ConfigError):
        TeacherConfig(device="gpu")
    with pytest.raises(ConfigError):
        StudentConfig(precision="fp8")
    with pytest.raises(ConfigError):
        ScoreConfig(device="npu")


def test_auto_falls_back_to_cpu_and_missing_gpus_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        devices.resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS"):
        devices.resolve_device("mps")


def test_auto_prefers_a_gpu_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("auto") == "cuda:0"
    assert devices.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="only 2"):
        devices.resolve_device("cuda:2")


def test_amp_policy():
    assert devices.autocast_dtype("cpu", "auto") == (None, False)
    assert devices.autocast_dtype("cpu", "fp32") == (None, False)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        devices.autocast_dtype("cpu", "bf16")


def test_provider_choice(monkeypatch):
    monkeypatch.setattr(devices, "available_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert devices.onnx_providers(None, "auto") == ["CPUExecutionProvider"]
    assert devices.onnx_providers("cpu", "auto") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="CUDAExecutionProvider not available.*onnxruntime-gpu"):
        devices.onnx_providers("cuda,cpu", "auto")
    # torch sees the GPU but onnxruntime is the CPU-only wheel: an explicit cuda device is refused, auto is not
    with pytest.raises(ConfigError, match="'cuda:0' asks for the GPU.*no CUDA provider.*onnxruntime-gpu"):
        devices.onnx_providers(None, "cuda:0")
    assert devices.onnx_providers("cpu", "cuda:0") == ["CPUExecutionProvider"]  # providers named: taken as given
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(devices, "available_providers", lambda: list(reversed(gpu)))
    assert devices.onnx_providers(None, "auto") == gpu  # best first, CPU last
    assert devices.onnx_providers(None, "cpu") == ["CPUExecutionProvider"]
    assert devices.onnx_providers("cuda", "cuda:1") == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]


def test_ray_actors_get_cuda_only_when_they_reserve_gpus():
    from plada_edge.server.scoring_ray import ray_providers

    assert ray_providers(ScoreConfig()) == ["CPUExecutionProvider"]
    assert ray_providers(ScoreConfig(gpus_per_worker=1)) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ray_providers(ScoreConfig(providers="trt,cuda")) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_cli_device_errors_are_one_line(tiny, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from plada_edge.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = CliRunner()
    out = r.invoke(
        app,
        [
            "teacher",
            "train",
            "--target",
            str(tiny["root"] / "stripes.npz"),
            "--arch",
            "tiny_cnn",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert out.exit_code == 2 and out.output.startswith("error: ") and "no CUDA GPU" in out.output
    assert not (tmp_path / "t" / "teacher.pt").exists()
    out = r.invoke(
        app,
        [
            "score",
            "--teacher",
            str(tiny["root"] / "teacher.onnx"),
            "--reference",
            str(tiny["pack"].path),
            "--out",
            str(tmp_path / "s"),
            "--providers",
            "tensorrt",
        ],
    )
    assert out.exit_code == 2 and "TensorrtExecutionProvider not available" in out.output
    out = r.invoke(
        app,
        [
            "score",
            "--teacher",
            str(tiny["root"] / "teacher.onnx"),
            "--reference",
            str(tiny["pack"].path),
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "--batch-size",
            "32",
            "--chunk",
            "64",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output


def test_teacher_and_student_train_with_device_cpu(tiny, tmp_path):
    import json

    from plada_edge.device.student import learn
    from plada_edge.server.packing import make_payload
    from plada_edge.server.scoring import score_pack
    from plada_edge.server.teacher import train_teacher

    m = train_teacher(
        tiny["root"] / "stripes.npz", tmp_path / "t", arch="tiny_cnn", size=16, epochs=1, device="cpu", progress=False
    )
    assert m["device"] == "cpu"
    sc = score_pack(
        tiny["root"] / "teacher.onnx",
        tiny["pack"],
        tmp_path / "s",
        batch_size=32,
        chunk=64,
        device="cpu",
        progress=False,
    )
    make_payload(sc, tmp_path / "p.plada", count=40)
    s = learn(
        tmp_path / "p.plada", tiny["pack"], tmp_path / "st", arch="tiny_cnn", epochs=1, device="auto", progress=False
    )
    assert s["device"] == "cpu"
    assert json.loads((tmp_path / "st" / "metrics.json").read_text())["device"] == "cpu"


def test_every_command_runs_without_tomllib(tiny, tmp_path):
    """Python 3.10 (JetPack 6) has no tomllib: with it hidden, every module imports and a task file builds."""
    task_file = tmp_path / "tasks.toml"
    task_file.write_text(
        textwrap.dedent(f"""
        [server]
        cache = "cache"
        reference = "{tiny["pack"].path}"

        [tasks.stripes]
        target = "{tiny["root"] / "stripes.npz"}"
        arch = "tiny_cnn"
        size = 16
        epochs = 1
        batch_size = 32
        count = 30
        device = "cpu"
    """)
    )
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class NoTomllib:
            def find_spec(self, name, path=None, target=None):
                if name == "tomllib":
                    raise ModuleNotFoundError("No module named 'tomllib' (hidden: Python 3.10)")
        sys.meta_path.insert(0, NoTomllib())
        sys.modules.pop("tomllib", None)
        import plada_edge
        for m in pkgutil.walk_packages(plada_edge.__path__, "plada_edge."):
            if not m.name.endswith("__main__"):  # __main__ runs the CLI
                importlib.import_module(m.name)
        assert "tomllib" not in sys.modules
        from plada_edge.cli import app
        from typer.testing import CliRunner
        out = CliRunner().invoke(app, ["build", {str(task_file)!r}, "--json"])
        assert out.exit_code == 0, out.output
        for cmd in (["--help"], ["learn", "--help"], ["score", "--help"], ["teacher", "train", "--help"]):
            assert CliRunner().invoke(app, cmd).exit_code == 0, cmd
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout[-3000:], out.stderr[-3000:])
