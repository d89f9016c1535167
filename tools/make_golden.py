#!/usr/bin/env python3
"""Write the cross-architecture golden files in tests/golden/ (run on x86_64; see tests/test_golden.py).

The inputs are generated from fixed seeds, so only the expected outputs are stored: the SHA-256
of the payload each codec writes for a fixed selection, and energy_stats of a fixed logits array.

    .venv/bin/python tools/make_golden.py
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

# the golden inputs are defined once, in the test that checks them
_spec = importlib.util.spec_from_file_location(
    "test_golden", Path(__file__).resolve().parent.parent / "tests" / "test_golden.py"
)
_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_golden)
GOLDEN, golden_inputs, payload_digests = _golden.GOLDEN, _golden.golden_inputs, _golden.payload_digests

from plada_edge.core import atomic, native  # noqa: E402


def example_v3() -> str:
    """docs/payload-format.md's golden bytes: a 5-image version-3 payload, as hex, with its SHA-256."""
    import hashlib

    from plada_edge.core.payload import decode_payload, encode_payload

    head = {"task": "demo", "class_names": ["cat", "dog"], "pack_fingerprint": "f" * 64, "n": 97, "image_size": 32}
    head["selection"], head["release"] = _golden.V3_SELECTION, _golden.V3_RELEASE
    data = encode_payload([3, 17, 40, 41, 90], [0, 1, 1, 0, 1], head, "varint", version=3)
    p = decode_payload(data)
    rows = [f"{i:04x}  " + " ".join(f"{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    return "\n".join(
        [
            "A 5-image payload over a 97-image pack, two classes, the `varint` codec, selection and release as in "
            "tests/test_golden.py's V3_SELECTION (nearest order, target quotas with power 0.5, spread 32) and "
            "V3_RELEASE (version 3, expiring 2030-01-01):",
            "",
            "```",
            *rows,
            "```",
            "",
            f"{len(data)} bytes: fixed header and meta {p.header_bytes}, body {p.body_bytes}, checksum "
            f"{p.trailer_bytes}; SHA-256 `{hashlib.sha256(data).hexdigest()}`. `tests/test_golden.py` holds "
            "every codec's version-3 bytes to their digests.",
        ]
    )


def example_packet() -> str:
    """docs/payload-format.md's packet bytes: the first packet of that payload, cut into 32-byte packets."""
    from plada_edge.core.packets import make_packets
    from plada_edge.core.payload import encode_payload

    head = {"task": "demo", "class_names": ["cat", "dog"], "pack_fingerprint": "f" * 64, "n": 97, "image_size": 32}
    head["selection"], head["release"] = _golden.V3_SELECTION, _golden.V3_RELEASE
    data = encode_payload([3, 17, 40, 41, 90], [0, 1, 1, 0, 1], head, "varint", version=3)
    packets = make_packets(data, size=32, overhead=0.5)
    first = packets[0]
    return "\n".join(
        [
            f"The same payload as {len(packets)} packets of 32 bytes (`make_packets(data, size=32, overhead=0.5)`); "
            "the first:",
            "",
            "```",
            " ".join(f"{b:02x}" for b in first[:15]) + "   # magic, version, length, digest, CRC-32",
            " ".join(f"{b:02x}" for b in first[15:19]) + "   # RaptorQ payload id: source block, symbol id",
            " ".join(f"{b:02x}" for b in first[19:]) + "   # the symbol",
            "```",
        ]
    )


def example_soft() -> str:
    """docs/payload-format.md's soft-label bytes: the same payload with 3-bit soft labels."""
    from plada_edge.core.payload import SoftLabels, decode_payload, encode_payload

    head = {"task": "demo", "class_names": ["cat", "dog"], "pack_fingerprint": "f" * 64, "n": 97, "image_size": 32}
    head["selection"], head["release"] = _golden.V3_SELECTION, _golden.V3_RELEASE
    labels = [0, 1, 1, 0, 1]
    soft = SoftLabels.of([1, 0, 0, 1, 0], [0.95, 0.6, 0.8, 1.0, 0.7], 3)
    data = encode_payload([3, 17, 40, 41, 90], labels, head, "varint", version=3, soft=soft)
    p = decode_payload(data)
    blob = soft.pack(2)
    return "\n".join(
        [
            "The same payload with 3-bit soft labels (runner-ups 1 0 0 1 0, confidences 0.95 0.6 0.8 1.0 0.7, read "
            f"back as {' '.join(f'{c:.3f}' for c in p.soft.confidence)}): field 3 is "
            f"`{blob.hex(' ')}` ({len(blob)} bytes), the payload {len(data)} bytes, SHA-256 "
            f"`{hashlib.sha256(data).hexdigest()}`.",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--only",
        choices=["payloads-v1", "payloads-v2", "payloads-v3", "energy"],
        action="append",
        help="write only these golden files (default: all); golden files are written once, on x86_64",
    )
    ap.add_argument("--update-docs", action="store_true", help="also write docs/payload-format.md's golden bytes")
    args = ap.parse_args()
    what = set(args.only or ["payloads-v1", "payloads-v2", "payloads-v3", "energy"])
    selections, logits = golden_inputs()
    if "payloads-v1" in what:
        atomic.write_json(GOLDEN / "payloads.json", payload_digests(selections, version=1))
    if "payloads-v2" in what:
        atomic.write_json(GOLDEN / "payloads-v2.json", payload_digests(selections, version=2))
    if "payloads-v3" in what:
        atomic.write_json(GOLDEN / "payloads-v3.json", payload_digests(selections, version=3))
    if "energy" in what:
        stats = native.energy_stats(logits, nan_policy="flag")
        atomic.save_npy(GOLDEN / "energy.npy", np.stack([stats.energy, stats.entropy]).astype(np.float32))
        atomic.save_npy(GOLDEN / "labels.npy", stats.label)
    if args.update_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's benchmarks package
        from benchmarks.kit import replace_section

        command = "python tools/make_golden.py --update-docs"
        replace_section("golden-v3", example_v3(), command, doc="payload-format.md")
        replace_section("golden-packet", example_packet(), command, doc="payload-format.md")
        replace_section("golden-soft", example_soft(), command, doc="payload-format.md")
    print(json.dumps({"written": str(GOLDEN), "simd": native.simd_level()}))


if __name__ == "__main__":
    main()
