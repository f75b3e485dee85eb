"""From a validated call to the family of low-level ops that runs it."""

import torch

from . import _backend
from ._registry import Family, register_family

# Registered once at import, so that tracing (torch.compile) only reads these.
_NATIVE = register_family("") if _backend.NATIVE else None
_TRITON = register_family("triton_", fakes=False) if _backend.TRITON else None


def family(backend: str) -> Family:
    """The low-level ops of a resolved backend other than "torch"."""
    return _TRITON if backend == "triton" else _NATIVE


def compute_dtype(*tensors) -> torch.dtype:
    """float64 when any input is float64, else float32 (half inputs are computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
