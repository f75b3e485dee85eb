#!/usr/bin/env bash
# The main job from a fresh checkout: sets up .venv (scripts/setup.sh), then trains on the
# built-in synthetic faces, evaluates, and writes a report to runs/demo (or --out DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
kp3d demo --out runs/demo "$@"
