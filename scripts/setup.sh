#!/usr/bin/env bash
# Sets up .venv for this checkout: torch (the one already installed if any, else the pinned
# CPU build), the dependencies, and this package built against that torch. Idempotent; sourced
# by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${KP3D_VENV:-$ROOT/.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  # --system-site-packages: on a GPU machine the torch (and triton) already installed are used
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
PIP="python -m pip --disable-pip-version-check -q"

if ! python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0"
  $PIP install torch==2.13.0
fi
# build tools, then this package with its dependencies (pyproject.toml) and the extras the
# tests use; torch is already there, so pip keeps it
$PIP install "setuptools>=77" wheel pybind11 ninja
echo "setup: building kp3d (torch $(python -c 'import torch; print(torch.__version__)'))"
$PIP install --no-build-isolation "$ROOT[test,triton,mat]"
