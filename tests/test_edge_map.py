"""Edge map: every backend against the PyTorch reference, forward and both gradients."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS, interpreted
from helpers import assert_close_norm, grads, rand_keypoints, rand_weights

FALLOFFS = ["exp", "gaussian"]


def run(keypoints, weights, size, sigma, backend, device, **kw):
    kp = keypoints.detach().to(device).requires_grad_()
    w = weights.detach().to(device).requires_grad_()
    if kw.get("edges") is not None:
        kw = dict(kw, edges=kw["edges"].to(device))
    out = kk.edge_map(kp, w, size, sigma, backend=backend, **kw)
    gk, gw = grads(out, (kp, w))
    return out, gk, gw


def compare(keypoints, weights, size, sigma, backend, device, *, exact, **kw):
    """Kernel vs reference. float64 (exact=True): tight elementwise; float32: the reference is
    computed in float64 from the same inputs and compared at float32 accuracy."""
    ref = run(keypoints.double(), weights.double(), size, sigma, "torch", "cpu", **kw)
    got = run(keypoints, weights, size, sigma, backend, device, **kw)
    assert got[0].dtype == keypoints.dtype and got[0].shape == ref[0].shape
    if exact:
        # The reference differentiates through t as well; that term is 0 in exact arithmetic
        # (r is orthogonal to v) but its rounding, amplified by 1/d near a segment, leaves
        # ~1e-7 relative differences in the keypoint gradient.
        torch.testing.assert_close(got[0].cpu(), ref[0], rtol=1e-9, atol=1e-12, msg="out")
        for name, a, b in zip(("grad_keypoints", "grad_weights"), got[1:], ref[1:]):
            atol = 1e-9 * max(b.abs().max().item(), 1.0)
            torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=atol, msg=name)
    else:
        torch.testing.assert_close(got[0].cpu().double(), ref[0], rtol=1e-5, atol=2e-6)
        assert_close_norm(got[1], ref[1], 1e-4, "grad_keypoints")
        assert_close_norm(got[2], ref[2], 1e-5, "grad_weights")


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("B,K,H,W", [(1, 2, 7, 5), (2, 3, 13, 17), (3, 8, 19, 11), (1, 17, 9, 23),
                                     (2, 33, 6, 7)])
def test_matches_reference(backend, device, falloff, dtype, B, K, H, W):
    E = K * (K - 1) // 2
    kp = rand_keypoints(B, K, seed=B * 100 + K, dtype=dtype)
    w = rand_weights((E,), seed=K, dtype=dtype)
    sigma = 0.05 if falloff == "exp" else 0.01
    compare(kp, w, (H, W), sigma, backend, device, exact=dtype == torch.float64, falloff=falloff)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_custom_edges_and_batched_weights(backend, device, falloff):
    K, B = 6, 3
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 1], [2, 2], [3, 1]])
    kp = rand_keypoints(B, K, seed=11)
    w = rand_weights((B, edges.shape[0]), seed=3)
    # edges on the CPU: `run` moves them to each side's device (the reference runs on the CPU)
    compare(kp, w, (10, 14), 0.03, backend, device, exact=True, falloff=falloff, edges=edges)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_gradcheck_float64(backend, device, falloff):
    kp = rand_keypoints(2, 4, seed=5).to(device).requires_grad_()
    w = rand_weights((6,), seed=5).to(device).requires_grad_()
    sigma = 0.3 if falloff == "exp" else 0.1
    fn = lambda k, ww: kk.edge_map(k, ww, (6, 7), sigma, falloff=falloff, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (kp, w), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_float16_and_bfloat16_inputs(backend, device):
    kp = rand_keypoints(2, 5, seed=8)
    w = rand_weights((10,), seed=8)
    ref = kk.edge_map(kp, w, (9, 10), 0.05, backend="torch")
    for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)):
        k16 = kp.to(dtype).to(device).requires_grad_()
        out = kk.edge_map(k16, w.to(dtype).to(device), (9, 10), 0.05, backend=backend)
        assert out.dtype == dtype
        # inputs are rounded to `dtype`, the computation is float32: compare with the reference
        # of the rounded inputs
        ref16 = kk.edge_map(kp.to(dtype).double(), w.to(dtype).double(), (9, 10), 0.05, backend="torch")
        torch.testing.assert_close(out.double().cpu(), ref16, rtol=tol, atol=tol)
        out.float().sum().backward()
        assert k16.grad.dtype == dtype and torch.isfinite(k16.grad).all()
    assert ref.dtype == torch.float64


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_non_contiguous_inputs(backend, device):
    kp_t = rand_keypoints(2, 5, seed=9).transpose(0, 1).contiguous().transpose(0, 1)  # (2, 5, 2), strided
    w_full = rand_weights((2, 20), seed=9)
    w = w_full[:, ::2]  # (2, 10), strided
    assert not kp_t.is_contiguous() and not w.is_contiguous()
    compare(kp_t, w, (8, 9), 0.05, backend, device, exact=True)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_coincident_keypoints_and_zero_length_edges(backend, device, falloff):
    kp = torch.zeros(2, 4, 2, dtype=torch.float64)
    kp[1] = torch.tensor([[0.3, -0.2], [0.3, -0.2], [-0.45, 0.55], [0.3, -0.2]])
    w = rand_weights((6,), seed=2)
    compare(kp, w, (9, 9), 0.2, backend, device, exact=True, falloff=falloff)
    out = kk.edge_map(kp.to(device), w.to(device), (9, 9), 0.2, falloff=falloff, backend=backend)
    # sample 0: every edge is the point (0, 0); the centre pixel gets max(w) exactly
    assert out[0, 4, 4].item() == pytest.approx(w.max().item(), rel=1e-12)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_pixels_exactly_on_a_segment(backend, device, falloff):
    # horizontal segment along the middle row (y = 0) of a 5 x 9 grid
    kp = torch.tensor([[[-0.5, 0.0], [0.75, 0.0], [0.9, 0.9]]], dtype=torch.float64)
    w = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    k = kp.to(device).requires_grad_()
    out = kk.edge_map(k, w.to(device), (5, 9), 0.1, falloff=falloff, backend=backend)
    on_segment = out[0, 2, 2:8]  # x = -0.5 ... 0.75
    torch.testing.assert_close(on_segment.cpu(), torch.full((6,), 0.7, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(k.grad).all()
    compare(kp, w, (5, 9), 0.1, backend, device, exact=True, falloff=falloff)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_all_weights_zero(backend, device):
    kp = rand_keypoints(2, 4, seed=4)
    w = torch.zeros(6, dtype=torch.float64)
    out, gk, gw = run(kp, w, (6, 8), 0.1, backend, device)
    assert (out == 0).all() and (gk == 0).all()
    ref = run(kp, w, (6, 8), 0.1, "torch", "cpu")
    torch.testing.assert_close(gw.cpu(), ref[2])  # ties go to edge 0, as in the reference
    assert gw[0] != 0 and (gw[1:] == 0).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_nan_stays_in_its_sample(backend, device):
    kp = rand_keypoints(2, 4, seed=6)
    kp[1, 2, 0] = float("nan")
    out = kk.edge_map(kp.to(device), rand_weights((6,)).to(device), (5, 6), 0.1, backend=backend)
    assert torch.isfinite(out[0]).all()
    assert torch.isnan(out[1]).all()  # every pixel's max meets a NaN edge (all pairs)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_single_pixel_axes(backend, device):
    kp = rand_keypoints(1, 3, seed=1)
    w = rand_weights((3,))
    compare(kp, w, (1, 6), 0.1, backend, device, exact=True)
    compare(kp, w, (5, 1), 0.1, backend, device, exact=True)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_property_sweep(backend, device):
    slow = interpreted(backend, device)

    @settings(max_examples=8 if slow else 40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(B=st.integers(1, 3), K=st.integers(2, 12 if slow else 24), H=st.integers(1, 12),
           W=st.integers(1, 12), falloff=st.sampled_from(FALLOFFS),
           sigma=st.floats(1e-3, 2.0), batched=st.booleans(), seed=st.integers(0, 2**16))
    def check(B, K, H, W, falloff, sigma, batched, seed):
        E = K * (K - 1) // 2
        kp = rand_keypoints(B, K, seed=seed, spread=1.5)
        w = rand_weights((B, E) if batched else (E,), seed=seed)
        compare(kp, w, (H, W), sigma, backend, device, exact=True, falloff=falloff)

    check()


def test_default_edges_are_triu_order():
    K = 7
    edges = kk.all_pairs(K)
    assert torch.equal(edges, torch.triu_indices(K, K, 1).t())
    kp = rand_keypoints(2, K, seed=3)
    w = rand_weights((edges.shape[0],))
    a = kk.edge_map(kp, w, 8, 0.1, backend="torch")
    b = kk.edge_map(kp, w, 8, 0.1, edges=edges, backend="torch")
    assert torch.equal(a, b)


def test_reference_against_hand_computed_values():
    # one edge from (-1, 0) to (1, 0) on a 3 x 3 grid, weight 0.5, gaussian sigma 0.5:
    # rows y = -1, 0, 1 -> d = 1, 0, 1 -> 0.5 exp(-2), 0.5, 0.5 exp(-2)
    kp = torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    w = torch.tensor([0.5], dtype=torch.float64)
    out = kk.edge_map(kp, w, 3, 0.5, falloff="gaussian", backend="torch")[0]
    row = torch.tensor([0.5 * torch.exp(torch.tensor(-2.0)).item()] * 3, dtype=torch.float64)
    torch.testing.assert_close(out, torch.stack([row, torch.full((3,), 0.5, dtype=torch.float64), row]))
    # exp falloff: corners beyond the end points, d = sqrt(1 + 0) = 1 -> 0.5 exp(-1 / 0.5)
    out = kk.edge_map(kp, w, 3, 0.5, falloff="exp", backend="torch")[0]
    assert out[0, 1].item() == pytest.approx(0.5 * torch.exp(torch.tensor(-2.0)).item())
