"""The ``.plada`` payload: a task, shipped as (reference index, hard label) pairs (paper §3.3).

Layout (docs/payload-format.md has the full specification), all integers little-endian:

    magic        6 bytes   b"PLADA\\x00"
    version      u16       1
    header_len   u32       length of the header
    header       JSON      UTF-8, sorted keys (task, classes, pack fingerprint, N, k, codec, ...)
    body_len     u64       length of the body
    body         bytes     the codec's encoding of the selection
    checksum     32 bytes  SHA-256 of everything above

Reading validates everything before returning anything and raises one error type,
``PayloadError``, whose message says what is wrong. Writing is atomic (temp file, rename).
A device never trains on a payload made for another pack: ``check_pack`` compares fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic
from .codecs import CodecError, encode_auto, get_codec, list_codecs
from .errors import PayloadError

MAGIC = b"PLADA\x00"
VERSION = 1
_FIXED = len(MAGIC) + 2 + 4  # magic + version + header_len
MAX_HEADER = 1 << 24  # 16 MiB of JSON is already absurd
REQUIRED = ("task", "class_names", "pack_fingerprint", "n", "k", "codec", "image_size")


@dataclass
class Payload:
    header: dict
    indices: np.ndarray  # int64, strictly increasing, < n
    labels: np.ndarray  # int64, < num_classes
    body_bytes: int = 0
    total_bytes: int = 0
    sha256: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.header["k"])

    @property
    def n(self) -> int:
        return int(self.header["n"])

    @property
    def num_classes(self) -> int:
        return len(self.header["class_names"])

    @property
    def fingerprint(self) -> str:
        return self.header["pack_fingerprint"]

    def check_pack(self, pack) -> None:
        """Refuse a pack other than the one this payload was made for, naming both fingerprints."""
        if pack.fingerprint != self.fingerprint or pack.n != self.n:
            raise PayloadError(
                f"payload '{self.header['task']}' was made for reference pack {self.fingerprint} (N={self.n:,}) "
                f"but this device's pack {pack.path} is {pack.fingerprint} (N={pack.n:,}); refusing to train on "
                "images that would carry the wrong labels"
            )


def encode_payload(indices, labels, header: dict, codec: str = "auto") -> bytes:
    """Serialise a selection. ``header`` needs task, class_names, pack_fingerprint, n, image_size."""
    idx = np.asarray(indices, np.int64)
    lab = np.asarray(labels, np.int64)
    n, c = int(header["n"]), len(header["class_names"])
    if idx.ndim != 1 or lab.shape != idx.shape:
        raise PayloadError("indices and labels must be 1-D arrays of equal length")
    if len(idx) and (idx[0] < 0 or idx[-1] >= n or (np.diff(idx) <= 0).any()):
        raise PayloadError("indices must be strictly increasing and in [0, N)")
    if len(lab) and (lab.min() < 0 or lab.max() >= c):
        raise PayloadError(f"labels must be in [0, {c})")
    if codec == "auto":
        codec, body = encode_auto(idx, lab, n, c)
    else:
        body = get_codec(codec).encode(idx, lab, n, c)
    head = dict(header, k=int(len(idx)), codec=codec, format_version=VERSION)
    missing = [k for k in REQUIRED if k not in head]
    if missing:
        raise PayloadError(f"payload header lacks {missing}")
    hbytes = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    blob = MAGIC + struct.pack("<HI", VERSION, len(hbytes)) + hbytes + struct.pack("<Q", len(body)) + body
    return blob + hashlib.sha256(blob).digest()


def write_payload(path: str | os.PathLike, indices, labels, header: dict, codec: str = "auto") -> Payload:
    data = encode_payload(indices, labels, header, codec)
    atomic.write_bytes(path, data)
    return decode_payload(data)


def decode_payload(data: bytes) -> Payload:
    """Parse and fully validate payload bytes; PayloadError says what is wrong."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise PayloadError("not a plada payload (bad magic)")
    if len(data) < _FIXED:
        raise PayloadError("payload truncated inside its fixed header")
    version, hlen = struct.unpack_from("<HI", data, len(MAGIC))
    if version != VERSION:
        raise PayloadError(f"unsupported payload version {version} (this reader knows {VERSION})")
    if hlen > MAX_HEADER:
        raise PayloadError(f"header length {hlen} is implausible")
    body_at = _FIXED + hlen + 8
    if len(data) < body_at + 32:
        raise PayloadError(f"payload truncated: {len(data)} bytes, the header alone needs {body_at + 32}")
    (blen,) = struct.unpack_from("<Q", data, _FIXED + hlen)
    end = body_at + blen
    if len(data) < end + 32:
        raise PayloadError(f"payload truncated: {len(data)} bytes, header and body need {end + 32}")
    if len(data) > end + 32:
        raise PayloadError(f"payload has {len(data) - end - 32} unexpected trailing bytes")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise PayloadError("checksum mismatch: the payload was corrupted or altered")
    try:
        header = json.loads(data[_FIXED : _FIXED + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise PayloadError("header is not a JSON object")
    missing = [k for k in REQUIRED if k not in header]
    if missing:
        raise PayloadError(f"header lacks {missing}")
    try:
        n, k = int(header["n"]), int(header["k"])
        names = header["class_names"]
        if not isinstance(names, list) or not names:
            raise ValueError("class_names must be a non-empty list")
        c = len(names)
        if not 0 <= k <= n:
            raise ValueError(f"k = {k} is not within [0, N = {n}]")
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"header inconsistent: {exc}") from None
    if header["codec"] not in list_codecs():
        raise PayloadError(f"unknown codec {header['codec']!r} (this reader knows {', '.join(list_codecs())})")
    try:
        idx, lab = get_codec(header["codec"]).decode(data[body_at:end], n, c, k)
    except CodecError as exc:
        raise PayloadError(f"body does not match the header: {exc}") from None
    idx, lab = np.asarray(idx, np.int64), np.asarray(lab, np.int64)
    if len(idx) != k or len(lab) != k:
        raise PayloadError(f"body decodes to {len(idx)} indices and {len(lab)} labels, header says k = {k}")
    if k and (idx[0] < 0 or idx[-1] >= n):
        raise PayloadError(f"indices out of range for N = {n}")
    if k and (np.diff(idx) <= 0).any():
        raise PayloadError("indices are not strictly increasing")
    if k and (lab.min() < 0 or lab.max() >= c):
        bad = int(lab[(lab < 0) | (lab >= c)][0])
        raise PayloadError(f"label {bad} is >= the number of classes ({c})")
    return Payload(header, idx, lab, body_bytes=blen, total_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def read_payload(path: str | os.PathLike) -> Payload:
    path = Path(path)
    if not path.is_file():
        raise PayloadError(f"payload file {path} does not exist")
    return decode_payload(path.read_bytes())


def information_floor_bits(n: int, indices, labels, num_classes: int) -> dict:
    """log2 C(N, k) + k * H(labels): the bits any code needs for a selection drawn uniformly
    at random with labels i.i.d. from their empirical distribution."""
    from math import lgamma, log

    k = len(indices)
    comb = (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)) / log(2) if k else 0.0
    lab = np.asarray(labels, np.int64)
    if k:
        p = np.bincount(lab, minlength=num_classes) / k
        p = p[p > 0]
        h = float(-(p * np.log2(p)).sum())
    else:
        h = 0.0
    return {"index_bits": comb, "label_bits": k * h, "total_bits": comb + k * h}


def inspect_payload(path: str | os.PathLike) -> dict:
    """What a payload holds and how close its size is to the information floor."""
    p = read_payload(path)
    floor = information_floor_bits(p.n, p.indices, p.labels, p.num_classes)
    bits = p.total_bytes * 8
    return {
        "path": str(path),
        "sha256": p.sha256,
        "header": p.header,
        "k": p.k,
        "n": p.n,
        "classes": p.num_classes,
        "bytes": p.total_bytes,
        "body_bytes": p.body_bytes,
        "bits_per_image": bits / p.k if p.k else None,
        "body_bits_per_image": p.body_bytes * 8 / p.k if p.k else None,
        "floor_bits": floor["total_bits"],
        "floor_bytes": floor["total_bits"] / 8,
        "body_to_floor": (p.body_bytes * 8 / floor["total_bits"]) if floor["total_bits"] else None,
        "label_histogram": np.bincount(p.labels, minlength=p.num_classes).tolist(),
    }
