#!/usr/bin/env bash
# Runs the test suite from a fresh checkout: sets up .venv (scripts/setup.sh), then pytest.
# Extra arguments go to pytest (e.g. -x -k edge_map).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The venv's python (a bare `pytest` may be the system's, when pytest came with the system
# packages), with -P so that the source tree, which has no compiled extension, is not put on
# sys.path ahead of the installed package (as plain `python -m pytest` would).
python -P -m pytest tests -q -p no:cacheprovider "$@"
