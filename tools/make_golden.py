#!/usr/bin/env python3
"""Write the cross-architecture golden files in tests/golden/ (run on x86_64; see tests/test_golden.py).

The inputs are generated from fixed seeds, so only the expected outputs are stored: the SHA-256
of the payload each codec writes for a fixed selection, and energy_stats of a fixed logits array.

    .venv/bin/python tools/make_golden.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--only",
        choices=["payloads-v1", "payloads-v2", "energy"],
        action="append",
        help="write only these golden files (default: all); golden files are written once, on x86_64",
    )
    what = set(ap.parse_args().only or ["payloads-v1", "payloads-v2", "energy"])
    selections, logits = golden_inputs()
    if "payloads-v1" in what:
        atomic.write_json(GOLDEN / "payloads.json", payload_digests(selections, version=1))
    if "payloads-v2" in what:
        atomic.write_json(GOLDEN / "payloads-v2.json", payload_digests(selections, version=2))
    if "energy" in what:
        stats = native.energy_stats(logits, nan_policy="flag")
        atomic.save_npy(GOLDEN / "energy.npy", np.stack([stats.energy, stats.entropy]).astype(np.float32))
        atomic.save_npy(GOLDEN / "labels.npy", stats.label)
    print(json.dumps({"written": str(GOLDEN), "simd": native.simd_level()}))


if __name__ == "__main__":
    main()
