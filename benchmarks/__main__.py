"""``python -m benchmarks NAME [options]``: run one benchmark (``python -m benchmarks`` lists them)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

NOT_BENCHMARKS = {"kit", "goals", "plada_runs", "plada_report"}  # shared pieces, not entry points


def benchmarks() -> dict[str, str]:
    """Each benchmark's name and the first line of its docstring."""
    here = Path(__file__).parent
    out = {}
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in NOT_BENCHMARKS:
            continue
        source = (here / f"{info.name}.py").read_text()
        doc = source.split('"""', 2)[1].strip().splitlines()[0] if '"""' in source else ""
        out[info.name] = doc
    return out


def main() -> None:
    names = benchmarks()
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        for name, doc in names.items():
            print(f"  {name:<17} {doc}")
        return
    name = sys.argv[1]
    if name not in names:
        sys.exit(f"error: no benchmark {name!r}; python -m benchmarks lists them")
    sys.argv = [name, *sys.argv[2:]]  # the benchmark parses its own options; kit.command() names it
    importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
