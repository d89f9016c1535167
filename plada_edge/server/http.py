"""``plada-edge serve``: the dataset server that hands task payloads to devices over HTTP.

A Starlette app on uvicorn. Payloads are small (tens of KB), immutable and named by content, so
they are read into memory at start and served with strong caching:

  GET /                            an HTML page: every task with its contact sheet and label histogram
  GET /healthz                     liveness (never needs a token)
  GET /v1/tasks                    every task: name, bytes, sha256, k, N, classes, codec, fingerprint
  GET /v1/tasks/{name}             one task's metadata (plus the payload header)
  GET /v1/tasks/{name}/payload     the bytes; ETag = SHA-256, 304 on If-None-Match, single-range
                                   requests (206 / 416), Cache-Control immutable
  GET /v1/tasks/{name}/sheet.png   the selection's contact sheet; labels.png its label histogram

Task names must match ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}`` and are looked up in the published
list, never joined to a path, so traversal (``..``, encoded slashes) can only ever be a 404.
An optional bearer token (``--token`` or PLADA_EDGE_TOKEN) guards /v1. Binds to 127.0.0.1 unless
told otherwise; uvicorn writes the access log.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from pathlib import Path

from ..core.errors import PayloadError
from ..core.keys import read_statement
from ..core.payload import decode_payload
from .tasks import PUBLISHED, TASK_NAME

_log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def load_published(cache: str | os.PathLike) -> dict:
    """name → {bytes, meta} for every published task, each payload re-validated on load."""
    cache = Path(cache)
    listing = cache / PUBLISHED
    if not listing.exists():
        raise FileNotFoundError(f"{listing} not found: run plada-edge build first")
    out = {}
    for name, entry in json.loads(listing.read_text()).items():
        data = (cache / entry["payload"]).read_bytes()
        payload = decode_payload(data)  # never serve a payload that does not validate
        if payload.sha256 != entry["sha256"]:
            raise PayloadError(f"task {name}: payload file does not match the published sha256")
        out[name] = {
            "data": data,
            "meta": {
                "name": name,
                **{k: v for k, v in entry.items() if k not in ("payload", "sheet", "labels")},
                "url": f"/v1/tasks/{name}/payload",
            },
            "header": payload.header,
            **{
                kind: (cache / entry[kind]).read_bytes()
                for kind in ("sheet", "labels")
                if entry.get(kind) and (cache / entry[kind]).is_file()
            },
        }
    return out


def signed_index(tasks: dict, signer, ttl: int, now: float | None = None) -> dict:
    """The index a device checks a task against (TUF's timestamp and snapshot roles in one short-lived statement):
    every task's release version, SHA-256 and size, issued now and expiring ``ttl`` seconds later, signed."""
    import time

    from ..core.keys import sign_statement

    now = int(time.time() if now is None else now)
    listed = {
        name: {"version": t["meta"].get("version"), "sha256": t["meta"]["sha256"], "bytes": t["meta"]["bytes"]}
        for name, t in tasks.items()
    }
    return sign_statement({"type": "index", "issued": now, "expires": now + ttl, "tasks": listed}, signer)


def create_app(
    tasks: dict, token: str | None = None, signer=None, statements: list | tuple = (), index_ttl: int = 3600
):
    """The ASGI app serving ``tasks`` (as returned by load_published); with ``signer``, also the signed index
    (/v1/index, re-signed on every request) and the key ``statements`` devices apply (/v1/keys)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def guarded(handler, per_task: bool = False):
        """The handler behind the bearer-token check and, for a task's routes, its lookup by name."""

        async def endpoint(request: Request):
            if (refused := _auth_failed(request, token)) is not None:
                return refused
            if not per_task:
                return await handler(request)
            name = request.path_params["name"]
            if not TASK_NAME.match(name) or name not in tasks:
                return JSONResponse({"error": f"no task named {name!r}"}, status_code=404)
            return await handler(request, tasks[name])

        return endpoint

    async def healthz(request: Request):
        return JSONResponse({"ok": True, "tasks": len(tasks)})

    async def list_tasks(request: Request):
        return JSONResponse({"tasks": [t["meta"] for t in tasks.values()]})

    async def task_meta(request: Request, task: dict):
        return JSONResponse({**task["meta"], "header": task["header"]})

    async def task_payload(request: Request, task: dict):
        return _payload_response(request, task)

    async def page(request: Request):
        from .pages import render_page

        return HTMLResponse(render_page(tasks))

    async def picture(request: Request, task: dict):
        kind = request.path_params["kind"]
        data = task.get(kind) if kind in ("sheet", "labels") else None
        if data is None:
            return JSONResponse({"error": "no such picture"}, status_code=404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    routes = [
        Route("/", guarded(page)),
        Route("/healthz", healthz),
        Route("/v1/tasks", guarded(list_tasks)),
        Route("/v1/index", guarded(_index_endpoint(tasks, signer, index_ttl))),
        Route("/v1/keys", guarded(_keys_endpoint(statements))),
        Route("/v1/tasks/{name}", guarded(task_meta, per_task=True)),
        Route("/v1/tasks/{name}/payload", guarded(task_payload, per_task=True)),
        Route("/v1/tasks/{name}/{kind:str}.png", guarded(picture, per_task=True)),
    ]
    return Starlette(routes=routes)


def _index_endpoint(tasks: dict, signer, ttl: int):
    """GET /v1/index: the signed index, signed afresh on each request (404 from a server that signs nothing)."""
    from starlette.responses import JSONResponse

    async def index(request):
        if signer is None:
            return JSONResponse({"error": "this server signs nothing: no index"}, status_code=404)
        return JSONResponse(signed_index(tasks, signer, ttl), headers={"Cache-Control": "no-store"})

    return index


def _keys_endpoint(statements):
    """GET /v1/keys: the key rotations and revocations a device takes into its trust store."""
    from starlette.responses import JSONResponse

    async def keys(request):
        return JSONResponse({"statements": list(statements)})

    return keys


def _auth_failed(request, token: str | None):
    """None when no token is required or the request bears it; else the 401 response."""
    from starlette.responses import JSONResponse

    if not token:
        return None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode()):
        return None
    return JSONResponse(
        {"error": "missing or wrong bearer token"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="plada-edge"'},
    )


def _payload_response(request, task: dict):
    """The payload bytes, immutable by content: 304 for a matching ETag, 206 for one byte range, 416 for a bad one."""
    from starlette.responses import Response

    data, etag = task["data"], f'"{task["meta"]["sha256"]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=31536000, immutable",
        "Accept-Ranges": "bytes",
        "Content-Type": "application/vnd.plada",
    }
    inm = request.headers.get("if-none-match")
    # weak validators (W/"...") match too: If-None-Match uses the weak comparison (RFC 9110 §13.1.2)
    if inm and (inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")]):
        return Response(status_code=304, headers=headers)
    rng = request.headers.get("range")
    if not rng:
        return Response(data, headers=headers)
    m = _RANGE.match(rng.strip())
    total = len(data)
    unsatisfiable = Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{total}"})
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return unsatisfiable
    if m.group(1) == "":  # suffix: the last N bytes
        start, end = max(0, total - int(m.group(2))), total - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
    if start >= total or start > end:
        return unsatisfiable
    partial = {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
    return Response(data[start : end + 1], status_code=206, headers=partial)


def serve(
    task_file: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    build: bool = True,
    device: str | None = None,
    log=_log.info,
) -> None:
    """Build what is missing (on ``device``, default each task's), then serve the published payloads."""
    import uvicorn

    from .tasks import build_tasks, load_task_file

    if build:
        for name, r in build_tasks(task_file, device=device, log=log).items():
            log(f"[{name}] " + ", ".join(f"{k} {v}" for k, v in r["steps"].items()) + f" → {r['bytes']:,} bytes")
    cfg = load_task_file(task_file)
    cache = cfg["cache"]
    token = token or os.environ.get("PLADA_EDGE_TOKEN") or None
    signer = None
    if cfg["signing_key"]:
        from ..core.keys import SigningKey

        signer = SigningKey(cfg["signing_key"])
    statements = [read_statement(p) for p in cfg["statements"]]
    app = create_app(load_published(cache), token, signer, statements, cfg["index_ttl"])
    log(f"serving {cache / PUBLISHED} on http://{host}:{port} ({'token required' if token else 'no token'})")
    uvicorn.run(app, host=host, port=port, access_log=True, log_level="info")
