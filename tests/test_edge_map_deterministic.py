"""The CUDA edge-map backward is deterministic: fixed-order sums, no atomics (it needs a GPU)."""

import pytest
import torch

import kp3d_kernels as kk
from helpers import rand_keypoints

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and "cuda" in kk.available_backends("cuda")),
    reason="needs a CUDA device and the cuda backend")


def grads(kp, w, falloff, dtype):
    kp = kp.to("cuda", dtype).requires_grad_()
    w = w.to("cuda", dtype).requires_grad_()
    out = kk.edge_map(kp, w, (61, 67), 2.5e-3 if falloff == "gaussian" else 0.03,
                      falloff=falloff, backend="cuda")
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
    return torch.autograd.grad((out * cot).sum(), (kp, w))


@pytest.mark.parametrize("falloff", ["exp", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_two_runs_are_bit_identical(falloff, dtype):
    kp = rand_keypoints(5, 16, seed=7)
    w = torch.rand(5, 120, generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 0.05
    a = grads(kp, w, falloff, dtype)
    b = grads(kp, w, falloff, dtype)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_runs_under_deterministic_algorithms():
    kp = rand_keypoints(2, 6, seed=3)
    w = torch.rand(15, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.05
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        gk, gw = grads(kp, w, "gaussian", torch.float32)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.isfinite(gk).all() and torch.isfinite(gw).all()
