"""Spatial soft-argmax (docs/kernels.md), softmax normalisation (AutoLink), temperature 1.

Baselines beside the `torch` reference: kornia's `spatial_soft_argmax2d` when kornia is
installed (optional; the same align-corners grid and (x, y) order).
"""

import pytest
import torch

import kp3d_kernels

pytestmark = pytest.mark.bench_op("soft_argmax")


def _kornia(heatmaps):
    from kornia.geometry.subpix import spatial_soft_argmax2d

    # kornia multiplies by its temperature: 1.0 is the same softmax(h / 1)
    return spatial_soft_argmax2d(heatmaps, temperature=torch.tensor(1.0, device=heatmaps.device),
                                 normalized_coordinates=True)


def test_soft_argmax(run_bench, op, device, backend, direction, B, K, H, W):
    generator = torch.Generator().manual_seed(0)
    heatmaps = (torch.randn(B, K, H, W, generator=generator) * 3).to(device)
    grad_out = torch.randn(B, K, 2, generator=generator).to(device)

    if backend == "kornia":
        def forward():
            return _kornia(heatmaps)
    else:
        def forward():
            return kp3d_kernels.soft_argmax(heatmaps, backend=backend)

    if direction == "fwd":
        fn = forward
    else:
        heatmaps.requires_grad_()

        def fn():
            return torch.autograd.grad(forward(), heatmaps, grad_out)

    def check(result):
        if direction == "fwd":
            expected = kp3d_kernels.soft_argmax(heatmaps.detach(), backend="torch")
            torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-5)

    run_bench(fn, device=device, check=check)
