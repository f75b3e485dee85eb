"""Strict JSON for metrics: NaN and infinity become null, numpy scalars become numbers."""

import json
import math
import os


def finite(obj):
    """A copy of obj with every non-finite float replaced by None (metrics.json is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _default(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return v if math.isfinite(v) else None


def write_json(path, obj) -> str:
    """Write obj as indented strict JSON to path (its folder is created). Returns path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(finite(obj), f, indent=2, allow_nan=False, default=_default)
    return path


__all__ = ["finite", "write_json"]
