"""TRITON_INTERPRET must be set before any module defining Triton kernels is imported
(docs/kernels.md): without a GPU the Triton backend is tested on CPU tensors through the
interpreter. The backends under test are listed in tests/backends.py."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import kp3d_kernels  # noqa: E402


def pytest_report_header(config):
    return (f"kp3d_kernels backends: {kp3d_kernels.available_backends()}; "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}")
