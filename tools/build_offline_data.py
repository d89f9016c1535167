#!/usr/bin/env python3
"""Build the offline benchmark data: data/offline-mix (reference pack) and data/targets/*.npz.

    .venv/bin/python tools/build_offline_data.py [--root data] [--force] [--update-docs]

Needs only what tools/setup.sh installs (Debian data packages and pip packages); see
plada_edge/data/offline.py for the sources and their order. --update-docs records N, build time,
pack size and fingerprint in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchkit import machine, replace_section  # noqa: E402

from plada_edge.data.offline import DEFAULT_TOTAL, build_offline_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="data directory (default: $PLADA_EDGE_DATA or ./data)")
    ap.add_argument("--total", type=int, default=DEFAULT_TOTAL, help="pool size to reach (photo patches fill up)")
    ap.add_argument("--force", action="store_true", help="rebuild the pack even if it exists")
    ap.add_argument("--update-docs", action="store_true", help="record the build in docs/benchmarks.md")
    args = ap.parse_args()
    report = build_offline_data(args.root, total=args.total, overwrite=args.force)
    print(json.dumps(report, indent=2))
    if args.update_docs and report["seconds"] is not None:
        rows = "\n".join(f"| {name} | {count:,} |" for name, count in report["sources"].items())
        body = (
            f"Machine: {machine()}. Build time **{report['seconds']:.0f} s** (targets + rendering + decoding + "
            "pack).\n\n"
            f"- N = **{report['n']:,}** images of 32x32x3, `images.npy` = {report['bytes'] / 2**20:,.1f} MiB\n"
            f"- inputs skipped (unreadable or too large): {report['skipped']}\n"
            f"- fingerprint `{report['fingerprint']}`\n\n| source (index order) | images |\n|---|---:|\n{rows}"
        )
        replace_section("offline_mix", body, "python tools/build_offline_data.py --force --update-docs")
    if args.update_docs:
        from plada_edge.core.reference import ReferencePack
        from plada_edge.core.targets import load_target
        from plada_edge.server.audit import audit_leakage

        root = args.root or Path("data")
        pack = ReferencePack.open(root / "offline-mix")
        rows = []
        for name in ("fmnist", "digits"):
            r = audit_leakage(load_target(root / "targets" / f"{name}.npz"), pack, progress=False)
            rows.append(
                f"| {name} | {r['exact']['train']} | {r['exact']['test']} | {r['near']['train']} | "
                f"{r['near']['test']} |"
            )
            print(name, {k: (r[k]["train"], r[k]["test"]) for k in ("exact", "near")})
        body = (
            f"`plada-edge audit` of each target against offline-mix (fingerprint `{pack.fingerprint[:16]}…`). "
            "Exact = the paper's rule (1,024 mean/variance buckets, mean L1 < 1e-5); near = FAISS 8x8 "
            "descriptors, cosine >= 0.98, confirmed by mean |pixel diff| <= 4/255.\n\n"
            "| target | exact train | exact test | near train | near test |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(rows)
        )
        replace_section("offline_audit", body, "python tools/build_offline_data.py --update-docs")


if __name__ == "__main__":
    main()
