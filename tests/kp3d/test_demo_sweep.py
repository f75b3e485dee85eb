"""`scripts/demo_sweep.py`: the flat-background diagnostic really removes the clutter."""

import importlib.util
from pathlib import Path

from kp3d.data import build_dataset, render

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_sweep.py"


def top_rows_spread(n=8):
    """Per image, the standard deviation of its top 6 rows (background in these faces) over
    pixels, averaged over the colour channels."""
    ds = build_dataset("synthetic:face", "test", 64, length=n)
    return [ds[i]["image"][:, :6].std((1, 2)).mean().item() for i in range(n)]


def test_flat_background(monkeypatch):
    spec = importlib.util.spec_from_file_location("demo_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(render, "random_background", render.random_background)  # restored after
    cluttered = top_rows_spread()
    module.use_flat_background()
    flat = top_rows_spread()
    # what is left on a flat background is the sensor noise and a hair or shoulder in view
    assert max(flat) < 0.06 and sum(flat) < 0.5 * sum(cluttered)
