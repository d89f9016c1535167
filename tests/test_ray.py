"""Scoring on Ray gives exactly the local engine's scores: local runtime, a 2-node loopback
cluster, and a worker killed mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from conftest import Interrupted, interrupt_after  # noqa: E402

from plada_edge.server import scoring  # noqa: E402
from plada_edge.server.scoring import FIELDS, score_pack  # noqa: E402


@pytest.fixture(scope="module")
def local_scores(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "local"
    return score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], out, batch_size=32, chunk=64, progress=False)


def same(a, b):
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_local_ray_runtime_matches_local_engine(tiny, local_scores, tmp_path, monkeypatch):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sc = score_pack(
            tiny["root"] / "teacher.onnx",
            tiny["pack"],
            tmp_path / "r",
            batch_size=32,
            chunk=64,
            engine="ray",
            progress=False,
        )
        same(sc, local_scores)
        # a Ray run resumes a local run's partial output, and vice versa: the chunks are the same
        with monkeypatch.context() as m:
            interrupt_after(m, scoring, "write_chunk", 3)
            with pytest.raises(Interrupted):
                score_pack(
                    tiny["root"] / "teacher.onnx",
                    tiny["pack"],
                    tmp_path / "mix",
                    batch_size=32,
                    chunk=64,
                    progress=False,
                )
        sc = score_pack(
            tiny["root"] / "teacher.onnx",
            tiny["pack"],
            tmp_path / "mix",
            batch_size=32,
            chunk=64,
            engine="ray",
            progress=False,
        )
        same(sc, local_scores)
    finally:
        ray.shutdown()


def test_killed_worker_is_retried(tiny, local_scores, tmp_path):
    import plada_edge.server.scoring_ray as sr

    killed = []

    def kill_one(actors):
        # The actor answers after its first chunk; the driver has queued more work for it by then
        # (16 chunks, 2 actors), so SIGKILL here always lands mid-run, deterministically.
        pid = ray.get(actors[0].pid.remote())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    real = sr.score_chunks_on_ray
    stats = {}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sr.score_chunks_on_ray = lambda *a, **k: stats.update(real(*a, **k, on_started=kill_one)) or stats
        sc = score_pack(
            tiny["root"] / "teacher.onnx",
            tiny["pack"],
            tmp_path / "k",
            batch_size=32,
            chunk=32,
            engine="ray",
            workers=2,
            progress=False,
        )
    finally:
        sr.score_chunks_on_ray = real
        ray.shutdown()
    assert killed and stats["retried"] >= 1  # the dead actor's chunk really was rerun
    same(sc, local_scores_at(tiny, tmp_path, 32))


def local_scores_at(tiny, tmp_path, chunk):
    return score_pack(
        tiny["root"] / "teacher.onnx",
        tiny["pack"],
        tmp_path / f"local{chunk}",
        batch_size=32,
        chunk=chunk,
        progress=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RAY_CLI = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


@pytest.mark.skipif(not Path(RAY_CLI).exists(), reason="the ray CLI is not installed")
def test_two_node_loopback_cluster(tiny, local_scores, tmp_path):
    ray_cli = RAY_CLI
    port = _free_port()
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")
    common = ["--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"]
    try:
        subprocess.run(
            [ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", *common],
            check=True,
            timeout=120,
            env=env,
            capture_output=True,
        )
        subprocess.run(
            [
                ray_cli,
                "start",
                f"--address=127.0.0.1:{port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                "--disable-usage-stats",
            ],
            check=True,
            timeout=120,
            env=env,
            capture_output=True,
        )
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        sc = score_pack(
            tiny["root"] / "teacher.onnx",
            tiny["pack"],
            tmp_path / "c",
            batch_size=32,
            chunk=64,
            engine="ray",
            workers=2,
            progress=False,
        )
        same(sc, local_scores)
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], timeout=120, capture_output=True)
