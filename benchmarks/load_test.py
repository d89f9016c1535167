#!/usr/bin/env python3
"""Load test of ``plada-edge serve`` on loopback: many devices downloading one payload at once.

Builds a ~100 KB payload (a random selection over a synthetic 14.2M-image pack id), publishes it
in a temporary cache, starts the real server (uvicorn, one process) on 127.0.0.1, and runs
--clients concurrent keep-alive HTTP/1.1 clients (asyncio, in this process) that download the
payload repeatedly for --seconds. Every response is checked (status 200, exact length, SHA-256 of
the first and of a sample of bodies). Bounded in time and count; loopback only.

    .venv/bin/python -m benchmarks load_test [--clients 200] [--seconds 30] [--update-docs]

Both sides share this machine's 2 cores, so the numbers are a floor for a dedicated server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from plada_edge.core import atomic
from plada_edge.core.payload import encode_payload

from .kit import replace_section

HOST = "127.0.0.1"  # loopback only, by design
MAX_REQUESTS = 2_000_000


def make_cache(root: Path, target_bytes: int = 100_000) -> tuple[bytes, str]:
    rng = np.random.default_rng(0)
    n, c = 14_197_122, 200
    k = 40_000
    while True:
        idx = np.sort(rng.choice(n, k, replace=False))
        data = encode_payload(
            idx,
            rng.integers(0, c, k),
            {
                "task": "load",
                "class_names": [str(i) for i in range(c)],
                "pack_fingerprint": "0" * 64,
                "n": n,
                "image_size": 32,
            },
            codec="paper-idx",
        )
        if abs(len(data) - target_bytes) < 2_000:
            break
        k = int(k * target_bytes / len(data))
    sha = hashlib.sha256(data).hexdigest()
    atomic.write_bytes(root / "payloads" / "load.plada", data)
    atomic.write_json(
        root / "tasks.json",
        {
            "load": {
                "payload": "payloads/load.plada",
                "sha256": sha,
                "bytes": len(data),
                "k": k,
                "n": n,
                "classes": c,
                "codec": "paper-idx",
                "pack_fingerprint": "0" * 64,
                "teacher_test_acc": None,
            }
        },
    )
    return data, sha


SERVER = """
import sys, uvicorn
from plada_edge.server.http import create_app, load_published
app = create_app(load_published(sys.argv[1]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_level="warning", backlog=4096)
"""


async def client(port: int, path: str, size: int, sha: str, deadline: float, lat: list, errors: list, counter: list):
    reader = writer = None
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n".encode()
    while time.perf_counter() < deadline and counter[0] < MAX_REQUESTS:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(
                next(
                    line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
                )
            )
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            counter[0] += 1
            if status != 200 or length != size or (counter[0] % 997 == 1 and hashlib.sha256(body).hexdigest() != sha):
                errors.append(f"status {status}, {length} bytes")
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
            errors.append(type(exc).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None


async def run_load(port: int, size: int, sha: str, clients: int, seconds: float):
    lat, errors, counter = [], [], [0]
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(
        *(client(port, "/v1/tasks/load/payload", size, sha, deadline, lat, errors, counter) for _ in range(clients))
    )
    return lat, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    if not 0 < args.seconds <= 120:
        raise SystemExit("--seconds must be in (0, 120]")
    with tempfile.TemporaryDirectory() as tmp:
        data, sha = make_cache(Path(tmp))
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-c", SERVER, tmp, str(port)])
        try:
            for _ in range(200):  # wait for the port
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            lat, errors, wall = asyncio.run(run_load(port, len(data), sha, args.clients, args.seconds))
        finally:
            server.terminate()
            server.wait(10)
    lat_ms = np.array(lat) * 1e3
    rps = len(lat) / wall
    p50, p99 = np.percentile(lat_ms, [50, 99]) if len(lat_ms) else (float("nan"),) * 2
    print(
        f"{len(lat):,} requests in {wall:.1f} s: {rps:,.0f} req/s, {rps * len(data) / 2**20:,.1f} MiB/s, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, errors {len(errors)}"
    )
    body = (
        f"{args.clients} concurrent keep-alive clients (asyncio, one process) downloading a {len(data):,}-byte payload "
        f"from `plada-edge serve` (uvicorn, one process) on 127.0.0.1 for {args.seconds:.0f} s; both share the 2 "
        "cores.\n\n"
        "| requests | requests/s | MiB/s | p50 latency | p99 latency | errors |\n|---:|---:|---:|---:|---:|---:|\n"
        f"| {len(lat):,} | {rps:,.0f} | {rps * len(data) / 2**20:,.1f} | {p50:.1f} ms | {p99:.1f} ms | {len(errors)} |"
    )
    if args.update_docs:
        replace_section(
            "load_test",
            body,
            f"python -m benchmarks load_test --clients {args.clients} --seconds {args.seconds:.0f} --update-docs",
        )


if __name__ == "__main__":
    main()
