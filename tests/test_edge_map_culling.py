"""Exact tile culling of the edge-map forward: culled and unculled runs agree bit for bit.

Every fused backend that culls renders each case twice, once as usual and once with
KP3D_EDGE_MAP_CULL=0 (the all-edges loop), and must return the same output bits and the same
winner map (the index the backward reads). The cases are the ones where a wrong bound or a
visiting-order dependence would show: many edges near a tile, coincident / collinear points,
all points in one tile, points far outside [-1, 1], zero-length segments, exact ties between
edges, weights over nine decades, zero, NaN and infinite inputs.
"""

import math
import os
import zlib
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS, interpreted
from helpers import gen
from kp3d_kernels.ops.edge_map import CULLING_BACKENDS as CULLING
from kp3d_kernels.ops.edge_map import culling

CULLING_BACKENDS = [p for p in KERNEL_BACKENDS if p.values[0] in CULLING]
FALLOFFS = ["exp", "gaussian"]


@pytest.fixture
def small_interpreter_tiles(monkeypatch):
    """Under the Triton interpreter a program is normally the whole (small) image, whose box
    bounds little; tiles of 64 pixels and chunks of 8 edges make the bounds, and the refreshes of the
    tile's worst, as tight as on the GPU, so that a wrong bound shows."""
    if "triton" in CULLING and "triton" in kk.available_backends("cpu"):
        from kp3d_kernels.triton import _config

        monkeypatch.setattr(_config, "INTERPRET_MAX_PIXELS", 64)
        monkeypatch.setattr(_config, "INTERPRET_MAX_PAIRS", 8 * 64)


def low_level(backend):
    ops = torch.ops.kp3d_kernels
    return ops.triton_edge_map_fwd if backend == "triton" else ops.edge_map_fwd


def bits(t):
    return t.view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def assert_culling_exact(backend, device, kp, w, size, sigma, gaussian, edges=None):
    """Culled and unculled forward: identical output bits and winners."""
    B, K, _ = kp.shape
    if edges is None:
        edges = kk.all_pairs(K)
    if w.dim() == 1:
        w = w.expand(B, -1)
    args = (kp.to(device).contiguous(), w.to(device, kp.dtype).contiguous(),
            edges.to(device).long().contiguous(), size[0], size[1], float(sigma), gaussian)
    with culling(True):
        out, win = low_level(backend)(*args)
    with culling(False):
        ref_out, ref_win = low_level(backend)(*args)
    assert torch.equal(win.cpu(), ref_win.cpu()), (
        f"winner differs at {(win != ref_win).sum().item()} pixels")
    assert torch.equal(bits(out.cpu()), bits(ref_out.cpu())), "output bits differ"
    if backend == "cpu":
        # the culled forward's portable path (KP3D_CPU_SIMD=0), which CPUs without AVX2 run
        with culling(True), mock.patch.dict(os.environ, {"KP3D_CPU_SIMD": "0"}):
            out2, win2 = low_level(backend)(*args)
        assert torch.equal(win2, ref_win), "portable path: winners differ"
        assert torch.equal(bits(out2), bits(ref_out)), "portable path: output bits differ"
    return out.cpu(), win.cpu()


def log_uniform(shape, lo, hi, seed, dtype):
    u = torch.rand(shape, generator=gen(seed), dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).to(dtype)


