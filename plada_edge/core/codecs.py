"""Payload body codecs (paper §3.3, "compact encoding"): (sorted indices, labels) ↔ bytes.

Registry (``list_codecs()``, ``get_codec(name)``), each an ``encode(indices, labels, n, c) -> bytes``
and ``decode(body, n, c, k) -> (indices, labels)`` pair:

  paper-idx  the paper's "compact Idx": gaps in the smallest unsigned type that holds the largest
             gap, labels in uint8/uint16, then Zstd level 19
  paper-bmp  the paper's "compact Bmp": an N-bit membership mask plus labels, then Zstd-19
  varint     LEB128 gaps plus labels, then Zstd-19
  model      adaptive binary arithmetic coding with context models (csrc/codec.cpp, with a pure
             Python twin in plada_edge.core.model_codec): gap magnitude classes conditioned on the
             previous class, adaptive mantissa bits, labels conditioned on the previous label (or a
             "same label" flag plus an order-0 model when C > 64). It exploits how real reference
             sets are laid out, by class folder: kept indices cluster and labels come in runs.
  auto       encodes with all of the above and keeps the smallest (the container records which)

Gaps: g_0 = indices[0] + 1, g_i = indices[i] - indices[i-1] (all >= 1 for strictly increasing
indices). All decoders validate what they return; the container then re-checks ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .errors import ConfigError, PayloadError
from .twins import label_dtype

ZSTD_LEVEL = 19
ZSTD_MAX_LOG = 20  # window, hash and chain tables: masks up to ~8 Mbit (1 % of ~8M images) compress as before


class CodecError(PayloadError):
    """A body that does not decode to a valid selection."""


class Codec(NamedTuple):
    name: str
    encode: Callable
    decode: Callable
    doc: str


_CODECS: dict[str, Codec] = {}


def register_codec(name: str, doc: str):
    def deco(cls_or_pair):
        enc, dec = cls_or_pair
        _CODECS[name] = Codec(name, enc, dec, doc)
        return cls_or_pair

    return deco


def list_codecs() -> list[str]:
    """The registered payload codecs (``make_payload(codec=...)``; "auto" picks the smallest per payload)."""
    return list(_CODECS)


def get_codec(name: str) -> Codec:
    if name == "auto":
        raise ConfigError("'auto' is resolved by encode_auto, not a codec of its own")
    try:
        return _CODECS[name]
    except KeyError:
        raise ConfigError(f"unknown codec {name!r}; available: {', '.join(list_codecs())}, auto") from None


def _zstd():
    import zstandard

    return zstandard


def _compress(raw: bytes) -> bytes:
    """Zstd at ZSTD_LEVEL with its window and match tables capped at 2^ZSTD_MAX_LOG: level 19 would
    size them to the input (a 33 MiB context for the 1.8 MB mask of a 14.2M pack, 9 MiB capped),
    and a 1 % mask of 14.2M comes out within 1 % of the uncapped size."""
    z = _zstd()
    level = z.ZstdCompressionParameters.from_level(ZSTD_LEVEL, source_size=len(raw))
    params = z.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL,
        source_size=len(raw),
        window_log=min(level.window_log, ZSTD_MAX_LOG),
        hash_log=min(level.hash_log, ZSTD_MAX_LOG),
        chain_log=min(level.chain_log, ZSTD_MAX_LOG),
        write_content_size=1,
        write_checksum=0,
    )
    return z.ZstdCompressor(compression_params=params).compress(raw)


def decompress_bounded(data: bytes, limit: int) -> bytes:
    """Zstd decompression that refuses to expand past ``limit`` bytes (no decompression bombs).

    It streams in 1 MiB steps, so memory follows what the data really holds, never ``limit``.
    """
    import io

    z = _zstd()
    parts, total = [], 0
    try:
        with z.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            while part := reader.read(min(1 << 20, limit + 1 - total)):
                parts.append(part)
                total += len(part)
                if total > limit:
                    raise CodecError(f"data expands past the {limit:,} bytes it may hold")
    except z.ZstdError as exc:
        raise CodecError(f"corrupt zstd data: {exc}") from None
    return b"".join(parts)


def _decompress(body: bytes, limit: int) -> bytes:
    try:
        return decompress_bounded(body, limit)
    except CodecError as exc:
        raise CodecError(f"body: {exc} (a selection of this size needs at most {limit:,})") from None


def gaps_of(indices: np.ndarray) -> np.ndarray:
    idx = np.asarray(indices, np.int64)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    return np.diff(idx, prepend=-1)


def indices_of(gaps: np.ndarray) -> np.ndarray:
    return np.cumsum(gaps.astype(np.int64)) - 1


def uint_for(max_value: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"{max_value} does not fit in 64 bits")


_TAG = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.uint32): 4, np.dtype(np.uint64): 8}
_UNTAG = {v: k for k, v in _TAG.items()}


def _labels_bytes(labels: np.ndarray, c: int) -> bytes:
    return np.asarray(labels).astype(label_dtype(c).newbyteorder("<")).tobytes()


def _labels_from(raw: bytes, c: int, k: int) -> np.ndarray:
    dt = label_dtype(c).newbyteorder("<")
    if len(raw) != k * dt.itemsize:
        raise CodecError(f"label block holds {len(raw)} bytes, {k} labels of {dt.itemsize} bytes expected")
    return np.frombuffer(raw, dt).astype(np.int64)


# --- paper-idx ---------------------------------------------------------------------------------
def _idx_encode(indices, labels, n, c) -> bytes:
    g = gaps_of(indices)
    dt = uint_for(int(g.max()) if len(g) else 0)
    return _compress(bytes([_TAG[dt]]) + g.astype(dt.newbyteorder("<")).tobytes() + _labels_bytes(labels, c))


def _idx_decode(body, n, c, k):
    raw = _decompress(body, 1 + k * (8 + label_dtype(c).itemsize))
    if not raw or raw[0] not in _UNTAG:
        raise CodecError("paper-idx body lacks its gap-type byte")
    dt = _UNTAG[raw[0]].newbyteorder("<")
    split = 1 + k * dt.itemsize
    if len(raw) < split:
        raise CodecError("paper-idx body is shorter than its gaps")
    return indices_of(np.frombuffer(raw[1:split], dt)), _labels_from(raw[split:], c, k)


register_codec("paper-idx", "paper's compact Idx: smallest-dtype gaps + labels, Zstd-19")((_idx_encode, _idx_decode))


# --- paper-bmp ---------------------------------------------------------------------------------
def _bmp_encode(indices, labels, n, c) -> bytes:
    idx = np.asarray(indices, np.int64)
    mask = np.zeros((n + 7) // 8, np.uint8)  # packed directly: N bits, never N bytes
    np.add.at(mask, idx >> 3, (1 << (idx & 7)).astype(np.uint8))  # unique indices: add == or
    return _compress(mask.tobytes() + _labels_bytes(labels, c))


def _bmp_decode(body, n, c, k):
    nbytes = (n + 7) // 8
    raw = _decompress(body, nbytes + k * label_dtype(c).itemsize)
    if len(raw) < nbytes:
        raise CodecError("paper-bmp body is shorter than its bitmap")
    mask = np.frombuffer(raw, np.uint8, count=nbytes)
    nz = np.flatnonzero(mask)
    bits = np.unpackbits(mask[nz][:, None], axis=1, bitorder="little")
    rows, cols = np.nonzero(bits)
    idx = nz[rows].astype(np.int64) * 8 + cols
    if len(idx) != k:
        raise CodecError(f"bitmap marks {len(idx)} images, header says {k}")
    if k and idx[-1] >= n:
        raise CodecError("bitmap marks images beyond N")
    return idx, _labels_from(raw[nbytes:], c, k)


register_codec("paper-bmp", "paper's compact Bmp: N-bit mask + labels, Zstd-19")((_bmp_encode, _bmp_decode))


# --- varint ------------------------------------------------------------------------------------
def leb128(values: np.ndarray) -> bytes:
    v = np.asarray(values, np.uint64)
    out = bytearray()
    for x in v.tolist():
        while x >= 0x80:
            out.append((x & 0x7F) | 0x80)
            x >>= 7
        out.append(x)
    return bytes(out)


def unleb128(raw: bytes, k: int) -> tuple[np.ndarray, int]:
    vals = np.empty(k, np.int64)
    pos = 0
    for i in range(k):
        x = shift = 0
        while True:
            if pos >= len(raw) or shift > 63:
                raise CodecError("truncated or overlong varint")
            b = raw[pos]
            pos += 1
            x |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if x >= 1 << 63:  # ten 7-bit groups can hold 70 bits; no gap is that large
            raise CodecError(f"varint {i} is out of range")
        vals[i] = x
    return vals, pos


def _varint_encode(indices, labels, n, c) -> bytes:
    return _compress(leb128(gaps_of(indices)) + _labels_bytes(labels, c))


def _varint_decode(body, n, c, k):
    raw = _decompress(body, k * (10 + label_dtype(c).itemsize))
    g, pos = unleb128(raw, k)
    return indices_of(g), _labels_from(raw[pos:], c, k)


register_codec("varint", "LEB128 gaps + labels, Zstd-19")((_varint_encode, _varint_decode))


# --- model (adaptive arithmetic coding) ---------------------------------------------------------
def _model_encode(indices, labels, n, c) -> bytes:
    from . import native

    return native.model_encode(np.asarray(indices, np.int64), np.asarray(labels, np.int64), n, c)


def _model_decode(body, n, c, k):
    from . import native

    try:
        return native.model_decode(body, n, c, k)
    except ValueError as exc:
        raise CodecError(str(exc)) from None


register_codec("model", "adaptive binary arithmetic coding with gap/label context models")(
    (_model_encode, _model_decode)
)


def encode_auto(indices, labels, n, c) -> tuple[str, bytes]:
    """Encode with every codec and return the smallest (name, body); ties go to the earlier codec."""
    best = None
    for codec in _CODECS.values():
        if codec.name == "paper-bmp" and n > 1 << 31:
            continue  # a 2^31-bit mask is 256 MiB before compression: never the smallest
        body = codec.encode(indices, labels, n, c)
        if best is None or len(body) < len(best[1]):
            best = (codec.name, body)
    return best
