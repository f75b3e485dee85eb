"""Nearest other point (docs/kernels.md): distance and index; the gradient flows through the distance.

Baseline beside the `torch` reference: `torch.cdist` + `min` (the usual one-liner).
"""

import pytest
import torch

import kp3d_kernels

pytestmark = pytest.mark.bench_op("nearest_neighbor")


def test_nearest_neighbor(run_bench, op, device, backend, direction, B, K, D):
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(B, K, D, generator=generator) * 2 - 1).to(device)
    grad_out = torch.rand(B, K, generator=generator).to(device)

    if backend == "cdist":
        self_mask = torch.eye(K, dtype=torch.bool, device=device)

        def forward():
            dist, index = torch.cdist(points, points).masked_fill(self_mask, float("inf")).min(-1)
            return dist, index
    else:
        def forward():
            return kp3d_kernels.nearest_neighbor(points, backend=backend)

    if direction == "fwd":
        fn = forward
    else:
        points.requires_grad_()

        def fn():
            return torch.autograd.grad(forward()[0], points, grad_out)

    def check(result):
        if direction == "fwd":
            dist, index = kp3d_kernels.nearest_neighbor(points.detach(), backend="torch")
            torch.testing.assert_close(result[0], dist, rtol=1e-4, atol=1e-5)
            assert torch.equal(result[1], index)

    run_bench(fn, device=device, check=check)
