#!/usr/bin/env python3
"""The paper's claims on offline data: accuracy against payload size, per selection strategy.

For each target (fmnist, digits) on offline-mix:
  - teacher: resnet18 from scratch (and, with --pretrained, EfficientNet-Lite0 ImageNet init)
  - selections: energy, entropy, opposite, random, energy + Safety-Net (alpha -0.2 and 0.5,
    share 0.5), and energy + Safety-Net with spread 8 and auto, at keep 0.5 / 1 / 5 / 10 %; each
    with its label histogram, pool-source mix and payload bytes per codec
  - students (resnet18, trained on the payload alone, a fixed budget of ~15,000 sample-steps):
    3 seeds at 1 % and 5 %, 1 seed at 0.5 % and 10 %
  - references: an "oracle" (in-domain pool images with TRUE labels, same k), a student trained
    on the target's own training set (upper bound), and label expansion (--expand 10)
  - sweeps behind the defaults: spread 1-16 and 15k-60k sample-steps at 1 %, then the code's
    own defaults (plada_edge/core/config.py) end to end over 3 seeds
  - with --pretrained: an EfficientNet-Lite0 (ImageNet) teacher, and Lite0 students at 64 px
Every run's result is cached under runs/bench/ (a rerun resumes), and --update-docs rewrites
docs/results.md and its figures from whatever has been run, saying what is missing.

    .venv/bin/python -m benchmarks plada --update-docs            # everything (hours on 2 cores)
    .venv/bin/python -m benchmarks plada --quick --update-docs    # 1 % and 5 %, one seed
"""

from __future__ import annotations

import argparse

from plada_edge.core import atomic

from . import plada_runs
from .plada_report import write_docs
from .plada_runs import KEEPS, ROOT, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="fmnist,digits")
    ap.add_argument("--quick", action="store_true", help="keep 1 %% and 5 %% only, one seed, no extras")
    ap.add_argument("--pretrained", action="store_true", help="also the EfficientNet-Lite0-initialised teacher")
    ap.add_argument("--expand", action="store_true", help="also label expansion (builds the Lite0 pool index)")
    ap.add_argument("--report-only", action="store_true", help="write the docs from finished runs; train nothing")
    ap.add_argument(
        "--expand-only", action="store_true", help="only label expansion and its baselines (implies --expand)"
    )
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    plada_runs.REPORT_ONLY = args.report_only
    keeps = ["1%", "5%"] if args.quick else KEEPS
    seeds = {"1%": 1, "5%": 1} if args.quick else {"0.5%": 1, "1%": 3, "5%": 3, "10%": 1}
    results = run(
        args.targets.split(","),
        keeps,
        seeds,
        args.pretrained,
        args.expand or args.expand_only,
        expand_only=args.expand_only,
        sweep=not (args.quick or args.expand_only),
    )
    atomic.write_json(ROOT / "results.json", results)
    if args.update_docs:
        flags = " ".join(
            f
            for f, on in (
                ("--quick", args.quick),
                ("--pretrained", args.pretrained),
                ("--expand", args.expand),
                ("--report-only", args.report_only),
            )
            if on
        )
        write_docs(results, keeps, f"python -m benchmarks plada {flags} --update-docs".replace("  ", " "))


if __name__ == "__main__":
    main()
