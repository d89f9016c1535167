#!/usr/bin/env bash
# Run tools/gpu_check.py on a lent GPU machine in one go (it has torch with CUDA, onnx, onnxruntime,
# pybind11, scikit-build-core, cmake, ninja, typer and rich; carry the rest as wheels in .whl/):
#   pip download -d .whl zstandard faiss-cpu      # here, once
#   device run (carry .whl): bash tools/gpu_check.sh
# Output: docs/benchmarks.md section gpu_check and runs/gpu_check/report.json (copy both to $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(python -m pip install -q --disable-pip-version-check)
[[ -d .whl ]] && "${PIP[@]}" --no-index --find-links .whl zstandard faiss-cpu || true
"${PIP[@]}" --no-build-isolation --no-deps -e .
python -m plada_edge doctor
timeout 480 python tools/gpu_check.py --update-docs "$@"
if [[ -n "${OUT:-}" ]]; then cp docs/benchmarks.md runs/gpu_check/report.json "$OUT/"; fi
