"""The defects a hostile test of the CLI, the reader and the server found (issue 19), one test each."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.core.errors import ConfigError, PladaError
from plada_edge.core.locks import BusyError, output_lock
from plada_edge.core.reference import build_pack
from plada_edge.core.targets import Target, save_target
from plada_edge.device.student import learn
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack
from plada_edge.server.teacher import train_teacher


def run(*args: str):
    out = CliRunner().invoke(app, [str(a) for a in args])
    return out.exit_code, out.output, out.exception


def one_line_error(args) -> str:
    code, output, exc = run(*args)
    assert code == 2, (args, code, output, exc)
    assert output.startswith("error: ") or "Usage:" in output, output
    assert "Traceback" not in output
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    return output


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    sc = score_pack(
        tiny["root"] / "teacher.onnx", tiny["pack"], root / "scores", batch_size=32, chunk=64, progress=False
    )
    a, _, _ = make_payload(sc, root / "a.plada", count=40)
    b, _, _ = make_payload(sc, root / "b.plada", count=40, strategy="random")
    return {"root": root, "scores": sc, "a": root / "a.plada", "b": root / "b.plada"}


# 1. resume checks identity ----------------------------------------------------------------------------------


def test_learn_refuses_to_resume_another_payloads_checkpoint(tiny, scored, tmp_path):
    kw = dict(arch="tiny_cnn", epochs=1, batch_size=32, progress=False)
    learn(scored["a"], tiny["pack"], tmp_path / "s", **kw)
    with pytest.raises(ConfigError, match="belongs to another run.*--fresh"):
        learn(scored["b"], tiny["pack"], tmp_path / "s", **kw)
    m = learn(scored["b"], tiny["pack"], tmp_path / "s", resume=False, **kw)  # --fresh
    assert m["payload_sha256"] == __import__("hashlib").sha256(scored["b"].read_bytes()).hexdigest()


def test_teacher_refuses_to_resume_on_another_target_of_the_same_size(tiny, tmp_path):
    t = tiny["target"]
    other = Target("other", np.ascontiguousarray(t.x_train[::-1]), t.y_train, t.x_test, t.y_test, t.class_names)
    save_target(tmp_path / "other.npz", other)
    kw = dict(arch="tiny_cnn", epochs=1, size=16, batch_size=32, progress=False)
    train_teacher(tiny["root"] / "stripes.npz", tmp_path / "t", **kw)
    with pytest.raises(ConfigError, match="belongs to another run"):
        train_teacher(tmp_path / "other.npz", tmp_path / "t", **kw)


# 2. locks and temp files ------------------------------------------------------------------------------------


def test_concurrent_writers_into_one_folder_are_refused(tiny, tmp_path):
    onnx = tiny["root"] / "teacher.onnx"
    with output_lock(tmp_path / "scores"):
        with pytest.raises(BusyError, match=f"in use by plada-edge process {os.getpid()}"):
            score_pack(onnx, tiny["pack"], tmp_path / "scores", batch_size=32, chunk=64, progress=False)
    assert not (tmp_path / "scores" / "meta.json").exists()  # the refused run wrote nothing
    np.save(tmp_path / "p.npy", np.zeros((5, 8, 8), np.uint8))
    with output_lock(tmp_path / "pack", tmp_path / ".pack.lock"):
        with pytest.raises(BusyError):
            build_pack([str(tmp_path / "p.npy")], tmp_path / "pack", size=8)
    assert not (tmp_path / "pack").exists()
    build_pack([str(tmp_path / "p.npy")], tmp_path / "pack", size=8)
    with pytest.raises(FileExistsError):  # the second of two sequential builds does not replace the first
        build_pack([str(tmp_path / "p.npy")], tmp_path / "pack", size=8)


def test_two_score_processes_cannot_share_an_output(tiny, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from plada_edge.core.locks import output_lock\n"
        "with output_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = one_line_error(
            [
                "score",
                "--teacher",
                tiny["root"] / "teacher.onnx",
                "--reference",
                tiny["pack"].path,
                "--out",
                tmp_path / "s",
                "--batch-size",
                "32",
                "--chunk",
                "64",
            ]
        )
        assert f"process {holder.pid}" in out
    finally:
        holder.kill()
        holder.wait()


def test_stale_temp_files_are_cleaned_by_the_next_run(tiny, tmp_path):
    out = tmp_path / "s"
    (out / "chunks").mkdir(parents=True)
    (out / ".energy.npy.1234.tmp").write_bytes(b"x" * 100)
    (out / "chunks" / ".000000000000.npz.99.tmp").write_bytes(b"x")
    score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], out, batch_size=32, chunk=64, progress=False)
    assert not list(out.glob(".*.tmp")) and not list((out / "chunks").glob(".*.tmp"))


def test_a_truncated_chunk_is_rescored_not_fatal(tiny, tmp_path):
    out = tmp_path / "s"
    score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], out, batch_size=32, chunk=64, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    meta["complete"] = False  # as if killed before the join
    (out / "meta.json").write_text(json.dumps(meta))
    chunk = sorted((out / "chunks").glob("*.npz"))[2]
    chunk.write_bytes(chunk.read_bytes()[:100])
    again = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], out, batch_size=32, chunk=64, progress=False)
    ref = score_pack(
        tiny["root"] / "teacher.onnx", tiny["pack"], tmp_path / "ref", batch_size=32, chunk=64, progress=False
    )
    np.testing.assert_array_equal(np.asarray(again.energy), np.asarray(ref.energy))


def test_files_honour_the_umask(scored, tiny, tmp_path):
    old = os.umask(0o022)
    try:
        make_payload(scored["scores"], tmp_path / "x.plada", count=10)
        np.save(tmp_path / "p.npy", np.zeros((3, 8, 8), np.uint8))
        build_pack([str(tmp_path / "p.npy")], tmp_path / "pack", size=8)
    finally:
        os.umask(old)
    assert (tmp_path / "x.plada").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "pack").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "pack" / "manifest.json").stat().st_mode & 0o777 == 0o644


# 3. no silent wrong results, no tracebacks ------------------------------------------------------------------


def test_bad_cli_inputs_are_one_line_errors(tiny, scored, tmp_path):
    onnx, pack, target = tiny["root"] / "teacher.onnx", tiny["pack"].path, tiny["root"] / "stripes.npz"
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    out = one_line_error(["score", "--teacher", tmp_path / "bad.onnx", "--reference", pack, "--out", tmp_path / "s"])
    assert "not a readable ONNX model" in out
    assert "chunk must be" in one_line_error(
        ["score", "--teacher", onnx, "--reference", pack, "--out", tmp_path / "s", "--chunk", "-256"]
    )
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "teacher.pt").write_bytes(b"garbage")
    assert "not a readable checkpoint" in one_line_error(
        ["teacher", "export", tmp_path / "t", "--out", tmp_path / "t.onnx"]
    )
    assert "epochs must be" in one_line_error(["learn", scored["a"], "-r", pack, "-o", tmp_path / "l", "--epochs", "0"])
    assert "batch_size must be" in one_line_error(
        ["learn", scored["a"], "-r", pack, "-o", tmp_path / "l", "--batch-size", "0"]
    )
    (tmp_path / "l2").mkdir()
    (tmp_path / "l2" / "checkpoint.pt").write_bytes(b"\x80garbage")
    assert "--fresh" in one_line_error(
        ["learn", scored["a"], "-r", pack, "-o", tmp_path / "l2", "--arch", "tiny_cnn", "--epochs", "1"]
    )
    np.save(tmp_path / "p.npy", np.zeros((3, 8, 8), np.uint8))
    assert "size must be" in one_line_error(
        ["reference", "build", tmp_path / "p.npy", "--out", tmp_path / "pk", "--size", "0"]
    )
    (tmp_path / "empty.npy").write_bytes(b"")
    assert "not a readable numpy file" in one_line_error(
        ["reference", "build", tmp_path / "empty.npy", "--out", tmp_path / "pk2"]
    )
    (tmp_path / "fakepack").mkdir()
    (tmp_path / "fakepack" / "manifest.json").write_text("[1, 2, 3]")
    assert "not a plada reference pack" in one_line_error(["reference", "info", tmp_path / "fakepack"])
    (tmp_path / "cut.npz").write_bytes(target.read_bytes()[:300])
    assert "not a readable target" in one_line_error(
        ["teacher", "train", "-t", tmp_path / "cut.npz", "-o", tmp_path / "tt"]
    )
    t = tiny["target"]
    np.savez(
        tmp_path / "twod.npz",
        x_train=t.x_train,
        y_train=t.y_train[:, None],
        x_test=t.x_test,
        y_test=t.y_test,
        class_names=np.array(t.class_names),
    )
    assert "1-D array" in one_line_error(["teacher", "train", "-t", tmp_path / "twod.npz", "-o", tmp_path / "tt"])
    np.savez(
        tmp_path / "floaty.npz",
        x_train=t.x_train,
        y_train=t.y_train.astype(float),
        x_test=t.x_test,
        y_test=t.y_test,
        class_names=np.array(t.class_names),
    )
    assert "whole-number labels" in one_line_error(
        ["teacher", "train", "-t", tmp_path / "floaty.npz", "-o", tmp_path / "tt"]
    )
    four = Target("four", t.x_train, t.y_train, t.x_test, t.y_test, [*t.class_names, "extra"])
    save_target(tmp_path / "four.npz", four)
    assert "classes" in one_line_error(
        [
            "learn",
            scored["a"],
            "-r",
            pack,
            "-o",
            tmp_path / "l3",
            "--eval",
            tmp_path / "four.npz",
            "--arch",
            "tiny_cnn",
            "--epochs",
            "1",
        ]
    )
    assert not (tmp_path / "l3" / "checkpoint.pt").exists()  # refused before training
    code, output, _ = run("serve", tmp_path / "tasks.toml", "--port", "70000")
    assert code == 2 and "65535" in output and "Traceback" not in output


def test_damaged_scores_are_one_error_line(scored, tmp_path):
    import shutil

    bad = tmp_path / "scores"
    shutil.copytree(scored["root"] / "scores", bad)
    energy = bad / "energy.npy"
    energy.write_bytes(energy.read_bytes()[:-40])  # truncated after scoring finished
    code, output, _ = run("select", bad, "--keep", "5%")
    assert code == 2 and "energy.npy is damaged" in output and "Traceback" not in output
    energy.write_bytes(b"not numpy")
    code, output, _ = run("pack", bad, "--keep", "5%", "--out", tmp_path / "x.plada")
    assert code == 2 and "energy.npy is damaged" in output and not (tmp_path / "x.plada").exists()


def test_empty_selections_are_refused(scored):
    # a payload of no images teaches nothing: refused before anything is written, not a warning
    code, output, _ = run("select", scored["root"] / "scores", "--keep", "0.0000001")
    assert code == 2 and "is no image at all" in output
    code, output, _ = run("pack", scored["root"] / "scores", "--count", "0", "--out", scored["root"] / "empty.plada")
    assert code == 2 and "count must be >= 1" in output and not (scored["root"] / "empty.plada").exists()


# 4. server ---------------------------------------------------------------------------------------------------


def _task_file(tmp_path, tiny, target, **extra) -> os.PathLike:
    lines = [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    (tmp_path / "tasks.toml").write_text(
        f'[server]\ncache = "cache"\nreference = "{tiny["pack"].path}"\n\n[tasks.t]\ntarget = "{target}"\n'
        'arch = "tiny_cnn"\nsize = 16\nepochs = 1\nbatch_size = 32\n' + "\n".join(lines) + "\n"
    )
    return tmp_path / "tasks.toml"


def test_a_bad_keep_is_refused_before_any_training(tiny, tmp_path):
    tf = _task_file(tmp_path, tiny, tiny["root"] / "stripes.npz", keep="150%")
    assert "keep must be in" in one_line_error(["build", tf])
    assert not (tmp_path / "cache").exists()


def test_max_bytes_takes_budget_as_its_old_name_in_tasks_toml(tiny, tmp_path):
    from plada_edge.server.tasks import load_task_file

    tf = _task_file(tmp_path, tiny, tiny["root"] / "stripes.npz", budget="2KB")
    assert load_task_file(tf)["tasks"]["t"]["max_bytes"] == "2KB"
    tf = _task_file(tmp_path, tiny, tiny["root"] / "stripes.npz", budget="2KB", max_bytes="3KB")
    assert "give max_bytes once (budget is its old name)" in one_line_error(["build", tf])
    tf = _task_file(tmp_path, tiny, tiny["root"] / "stripes.npz", max_bytes="1.2.3KB")
    assert "max_bytes must look like" in one_line_error(["build", tf])


def test_an_empty_test_split_gives_null_accuracy_not_nan(tiny, tmp_path):
    from plada_edge.server.http import create_app, load_published
    from plada_edge.server.tasks import build_tasks

    t = tiny["target"]
    save_target(
        tmp_path / "notest.npz", Target("notest", t.x_train, t.y_train, t.x_test[:0], t.y_test[:0], t.class_names)
    )
    tf = _task_file(tmp_path, tiny, tmp_path / "notest.npz", count=30)
    build_tasks(tf)
    text = (tmp_path / "cache" / "tasks.json").read_text()
    assert "NaN" not in text and json.loads(text)["t"]["teacher_test_acc"] is None
    from starlette.testclient import TestClient

    client = TestClient(create_app(load_published(tmp_path / "cache")))
    assert client.get("/v1/tasks").status_code == 200


def test_weak_etags_and_lowercase_bearer(tiny, scored, tmp_path):
    from starlette.testclient import TestClient

    from plada_edge.server.http import create_app, load_published
    from plada_edge.server.tasks import build_tasks

    build_tasks(_task_file(tmp_path, tiny, tiny["root"] / "stripes.npz", count=30))
    client = TestClient(create_app(load_published(tmp_path / "cache"), token="s3cret"))
    meta = client.get("/v1/tasks/t", headers={"Authorization": "bearer s3cret"})
    assert meta.status_code == 200
    etag = client.get("/v1/tasks/t/payload", headers={"Authorization": "BEARER s3cret"}).headers["etag"]
    r = client.get("/v1/tasks/t/payload", headers={"Authorization": "Bearer s3cret", "If-None-Match": f"W/{etag}"})
    assert r.status_code == 304


# 5. fetching -------------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.seen.append((self.headers.get("Host"), self.path, self.headers.get("Authorization")))
        status, headers, body, drip = self.routes.get(self.path, (404, {}, b"", 0))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 1 if drip else len(body) or 1):
            try:
                self.wfile.write(body[i : i + (1 if drip else len(body))])
                self.wfile.flush()
            except OSError:
                return
            if drip:
                time.sleep(drip)


def _serve(routes):
    handler = type("H", (_Handler,), {"routes": routes, "seen": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def test_token_is_not_sent_to_another_origin(scored):
    from plada_edge.device.fetch import fetch_payload

    data = scored["a"].read_bytes()
    sha = __import__("hashlib").sha256(data).hexdigest()
    other, other_h = _serve({"/t/payload": (200, {}, data, 0)})
    port2 = other.server_address[1]
    first, first_h = _serve(
        {
            "/v1/tasks/t": (200, {}, json.dumps({"bytes": len(data), "sha256": sha}).encode(), 0),
            "/v1/tasks/t/payload": (302, {"Location": f"http://localhost:{port2}/t/payload"}, b"", 0),
        }
    )
    try:
        p = fetch_payload(f"http://127.0.0.1:{first.server_address[1]}/v1/tasks/t", token="s3cret", retries=0)
        assert p.k == 40
        assert all(auth == "Bearer s3cret" for _, _, auth in first_h.seen)
        assert other_h.seen and all(auth is None for _, _, auth in other_h.seen)  # dropped across origins
    finally:
        first.shutdown()
        other.shutdown()


def test_a_dripping_server_cannot_hold_the_device(scored):
    from plada_edge.device.fetch import FetchError, fetch_payload

    data = scored["a"].read_bytes()
    sha = __import__("hashlib").sha256(data).hexdigest()
    srv, _ = _serve(
        {
            "/v1/tasks/t": (200, {}, json.dumps({"bytes": len(data), "sha256": sha}).encode(), 0),
            "/v1/tasks/t/payload": (200, {}, data, 0.05),
        }
    )
    try:
        t0 = time.perf_counter()
        with pytest.raises(FetchError, match="deadline"):
            fetch_payload(f"http://127.0.0.1:{srv.server_address[1]}/v1/tasks/t", timeout=2, deadline=1.5, retries=3)
        assert time.perf_counter() - t0 < 5
    finally:
        srv.shutdown()


def test_plada_errors_are_value_errors_for_old_callers():
    assert issubclass(BusyError, PladaError) and issubclass(PladaError, ValueError)
