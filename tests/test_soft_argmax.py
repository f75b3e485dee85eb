"""Soft-argmax: every backend against the PyTorch reference, forward and backward."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS, interpreted
from helpers import gen, grads

MODES = ["softmax", "sum"]


def make_heatmaps(B, K, H, W, normalize, seed, dtype=torch.float64):
    h = torch.randn(B, K, H, W, generator=gen(seed), dtype=torch.float64) * 3
    if normalize == "sum":
        h = h.sigmoid()  # maps in [0, 1], as the "sum" normalisation expects
    return h.to(dtype)


def run(h, backend, device, **kw):
    x = h.detach().to(device).requires_grad_()
    out = kk.soft_argmax(x, backend=backend, **kw)
    return out, grads(out, (x,))[0]


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("normalize", MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("B,K,H,W", [(1, 2, 7, 5), (2, 3, 13, 17), (3, 17, 9, 11), (1, 33, 4, 23)])
def test_matches_reference(backend, device, normalize, dtype, B, K, H, W):
    h = make_heatmaps(B, K, H, W, normalize, seed=B + K + H, dtype=dtype)
    ref = run(h.double(), "torch", "cpu", temperature=0.7, normalize=normalize)
    got = run(h, backend, device, temperature=0.7, normalize=normalize)
    assert got[0].dtype == dtype
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[0].cpu().double(), ref[0], **tol)
    torch.testing.assert_close(got[1].cpu().double(), ref[1], **tol)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("normalize", MODES)
def test_gradcheck_float64(backend, device, normalize):
    h = make_heatmaps(2, 3, 5, 6, normalize, seed=1).to(device).requires_grad_()
    fn = lambda x: kk.soft_argmax(x, temperature=0.5, normalize=normalize, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (h,))


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_one_hot_maps_give_pixel_centres(backend, device):
    H, W = 5, 8
    h = torch.zeros(1, 2, H, W, dtype=torch.float64)
    h[0, 0, 0, 0] = 1
    h[0, 1, 3, 6] = 1
    out = kk.soft_argmax(h.to(device), normalize="sum", backend=backend)[0].cpu()
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0], [-1 + 2 * 6 / 7, -1 + 2 * 3 / 4]],
                                                 dtype=torch.float64))


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_softmax_is_stable_for_large_logits(backend, device):
    h = make_heatmaps(2, 3, 6, 7, "softmax", seed=4) * 1e4  # exp would overflow without the max
    ref = run(h, "torch", "cpu", temperature=1.0)
    got = run(h, backend, device, temperature=1.0)
    assert torch.isfinite(got[0]).all()
    torch.testing.assert_close(got[0].cpu(), ref[0])
    torch.testing.assert_close(got[1].cpu(), ref[1])


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_minus_infinity_carries_no_weight(backend, device):
    h = make_heatmaps(1, 3, 4, 5, "softmax", seed=3)
    h[0, 0, 0, :3] = float("-inf")  # before the first finite value in scan order
    h[0, 1, 2, 1] = float("-inf")
    h[0, 2] = float("-inf")  # all -inf: NaN, as torch.softmax gives
    ref = kk.soft_argmax(h, backend="torch")
    got = kk.soft_argmax(h.to(device), backend=backend).cpu()
    torch.testing.assert_close(got[0, :2], ref[0, :2])
    assert torch.isnan(got[0, 2]).all() and torch.isnan(ref[0, 2]).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_sum_of_zeros_uses_the_floor(backend, device):
    h = torch.zeros(1, 2, 4, 5, dtype=torch.float64)
    h[0, 1, 2, 3] = 0.5
    ref = run(h, "torch", "cpu", normalize="sum")
    got = run(h, backend, device, normalize="sum")
    torch.testing.assert_close(got[0].cpu(), ref[0])
    torch.testing.assert_close(got[1].cpu(), ref[1])
    assert (got[0][0, 0] == 0).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_half_precision_and_non_contiguous(backend, device):
    h = make_heatmaps(2, 3, 6, 10, "softmax", seed=5)
    strided = h.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous()
    torch.testing.assert_close(kk.soft_argmax(strided.to(device), backend=backend).cpu(),
                               kk.soft_argmax(h, backend="torch"))
    for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 1e-2)):
        x = h.to(dtype)
        out = kk.soft_argmax(x.to(device), backend=backend)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double().cpu(), kk.soft_argmax(x.double(), backend="torch"),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("normalize", MODES)
def test_nan_stays_in_its_map(backend, device, normalize):
    h = make_heatmaps(1, 3, 4, 5, normalize, seed=6)
    h[0, 1, 2, 2] = float("nan")
    x = h.to(device).requires_grad_()
    out = kk.soft_argmax(x, normalize=normalize, backend=backend)
    assert torch.isnan(out[0, 1]).all().item()
    assert torch.isfinite(out[0, [0, 2]]).all().item()
    out.nansum().backward()
    assert torch.isnan(x.grad[0, 1]).all().item()  # the NaN reaches the map's gradient
    assert torch.isfinite(x.grad[0, [0, 2]]).all().item()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_property_sweep(backend, device):
    slow = interpreted(backend, device)

    @settings(max_examples=8 if slow else 40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(B=st.integers(1, 3), K=st.integers(1, 9), H=st.integers(1, 16), W=st.integers(1, 16),
           normalize=st.sampled_from(MODES), temperature=st.floats(0.05, 5.0),
           seed=st.integers(0, 2**16))
    def check(B, K, H, W, normalize, temperature, seed):
        h = make_heatmaps(B, K, H, W, normalize, seed)
        ref = run(h, "torch", "cpu", temperature=temperature, normalize=normalize)
        got = run(h, backend, device, temperature=temperature, normalize=normalize)
        torch.testing.assert_close(got[0].cpu(), ref[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got[1].cpu(), ref[1], rtol=1e-9, atol=1e-12)

    check()
