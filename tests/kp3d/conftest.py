"""Fixtures of the kp3d (model, training, CLI) tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: two OpenMP threads on a loaded two-core machine run many times
    slower than one, and the tiny models here gain nothing from a second."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