def size_for(backend, device, small, large):
    return small if interpreted(backend, device) else large


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_random_layouts(backend, device, falloff, dtype):
    slow = interpreted(backend, device)
    for seed in range(2 if slow else 6):
        K = 6 if slow else 8 + 4 * seed
        B = 2
        H, W = ((9, 13) if slow else (37 + seed, 45 - seed))
        kp = ((torch.rand(B, K, 2, generator=gen(seed), dtype=torch.float64) * 2 - 1) * 1.1).to(dtype)
        E = K * (K - 1) // 2
        w = log_uniform((B, E) if seed % 2 else (E,), 1e-6, 1e3, seed, dtype)
        for sigma in ((7.5e-4, 2.5e-3, 0.05) if falloff == "gaussian" else (2e-2, 0.2)):
            assert_culling_exact(backend, device, kp, w, (H, W), sigma, falloff == "gaussian")


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
def test_property_sweep(backend, device):
    """Drawn shapes (sizes not multiples of the tile, K up to 48, so edge counts not multiples of
    the CPU's 8-wide selection), point spreads from a corner of the image to far beyond it, widths
    over four decades, weights over up to 18 decades: culled and unculled agree bit for bit."""
    slow = interpreted(backend, device)

    @settings(max_examples=6 if slow else 40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(B=st.integers(1, 3), K=st.integers(2, 8 if slow else 48),
           H=st.integers(1, 12 if slow else 40), W=st.integers(1, 12 if slow else 40),
           falloff=st.sampled_from(FALLOFFS), log_sigma=st.floats(-4, 0),
           log_spread=st.floats(-1, 2), decades=st.floats(0, 18), batched=st.booleans(),
           f64=st.booleans(), seed=st.integers(0, 2**16))
    def check(B, K, H, W, falloff, log_sigma, log_spread, decades, batched, f64, seed):
        dtype = torch.float64 if f64 else torch.float32
        E = K * (K - 1) // 2
        g = gen(seed)
        kp = (torch.rand(B, K, 2, generator=g, dtype=torch.float64) * 2 - 1) * 10 ** log_spread
        lo = 10 ** (-decades / 2)
        w = log_uniform((B, E) if batched else (E,), lo, 1 / lo, seed, torch.float64)
        assert_culling_exact(backend, device, kp.to(dtype), w.to(dtype), (H, W), 10 ** log_sigma,
                             falloff == "gaussian")

    check()


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
@pytest.mark.parametrize("layout", ["coincident", "collinear", "one_tile", "outside",
                                    "far_outside", "zero_length", "on_pixel_centres"])
def test_adversarial_layouts(backend, device, falloff, layout):
    slow = interpreted(backend, device)
    K = 6 if slow else 12
    H, W = (10, 12) if slow else (33, 40)
    g = gen(zlib.crc32(layout.encode()) % 1000)  # the same seed in every process
    kp = (torch.rand(2, K, 2, generator=g, dtype=torch.float64) * 2 - 1)
    edges = None
    if layout == "coincident":
        kp[:, 1::2] = kp[:, 0::2]  # pairs of identical points
        kp[1] = 0.25
    elif layout == "collinear":
        t = torch.linspace(-0.9, 0.9, K, dtype=torch.float64)
        kp[0] = torch.stack([t, 0.3 * t + 0.1], -1)
        kp[1] = torch.stack([t, torch.zeros_like(t)], -1)  # along a pixel row
    elif layout == "one_tile":
        kp = kp * 0.02 + 0.1  # every point within one or two pixels
    elif layout == "outside":
        kp = kp * 3.0
    elif layout == "far_outside":
        kp[0] = kp[0] * 1e7  # beyond the bound's range: never culled, still exact
        kp[1, 0] = torch.tensor([4e6, -3e6])
    elif layout == "zero_length":
        edges = torch.tensor([[i, i] for i in range(K)] + [[0, 1], [1, 2], [3, 3], [2, 0]])
    elif layout == "on_pixel_centres":
        cols = torch.randint(0, W, (2, K), generator=g)
        rows = torch.randint(0, H, (2, K), generator=g)
        kp = torch.stack([-1 + 2 * cols / (W - 1), -1 + 2 * rows / (H - 1)], -1).double()
    E = K * (K - 1) // 2 if edges is None else edges.shape[0]
    for dtype in (torch.float32, torch.float64):
        w = log_uniform((E,), 1e-3, 10.0, 5, dtype)
        sigma = 2.5e-3 if falloff == "gaussian" else 0.03
        assert_culling_exact(backend, device, kp.to(dtype), w, (H, W), sigma,
                             falloff == "gaussian", edges)


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_ties_go_to_the_lowest_index(backend, device, falloff):
    slow = interpreted(backend, device)
    K = 5 if slow else 9
    kp = (torch.rand(2, K, 2, generator=gen(3), dtype=torch.float64) * 2 - 1)
    # every edge listed three times, in scrambled order, with equal weights: exact ties
    base = kk.all_pairs(K)
    perm = torch.randperm(base.shape[0], generator=gen(4))
    edges = torch.cat([base[perm], base, base.flip(0)])
    w = torch.full((edges.shape[0],), 0.3, dtype=torch.float64)
    size = (9, 11) if slow else (24, 29)
    sigma = 5e-3 if falloff == "gaussian" else 0.05
    out, win = assert_culling_exact(backend, device, kp, w, size, sigma,
                                    falloff == "gaussian", edges)
    # the winner is always the first copy in the list
    assert (win < base.shape[0]).all()
    # the same segment through copies of its end points: bitwise equal costs everywhere
    kp2 = torch.tensor([[[-0.5, -0.3], [0.5, 0.4], [-0.5, -0.3], [0.5, 0.4]]], dtype=torch.float64)
    edges2 = torch.tensor([[2, 3], [0, 1], [2, 1], [0, 3]])
    _, win2 = assert_culling_exact(backend, device, kp2, torch.ones(4, dtype=torch.float64),
                                   size, sigma, falloff == "gaussian", edges2)
    assert (win2 == 0).all()


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
@pytest.mark.parametrize("what", ["kp_nan", "w_nan", "kp_inf", "w_inf", "w_zero", "all_zero",
                                  "w_negative"])
def test_non_finite_and_zero_inputs(backend, device, what):
    slow = interpreted(backend, device)
    K = 5 if slow else 10
    E = K * (K - 1) // 2
    kp = (torch.rand(3, K, 2, generator=gen(8), dtype=torch.float64) * 2 - 1)
    w = log_uniform((3, E), 1e-6, 1e3, 9, torch.float64)
    if what == "kp_nan":
        kp[1, 3, 0] = float("nan")
    elif what == "w_nan":
        w[1, E // 2] = float("nan")
        w[2, E - 1] = float("nan")
    elif what == "kp_inf":
        kp[1, 2, 1] = float("inf")
        kp[2, 0, 0] = -float("inf")
    elif what == "w_inf":
        w[1, 3] = float("inf")
    elif what == "w_zero":
        w[:, ::2] = 0
    elif what == "all_zero":
        w[1] = 0
    elif what == "w_negative":
        w[1, 1] = -0.5
    size = (8, 10) if slow else (26, 31)
    for dtype in (torch.float32, torch.float64):
        for gaussian in (True, False):
            out, win = assert_culling_exact(backend, device, kp.to(dtype), w.to(dtype), size,
                                            2.5e-3 if gaussian else 0.03, gaussian)
            assert torch.isfinite(out[0]).all()  # nothing leaks into the clean sample
            if what == "all_zero":
                assert (out[1] == 0).all() and (win[1] == 0).all()


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
def test_autolink_shape_and_width(backend, device):
    """A face-like layout at AutoLink's widths, the case culling is for (more edges than a tile
    can hold near it)."""
    slow = interpreted(backend, device)
    K = 8 if slow else 32
    B = 1 if slow else 2
    H = W = 16 if slow else 64
    kp = (torch.rand(B, K, 2, generator=gen(21), dtype=torch.float64) - 0.5) * 1.2
    E = K * (K - 1) // 2
    w = torch.nn.functional.softplus(torch.randn(E, generator=gen(22), dtype=torch.float64) / 10 - 4)
    for sigma in (7.5e-4, 2.5e-3):
        assert_culling_exact(backend, device, kp.float(), w.float(), (H, W), sigma, True)


@pytest.mark.parametrize("backend,device", [p for p in CULLING_BACKENDS if p.values[0] == "triton"])
@pytest.mark.parametrize("gaussian", [False, True], ids=["exp", "gaussian"])
def test_triton_both_edge_loops(backend, device, gaussian):
    """Both Triton edge loops cull exactly: the GPU one (one edge at a time, also run here under
    the interpreter) and the interpreter's chunked one."""
    from kp3d_kernels.triton import edge_map as tem

    kp = (torch.rand(2, 7, 2, generator=gen(31), dtype=torch.float64) * 2.2 - 1.1).to(device)
    kp[1, 2] = kp[1, 5]  # a zero-length edge
    E = 21
    w = log_uniform((2, E), 1e-4, 1e2, 32, torch.float64).to(device)
    w[1, 4] = float("nan")
    edges = kk.all_pairs(7, device)
    for dtype in (torch.float32, torch.float64):
        for sequential in (True, False):
            args = (kp.to(dtype), w.to(dtype), edges, 11, 13, 4e-3 if gaussian else 0.05,
                    gaussian)
            out, win = tem.forward(*args, sequential=sequential, cull=True)
            ref_out, ref_win = tem.forward(*args, sequential=sequential, cull=False)
            assert torch.equal(win, ref_win)
            assert torch.equal(bits(out), bits(ref_out))


@pytest.mark.parametrize("backend,device", CULLING_BACKENDS)
@pytest.mark.parametrize("falloff", FALLOFFS)
def test_a_bound_two_percent_too_high_would_fail(backend, device, falloff,
                                                small_interpreter_tiles):
    """A layout where the bound is tight: a zero-length edge on every pixel centre (cost -log w_A
    everywhere) and one segment just above the image that wins the top row by 2 %. Its bound
    over any tile touching the top row is its exact cost there (less the rounding margin), so a
    bound 2 % too high would cull it and change the winners: this is what makes the other tests
    able to fail."""
    H, W = (8, 16) if interpreted(backend, device) else (24, 40)
    xs = torch.linspace(-1, 1, W, dtype=torch.float64)
    ys = torch.linspace(-1, 1, H, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    gap = 0.3
    seg = torch.tensor([[-1.5, -1 - gap], [1.5, -1 - gap]], dtype=torch.float64)
    kp = torch.cat([grid, seg])[None]
    n = grid.shape[0]
    edges = torch.cat([torch.arange(n)[:, None].repeat(1, 2), torch.tensor([[n, n + 1]])])
    sigma = 0.05
    f_top = gap ** 2 / sigma if falloff == "gaussian" else gap / sigma
    w = torch.ones(n + 1, dtype=torch.float64)
    w[:n] = math.exp(-1.02 * f_top)  # cost 1.02 f_top at every pixel; the segment: f_top on top
    for dtype in (torch.float32, torch.float64):
        out, win = assert_culling_exact(backend, device, kp.to(dtype), w.to(dtype), (H, W), sigma,
                                        falloff == "gaussian", edges)
        assert (win[0, 0] == n).all() and (win[0, 1:] < n).all()
