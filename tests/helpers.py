"""Input generators and comparisons shared by the op tests."""

import torch


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rand_keypoints(B, K, D=2, *, seed=0, spread=1.1, dtype=torch.float64):
    """Keypoints uniform in [-spread, spread]^D (a little outside [-1, 1] on purpose)."""
    return ((torch.rand(B, K, D, generator=gen(seed), dtype=torch.float64) * 2 - 1) * spread).to(dtype)


def rand_weights(shape, *, seed=0, dtype=torch.float64):
    """Distinct positive weights (ties between edges are then measure-zero)."""
    return (0.05 + torch.rand(shape, generator=gen(seed + 7), dtype=torch.float64)).to(dtype)


def grads(out, inputs, seed=123):
    """Gradients of <out, G> with a fixed random cotangent G."""
    cot = torch.randn(out.shape, generator=gen(seed), dtype=torch.float64).to(out)
    return torch.autograd.grad((out * cot).sum(), inputs, allow_unused=True)


def assert_close_norm(actual, expected, rtol, name):
    """|actual - expected| <= rtol * |expected| (Frobenius), for float32 sums of many terms."""
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    err = (actual - expected).norm().item()
    scale = expected.norm().item()
    assert err <= rtol * scale + 1e-12, f"{name}: |err| {err:.3e} > {rtol:g} x |ref| {scale:.3e}"
