"""The dataset server on an ephemeral loopback port, the task-file cache, and learn-from-URL."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from plada_edge.core.payload import PayloadError
from plada_edge.device.fetch import FetchError, fetch_payload
from plada_edge.server.http import create_app, load_published
from plada_edge.server.tasks import build_tasks


class Running:
    """uvicorn serving ``app`` on 127.0.0.1:<ephemeral>, in a thread, stopped on exit."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    (root / "tasks.toml").write_text(f"""
[server]
cache = "cache"
reference = "{tiny["pack"].path}"

[tasks.stripes]
target = "{tiny["root"] / "stripes.npz"}"
arch = "tiny_cnn"
epochs = 2
size = 16
batch_size = 32
count = 60
safety_net = true
alpha = 0.0
share = 1.0
spread = "auto"
""")
    report = build_tasks(root / "tasks.toml")
    return {"root": root, "report": report, "tiny": tiny}


def test_build_then_change_only_keep_reuses_scores(built, monkeypatch):
    assert built["report"]["stripes"]["steps"] == {
        "teacher": "built",
        "onnx": "built",
        "scores": "built",
        "payload": "built",
    }
    again = build_tasks(built["root"] / "tasks.toml")
    assert again["stripes"]["steps"] == {"teacher": "cached", "onnx": "cached", "scores": "cached", "payload": "cached"}
    import plada_edge.server.scoring as scoring
    import plada_edge.server.teacher as teacher

    def boom(*a, **k):
        raise AssertionError("must not run")

    monkeypatch.setattr(teacher, "train_teacher", boom)
    monkeypatch.setattr(scoring, "score_pack", boom)
    toml = built["root"] / "tasks.toml"
    text = toml.read_text()
    toml.write_text(text.replace("count = 60", "count = 30"))
    try:
        r = build_tasks(toml)
    finally:
        toml.write_text(text)
        build_tasks(toml)  # republish the original selection (cached) for the other tests
    assert r["stripes"]["steps"] == {"teacher": "cached", "onnx": "cached", "scores": "cached", "payload": "built"}
    assert r["stripes"]["k"] == 30


@pytest.fixture(scope="module")
def server(built):
    tasks = load_published(built["root"] / "cache")
    with Running(create_app(tasks)) as url:
        yield url, tasks


def test_list_metadata_and_download(server):
    url, tasks = server
    status, _, body = get(f"{url}/healthz")
    assert status == 200 and json.loads(body)["ok"]
    status, _, body = get(f"{url}/v1/tasks")
    listing = json.loads(body)["tasks"]
    assert status == 200 and [t["name"] for t in listing] == ["stripes"]
    status, _, body = get(f"{url}/v1/tasks/stripes")
    meta = json.loads(body)
    assert status == 200 and meta["header"]["task"] == "stripes" and meta["k"] == 60
    status, headers, data = get(f"{url}/v1/tasks/stripes/payload")
    assert status == 200 and data == tasks["stripes"]["data"]
    assert headers["etag"] == f'"{meta["sha256"]}"' and "immutable" in headers["cache-control"]


def test_etag_304_and_ranges(server):
    url, tasks = server
    data = tasks["stripes"]["data"]
    etag = f'"{tasks["stripes"]["meta"]["sha256"]}"'
    status, _, body = get(f"{url}/v1/tasks/stripes/payload", {"If-None-Match": etag})
    assert status == 304 and body == b""
    status, h, body = get(f"{url}/v1/tasks/stripes/payload", {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and h["content-range"] == f"bytes 10-19/{len(data)}"
    status, _, body = get(f"{url}/v1/tasks/stripes/payload", {"Range": "bytes=-7"})
    assert status == 206 and body == data[-7:]
    status, _, body = get(f"{url}/v1/tasks/stripes/payload", {"Range": "bytes=5-"})
    assert status == 206 and body == data[5:]
    status, _, _ = get(f"{url}/v1/tasks/stripes/payload", {"Range": f"bytes={len(data)}-"})
    assert status == 416


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tasks/..%2F..%2Fetc%2Fpasswd/payload",
        "/v1/tasks/../../etc/passwd",
        "/v1/tasks/%2e%2e/payload",
        "/v1/tasks/..%5Cwin/payload",
        "/v1/tasks/stripes%00/payload",
        "/v1/tasks/nope",
        "/v1/tasks/nope/payload",
    ],
)
def test_traversal_and_unknown_names_are_404(server, path):
    url, _ = server
    status, _, body = get(url + path)
    assert status == 404, (path, status)
    assert b"root:" not in body


def test_token(built):
    tasks = load_published(built["root"] / "cache")
    with Running(create_app(tasks, token="s3cret")) as url:
        assert get(f"{url}/v1/tasks")[0] == 401
        assert get(f"{url}/v1/tasks", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(f"{url}/v1/tasks", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(f"{url}/healthz")[0] == 200
        with pytest.raises(FetchError, match="401"):
            fetch_payload(f"{url}/v1/tasks/stripes", token="wrong", retries=0)
        assert fetch_payload(f"{url}/v1/tasks/stripes", token="s3cret").k == 60


def test_learn_from_url_end_to_end(server, built, tmp_path):
    from plada_edge.device.student import learn

    url, _ = server
    tiny = built["tiny"]
    m = learn(
        f"{url}/v1/tasks/stripes",
        tiny["pack"],
        tmp_path / "s",
        arch="tiny_cnn",
        epochs=6,
        batch_size=32,
        lr=3e-3,
        target=tiny["target"],
        progress=False,
    )
    assert m["k"] == 60 and m["test_acc"] > 0.5


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A misbehaving server: metadata ok; the payload corrupted, or cut short on first try."""

    payload = b""
    mode = "corrupt"
    calls = 0

    def log_message(self, *a):
        pass

    def do_GET(self):
        import hashlib

        cls = type(self)
        if self.path.endswith("/payload"):
            cls.calls += 1
            data = cls.payload
            start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
            if cls.mode == "corrupt":
                data = data[:20] + bytes([data[20] ^ 1]) + data[21:]
            body = data[start:]
            if cls.mode == "cut" and cls.calls == 1:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])  # then drop the connection
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        meta = json.dumps({"bytes": len(cls.payload), "sha256": hashlib.sha256(cls.payload).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(meta)))
        self.end_headers()
        self.wfile.write(meta)


@pytest.mark.parametrize("mode", ["corrupt", "cut"])
def test_client_detects_corruption_and_resumes_cut_downloads(server, mode):
    _, tasks = server
    _Flaky.payload, _Flaky.mode, _Flaky.calls = tasks["stripes"]["data"], mode, 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1/tasks/stripes"
        if mode == "corrupt":
            with pytest.raises(PayloadError, match="hash"):
                fetch_payload(url, retries=1, backoff=0.01)
        else:
            p = fetch_payload(url, retries=3, backoff=0.01)
            assert p.k == 60 and _Flaky.calls == 2  # the second request resumed with Range
    finally:
        srv.shutdown()
        srv.server_close()


def test_size_limit(server):
    url, _ = server
    with pytest.raises(FetchError, match="over the limit"):
        fetch_payload(f"{url}/v1/tasks/stripes", max_bytes=10)
