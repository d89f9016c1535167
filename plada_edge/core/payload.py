"""The ``.plada`` payload: a task, shipped as (reference index, hard label) pairs (paper §3.3).

Version 2 (docs/payload-format.md is the specification), in order:

    magic        6 bytes   b"PLADA\\x00"
    version      u8        2
    flags        u8        bit 0: signed (Ed25519) instead of checksummed; bit 1: meta is zstd-compressed
    n, k, C      varints   pack size N, pairs k, classes C
    codec        u8        0 model, 1 paper-idx, 2 paper-bmp, 3 varint
    image_size   varint    side of the pack's square images
    fingerprint  32 bytes  the reference pack's SHA-256 fingerprint, raw
    meta         varint length + bytes: task, class names, sensor view, selection, teacher, target
    body         varint length + bytes: the codec's encoding of the selection
    trailer      checksum: the first 4 bytes of SHA-256(everything above); or, signed:
                 the signer's 32-byte public key + a 64-byte Ed25519 signature of everything above

Version 3 is version 2 with the selection's target quotas (a flag bit and their power) and typed extension
fields (an odd tag is critical: unknown, the payload is refused). A writer uses the oldest version that
holds its header (``needed_version``). Version 1 (a JSON header and a 32-byte SHA-256) stays readable,
and writable with ``version=1``.

Reading is bounded: every header number is checked against hard limits and against the bytes that
are actually there before anything is allocated from it, the trailer is verified before the meta
or the body is parsed, and decoding costs O(body + k). Everything wrong is one ``PayloadError``.
Writing is atomic. A device never trains on a payload made for another pack (``check_pack``), and
with a trusted key (``learn --trust``) never on one that key did not sign.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .codecs import CodecError, encode_auto, get_codec, list_codecs
from .errors import PayloadError
from .view import FRAMES, IMAGENET_MEAN, IMAGENET_STD

MAGIC = b"PLADA\x00"
VERSION = 3  # the newest this reader knows; a writer uses the oldest that holds the header (needed_version)
BINARY_VERSIONS = (2, 3)  # v3 = v2 + the plan's target quotas in the selection, and typed extension fields
QUOTAS_TARGET_BIT = 4  # v3 selection flag: the Safety-Net's quotas follow the target (its power follows)
FIELD_RELEASE = 1  # v3 field (critical): the task's release, {"version": n, "expires": unix seconds or None}
FIELD_FORECAST = 2  # v3 field (informative): the student accuracy the server forecast, with its interval
FIELD_SOFT = 3  # v3 field (critical): per kept image, the teacher's runner-up class and quantised confidence
MAX_RELEASE_VERSION = (1 << 53) - 1  # JSON-safe integers
FLAG_SIGNED, FLAG_META_ZSTD = 1, 2
CHECKSUM_BYTES = 4  # catches accidents; authenticity is the signature's job
SIGNATURE_TRAILER = 32 + 64  # the signer's Ed25519 public key + the signature
CODEC_IDS = ("model", "paper-idx", "paper-bmp", "varint")  # v2 codec numbers: append only
STRATEGY_IDS = ("", "energy", "opposite", "entropy", "random")  # v2 strategy numbers: append only
INK_FRAME_BIT = 0x80  # view flag: frame "ink" (absent in payloads written before it: frame "none")
NORMS = {1: (IMAGENET_MEAN, IMAGENET_STD), 2: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}  # v2 view normalisations
NO_ACC = 0xFFFF
REQUIRED = ("task", "class_names", "pack_fingerprint", "n", "k", "codec", "image_size")
V2_FIELDS = frozenset(
    {*REQUIRED, "format_version", "view", "selection", "teacher", "target", "release", "forecast", "soft"}
)
# hard limits: a reader allocates nothing from a header number before checking it against these
MAX_N = 1 << 28  # reference images (ImageNet-21K has 14.2M)
MAX_C = 1 << 24
MAX_NAME, MAX_CLASS_NAME = 256, 1024
MAX_META = 4 << 20  # bytes of header/meta (21,841 class names take ~0.3 MB)
MAX_EXTRA = 64 << 10
MAX_BODY = 256 << 20
MAX_PAYLOAD = MAX_META + MAX_BODY + 1024
MAX_K_PER_BODY_BYTE, FREE_K = 16, 4096  # a body holds at most 16 pairs per byte (+4096): keeps >= 1/2 bit per pair


@dataclass(frozen=True)
class SoftLabels:
    """A soft target per kept image, in index order: the teacher's runner-up class and the top class's share of
    the top two (in [0.5, 1]), quantised to ``bits`` bits. The target is that share on the hard label and the
    rest on the runner-up (learn trains on it beside the hard label, plada_edge.core.train)."""

    runner_up: np.ndarray  # int64 (k,)
    confidence: np.ndarray  # float32 (k,), in [0.5, 1]
    bits: int

    @staticmethod
    def quantise(confidence, bits: int) -> np.ndarray:
        top = (1 << bits) - 1
        return np.clip(np.rint((np.asarray(confidence, np.float64) - 0.5) * 2 * top), 0, top).astype(np.uint8)

    @classmethod
    def of(cls, runner_up, confidence, bits: int) -> SoftLabels:
        """Soft labels as a payload carries them: the confidence rounded to its ``bits``-bit grid."""
        if not 1 <= bits <= 8:
            raise PayloadError(f"soft labels take 1 to 8 bits, got {bits}")
        q = cls.quantise(confidence, bits)
        return cls(np.asarray(runner_up, np.int64), (0.5 + q / (2 * ((1 << bits) - 1))).astype(np.float32), bits)

    def pack(self, num_classes: int) -> bytes:
        import zstandard

        wide = num_classes > 256
        runner = self.runner_up.astype("<u2" if wide else np.uint8).tobytes()
        raw = runner + self.quantise(self.confidence, self.bits).tobytes()
        return bytes([self.bits]) + zstandard.ZstdCompressor(level=19).compress(raw)

    @classmethod
    def unpack(cls, blob: bytes, k: int, num_classes: int) -> SoftLabels:
        from .codecs import decompress_bounded

        if not blob or not 1 <= blob[0] <= 8:
            raise PayloadError("meta: soft labels with an invalid bit width")
        bits, width = blob[0], 2 if num_classes > 256 else 1
        try:
            raw = decompress_bounded(blob[1:], k * (width + 1))
        except CodecError as exc:
            raise PayloadError(f"meta: soft labels: {exc}") from None
        if len(raw) != k * (width + 1):
            raise PayloadError(f"meta: soft labels hold {len(raw)} bytes, {k} images need {k * (width + 1)}")
        runner = np.frombuffer(raw[: k * width], "<u2" if width == 2 else np.uint8).astype(np.int64)
        q = np.frombuffer(raw[k * width :], np.uint8)
        top = (1 << bits) - 1
        if len(runner) and runner.max() >= num_classes or (q > top).any():
            raise PayloadError("meta: soft labels name a class or a confidence out of range")
        return cls(runner, (0.5 + q / (2 * top)).astype(np.float32), bits)


@dataclass
class Payload:
    header: dict
    indices: np.ndarray  # int64, strictly increasing, < n
    labels: np.ndarray  # int64, < num_classes
    body_bytes: int = 0
    total_bytes: int = 0
    sha256: str = ""
    format_version: int = 2
    signer: bytes | None = None  # the Ed25519 public key that signed it (verified), or None
    header_bytes: int = 0  # bytes before the body
    trailer_bytes: int = 0  # checksum or public key + signature
    soft: SoftLabels | None = None  # per kept image, when the payload carries soft labels (v3 field 3)

    @property
    def signer_id(self) -> str | None:
        from .keys import key_id

        return key_id(self.signer) if self.signer else None

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


def encode_payload(
    indices,
    labels,
    header: dict,
    codec: str = "auto",
    version: int | None = None,
    signer=None,
    soft: SoftLabels | None = None,
) -> bytes:
    """Serialise a selection: format ``version`` 2 or 3 (None: the oldest that holds this header, so payloads
    readable by older devices stay so), or 1 for old readers.

    ``header`` needs task, class_names, pack_fingerprint, n and image_size; view, selection,
    teacher and target are carried when present (v2 packs them in binary, other keys as JSON).
    ``signer`` (a plada_edge.core.keys.SigningKey) signs a v2 payload instead of checksumming it.
    ``soft`` (SoftLabels, one per index) adds the soft labels (version 3's critical field 3).
    The writer refuses anything the reader would refuse.
    """
    idx = np.asarray(indices, np.int64)
    lab = np.asarray(labels, np.int64)
    if idx.ndim != 1 or lab.shape != idx.shape:
        raise PayloadError("indices and labels must be 1-D arrays of equal length")
    if soft is not None:
        if len(soft.runner_up) != len(idx) or len(soft.confidence) != len(idx):
            raise PayloadError(f"soft labels for {len(soft.runner_up)} images, but {len(idx)} indices")
        header = {**header, "soft": {"bits": soft.bits}}
    version = needed_version(header) if version is None else version
    head = dict(header, k=int(len(idx)), codec="model" if codec == "auto" else codec, format_version=version)
    check_header(head)
    n, c = head["n"], len(head["class_names"])
    if len(idx) and (idx[0] < 0 or idx[-1] >= n or (np.diff(idx) <= 0).any()):
        raise PayloadError("indices must be strictly increasing and in [0, N)")
    if len(lab) and (lab.min() < 0 or lab.max() >= c):
        raise PayloadError(f"labels must be in [0, {c})")
    if codec == "auto":
        codec, body = encode_auto(idx, lab, n, c)
    else:
        body = get_codec(codec).encode(idx, lab, n, c)
    head["codec"] = codec
    _check_density(len(idx), len(body))
    if version == 1:
        if signer is not None:
            raise PayloadError("version 1 payloads cannot be signed; write version 2")
        hbytes = json.dumps(head, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        blob = MAGIC + struct.pack("<HI", 1, len(hbytes)) + hbytes + struct.pack("<Q", len(body)) + body
        return blob + hashlib.sha256(blob).digest()
    if version not in BINARY_VERSIONS:
        raise PayloadError(f"cannot write payload version {version} (versions 1, 2 and 3 exist)")
    if version < needed_version(head):
        raise PayloadError(
            f"this header needs payload version {needed_version(head)} (target quotas or a release); "
            "version 2 cannot say so"
        )
    extra = [(FIELD_SOFT, soft.pack(c))] if soft is not None else []
    meta = _pack_meta(head, version, extra)
    packed = _zstd_small(meta)
    flags = (FLAG_SIGNED if signer is not None else 0) | (FLAG_META_ZSTD if len(packed) < len(meta) else 0)
    if flags & FLAG_META_ZSTD:
        meta = packed
    w = _Writer()
    w.raw(MAGIC)
    w.u8(version)
    w.u8(flags)
    for value in (n, len(idx), c):
        w.varint(value)
    w.u8(CODEC_IDS.index(codec))
    w.varint(head["image_size"])
    w.raw(bytes.fromhex(head["pack_fingerprint"]))
    w.blob(meta)
    w.blob(body)
    signed = bytes(w.out)
    if signer is None:
        return signed + hashlib.sha256(signed).digest()[:CHECKSUM_BYTES]
    return signed + signer.public + signer.sign(signed)


def write_payload(
    path: str | os.PathLike,
    indices,
    labels,
    header: dict,
    codec: str = "auto",
    version: int | None = None,
    signer=None,
    soft: SoftLabels | None = None,
) -> Payload:
    """``encode_payload`` written atomically to ``path``; the Payload as a reader sees it."""
    data = encode_payload(indices, labels, header, codec, version, signer, soft)
    atomic.write_bytes(path, data)
    return decode_payload(data)


def decode_payload(data: bytes, trusted: bytes | None = None) -> Payload:
    """Parse and fully validate payload bytes; PayloadError says what is wrong.

    ``trusted``: a raw Ed25519 public key; when given, anything not signed by it is refused.
    """
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC:
        raise PayloadError("not a plada payload (bad magic)")
    if len(data) < len(MAGIC) + 2:
        raise PayloadError("payload truncated inside its fixed header")
    version = data[len(MAGIC)]
    if version == 1 and data[len(MAGIC) + 1] == 0:
        header, body, body_at, signer = _parse_v1(data)
    elif version in BINARY_VERSIONS:
        header, body, body_at, signer = _parse_v2(data, version)
    else:
        raise PayloadError(
            f"unsupported payload version {version} (this reader knows 1 to {VERSION}): update plada-edge to read it"
        )
    from .keys import require_trusted

    require_trusted(signer, trusted)
    n, k, c = header["n"], header["k"], len(header["class_names"])
    _check_density(k, len(body))
    try:
        idx, lab = get_codec(header["codec"]).decode(body, n, c, k)
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
    blob = header.pop("_soft_blob", None)
    soft = SoftLabels.unpack(blob, k, c) if blob is not None else None
    return Payload(
        header,
        idx,
        lab,
        body_bytes=len(body),
        total_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        format_version=version,
        signer=signer,
        header_bytes=body_at,
        trailer_bytes=len(data) - body_at - len(body),
        soft=soft,
    )


def read_payload(path: str | os.PathLike, trusted: bytes | None = None) -> Payload:
    """Read and verify a .plada file (bounded reads, checksum or signature); ``trusted``: refuse unless that
    Ed25519 public key signed it. PayloadError on anything damaged, foreign or unsigned."""
    path = Path(path)
    if path.is_dir():
        raise PayloadError(f"{path} is a directory, not a payload file")
    if not path.is_file():
        raise PayloadError(f"payload file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_PAYLOAD:
        raise PayloadError(f"{path} is {size:,} bytes, over the {MAX_PAYLOAD:,}-byte limit for a payload")
    return decode_payload(path.read_bytes(), trusted)


# --- validation ----------------------------------------------------------------------------------------------


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise PayloadError(f"header: {message}")


def check_header(h) -> None:
    """Strict types and ranges for every field a reader relies on (both versions)."""
    _need(isinstance(h, dict), "not an object")
    missing = [key for key in REQUIRED if key not in h]
    _need(not missing, f"lacks {missing}")
    _need(isinstance(h["task"], str) and 0 < len(h["task"]) <= MAX_NAME, "task must be a name of 1-256 characters")
    names = h["class_names"]
    _need(isinstance(names, list) and 1 <= len(names) <= MAX_C, f"class_names must be a list of 1..{MAX_C:,} names")
    _need(all(isinstance(x, str) and len(x) <= MAX_CLASS_NAME for x in names), "class names must be short strings")
    fp = h["pack_fingerprint"]
    _need(
        isinstance(fp, str) and len(fp) == 64 and all(ch in "0123456789abcdef" for ch in fp),
        "pack_fingerprint must be 64 lowercase hex digits",
    )
    _need(_is_int(h["n"]) and 1 <= h["n"] <= MAX_N, f"n must be a whole number in 1..{MAX_N:,}")
    _need(_is_int(h["k"]) and 0 <= h["k"] <= h["n"], f"k = {h['k']!r} is not within [0, N = {h['n']}]")
    _need(
        isinstance(h["codec"], str) and h["codec"] in list_codecs(),
        f"unknown codec {h['codec']!r} (this reader knows {', '.join(list_codecs())})",
    )
    _need(_is_int(h["image_size"]) and 1 <= h["image_size"] <= 4096, "image_size must be 1..4096")
    view = h.get("view")
    if view is not None:
        _need(isinstance(view, dict), "view must be an object")
        _need(
            all(_is_int(view.get(key)) and 1 <= view[key] <= 4096 for key in ("native_size", "model_size")),
            "view sizes must be 1..4096",
        )
        _need(isinstance(view.get("gray", False), bool), "view.gray must be true or false")
        for key in ("mean", "std"):
            v = view.get(key)
            _need(isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v), f"view.{key} must be 3 numbers")
        _need(all(x > 0 for x in view["std"]), "view.std must be positive")
        _need(view.get("frame", "none") in FRAMES, f"view.frame must be one of {', '.join(FRAMES)}")
        _need(view.get("frame", "none") == "none" or view.get("gray", False), "view.frame 'ink' needs a gray view")
    for key in ("selection", "teacher", "target"):
        _need(h.get(key) is None or isinstance(h[key], dict), f"{key} must be an object")
    acc = (h.get("teacher") or {}).get("test_acc")
    _need(acc is None or (_is_num(acc) and 0 <= acc <= 1), "teacher.test_acc must be a number in [0, 1] or null")
    release = h.get("release")
    if release is not None:
        _need(isinstance(release, dict), "release must be an object")
        ver, exp = release.get("version"), release.get("expires")
        _need(_is_int(ver) and 1 <= ver <= MAX_RELEASE_VERSION, "release.version must be a whole number >= 1")
        _need(exp is None or (_is_int(exp) and 1 <= exp <= MAX_RELEASE_VERSION), "release.expires must be a time")
    forecast = h.get("forecast")
    if forecast is not None:
        _need(isinstance(forecast, dict), "forecast must be an object")
        _need(all(_is_num(forecast.get(k)) and 0 <= forecast[k] <= 1 for k in ("accuracy", "low", "high")),
              "forecast accuracy, low and high must be in [0, 1]")  # fmt: skip
        _need(_is_int(forecast.get("images")) and forecast["images"] >= 0, "forecast.images must be a count")


def _check_density(k: int, body_len: int) -> None:
    if k > MAX_K_PER_BODY_BYTE * body_len + FREE_K:
        raise PayloadError(
            f"{k:,} pairs in a {body_len:,}-byte body is denser than the format allows "
            f"(at most {MAX_K_PER_BODY_BYTE} per body byte + {FREE_K:,}); keep fewer images"
        )


# --- version 1: JSON header ---------------------------------------------------------------------------------


def _parse_v1(data: bytes):
    fixed = len(MAGIC) + 6
    if len(data) < fixed:
        raise PayloadError("payload truncated inside its fixed header")
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC) + 2)
    if hlen > MAX_META:
        raise PayloadError(f"header length {hlen:,} is over the {MAX_META:,}-byte limit")
    body_at = fixed + hlen + 8
    if len(data) < body_at + 32:
        raise PayloadError(f"payload truncated: {len(data)} bytes, the header alone needs {body_at + 32}")
    (blen,) = struct.unpack_from("<Q", data, fixed + hlen)
    end = body_at + blen
    if len(data) < end + 32:
        raise PayloadError(f"payload truncated: {len(data)} bytes, header and body need {end + 32}")
    if len(data) > end + 32:
        raise PayloadError(f"payload has {len(data) - end - 32} unexpected trailing bytes")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise PayloadError("checksum mismatch: the payload was corrupted or altered")
    try:
        header = json.loads(data[fixed : fixed + hlen], parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"header is not valid JSON ({exc})") from None
    check_header(header)
    return header, data[body_at:end], body_at, None


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number a payload may hold")


# --- version 2: binary header -------------------------------------------------------------------------------


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def raw(self, b: bytes) -> None:
        self.out += b

    def u8(self, v: int) -> None:
        self.out.append(v)

    def varint(self, v: int) -> None:
        while True:
            byte, v = v & 0x7F, v >> 7
            self.out.append(byte | (0x80 if v else 0))
            if not v:
                return

    def blob(self, b: bytes) -> None:
        self.varint(len(b))
        self.out += b

    def text(self, s: str) -> None:
        self.blob(s.encode())

    def f32(self, x: float) -> None:
        self.out += struct.pack("<f", x)


class _Reader:
    """Bounded reads: every length is checked against the bytes that are there, every number against a limit."""

    def __init__(self, data: bytes, end: int | None = None, what: str = "header"):
        self.data, self.pos, self.end, self.what = data, 0, len(data) if end is None else end, what

    def take(self, size: int) -> bytes:
        if size > self.end - self.pos:
            raise PayloadError(f"payload truncated inside its {self.what}")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self, limit: int, name: str) -> int:
        value = shift = 0
        for i in range(10):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and i:
                    raise PayloadError(f"{self.what}: {name} is not minimally encoded")
                if value > limit:
                    raise PayloadError(f"{self.what}: {name} = {value:,} is over the limit of {limit:,}")
                return value
        raise PayloadError(f"{self.what}: {name} is not a valid varint")

    def blob(self, limit: int, name: str) -> bytes:
        return self.take(self.varint(limit, f"{name} length"))

    def text(self, limit: int, name: str) -> str:
        try:
            return self.blob(limit, name).decode()
        except UnicodeDecodeError:
            raise PayloadError(f"{self.what}: {name} is not UTF-8") from None

    def f32(self) -> float:
        return float(f"{struct.unpack('<f', self.take(4))[0]:.6g}")  # as written, not 0.20000000298


def _zstd_small(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19, write_content_size=True, write_checksum=False).compress(raw)


def needed_version(header: dict) -> int:
    """The oldest binary version that holds ``header``: 3 when its selection's quotas follow the target or it
    carries a release (version and expiry)."""
    net = (header.get("selection") or {}).get("safety_net") or {}
    extended = any(header.get(key) is not None for key in ("release", "forecast", "soft"))
    return 3 if net.get("quotas") == "target" or extended else 2


def _pack_view(w: _Writer, view: dict | None) -> None:
    if view is None:
        w.u8(0)
        return
    pairs = {i: [list(mean), list(std)] for i, (mean, std) in NORMS.items()}
    norm = next((i for i, pair in pairs.items() if pair == [view["mean"], view["std"]]), 0)
    w.u8(1 | (2 if view.get("gray") else 0) | norm << 2 | (INK_FRAME_BIT if view.get("frame") == "ink" else 0))
    w.varint(view["native_size"])
    w.varint(view["model_size"])
    if norm == 0:
        for x in (*view["mean"], *view["std"]):
            w.f32(x)


def _pack_selection(w: _Writer, sel: dict | None, version: int) -> None:
    if sel is None:
        w.u8(0)
        return
    net = sel.get("safety_net")
    by_target = version >= 3 and bool(net) and net.get("quotas") == "target"
    w.u8(1 | (2 if net else 0) | (QUOTAS_TARGET_BIT if by_target else 0))
    strategy = str(sel.get("strategy", ""))
    w.u8(STRATEGY_IDS.index(strategy) if strategy in STRATEGY_IDS else 255)
    if strategy not in STRATEGY_IDS:
        w.text(strategy)
    w.varint(int(sel.get("budget") or 0))
    if net:
        w.f32(net.get("alpha", 0.0))
        w.f32(net.get("share", 0.0))
    if by_target:
        w.f32(float(net.get("target_power", 1.0)))
    w.f32(float(sel.get("spread", 1.0)))


def _fields(h: dict) -> list[tuple[int, bytes]]:
    """The v3 extension fields this header needs: (tag, value) each."""
    fields = []
    release = h.get("release")
    if release is not None:
        value = _Writer()
        value.varint(int(release["version"]))
        value.varint(int(release.get("expires") or 0))
        fields.append((FIELD_RELEASE, bytes(value.out)))
    forecast = h.get("forecast")
    if forecast is not None:
        value = _Writer()
        for key in ("accuracy", "low", "high"):
            value.varint(int(round(forecast[key] * 10_000)))
        value.varint(int(forecast["images"]))
        fields.append((FIELD_FORECAST, bytes(value.out)))
    return fields


def _pack_meta(h: dict, version: int = 2, extra_fields: list | None = None) -> bytes:
    w = _Writer()
    w.text(h["task"])
    for name in h["class_names"]:
        w.text(name)
    _pack_view(w, h.get("view"))
    _pack_selection(w, h.get("selection"), version)
    teacher = h.get("teacher") or {}
    w.text(str(teacher.get("arch") or ""))
    acc = teacher.get("test_acc")
    w.varint(NO_ACC if acc is None else int(round(acc * 10_000)))
    sha = teacher.get("sha256") or ""
    w.blob(bytes.fromhex(sha)[:8] if sha else b"")
    target_name = (h.get("target") or {}).get("name") or h["task"]
    w.text("" if target_name == h["task"] else str(target_name))
    extra = {key: v for key, v in h.items() if key not in V2_FIELDS}
    w.blob(json.dumps(extra, sort_keys=True, separators=(",", ":"), allow_nan=False).encode() if extra else b"")
    if version >= 3:
        fields = _fields(h) + list(extra_fields or [])
        w.varint(len(fields))
        for tag, value in fields:
            w.varint(tag)
            w.blob(value)
    return bytes(w.out)


def _unpack_meta(meta: bytes, h: dict, version: int = 2) -> None:
    r = _Reader(meta, what="meta")
    h["task"] = r.text(MAX_NAME, "task")
    h["class_names"] = [r.text(MAX_CLASS_NAME, "class name") for _ in range(h.pop("_c"))]
    view = _unpack_view(r)
    if view is not None:
        h["view"] = view
    selection = _unpack_selection(r, h["k"] / h["n"], version)
    if selection is not None:
        h["selection"] = selection
    arch = r.text(MAX_NAME, "teacher.arch")
    acc = r.varint(NO_ACC, "teacher.test_acc")
    sha = r.blob(8, "teacher.sha256")
    if arch or acc != NO_ACC or sha:
        h["teacher"] = {
            "arch": arch or None,
            "test_acc": None if acc == NO_ACC else acc / 10_000,
            "sha256_prefix": sha.hex() or None,
        }
    name = r.text(MAX_NAME, "target") or h["task"]
    h["target"] = {"name": name}
    if "view" in h:
        h["target"].update(native_size=h["view"]["native_size"], channels=1 if h["view"]["gray"] else 3)
    extra = r.blob(MAX_EXTRA, "extra")
    if extra:
        try:
            more = json.loads(extra, parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"meta: extra fields are not valid JSON ({exc})") from None
        if not isinstance(more, dict) or set(more) & V2_FIELDS:
            raise PayloadError("meta: extra fields must be an object of other keys")
        h.update(more)
    if version >= 3:
        _unpack_fields(r, h)
    if r.pos != len(meta):
        raise PayloadError(f"meta has {len(meta) - r.pos} unexpected trailing bytes")


def _unpack_view(r: _Reader) -> dict | None:
    flags = r.u8()
    if not flags & 1:
        return None
    norm = (flags & ~INK_FRAME_BIT) >> 2
    view = {
        "native_size": r.varint(4096, "view.native_size"),
        "model_size": r.varint(4096, "view.model_size"),
        "gray": bool(flags & 2),
    }
    if flags & INK_FRAME_BIT:
        view["frame"] = "ink"
    if norm == 0:
        values = [r.f32() for _ in range(6)]
        view["mean"], view["std"] = values[:3], values[3:]
    elif norm in NORMS:
        view["mean"], view["std"] = list(NORMS[norm][0]), list(NORMS[norm][1])
    else:
        raise PayloadError(f"meta: unknown normalisation {norm}")
    return view


def _unpack_selection(r: _Reader, keep: float, version: int) -> dict | None:
    flags = r.u8()
    if flags & ~(1 | 2 | (QUOTAS_TARGET_BIT if version >= 3 else 0)):
        raise PayloadError(f"meta: unknown selection flags {flags:#04x}")
    if not flags & 1:
        return None
    code = r.u8()
    strategy = (
        r.text(MAX_NAME, "strategy") if code == 255 else (STRATEGY_IDS[code] if code < len(STRATEGY_IDS) else None)
    )
    if strategy is None:
        raise PayloadError(f"meta: unknown strategy code {code}")
    sel = {"strategy": strategy, "budget": r.varint(MAX_N, "budget"), "keep": keep}
    sel["safety_net"] = {"alpha": r.f32(), "share": r.f32()} if flags & 2 else None
    if flags & QUOTAS_TARGET_BIT:
        if not flags & 2:
            raise PayloadError("meta: target quotas without a Safety-Net")
        sel["safety_net"].update(quotas="target", target_power=r.f32())
    sel["spread"] = r.f32()
    return sel


MAX_FIELDS = 64


def _unpack_fields(r: _Reader, h: dict) -> None:
    """v3's typed extension fields: (tag varint, value blob) each. An odd tag is critical: a reader that does not
    know it must refuse the payload; an even one only informs and is skipped. Known: FIELD_RELEASE."""
    seen = set()
    for _ in range(r.varint(MAX_FIELDS, "fields")):
        tag = r.varint(1 << 20, "field tag")
        value = r.blob(MAX_META, f"field {tag}")
        if tag in seen:
            raise PayloadError(f"meta: field {tag} appears twice")
        seen.add(tag)
        if tag == FIELD_RELEASE:
            v = _Reader(value, what="release field")
            h["release"] = {
                "version": v.varint(MAX_RELEASE_VERSION, "release.version"),
                "expires": v.varint(MAX_RELEASE_VERSION, "release.expires") or None,
            }
            if v.pos != len(value):
                raise PayloadError("meta: the release field has trailing bytes")
        elif tag == FIELD_SOFT:
            if not value:
                raise PayloadError("meta: an empty soft-label field")
            h["soft"], h["_soft_blob"] = {"bits": value[0]}, value
        elif tag == FIELD_FORECAST:
            v = _Reader(value, what="forecast field")
            got = {key: v.varint(10_000, f"forecast.{key}") / 10_000 for key in ("accuracy", "low", "high")}
            h["forecast"] = {**got, "images": v.varint(MAX_N, "forecast.images")}
            if v.pos != len(value):
                raise PayloadError("meta: the forecast field has trailing bytes")
        elif tag % 2:
            raise PayloadError(
                f"meta: critical field {tag} is not known to this reader (plada-edge {_version()}): update it"
            )


def _version() -> str:
    from .. import __version__

    return __version__


def _parse_v2(data: bytes, version: int = 2):
    from .codecs import decompress_bounded

    r = _Reader(data)
    r.take(len(MAGIC) + 1)
    flags = r.u8()
    if flags & ~(FLAG_SIGNED | FLAG_META_ZSTD):
        raise PayloadError(f"header: unknown flags {flags:#04x}")
    trailer = SIGNATURE_TRAILER if flags & FLAG_SIGNED else CHECKSUM_BYTES
    n = r.varint(MAX_N, "n")
    k = r.varint(n, "k")
    c = r.varint(MAX_C, "classes")
    code = r.u8()
    if code >= len(CODEC_IDS):
        raise PayloadError(f"header: unknown codec {code}")
    image_size = r.varint(4096, "image_size")
    fingerprint = r.take(32).hex()
    meta_len = r.varint(MAX_META, "meta length")
    meta_at = r.pos
    r.take(meta_len)
    body_len = r.varint(MAX_BODY, "body length")
    body_at = r.pos
    end = body_at + body_len
    if end + trailer > len(data):
        raise PayloadError(f"payload truncated: {len(data)} bytes, header, body and trailer need {end + trailer}")
    if end + trailer < len(data):
        raise PayloadError(f"payload has {len(data) - end - trailer} unexpected trailing bytes")
    signer = None
    if flags & FLAG_SIGNED:
        from .keys import PUBLIC_KEY_BYTES, verify

        signer = data[end : end + PUBLIC_KEY_BYTES]
        if not verify(signer, data[end + PUBLIC_KEY_BYTES :], data[:end]):
            raise PayloadError("signature mismatch: the payload was altered after it was signed")
    elif hashlib.sha256(data[:end]).digest()[:CHECKSUM_BYTES] != data[end:]:
        raise PayloadError("checksum mismatch: the payload was corrupted or altered")
    meta = data[meta_at : meta_at + meta_len]
    if flags & FLAG_META_ZSTD:
        try:
            meta = decompress_bounded(meta, MAX_META)
        except CodecError as exc:
            raise PayloadError(f"meta: {exc}") from None
    if c > len(meta):  # every class name costs at least its length byte
        raise PayloadError(f"header: {c:,} classes cannot fit in {len(meta):,} bytes of meta")
    header = {
        "n": n,
        "k": k,
        "_c": c,
        "codec": CODEC_IDS[code],
        "image_size": image_size,
        "pack_fingerprint": fingerprint,
        "format_version": version,
    }
    _unpack_meta(meta, header, version)
    check_header(header)
    return header, data[body_at:end], body_at, signer


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


def inspect_payload(path: str | os.PathLike, trusted: bytes | None = None) -> dict:
    """What a payload holds and how close its size is to the information floor."""
    p = read_payload(path, trusted)
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
        "header_bytes": p.header_bytes,
        "trailer_bytes": p.trailer_bytes,
        "format_version": p.format_version,
        "signed_by": p.signer_id,
        "bits_per_image": bits / p.k if p.k else None,
        "body_bits_per_image": p.body_bytes * 8 / p.k if p.k else None,
        "floor_bits": floor["total_bits"],
        "floor_bytes": floor["total_bits"] / 8,
        "body_to_floor": (p.body_bytes * 8 / floor["total_bits"]) if floor["total_bits"] else None,
        "label_histogram": np.bincount(p.labels, minlength=p.num_classes).tolist(),
    }
