#!/usr/bin/env bash
# Run the GPU check (python -m benchmarks gpu_check) on a lent GPU machine in one go (it has torch with CUDA, onnx, onnxruntime,
# pybind11, scikit-build-core, cmake, ninja, typer and rich; carry the rest as wheels in .whl/):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl zstandard faiss-cpu cryptography cffi pycparser      # here, once
#   device run (carry .whl): bash tools/gpu_check.sh [gpu_check.py options]
# Output: docs/benchmarks.md section gpu_check and runs/gpu_check/report.json (copy both to $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3 || command -v python)  # GPU images often have python3 only
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if [[ -d .whl ]]; then "${PIP[@]}" --no-index --no-deps .whl/*.whl; fi
"${PIP[@]}" --no-build-isolation --no-deps -e .
"$PY" -m plada_edge doctor
LOG=${OUT:-runs}/gpu_check.log
mkdir -p "$(dirname "$LOG")"
timeout 480 "$PY" -u -m benchmarks gpu_check --update-docs "$@" 2>&1 | tee "$LOG"
if [[ -n "${OUT:-}" ]]; then cp docs/benchmarks.md runs/gpu_check/report.json "$OUT/"; fi
