"""Edge map (docs/kernels.md): all K(K-1)/2 pairs, gaussian (AutoLink's draw_lines) and exp falloff.

The `torch` backend is the reference and AutoLink's approach: it materialises the (B, E, H, W)
scores. The fused backends keep O(B H W) + O(B E).

Beside them: `cpu-unculled`, the fused CPU kernel with its tile culling switched off
(KP3D_EDGE_MAP_CULL=0: every edge at every pixel, the kernel before culling), so that the two
are timed in the same run; and `keops`, when pykeops imports: the forward as a KeOps LazyTensor
formula with a Max reduction over the edges (KeOps compiles it on first use, in the warm-up).
"""


import pytest
import torch

import kp3d_kernels
from kp3d_kernels.ops.edge_map import culling

pytestmark = pytest.mark.bench_op("edge_map")

# sigma: AutoLink's `thick` for the gaussian falloff; a comparable width for exp
SIGMA = {"gaussian": 1e-3, "exp": 2e-2}
# The reference's peak memory in bytes per element of its (B, E, H, W) float32 tensor, measured
# with memory.peak_extra_bytes (about 7.3 x 4 forward, 10.3 x 4 forward+backward), rounded up.
REFERENCE_BYTES_PER_ELEMENT = {"fwd": 8 * 4, "fwd+bwd": 11 * 4}


def keops_edge_map(keypoints, weights, size, sigma, falloff):
    """max_e w_e exp(-f_e(p)) as a KeOps reduction: pixels are the i variables, edges the j
    variables, a batch dimension per sample; nothing of size (B, E, H, W) is formed."""
    from pykeops.torch import LazyTensor

    B, K, _ = keypoints.shape
    H, W = size
    edges = kp3d_kernels.all_pairs(K, keypoints.device)
    a = keypoints[:, edges[:, 0]]  # (B, E, 2)
    v = keypoints[:, edges[:, 1]] - a
    inv_len2 = 1.0 / ((v * v).sum(-1, keepdim=True) + 1e-12)  # (B, E, 1)
    log_w = torch.log(weights).expand(B, -1).unsqueeze(-1)  # (B, E, 1)
    ys = torch.linspace(-1, 1, H, device=keypoints.device, dtype=keypoints.dtype)
    xs = torch.linspace(-1, 1, W, device=keypoints.device, dtype=keypoints.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(1, H * W, 2)
    p = LazyTensor(grid.expand(B, -1, -1).contiguous()[:, :, None, :])  # (B, HW, 1, 2)
    A = LazyTensor(a.contiguous()[:, None, :, :])  # (B, 1, E, 2)
    V = LazyTensor(v.contiguous()[:, None, :, :])
    IL = LazyTensor(inv_len2.contiguous()[:, None, :, :])
    LW = LazyTensor(log_w.contiguous()[:, None, :, :])
    d = p - A
    t = ((d | V) * IL).clamp(0, 1)
    r = d - t * V
    d2 = (r ** 2).sum(-1)
    f = d2 / sigma if falloff == "gaussian" else d2.sqrt() / sigma
    best = (LW - f).max(dim=2)  # (B, HW, 1): max_e log w_e - f_e
    return best.exp().reshape(B, H, W)


def test_edge_map(run_bench, op, device, backend, direction, falloff, B, K, H, W):
    if backend == "cpu-unculled" and device != "cpu":
        pytest.skip("cpu-unculled runs on CPU tensors")
    if backend == "keops" and direction != "fwd":
        pytest.skip("the KeOps peer is a forward only")
    generator = torch.Generator().manual_seed(0)
    E = K * (K - 1) // 2
    keypoints = (torch.rand(B, K, 2, generator=generator) * 1.8 - 0.9).to(device)
    weights = (torch.rand(E, generator=generator) + 0.1).to(device)
    grad_out = torch.rand(B, H, W, generator=generator).to(device)
    sigma = SIGMA[falloff]

    if backend == "keops":
        def forward():
            return keops_edge_map(keypoints, weights, (H, W), sigma, falloff)
    elif backend == "cpu-unculled":
        def forward():
            with culling(False):
                return kp3d_kernels.edge_map(keypoints, weights, (H, W), sigma, falloff=falloff,
                                             backend="cpu")
    else:
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
    def check(result):
        if direction == "fwd" and backend in ("keops", "cpu-unculled"):
            ref = kp3d_kernels.edge_map(keypoints.detach().double(), weights.detach().double(),
                                        (H, W), sigma, falloff=falloff, backend="torch")
            torch.testing.assert_close(result.double(), ref, rtol=1e-4, atol=1e-6)

    run_bench(fn, device=device, estimate_bytes=estimate, check=check,
              info={"E": E, "sigma": sigma})
