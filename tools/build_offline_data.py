#!/usr/bin/env python3
"""Build the offline benchmark data: data/offline-mix (reference pack) and data/targets/*.npz.

    .venv/bin/python tools/build_offline_data.py [--root data] [--force] [--update-docs]
    .venv/bin/python tools/build_offline_data.py --check     # does this machine's pool match the documented one?

Needs only what tools/setup.sh installs (Debian data packages and pip packages); see
plada_edge/data/offline.py for the sources and their order. --update-docs records N, build time,
pack size, fingerprint and each source's SHA-256 in docs/benchmarks.md and docs/offline-mix.json;
--check compares a built pool with docs/offline-mix.json and names every source that differs (and
the package versions behind it, from data/offline-mix.inputs.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plada_edge.data.offline import DEFAULT_TOTAL, build_offline_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's benchmarks package
from benchmarks.kit import DOCS, machine, replace_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="data directory (default: $PLADA_EDGE_DATA or ./data)")
    ap.add_argument("--total", type=int, default=DEFAULT_TOTAL, help="pool size to reach (photo patches fill up)")
    ap.add_argument("--force", action="store_true", help="rebuild the pack even if it exists")
    ap.add_argument("--update-docs", action="store_true", help="record the build in docs/benchmarks.md")
    ap.add_argument("--check", action="store_true", help="compare the built pool with docs/offline-mix.json")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.root or Path("data")))
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
        root = args.root or Path("data")
        expected = {
            "fingerprint": report["fingerprint"],
            "n": report["n"],
            "sources": report["source_sha256"],
            "inputs": json.loads((root / "offline-mix.inputs.json").read_text()),
        }
        (DOCS / "offline-mix.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
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


def check(root: Path) -> int:
    """0 when the pool at ``root`` is the documented one; else name each differing source and input."""
    from plada_edge.core.reference import ReferencePack

    want = json.loads((DOCS / "offline-mix.json").read_text())
    pack = ReferencePack.open(root / "offline-mix")
    if pack.fingerprint == want["fingerprint"]:
        print(f"ok: offline-mix is {pack.fingerprint} as documented")
        return 0
    got = {e["name"]: e.get("sha256") for e in pack.manifest["sources"]}
    print(f"offline-mix is {pack.fingerprint[:16]}…, the documented pool is {want['fingerprint'][:16]}…")
    for name in sorted(set(got) | set(want["sources"])):
        if got.get(name) != want["sources"].get(name):
            here, there = str(got.get(name))[:16], str(want["sources"].get(name))[:16]
            print(f"  source {name!r} differs: {here}… here, {there}… documented")
    try:
        have = json.loads((root / "offline-mix.inputs.json").read_text())
    except OSError:
        return 1
    for kind in ("debian", "pip"):
        for pkg, version in want["inputs"][kind].items():
            if have[kind].get(pkg) != version:
                print(f"  {kind} package {pkg}: {have[kind].get(pkg)} here, {version} documented")
    fonts_here, fonts_doc = have["glyph_fonts"], want["inputs"]["glyph_fonts"]
    for font in sorted(set(fonts_here) ^ set(fonts_doc)):
        print(f"  glyph font {font} is {'only here' if font in fonts_here else 'missing here'}")
    return 1


if __name__ == "__main__":
    main()
