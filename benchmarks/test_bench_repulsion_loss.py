"""Repulsion loss (docs/kernels.md): L = -sum_i d_i exp(-d_i / h), mean over the batch."""

import pytest
import torch

import kp3d_kernels

pytestmark = pytest.mark.bench_op("repulsion_loss")

BANDWIDTH = 0.1


def test_repulsion_loss(run_bench, op, device, backend, direction, B, K, D):
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(B, K, D, generator=generator) * 2 - 1).to(device)

    def forward():
        return kp3d_kernels.repulsion_loss(points, BANDWIDTH, backend=backend)

    if direction == "fwd":
        fn = forward
    else:
        points.requires_grad_()

        def fn():
            return torch.autograd.grad(forward(), points)

    run_bench(fn, device=device, info={"bandwidth": BANDWIDTH})
