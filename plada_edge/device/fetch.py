"""Fetching a payload from a plada-edge server (``plada-edge learn http://host:port/v1/tasks/NAME``).

Standard library only (urllib), so a device needs nothing extra. The client:
- reads the task's metadata (size and SHA-256) first and refuses anything over ``max_bytes``;
- downloads with a timeout and retries with exponential backoff, resuming a partial download with
  a Range request (a server that ignores Range restarts it cleanly);
- checks the SHA-256 before decoding, so a corrupted body is refused as a PayloadError;
- sends ``Authorization: Bearer`` when given a token (or PLADA_EDGE_TOKEN is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

from ..core.payload import Payload, PayloadError, decode_payload

DEFAULT_MAX_BYTES = 64 << 20


class FetchError(PayloadError):
    """The payload could not be downloaded intact."""


def _request(url: str, token: str | None, headers: dict | None = None) -> urllib.request.Request:
    req = urllib.request.Request(url, headers=headers or {})
    token = token or os.environ.get("PLADA_EDGE_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return req


def task_metadata(url: str, token: str | None = None, timeout: float = 10.0) -> dict:
    try:
        with urllib.request.urlopen(_request(url.rstrip("/"), token), timeout=timeout) as r:
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
) -> Payload:
    """Download, verify (size, SHA-256) and decode the payload of the task at ``url``."""
    meta = task_metadata(url, token, timeout)
    try:
        size, want = int(meta["bytes"]), str(meta["sha256"])
    except (KeyError, TypeError, ValueError):
        raise FetchError(f"{url}: metadata lacks bytes/sha256") from None
    if size > max_bytes:
        raise FetchError(f"{url}: payload is {size:,} bytes, over the limit of {max_bytes:,}")
    payload_url = url.rstrip("/") + "/payload"
    buf = bytearray()
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        headers = {"Range": f"bytes={len(buf)}-"} if buf else {}
        try:
            with urllib.request.urlopen(_request(payload_url, token, headers), timeout=timeout) as r:
                if buf and r.status != 206:  # the server ignored Range: start over
                    buf.clear()
                while chunk := r.read(1 << 16):
                    buf.extend(chunk)
                    if len(buf) > max_bytes or len(buf) > size:
                        raise FetchError(f"{payload_url}: body is larger than the announced {size:,} bytes")
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
    return decode_payload(bytes(buf))
