"""Fetching a payload from a plada-edge server (``plada-edge learn http://host:port/v1/tasks/NAME``).

Standard library only (urllib), so a device needs nothing extra. The client:
- reads the task's metadata (size and SHA-256) first and refuses anything over ``max_bytes``;
- downloads with a per-read timeout, an overall ``deadline`` (a server that drips one byte at a
  time cannot hold the device) and a size cap, and retries with exponential backoff and jitter,
  resuming a partial download with a Range request (a server that ignores Range restarts it);
- checks the SHA-256 before decoding, so a corrupted body is refused as a PayloadError; with a
  trusted key it also refuses anything that key did not sign;
- sends ``Authorization: Bearer`` when given a token (or PLADA_EDGE_TOKEN is set), and never
  along a redirect to another origin.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request

from ..core.payload import Payload, PayloadError, decode_payload

DEFAULT_MAX_BYTES = 64 << 20


class FetchError(PayloadError):
    """The payload could not be downloaded intact."""


def check_url(url: str) -> None:
    """Refuse a malformed task URL in one line before any network work."""
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018  (parsing the port is what raises for a bad one)
    except ValueError as exc:
        raise FetchError(f"{url}: not a valid URL ({exc})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise FetchError(f"{url}: not a valid URL (expected http(s)://HOST[:PORT]/v1/tasks/NAME)")


def _origin(url: str) -> tuple:
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.hostname, u.port or {"http": 80, "https": 443}.get(u.scheme)


class _SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but drop the bearer token when one leads to another origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameOriginCredentials)


def _open(req: urllib.request.Request, timeout: float):
    return _OPENER.open(req, timeout=timeout)


def _request(url: str, token: str | None, headers: dict | None = None) -> urllib.request.Request:
    req = urllib.request.Request(url, headers=headers or {})
    token = token or os.environ.get("PLADA_EDGE_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return req


def task_metadata(url: str, token: str | None = None, timeout: float = 10.0) -> dict:
    try:
        with _open(_request(url.rstrip("/"), token), timeout) as r:
            return json.loads(r.read(1 << 20))
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"{url}: cannot read task metadata ({exc})") from None


def fetch_payload(
    url: str,
    token: str | None = None,
    timeout: float = 10.0,
    retries: int = 5,
    backoff: float = 0.5,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float = 300.0,
    trusted: bytes | None = None,
) -> Payload:
    """Download, verify (size, SHA-256, and the signature when ``trusted``) and decode the task's payload.

    ``timeout`` bounds each network wait, ``deadline`` the whole download, retries included.
    """
    check_url(url)
    t_end = time.monotonic() + deadline

    def left() -> float:
        remaining = t_end - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"{url}: no complete payload within the {deadline:g} s deadline")
        return min(timeout, remaining)

    meta = task_metadata(url, token, left())
    try:
        size, want = int(meta["bytes"]), str(meta["sha256"])
    except (KeyError, TypeError, ValueError):
        raise FetchError(f"{url}: metadata lacks bytes/sha256") from None
    if size > max_bytes:
        raise FetchError(f"{url}: payload is {size:,} bytes, over the limit of {max_bytes:,}")
    if size <= 0:
        raise FetchError(f"{url}: the server announces an empty payload ({size} bytes)")
    payload_url = url.rstrip("/") + "/payload"
    buf = bytearray()
    last_error = None
    for attempt in range(retries + 1):
        if attempt:  # exponential backoff with jitter, so many devices do not retry in lockstep
            time.sleep(min(backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5), max(0.0, left())))
        headers = {"Range": f"bytes={len(buf)}-"} if buf else {}
        try:
            with _open(_request(payload_url, token, headers), left()) as r:
                if buf and r.status != 206:  # the server ignored Range: start over
                    buf.clear()
                while chunk := r.read1(1 << 16):  # what has arrived, not a fixed amount: a drip cannot stall us
                    buf.extend(chunk)
                    if len(buf) > size:
                        raise FetchError(f"{payload_url}: body is larger than the announced {size:,} bytes")
                    left()
            if len(buf) == size:
                break
            last_error = f"short read ({len(buf)} of {size} bytes)"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                raise FetchError(f"{payload_url}: HTTP {exc.code} {exc.reason}") from None
            last_error = f"HTTP {exc.code}"
            if exc.code == 416:
                buf.clear()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last_error = str(exc)
    else:
        raise FetchError(f"{payload_url}: giving up after {retries + 1} attempts ({last_error})")
    got = hashlib.sha256(buf).hexdigest()
    if got != want:
        raise FetchError(
            f"{payload_url}: downloaded bytes hash to {got[:16]}…, the server announced {want[:16]}…: "
            "corrupted in transit or by the server"
        )
    return decode_payload(bytes(buf), trusted)


def task_name(url: str) -> str:
    """NAME of http(s)://HOST/v1/tasks/NAME: the task a device asks for (its signed name must match)."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    head, _, name = path.rpartition("/")
    if not head.endswith("/v1/tasks") or not name:
        raise FetchError(f"{url}: not a task URL (expected http(s)://HOST[:PORT]/v1/tasks/NAME)")
    return urllib.parse.unquote(name)


def _server_json(url: str, token: str | None, timeout: float, missing: str | None):
    """A small JSON document the server publishes; on 404, TrustError ``missing`` (None: an empty document)."""
    from ..core.errors import TrustError

    try:
        with _open(_request(url, token), timeout) as r:
            return json.loads(r.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            if missing is None:
                return {}
            raise TrustError(missing) from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"{url}: cannot read it ({exc})") from None


def fetch_trusted(
    url: str,
    root: bytes,
    store,
    token: str | None = None,
    allow_rollback: bool = False,
    timeout: float = 10.0,
    **fetch_options,
) -> Payload:
    """``fetch_payload`` for a device that trusts ``root``: first the server's key statements (rotations,
    revocations) and its signed index, then the payload, which must be the release the index lists for the task
    the URL names; the trust store (plada_edge.device.trust) then admits it or refuses it, naming the rule."""
    from ..core.errors import TrustError
    from ..core.keys import key_id

    check_url(url)
    name = task_name(url)
    base = url.rstrip("/").rsplit("/v1/tasks/", 1)[0]
    for statement in _server_json(f"{base}/v1/keys", token, timeout, None).get("statements", [])[:64]:
        try:
            store.apply(statement, root)
        except TrustError:
            pass  # one this device already holds, or one not for its root: the index and payload checks decide
    no_index = (
        f"refused (no index): the server publishes no signed index, so this device cannot tell whether task "
        f"'{name}' is its newest release"
    )
    index = _server_json(f"{base}/v1/index", token, timeout, no_index)
    listed = store.admit_index(index, root).get(name)
    if listed is None:
        raise TrustError(
            f"refused (wrong task): the signed index of key {key_id(root)}'s server lists no task '{name}'"
        )
    payload = fetch_payload(url, token=token, timeout=timeout, **fetch_options)
    if payload.sha256 != listed["sha256"]:
        raise TrustError(
            f"refused (not in the index): the payload served as '{name}' is not release {listed['version']}, "
            "the one the signed index lists"
        )
    store.admit(payload, root, task=name, allow_rollback=allow_rollback)
    return payload
