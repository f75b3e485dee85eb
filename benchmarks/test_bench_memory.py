"""The peak-memory measure itself (memory.py), on known allocations. Fast; not a benchmark."""

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the CUDA caching allocator rounds a block up to a multiple of 512 bytes
SLACK = {"cpu": 0, "cuda": 512}


@pytest.mark.parametrize("device", DEVICES)
def test_one_allocation(peak_extra_bytes, device):
    peak = peak_extra_bytes(lambda: torch.empty(1_000_000, device=device), device)
    assert 4_000_000 <= peak <= 4_000_000 + SLACK[device]


@pytest.mark.parametrize("device", DEVICES)
def test_temporaries_count_at_their_peak(peak_extra_bytes, device):
    def fn():
        a = torch.empty(1_000_000, device=device)
        b = a + 1  # a and b live together: 8 MB
        del a
        return b[:10].clone()  # after the peak: small

    peak = peak_extra_bytes(fn, device)
    assert 8_000_000 <= peak <= 8_000_000 + 4 * 1024


@pytest.mark.parametrize("device", DEVICES)
def test_memory_held_before_the_call_is_not_counted(peak_extra_bytes, device):
    x = torch.zeros(1_000_000, device=device)
    # only the scalar 1 becomes a (tiny) tensor; the 4 MB of x are not counted
    assert peak_extra_bytes(lambda: x.add_(1), device) <= 512


def test_sequential_allocations_reuse(peak_extra_bytes):
    def fn():
        for _ in range(5):
            t = torch.empty(1_000_000)  # freed before the next one: the peak is one, not five
            del t

    assert peak_extra_bytes(fn, "cpu") == 4_000_000
