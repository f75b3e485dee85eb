"""Shared fixtures. TRITON_INTERPRET must be set before any module defining Triton kernels is
imported (SPEC section 6): without a GPU the Triton backend is tested on CPU tensors through
the interpreter."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import kp3d_kernels  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Every (backend, device) pair that runs here, except the reference itself.
KERNEL_BACKENDS = [pytest.param(b, d, id=f"{b}-{d}") for d in DEVICES
                   for b in kp3d_kernels.available_backends(d) if b != "torch"]


def pytest_report_header(config):
    return (f"kp3d_kernels backends: {kp3d_kernels.available_backends()}; "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}")


def interpreted(backend, device):
    """The Triton interpreter is slow: such cases use fewer and smaller examples."""
    return backend == "triton" and device == "cpu"
