#!/usr/bin/env bash
# Runs the test suite from a fresh checkout: sets up .venv (scripts/setup.sh), then pytest.
# Extra arguments go to pytest (e.g. -x -k edge_map).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# `pytest`, not `python -m pytest`: the latter would import the source tree, which has no
# compiled extension, instead of the installed package.
pytest tests -q -p no:cacheprovider "$@"
