"""From a validated call to the family of low-level ops that runs it."""

import functools

import torch

from . import _backend
from ._registry import Family, register_family


@functools.cache
def native_family() -> Family:
    _backend.native_loaded()
    return register_family("")


@functools.cache
def triton_family() -> Family:
    from . import triton as _triton  # defines the triton_* ops with their fakes

    return register_family("triton_", fakes=False)


def family(backend: str) -> Family:
    return triton_family() if backend == "triton" else native_family()


def compute_dtype(*tensors) -> torch.dtype:
    """float64 when any input is float64, else float32 (half inputs are computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
