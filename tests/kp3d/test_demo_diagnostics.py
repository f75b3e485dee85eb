"""`scripts/demo_diagnostics.py oracle`: a few steps of each built-in keypoint source run and
report a finite test loss (the measurements it makes are in docs/training.md)."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_diagnostics.py"


@pytest.mark.parametrize("source", ["landmarks", "empty"])
def test_oracle_runs(source):
    res = subprocess.run([sys.executable, str(SCRIPT), "oracle", source, "--steps", "2",
                          "--every", "1", "--decoder-widths", "4", "8"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    losses = [float(v) for v in re.findall(r"step \d+ test loss ([0-9.]+)", res.stdout)]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses), res.stdout
