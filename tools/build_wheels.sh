#!/usr/bin/env bash
# Build plada-edge wheels: the native one (this machine's architecture) and, on x86_64 Debian 12,
# an aarch64 one cross-compiled with Debian's g++-aarch64-linux-gnu. Both are checked with
# auditwheel, which names the manylinux tag each really satisfies and writes the repaired
# wheel to dist/. Usage: bash tools/build_wheels.sh [--native-only]
#
# The cross build needs (installed here when missing, as root):
#   apt-get install g++-aarch64-linux-gnu; dpkg --add-architecture arm64; apt-get install libpython3.11-dev:arm64
# and a venv made from Debian's /usr/bin/python3.11, so that /usr/include/python3.11/pyconfig.h
# dispatches to the aarch64 pyconfig.h (a non-Debian Python would hand over its x86_64 one).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[wheels]\033[0m %s\n' "$*"; }
mkdir -p dist build/wheels
rm -f dist/plada_edge-*.whl build/wheels/*.whl

PY=.venv/bin/python
[[ -x $PY ]] || { echo "run tools/setup.sh first" >&2; exit 2; }
$PY -m pip install -q auditwheel wheel >/dev/null

# auditwheel names the manylinux tag a wheel really satisfies (from the glibc/libstdc++ symbol
# versions it uses); the module links nothing else, so nothing needs vendoring and retagging the
# wheel with that tag is the whole repair. (auditwheel repair itself only accepts the host's arch.)
retag() {
  local w=$1 report tag
  report=$($PY -m auditwheel show "$w")
  echo "$report" | sed 's/^/    /'
  tag=$(echo "$report" | grep -o 'manylinux_[0-9]*_[0-9]*_[a-z0-9_]*' | head -1)
  [[ -n "$tag" ]] || { echo "auditwheel found no manylinux tag for $w" >&2; exit 1; }
  $PY -m wheel tags --remove --platform-tag "$tag" "$w" >/dev/null
  mv "$(dirname "$w")"/plada_edge-*"$tag"*.whl dist/
  log "-> dist/$(basename "$(ls dist/plada_edge-*"$tag"*.whl)")"
}

log "native wheel ($(uname -m))"
$PY -m pip wheel . --no-deps --no-build-isolation -w build/wheels -q
for w in build/wheels/plada_edge-*.whl; do retag "$w"; done

if [[ "${1:-}" == "--native-only" || "$(uname -m)" != "x86_64" ]]; then
  ls -la dist; exit 0
fi

log "aarch64 cross wheel"
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then $SUDO dpkg --add-architecture arm64; $SUDO apt-get update -qq; fi
dpkg -s libpython3.11-dev:arm64 >/dev/null 2>&1 || need+=(libpython3.11-dev:arm64)
if [[ ${#need[@]} -gt 0 ]]; then
  log "apt-get install ${need[*]} (this upgrades some amd64 python3.11 packages to the same version: expected)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [[ ! -x .venv-cross/bin/python ]]; then
  /usr/bin/python3.11 -m venv .venv-cross
fi
# build isolation would fetch aarch64 cmake wheels: build with these x86_64 tools instead
.venv-cross/bin/python -m pip install -q -U pip scikit-build-core pybind11 cmake ninja
# without PYBIND11_USE_CROSSCOMPILING the module is silently named for x86_64
_PYTHON_HOST_PLATFORM=linux-aarch64 SETUPTOOLS_EXT_SUFFIX=.cpython-311-aarch64-linux-gnu.so \
  .venv-cross/bin/python -m pip wheel . --no-deps --no-build-isolation -w build/wheels -q \
  -C build-dir=build/cross-aarch64 \
  -C cmake.define.CMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -C cmake.define.PYBIND11_USE_CROSSCOMPILING=ON \
  -C cmake.define.Python_INCLUDE_DIR=/usr/include/python3.11 \
  -C cmake.define.Python3_INCLUDE_DIR=/usr/include/python3.11
w=$(ls build/wheels/plada_edge-*aarch64*.whl)
listing=$(unzip -l "$w")
[[ "$listing" == *cpython-311-aarch64-linux-gnu.so* ]] || { echo "wrong module suffix in $w" >&2; exit 1; }
unzip -p "$w" 'plada_edge/_native*.so' > build/wheels/_native_aarch64.so
machine=$(od -An -tx1 -j18 -N2 build/wheels/_native_aarch64.so | tr -d ' ')
[[ "$machine" == "b700" ]] || { echo "the module in $w is not an AArch64 ELF (e_machine $machine)" >&2; exit 1; }
retag "$w"
ls -la dist
