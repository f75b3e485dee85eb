"""Nearest neighbour and repulsion loss: every backend against the PyTorch reference."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS, interpreted
from helpers import grads, rand_keypoints


def run_nn(points, backend, device):
    p = points.detach().to(device).requires_grad_()
    dist, index = kk.nearest_neighbor(p, backend=backend)
    return dist, index, grads(dist, (p,))[0]


def run_rep(points, h, backend, device, reduction="mean"):
    p = points.detach().to(device).requires_grad_()
    loss = kk.repulsion_loss(p, h, reduction=reduction, backend=backend)
    return loss, grads(loss, (p,))[0]


def check_against_reference(points, backend, device, tol):
    ref, got = run_nn(points, "torch", "cpu"), run_nn(points, backend, device)
    assert torch.equal(got[1].cpu(), ref[1]) and got[1].dtype == torch.int64
    torch.testing.assert_close(got[0].cpu().double(), ref[0].double(), **tol)
    torch.testing.assert_close(got[2].cpu().double(), ref[2].double(), **tol)
    for reduction in ("mean", "sum", "none"):
        ref_l, got_l = run_rep(points, 0.3, "torch", "cpu", reduction), run_rep(points, 0.3, backend, device, reduction)
        torch.testing.assert_close(got_l[0].cpu().double(), ref_l[0].double(), **tol)
        torch.testing.assert_close(got_l[1].cpu().double(), ref_l[1].double(), **tol)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("B,K", [(1, 2), (2, 3), (3, 8), (1, 17), (2, 33), (1, 64), (2, 257)])
def test_matches_reference(backend, device, D, dtype, B, K):
    if interpreted(backend, device) and K > 64:
        pytest.skip("K = 257 is checked on the compiled backends; the interpreter is slow")
    points = rand_keypoints(B, K, D, seed=K * 10 + D, dtype=dtype)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    check_against_reference(points, backend, device, tol)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("D", [2, 3])
def test_gradcheck_float64(backend, device, D):
    p = rand_keypoints(2, 5, D, seed=D).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: kk.nearest_neighbor(x, backend=backend)[0], (p,))
    assert torch.autograd.gradcheck(lambda x: kk.repulsion_loss(x, 0.4, backend=backend), (p,))


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_coincident_points_and_ties(backend, device):
    # points 0, 1 coincide (distance 0, gradient 0); point 2 is equidistant from 0, 1 and 3,
    # point 3 from 2 and 4: ties go to the lowest index
    p = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]],
                     dtype=torch.float64)
    dist, index, g = run_nn(p, backend, device)
    assert index.cpu().tolist() == [[1, 0, 0, 2, 3]]
    torch.testing.assert_close(dist.cpu(), torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]], dtype=torch.float64))
    assert torch.isfinite(g).all()
    check_against_reference(p, backend, device, dict(rtol=1e-9, atol=1e-12))
    loss, g = run_rep(p, 0.5, backend, device)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_nan_stays_in_its_sample(backend, device):
    p = rand_keypoints(2, 4, seed=3)
    p[1, 0, 1] = float("nan")
    dist, _ = kk.nearest_neighbor(p.to(device), backend=backend)
    assert torch.isfinite(dist[0]).all() and torch.isnan(dist[1]).all()
    per_sample = kk.repulsion_loss(p.to(device), 0.3, reduction="none", backend=backend)
    assert torch.isfinite(per_sample[0]) and torch.isnan(per_sample[1])


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_half_precision_and_non_contiguous(backend, device):
    p = rand_keypoints(3, 6, 3, seed=2)
    strided = p.transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided.is_contiguous()
    torch.testing.assert_close(kk.nearest_neighbor(strided.to(device), backend=backend)[0].cpu(),
                               kk.nearest_neighbor(p, backend="torch")[0])
    for dtype in (torch.float16, torch.bfloat16):
        x = p.to(dtype)
        d, i = kk.nearest_neighbor(x.to(device), backend=backend)
        dr, ir = kk.nearest_neighbor(x.double(), backend="torch")
        assert d.dtype == dtype and torch.equal(i.cpu(), ir)
        torch.testing.assert_close(d.double().cpu(), dr, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_property_sweep(backend, device):
    slow = interpreted(backend, device)

    @settings(max_examples=8 if slow else 40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(B=st.integers(1, 3), K=st.integers(2, 40), D=st.sampled_from([2, 3]),
           seed=st.integers(0, 2**16))
    def check(B, K, D, seed):
        check_against_reference(rand_keypoints(B, K, D, seed=seed), backend, device,
                                dict(rtol=1e-9, atol=1e-12))

    check()


def test_repulsion_reference_by_hand():
    # two points at distance 0.5, bandwidth 0.25: L = -2 * 0.5 exp(-2)
    p = torch.tensor([[[0.0, 0.0], [0.5, 0.0]]], dtype=torch.float64)
    expected = -2 * 0.5 * torch.exp(torch.tensor(-2.0, dtype=torch.float64))
    torch.testing.assert_close(kk.repulsion_loss(p, 0.25, backend="torch"), expected)
