"""EdgeMapRenderer(falloff="gaussian") is a drop-in replacement for AutoLink's renderer.

`autolink_draw_lines` below re-states AutoLink's renderer from its formula (docs/kernels.md,
PRIOR-ART.md): keypoints in (row, col) order on a linspace(-1, 1, size) grid, all pairs i < j,
score exp(-d^2 / thick) * w, hard max over pairs. It is written independently of kp3d_kernels.
"""

import pytest
import torch
import torch.nn.functional as F

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS
from helpers import gen


def autolink_draw_lines(keypoints_rc, theta, thick, size, sklr=512.0):
    """keypoints (B, K, 2) as (row, col) in [-1, 1]; theta (E,) -> (B, 1, size, size)."""
    B, K, _ = keypoints_rc.shape
    lin = torch.linspace(-1, 1, size, dtype=keypoints_rc.dtype)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=-1).reshape(1, 1, -1, 2)  # (row, col)
    i, j = torch.triu_indices(K, K, 1)
    start = keypoints_rc[:, i].unsqueeze(2)  # (B, E, 1, 2)
    end = keypoints_rc[:, j].unsqueeze(2)
    seg = end - start
    along = ((grid - start) * seg).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)
    along = along.clamp(0, 1).unsqueeze(-1)
    nearest = start + along * seg
    dist2 = ((grid - nearest) ** 2).sum(-1)  # (B, E, size*size)
    weight = F.softplus(sklr * theta).reshape(1, -1, 1)
    heat = torch.exp(-dist2 / thick) * weight
    return heat.max(dim=1).values.reshape(B, 1, size, size)


@pytest.mark.parametrize("backend", ["torch"] + [p.values[0] for p in KERNEL_BACKENDS if p.values[1] == "cpu"])
@pytest.mark.parametrize("K,thick", [(8, 2.5e-3), (16, 1e-3)])
def test_renderer_matches_autolink(backend, K, thick):
    size, B = 32, 2
    kp_rc = (torch.rand(B, K, 2, generator=gen(K), dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    renderer = kk.EdgeMapRenderer(K, size, thick, falloff="gaussian", backend=backend).double()
    theta = renderer.theta.detach().clone().requires_grad_()

    ours = renderer(kp_rc.flip(-1))  # (row, col) -> (x, y)
    theirs = autolink_draw_lines(kp_rc, theta, thick, size)
    # linspace and -1 + 2i/(n-1) differ in the last bits: forward agrees to ~1e-12
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)

    cot = torch.randn(ours.shape, generator=gen(1), dtype=torch.float64)
    g_ours = torch.autograd.grad((ours * cot).sum(), (kp_rc, renderer.theta))
    g_theirs = torch.autograd.grad((theirs * cot).sum(), (kp_rc, theta))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9 * max(b.abs().max().item(), 1.0))


def test_renderer_initial_weights_are_autolinks():
    torch.manual_seed(0)
    r = kk.EdgeMapRenderer(32, 16, 0.01)
    w = r.weights
    assert w.shape == (496,)
    # softplus(N(0, 1)/10 - 4): about 0.018, within a few percent
    assert 0.015 < w.mean().item() < 0.021 and w.std().item() < 0.005
