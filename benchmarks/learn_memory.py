#!/usr/bin/env python3
"""Peak memory of ``plada-edge learn`` against the size of the reference pack (paper §3.3).

The device memory-maps the pack and gathers only the k images a payload names, so learn's peak
RSS should grow with k, not with the pack. For payloads of increasing k (energy + Safety-Net from
existing scores), runs ``learn`` (1 epoch, resnet18) in a fresh subprocess and reads its peak RSS
(ru_maxrss), next to the pack's size on disk.

    .venv/bin/python -m benchmarks learn_memory runs/fmnist/scores data/offline-mix --update-docs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from plada_edge.core.reference import IMAGES, ReferencePack
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import Scores

from .kit import replace_section

CHILD = """
import json, resource, sys
from plada_edge.device.student import learn
m = learn(sys.argv[1], sys.argv[2], sys.argv[3], arch="resnet18", epochs=1, progress=False)
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "k": m["k"]}))
"""
BASELINE = """
import json, resource
import torch, onnxruntime, onnx
from plada_edge.core.models import create_model
create_model("resnet18", 10)
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scores", type=Path)
    ap.add_argument("pack", type=Path)
    ap.add_argument("--keeps", default="1%,5%,20%")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    pack = ReferencePack.open(args.pack)
    scores = Scores.open(args.scores, pack)
    pack_mib = (pack.path / IMAGES).stat().st_size / 2**20
    base = run(BASELINE)["maxrss_kib"] / 1024
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for keep in args.keeps.split(","):
            p = Path(tmp) / f"{keep.strip('%')}.plada"
            payload, sel, _ = make_payload(scores, p, keep=keep, safety_net=True, spread=1)
            r = run(CHILD, str(p), str(pack.path), str(Path(tmp) / f"s{keep.strip('%')}"))
            gathered = sel.k * pack.size * pack.size * 3 / 2**20
            rows.append((keep, sel.k, gathered, r["maxrss_kib"] / 1024))
            print(
                f"keep {keep:>4}: k={sel.k:>6,}  gathered {gathered:7.1f} MiB  peak RSS "
                f"{r['maxrss_kib'] / 1024:8.1f} MiB"
            )
    body = (
        f"Pack `{args.pack}`: {pack.n:,} images, `images.npy` = {pack_mib:,.1f} MiB. Baseline peak RSS of a process "
        "that "
        f"imports torch, onnx and onnxruntime and builds the resnet18 student: {base:,.0f} MiB.\n\n"
        "| keep | k | gathered images | learn peak RSS | RSS above baseline |\n|---|---:|---:|---:|---:|\n"
        + "\n".join(f"| {k} | {n:,} | {g:,.1f} MiB | {r:,.0f} MiB | {r - base:,.0f} MiB |" for k, n, g, r in rows)
    )
    if args.update_docs:
        replace_section(
            "learn_memory", body, f"python -m benchmarks learn_memory {args.scores} {args.pack} --update-docs"
        )


if __name__ == "__main__":
    main()
