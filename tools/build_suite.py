#!/usr/bin/env python3
"""Build and audit the suite's colour targets from installed Debian icon themes (plada_edge.data.suite).

    .venv/bin/python tools/build_suite.py [--targets tango,gnome,elementary,papirus] [--root data]

Needs the offline-mix pack (tools/build_offline_data.py) to deduplicate against and audit on, and
the icon themes plus librsvg2-bin that tools/setup.sh installs. Writes data/targets/NAME.npz and
NAME.audit.json (the `plada-edge audit` report, which must find no duplicate left) and prints a
summary as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plada_edge.core import atomic
from plada_edge.core.errors import PladaError
from plada_edge.core.reference import ReferencePack
from plada_edge.core.targets import data_dir, load_target
from plada_edge.data.suite import THEMES, build_suite
from plada_edge.server.audit import audit_leakage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(THEMES), help="colour targets to build")
    ap.add_argument("--root", type=Path, default=None, help="data directory (default: $PLADA_EDGE_DATA or ./data)")
    args = ap.parse_args()
    root = args.root or data_dir()
    try:
        summary = build_suite(tuple(args.targets.split(",")), root=root)
    except (PladaError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    pack = ReferencePack.open(root / "offline-mix")
    leaks = {}
    for name, s in summary.items():
        audit = audit_leakage(load_target(s["path"]), pack, progress=False)
        atomic.write_json(root / "targets" / f"{name}.audit.json", audit)
        s["audit"] = {k: audit[k][split] for k in ("exact", "near") for split in ("train", "test")}
        found = sum(audit[k][split] for k in ("exact", "near") for split in ("train", "test"))
        print(f"[{name}] audit: {found} duplicates left in the pool")
        if found:
            leaks[name] = found
    print(json.dumps(summary, indent=2))
    if leaks:
        raise SystemExit(f"the audit still finds pool duplicates: {leaks}")


if __name__ == "__main__":
    main()
