"""The (backend, device) pairs the op tests run on. Imported by the test modules after
tests/conftest.py has set TRITON_INTERPRET (a module of its own name: `conftest` is ambiguous
when several test folders have one)."""

import pytest
import torch

import kp3d_kernels

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Every (backend, device) pair that runs here, except the reference itself.
KERNEL_BACKENDS = [pytest.param(b, d, id=f"{b}-{d}") for d in DEVICES
                   for b in kp3d_kernels.available_backends(d) if b != "torch"]


def interpreted(backend, device):
    """The Triton interpreter is slow: such cases use fewer and smaller examples."""
    return backend == "triton" and device == "cpu"
