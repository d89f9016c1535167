"""Payloads over lossy one-way links (issue 36): the packet overhead each loss rate needs, and the time on the air.

    plada-edge demo                                         # once: the 1 % tango payload under runs/demo
    python -m benchmarks packets --update-docs
    python -m benchmarks packets --payload task.plada --trials 5000

For each loss rate, every packet is lost independently with that probability (seeded); the overhead is
raised in steps of 5 % of the source packets until at least 99.9 % of the trials rebuild the payload. Time on
the air: every packet sent, header included, at 500 bit/s (the paper's motivating links run at a few hundred).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from plada_edge.core.errors import PayloadError
from plada_edge.core.packets import OVERHEAD_BYTES, assemble, make_packets

from .kit import command_line, machine, replace_section

LOSSES = (0.1, 0.2, 0.3, 0.4, 0.5)
GOAL = 0.999
LINK_BITS = 500  # bits per second


def demo_payload(workdir: Path = Path("runs/demo")) -> Path:
    """The payload plada-edge demo published under ``workdir``."""
    listing = workdir / "cache" / "tasks.json"
    if not listing.exists():
        raise SystemExit(f"error: {listing} not found: run plada-edge demo first, or give --payload")
    entry = next(iter(json.loads(listing.read_text()).values()))
    return workdir / "cache" / entry["payload"]


def rebuild_rate(packets: list[bytes], data: bytes, loss: float, trials: int, seed: int) -> float:
    rng = random.Random(seed)
    ok = 0
    for _ in range(trials):
        arrived = [p for p in packets if rng.random() >= loss]
        try:
            ok += assemble(arrived, verify=False) == data
        except PayloadError:
            pass
    return ok / trials


def measure(data: bytes, size: int, trials: int) -> list[dict]:
    source = math.ceil(len(data) / (size - OVERHEAD_BYTES))
    rows = []
    for loss in LOSSES:
        overhead = max(0.0, round(loss / (1 - loss) / 0.05) * 0.05 - 0.05)  # start a step below the mean need
        while True:
            packets = make_packets(data, size, overhead)
            rate = rebuild_rate(packets, data, loss, trials, seed=int(loss * 100))
            if rate >= GOAL or overhead > 10:
                break
            overhead = round(overhead + 0.05, 2)
        sent = len(packets) * size
        rows.append(
            {"loss": loss, "overhead": overhead, "packets": len(packets), "source": source, "rate": rate,
             "bytes": sent, "seconds": sent * 8 / LINK_BITS}
        )  # fmt: skip
    return rows


def report(rows: list[dict], data: bytes, size: int, trials: int, payload: Path, seconds: float) -> str:
    lines = [
        f"Machine: {machine()}. Payload: {payload} ({len(data):,} bytes), cut into "
        f"{size}-byte packets ({size - OVERHEAD_BYTES} bytes of symbol each). Each packet is lost independently; "
        f"overhead is raised in 5 % steps until at least {GOAL:.1%} of {trials:,} trials rebuild the payload. Time on "
        f"the air: every packet sent, headers included, at {LINK_BITS} bit/s.",
        "",
        "| packets lost | overhead needed | packets sent | bytes sent | rebuilt | time at 500 bit/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['loss']:.0%} | {r['overhead']:.0%} | {r['packets']} ({r['source']} source) | {r['bytes']:,} | "
            f"{r['rate']:.2%} | {r['seconds'] / 60:.1f} min |"
        )
    raw = len(data) * 8 / LINK_BITS
    lines += [
        "",
        f"The payload alone, sent whole with no loss, would take {raw / 60:.1f} min; it cannot survive any loss. "
        f"Benchmark wall time {seconds:.0f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payload", type=Path, help="a .plada (default: the demo's, under runs/demo)")
    ap.add_argument("--size", type=int, default=64, help="bytes per packet")
    ap.add_argument("--trials", type=int, default=4000, help="loss draws per (loss, overhead)")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    payload = args.payload or demo_payload()
    data = payload.read_bytes()
    t0 = time.perf_counter()
    text = report(
        measure(data, args.size, args.trials), data, args.size, args.trials, payload, time.perf_counter() - t0
    )
    print(text)
    if args.update_docs:
        replace_section("packets", text, command_line())


if __name__ == "__main__":
    main()
