"""Edge map (SPEC section 3): all K(K-1)/2 pairs, gaussian (AutoLink's draw_lines) and exp falloff.

The `torch` backend is the reference and AutoLink's approach: it materialises the (B, E, H, W)
scores. The fused backends keep O(B H W) + O(B E).
"""

import pytest
import torch

import kp3d_kernels

pytestmark = pytest.mark.bench_op("edge_map")

# sigma: AutoLink's `thick` for the gaussian falloff; a comparable width for exp
SIGMA = {"gaussian": 1e-3, "exp": 2e-2}
# The reference's peak memory in bytes per element of its (B, E, H, W) float32 tensor, measured
# with memory.peak_extra_bytes (about 7.3 x 4 forward, 10.3 x 4 forward+backward), rounded up.
REFERENCE_BYTES_PER_ELEMENT = {"fwd": 8 * 4, "fwd+bwd": 11 * 4}


def test_edge_map(run_bench, op, device, backend, direction, falloff, B, K, H, W):
    generator = torch.Generator().manual_seed(0)
    E = K * (K - 1) // 2
    keypoints = (torch.rand(B, K, 2, generator=generator) * 1.8 - 0.9).to(device)
    weights = (torch.rand(E, generator=generator) + 0.1).to(device)
    grad_out = torch.rand(B, H, W, generator=generator).to(device)
    sigma = SIGMA[falloff]

    def forward():
        return kp3d_kernels.edge_map(keypoints, weights, (H, W), sigma, falloff=falloff,
                                     backend=backend)

    if direction == "fwd":
        fn = forward
    else:
        keypoints.requires_grad_()
        weights.requires_grad_()

        def fn():
            return torch.autograd.grad(forward(), (keypoints, weights), grad_out)

    estimate = None
    if backend == "torch":
        estimate = B * E * H * W * REFERENCE_BYTES_PER_ELEMENT[direction]
    run_bench(fn, device=device, estimate_bytes=estimate, info={"E": E, "sigma": sigma})
