"""Payloads over lossy one-way links: fountain-coded packets (RFC 6330 RaptorQ), any sufficient subset rebuilds.

The paper's motivating links (satellites, acoustic modems, broadcast: a few hundred bits per second, one way,
lossy) cannot carry a payload that must arrive whole over HTTP. ``make_packets`` cuts a payload into
fixed-size packets: the K source symbols and ``overhead`` x K repair symbols of RaptorQ (the ``raptorq``
package, a binding of the Rust implementation). A receiver that collects any K (usually) to K + 2 (all but
always) of them, in any order, rebuilds the payload with ``assemble``, which then verifies it as every
payload is verified (checksum, or signature and the device's trust rules downstream).

Packet layout (docs/payload-format.md, "Packets"), little-endian:

    magic      2 bytes   b"PQ"
    version    u8        1
    length     u32       the payload's bytes
    digest     4 bytes   the first 4 bytes of the payload's SHA-256: which payload a packet belongs to
    crc        u32       CRC-32 of the whole packet with this field zero: a damaged packet is dropped
    symbol     4 + S     RaptorQ's payload id (source block, encoding symbol id) and an S-byte symbol

A packet of ``size`` bytes carries S = size - 19 bytes of symbol. A damaged packet that passes its CRC by
chance can only make the rebuild fail its digest or the payload's own checksum or signature: ``assemble``
never returns bytes that do not verify.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib

from .errors import ConfigError, PayloadError

MAGIC = b"PQ"
PACKET_VERSION = 1
HEAD = struct.Struct("<2sBI4sI")  # magic, version, length, digest, crc
RAPTORQ_ID = 4  # bytes of RaptorQ's payload id before each symbol
OVERHEAD_BYTES = HEAD.size + RAPTORQ_ID  # 19
MIN_SIZE, MAX_SIZE = OVERHEAD_BYTES + 8, 65_535
MAX_LENGTH = 256 << 20  # a payload's own limit (plada_edge.core.payload)


def _raptorq():
    try:
        import raptorq
    except ImportError:
        raise ConfigError('fountain packets need the raptorq package: pip install "plada-edge[links]"') from None
    return raptorq


def parse_overhead(text: str | float) -> float:
    """'20%' → 0.2, 0.2 → 0.2: repair symbols as a share of the source symbols (0 to 10x)."""
    value = text
    if isinstance(text, str):
        t = text.strip()
        try:
            value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
        except ValueError:
            raise ConfigError(f"overhead must look like 20% or 0.2, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise ConfigError(f"overhead must be between 0% and 1000%, got {text!r}")
    return float(value)


def make_packets(data: bytes, size: int = 64, overhead: float | str = 0.3) -> list[bytes]:
    """The payload ``data`` as fountain-coded packets of ``size`` bytes: its source symbols, then
    ceil(overhead x K) repair symbols."""
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"packet size must be {MIN_SIZE}..{MAX_SIZE} bytes, got {size!r}")
    if not 0 < len(data) <= MAX_LENGTH:
        raise ConfigError(f"a payload of {len(data):,} bytes cannot be sent as packets")
    symbol = size - OVERHEAD_BYTES
    source = math.ceil(len(data) / symbol)
    repair = math.ceil(parse_overhead(overhead) * source)
    encoded = _raptorq().Encoder.with_defaults(bytes(data), symbol).get_encoded_packets(repair)
    digest = hashlib.sha256(data).digest()[:4]
    return [_seal(len(data), digest, bytes(p)) for p in encoded]


def _seal(length: int, digest: bytes, body: bytes) -> bytes:
    head = HEAD.pack(MAGIC, PACKET_VERSION, length, digest, 0)
    crc = zlib.crc32(head + body)
    return HEAD.pack(MAGIC, PACKET_VERSION, length, digest, crc) + body


def read_packet(packet: bytes) -> tuple[int, bytes, bytes] | None:
    """(payload length, digest, RaptorQ packet) of an intact packet; None for a damaged or foreign one."""
    if len(packet) < HEAD.size + RAPTORQ_ID + 1 or len(packet) > MAX_SIZE:
        return None
    magic, version, length, digest, crc = HEAD.unpack_from(packet)
    if magic != MAGIC or version != PACKET_VERSION or not 0 < length <= MAX_LENGTH:
        return None
    if zlib.crc32(HEAD.pack(magic, version, length, digest, 0) + packet[HEAD.size :]) != crc:
        return None
    return length, digest, bytes(packet[HEAD.size :])


def assemble(packets, verify=True) -> bytes:
    """The payload rebuilt from any sufficient subset of its packets (damaged or foreign ones are dropped);
    with ``verify``, checked as a payload (checksum or signature). PayloadError when it cannot be rebuilt."""
    groups: dict[tuple[int, bytes], list[bytes]] = {}
    for packet in packets:
        got = read_packet(bytes(packet))
        if got is not None:
            groups.setdefault(got[:2], []).append(got[2])
    if not groups:
        raise PayloadError("no intact packet of a plada payload among these")
    (length, digest), bodies = max(groups.items(), key=lambda kv: len(kv[1]))
    symbol = len(bodies[0]) - RAPTORQ_ID
    if symbol <= 0 or any(len(b) != symbol + RAPTORQ_ID for b in bodies):
        raise PayloadError("packets of one payload must share one size")
    need = math.ceil(length / symbol)
    if len({b[:RAPTORQ_ID] for b in bodies}) < need:
        got = f"{len(bodies)} packet{'s' if len(bodies) != 1 else ''}"
        raise PayloadError(f"{got}, {need} are the least that can rebuild this {length:,}-byte payload")
    data = _decode(bodies, length, symbol)
    if data is None:
        raise PayloadError(f"{len(bodies)} packets were not enough to rebuild the payload: collect a few more")
    data = bytes(data)
    if hashlib.sha256(data).digest()[:4] != digest:
        raise PayloadError("the rebuilt payload does not match its packets' digest: a damaged packet got through")
    if verify:
        from .payload import decode_payload

        decode_payload(data)
    return data


def _decode(bodies: list[bytes], length: int, symbol: int) -> bytes | None:
    """RaptorQ's decode of the bodies in order; a body the decoder cannot take (a damaged payload id that passed its
    CRC makes the Rust decoder panic) is dropped and the decode restarted without it."""
    # the source blocks a payload of this length has: a body naming another is damaged (and would panic)
    blocks = {p[0] for p in _raptorq().Encoder.with_defaults(bytes(length), symbol).get_encoded_packets(0)}
    bodies = [b for b in bodies if b[0] in blocks]
    while True:
        decoder = _raptorq().Decoder.with_defaults(length, symbol)
        for i, body in enumerate(bodies):
            try:
                data = decoder.decode(body)
            except BaseException as exc:  # pyo3's PanicException derives from BaseException
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                del bodies[i]
                break
            if data is not None:
                return data
        else:
            return None


def write_packets(payload, out, size: int = 64, overhead: float | str = 0.3) -> dict:
    """``plada-edge packets``: a payload file (verified first) as packet files in the folder ``out``."""
    from pathlib import Path

    from . import atomic
    from .payload import read_payload

    p = read_payload(payload)
    data = Path(payload).read_bytes()
    made = make_packets(data, size, overhead)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, packet in enumerate(made):
        atomic.write_bytes(out / f"packet-{i:05d}.bin", packet)
    source = math.ceil(len(data) / (size - OVERHEAD_BYTES))
    return {"packets": len(made), "source": source, "bytes": sum(map(len, made)), "payload_bytes": p.total_bytes}


def assemble_files(sources, out, trust=None) -> dict:
    """``plada-edge assemble``: packet files (or folders of them) rebuilt into a payload file, verified (with
    ``trust``, a public key or .pub file, refused unless that key signed it) before it is written."""
    from pathlib import Path

    from . import atomic
    from .keys import load_public_key
    from .payload import decode_payload

    files = []
    for src in map(Path, sources):
        files += sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    raw = []
    for f in files:
        with open(f, "rb") as fh:  # a packet is small: read no more than the largest can be
            raw.append(fh.read(MAX_SIZE + 1))
    data = assemble(raw)
    decode_payload(data, load_public_key(trust) if trust else None)
    atomic.write_bytes(out, data)
    digest = hashlib.sha256(data).digest()[:4]
    used = sum(1 for r in raw if (g := read_packet(r)) is not None and g[1] == digest)
    return {"bytes": len(data), "read": len(raw), "used": used, "dropped": len(raw) - used, "out": str(out)}


__all__ = ["make_packets", "assemble", "read_packet", "parse_overhead", "write_packets", "assemble_files"]
