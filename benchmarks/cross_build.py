#!/usr/bin/env python3
"""Time the aarch64 story from cold: tools/build_wheels.sh, then tools/test_aarch64.sh.

Removes the cross build directory and uses an empty emulation cache, so the times include the
cross compile, the arm64 Debian userland (mmdebstrap) and the emulated test run. Debian packages
already installed are not reinstalled (the scripts install only what is missing).

    .venv/bin/python -m benchmarks cross_build --update-docs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .kit import replace_section

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {out.returncode}")
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    shutil.rmtree(ROOT / "build" / "cross-aarch64", ignore_errors=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PLADA_ARM_CACHE=cache)
        t_build, out_build = timed(["bash", "tools/build_wheels.sh"], env)
        t_test, out_test = timed(["bash", "tools/test_aarch64.sh"], env)
    wheels = sorted(p.name for p in (ROOT / "dist").glob("plada_edge-*.whl"))
    summary = [line for line in out_test.splitlines() if " passed" in line or "PASS" in line]
    print(f"build_wheels.sh {t_build:.0f} s, test_aarch64.sh {t_test:.0f} s")
    print("\n".join(summary))
    body = (
        "| step | wall time |\n|---|---:|\n"
        f"| `bash tools/build_wheels.sh` (x86_64 wheel + aarch64 cross wheel, cold build directory) | {t_build:.0f} "
        "s |\n"
        f"| `bash tools/test_aarch64.sh` (arm64 userland via mmdebstrap, then pytest under qemu) | {t_test:.0f} s |\n\n"
        "Wheels: " + ", ".join(f"`{w}`" for w in wheels) + "\n\nEmulated run: " + "; ".join(s.strip() for s in summary)
    )
    if args.update_docs:
        replace_section("cross_build", body, "python -m benchmarks cross_build --update-docs")


if __name__ == "__main__":
    main()
