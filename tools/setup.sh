#!/usr/bin/env bash
# One-time (and re-runnable) setup on a fresh Debian/Ubuntu x86_64 or aarch64 machine:
#   1. Debian packages the offline benchmark data comes from (skipped when already installed),
#   2. the virtual environment .venv with the one torch/torchvision pair that imports here,
#   3. plada-edge itself, built with its native kernels (re-run after editing csrc/).
# Usage: bash tools/setup.sh            (PLADA_SKIP_APT=1 skips step 1)
set -euo pipefail
cd "$(dirname "$0")/.."

# Offline benchmark data (plada_edge/data/offline.py): real images and fonts from Debian.
APT_PACKAGES=(dataset-fashion-mnist openclipart-png oxygen-icon-theme fonts-noto-color-emoji unicode-data
  fonts-dejavu-core fonts-liberation fonts-freefont-ttf)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [[ ${#APT_PACKAGES[@]} -gt 0 && "${PLADA_SKIP_APT:-0}" != "1" ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "apt-get install ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

case "$(uname -m)" in
  x86_64) TORCH=(torch==2.14.1 torchvision==0.29.1) ;;  # the only pair that imports on these CPU hosts
  aarch64) TORCH=(torch==2.9.1 torchvision==0.24.1) ;;  # CPU build for ARM servers
  *) TORCH=(torch torchvision) ;;
esac
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  log "installing ${TORCH[*]} (several minutes; pip takes them from the local wheel cache when present)"
  "${PIP[@]}" install "${TORCH[@]}"
fi

log "installing build tools and plada-edge[train,index,data,serve,ray,dev] (native kernels compile here)"
"${PIP[@]}" install "scikit-build-core>=0.10" "pybind11>=2.12" "${TORCH[@]}"
# --no-build-isolation: build with the tools above instead of fetching fresh ones each time;
# keeping the torch pin on the same command line stops the resolver from picking another torch.
"${PIP[@]}" install --no-build-isolation -e ".[train,index,data,serve,ray,dev]" "${TORCH[@]}"

.venv/bin/plada-edge doctor
log "done: run '.venv/bin/plada-edge demo' or '.venv/bin/python -m pytest'"
