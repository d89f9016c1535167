#!/usr/bin/env python3
"""Payload codecs against the paper's, and against the information floor (paper §3.3).

Cases, at N = 14,197,122 (ImageNet-21K) unless noted:
  (a) uniform random selections, C = 10 and 200, keep 0.1 / 1 / 10 %
  (b) a clustered model of a pool ordered by class folder: 21,841 contiguous folders of varying
      size; each target class draws from 30 random folders; labels 90 % pure per folder
  (c) real selections from offline-mix (N = 100,181): the fmnist/digits scores of runs/, energy
      at 1 % and 5 % (skipped when runs/<target>/scores is missing)
For each: bytes per codec, the floor log2 C(N,k) + k·H(labels), model / best paper scheme, and
model / floor. Encode and decode times are medians of 3.

    .venv/bin/python -m benchmarks codec [--update-docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from plada_edge.core.codecs import get_codec, list_codecs
from plada_edge.core.payload import information_floor_bits

from .kit import interleaved, replace_section

N21K = 14_197_122
PAPER = ("paper-idx", "paper-bmp")


def uniform(n, c, keep, rng):
    k = int(round(keep * n))
    return np.sort(rng.choice(n, k, replace=False)), rng.integers(0, c, k)


def clustered(n, c, keep, rng, folders=21_841, per_class=30, purity=0.9):
    sizes = rng.integers(200, 1100, folders).astype(np.float64)
    bounds = np.concatenate([[0], np.cumsum(sizes / sizes.sum() * n).astype(np.int64)])
    bounds[-1] = n
    chosen = (
        rng.choice(folders, (c, per_class), replace=False)
        if c * per_class <= folders
        else rng.integers(0, folders, (c, per_class))
    )
    span = sum(bounds[f + 1] - bounds[f] for f in chosen.ravel())
    p = min(1.0, keep * n / span)
    idx, lab = [], []
    for cls in range(c):
        for f in chosen[cls]:
            members = np.arange(bounds[f], bounds[f + 1])
            kept = members[rng.random(len(members)) < p]
            labels = np.where(rng.random(len(kept)) < purity, cls, rng.integers(0, c, len(kept)))
            idx.append(kept)
            lab.append(labels)
    idx, lab = np.concatenate(idx), np.concatenate(lab)
    idx, first = np.unique(idx, return_index=True)  # a folder chosen by two classes: keep one label
    return idx, lab[first]


def real_cases(root: Path):
    from plada_edge.server.scoring import Scores
    from plada_edge.server.selection import select

    for target in ("fmnist", "digits"):
        d = root / target / "scores"
        if not (d / "meta.json").exists():
            continue
        sc = Scores.open(d)
        for keep, net in (("1%", False), ("5%", False), ("1%", True)):
            sel = select(sc, strategy="energy", keep=keep, safety_net=net, spread=1)
            name = f"(c) offline-mix {target}, energy {keep}" + (" + Safety-Net" if net else "")
            yield name, sel.indices, sel.labels, sc.n, sc.num_classes


def measure(idx, lab, n, c, repeats=3):
    out = {}
    for name in list_codecs():
        codec = get_codec(name)
        body = codec.encode(idx, lab, n, c)
        t = interleaved(
            {
                "encode": lambda codec=codec: codec.encode(idx, lab, n, c),
                "decode": lambda codec=codec, body=body: codec.decode(body, n, c, len(idx)),
            },
            repeats,
            warmup=False,
        )
        te, td = t["encode"], t["decode"]
        i2, l2 = codec.decode(body, n, c, len(idx))
        assert np.array_equal(i2, idx) and np.array_equal(l2, lab), name
        out[name] = (len(body), te, td)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = []
    for c in (10, 200):
        for keep in (0.001, 0.01, 0.1):
            cases.append((f"(a) uniform C={c} keep {keep:.1%}", *uniform(N21K, c, keep, rng), N21K, c))
    for c in (10, 200):
        for keep in (0.001, 0.01, 0.1):
            cases.append((f"(b) clustered C={c} keep {keep:.1%}", *clustered(N21K, c, keep, rng), N21K, c))
    cases += list(real_cases(args.runs))
    codecs = list_codecs()
    rows, timing = [], []
    for name, idx, lab, n, c in cases:
        res = measure(idx, lab, n, c)
        floor = information_floor_bits(n, idx, lab, c)["total_bits"] / 8
        best_paper = min(res[p][0] for p in PAPER)
        model = res["model"][0]
        rows.append((name, len(idx), res, floor, model / best_paper, model / floor))
        timing.append((name, len(idx), res))
        print(
            f"{name:<44} k={len(idx):>9,}  "
            + "  ".join(f"{cn}={res[cn][0]:>9,}" for cn in codecs)
            + f"  floor={floor:>11,.0f}  model/paper={model / best_paper:.3f}  model/floor={model / floor:.3f}",
            flush=True,
        )
    head = "| case | k | " + " | ".join(codecs) + " | floor | model / best paper | model / floor |"
    lines = [head, "|---|---:|" + "---:|" * (len(codecs) + 3)]
    for name, k, res, floor, vs_paper, vs_floor in rows:
        lines.append(
            f"| {name} | {k:,} | "
            + " | ".join(f"{res[cn][0]:,}" for cn in codecs)
            + f" | {floor:,.0f} | **{vs_paper:.3f}** | {vs_floor:.3f} |"
        )
    lines += [
        "",
        "Encode / decode time (ms), median of 3:",
        "",
        "| case | k | " + " | ".join(codecs) + " |",
        "|---|---:|" + "---:|" * len(codecs),
    ]
    for name, k, res in timing:
        lines.append(
            f"| {name} | {k:,} | "
            + " | ".join(f"{res[cn][1] * 1e3:.0f} / {res[cn][2] * 1e3:.0f}" for cn in codecs)
            + " |"
        )
    body = (
        "Bytes of the encoded body (the container adds a JSON header and a 32-byte checksum). "
        "The floor is log2 C(N,k) + k·H(labels).\n\n" + "\n".join(lines)
    )
    if args.update_docs:
        replace_section("bench_codec", body, "python -m benchmarks codec --update-docs")


if __name__ == "__main__":
    main()
