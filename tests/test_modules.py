"""Module forms: EdgeMapRenderer, SoftArgmax2d, RepulsionLoss."""

import torch

import kp3d_kernels as kk
from helpers import rand_keypoints


def test_edge_map_renderer_shapes_state_and_gradients():
    r = kk.EdgeMapRenderer(5, (12, 9), 0.05)
    kp = rand_keypoints(3, 5, dtype=torch.float32).requires_grad_()
    out = r(kp)
    assert out.shape == (3, 1, 12, 9) and out.dtype == torch.float32
    out.sum().backward()
    assert r.theta.grad is not None and r.theta.grad.shape == (10,)
    assert kp.grad is not None and torch.isfinite(kp.grad).all()
    # weights and edges travel with the state dict
    r2 = kk.EdgeMapRenderer(5, (12, 9), 0.05)
    r2.load_state_dict(r.state_dict())
    torch.testing.assert_close(r2(kp), out)
    assert "num_keypoints=5" in repr(r)


def test_edge_map_renderer_custom_edges_and_fixed_weights():
    edges = [[0, 1], [1, 2], [2, 3]]
    r = kk.EdgeMapRenderer(4, 8, 0.1, edges=edges, learnable=False, falloff="gaussian")
    assert not list(r.parameters())
    kp = rand_keypoints(2, 4, dtype=torch.float32)
    expected = kk.edge_map(kp, torch.full((3,), 0.01814992791, dtype=torch.float32), 8, 0.1,
                           edges=torch.tensor(edges), falloff="gaussian", backend="torch")
    torch.testing.assert_close(r(kp)[:, 0], expected)


def test_soft_argmax_and_repulsion_modules_match_functions():
    h = torch.randn(2, 4, 6, 7)
    torch.testing.assert_close(kk.SoftArgmax2d(temperature=0.5)(h), kk.soft_argmax(h, temperature=0.5))
    p = rand_keypoints(2, 6, 3, dtype=torch.float32)
    torch.testing.assert_close(kk.RepulsionLoss(0.2, reduction="sum")(p),
                               kk.repulsion_loss(p, 0.2, reduction="sum"))


def test_edge_map_renderer_initial_weight():
    fixed = kk.EdgeMapRenderer(5, 8, 0.1, learnable=False, initial_weight=0.7)
    torch.testing.assert_close(fixed.weights, torch.full((10,), 0.7))
    torch.manual_seed(0)
    learned = kk.EdgeMapRenderer(5, 8, 0.1, initial_weight=2.5)
    # theta = (N(0, 1) / 10 + c) / lr_scale: the weights scatter around 2.5, not around 0.018
    assert (learned.weights - 2.5).abs().max() < 0.5
    torch.manual_seed(0)
    default = kk.EdgeMapRenderer(5, 8, 0.1)
    torch.manual_seed(0)
    autolink_theta = (torch.randn(10) / 10 - 4) / 512.0
    torch.testing.assert_close(default.theta.detach(), autolink_theta)


def test_edge_map_renderer_rejects_bad_initial_weight():
    import pytest

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="initial_weight"):
            kk.EdgeMapRenderer(5, 8, 0.1, initial_weight=bad)
