#!/usr/bin/env bash
# Test the aarch64 wheel under qemu user-mode emulation (no Docker, no binfmt): the kernel parity
# tests, the payload codecs and the cross-architecture golden files. Torch is not needed.
# Usage: bash tools/build_wheels.sh && bash tools/test_aarch64.sh
# Caches an arm64 Debian userland and wheels in $PLADA_ARM_CACHE (default ~/.cache/plada-edge/aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${PLADA_ARM_CACHE:-$HOME/.cache/plada-edge/aarch64}
ROOTFS=$CACHE/rootfs
log() { printf '\033[1m[aarch64]\033[0m %s\n' "$*"; }
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [[ ${#need[@]} -gt 0 ]]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
WHEEL=$(ls dist/plada_edge-*aarch64*.whl 2>/dev/null | head -1 || true)
[[ -n "$WHEEL" ]] || { echo "no aarch64 wheel in dist/: run tools/build_wheels.sh first" >&2; exit 2; }
mkdir -p "$CACHE"
if [[ ! -x $ROOTFS/usr/bin/python3.11 ]]; then
  log "arm64 Debian userland → $ROOTFS (once)"
  rm -rf "$ROOTFS"
  $SUDO mmdebstrap --quiet --mode=root --arch=arm64 --variant=extract \
    --include=python3,python3-numpy,python3-pytest,python3-hypothesis,libstdc++6 bookworm "$ROOTFS"
fi
ZV=$(.venv/bin/python -c "import zstandard; print(zstandard.__version__)")
if [[ ! -d $CACHE/site-$ZV ]]; then
  log "zstandard $ZV for aarch64 (the same libzstd as on x86_64, so Zstd bodies are byte-identical)"
  rm -rf "$CACHE/wheels"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
    "zstandard==$ZV" -d "$CACHE/wheels"
  mkdir -p "$CACHE/site-$ZV"
  for w in "$CACHE"/wheels/*.whl; do unzip -qo "$w" -d "$CACHE/site-$ZV"; done
fi
rm -rf "$CACHE/plada" "$CACHE/run" && mkdir -p "$CACHE/plada" "$CACHE/run" && unzip -qo "$WHEEL" -d "$CACHE/plada"
cp -r tests "$CACHE/run/tests"  # run outside the checkout, so the wheel's plada_edge is the one imported
LIB=$ROOTFS/usr/lib/aarch64-linux-gnu
log "pytest under qemu-aarch64-static"
set +e
cd "$CACHE/run"
PYTHONPATH="$CACHE/plada:$CACHE/site-$ZV" LD_LIBRARY_PATH="$LIB/blas:$LIB/lapack:$LIB" PYTHONDONTWRITEBYTECODE=1 \
  PLADA_EDGE_REQUIRE_NATIVE=1 \
  qemu-aarch64-static -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11" -m pytest -q -rs -p no:cacheprovider --rootdir=. \
  tests/test_golden.py tests/test_energy.py tests/test_selection.py \
  "tests/test_payload.py::test_codec_edge_cases" "tests/test_payload.py::test_model_codec_native_and_python_twin_write_the_same_bytes" \
  "tests/test_payload.py::test_paper_arithmetic" "tests/test_payload.py::test_container_roundtrip_and_atomic_write" \
  
rc=$?
set -e
if [[ $rc -eq 0 ]]; then log "PASS: aarch64 kernels, codecs and golden payloads"; else log "FAIL (pytest exit $rc)"; fi
exit $rc
