"""Triton backend specifics: every kernel path (the GPU paths too, forced on tiny shapes under the
interpreter), the low-level ops against the C++ CPU ops (the executable specification), the
64-bit index path, the launch configurations, opcheck. The shared op tests (test_edge_map.py,
...) compare the public API of every backend, triton included, with the reference."""

import pytest
import torch

import kp3d_kernels as kk
from backends import DEVICES
from helpers import rand_keypoints, rand_weights
from kp3d_kernels import _backend

if "triton" not in kk.available_backends():
    pytest.skip("the triton backend is not available here", allow_module_level=True)

from kp3d_kernels import triton as ktr  # noqa: E402
from kp3d_kernels.triton import _config, edge_map, nearest_neighbor, soft_argmax  # noqa: E402

OPS = torch.ops.kp3d_kernels
# The Triton kernels run on CUDA tensors, and on CPU tensors only under the interpreter.
DEVICE = "cpu" if _config.INTERPRET else "cuda"
CPU_OPS = _backend.NATIVE  # the compiled CPU kernels, the executable specification


def edge_inputs(B, K, dtype=torch.float64, *, seed=0, batched=True, edges=None):
    kp = rand_keypoints(B, K, seed=seed, dtype=dtype)
    edges = kk.all_pairs(K) if edges is None else edges
    E = edges.shape[0]
    w = rand_weights((B, E) if batched else (E,), seed=seed, dtype=dtype).expand(B, E).contiguous()
    return kp.to(DEVICE), w.to(DEVICE), edges.to(DEVICE)


def spec_edge_map(kp, w, edges, H, W, sigma, gaussian, grad_out):
    """The CPU op's forward and backward (or the reference's, without the extension)."""
    kp, w, edges, grad_out = (t.cpu() for t in (kp, w, edges, grad_out))
    if CPU_OPS:
        out, winner = OPS.edge_map_fwd(kp, w, edges, H, W, sigma, gaussian)
        gk, gw = OPS.edge_map_bwd(grad_out, kp, w, edges, winner, sigma, gaussian)
        return out, winner, gk, gw
    k, ww = kp.clone().requires_grad_(), w.clone().requires_grad_()
    out = kk.edge_map(k, ww, (H, W), sigma, edges=edges, backend="torch",
                      falloff="gaussian" if gaussian else "exp")
    gk, gw = torch.autograd.grad((out * grad_out).sum(), (k, ww))
    return out.detach(), None, gk, gw


def float32_forward_atol(w, sigma, gaussian):
    """How far two float32 evaluations of the edge map may differ (the GPU contracts a * b + c
    into FMAs, the CPU kernel's order is another). The offset r from a segment is a difference of
    coordinates of size <= 2, so each evaluation carries an error of about 3 u (u = 2^-24, the
    unit roundoff) in each of its components; the falloff turns that into at most
    w_max 3 u max|d s / d r|: sqrt(2) / sigma
    for exp(-|r| / sigma), and 2 max_r r exp(-r^2 / sigma) / sigma = 0.86 / sqrt(sigma) for the
    gaussian. Twice that bounds the difference of two evaluations."""
    slope = 0.86 / sigma ** 0.5 if gaussian else 2 ** 0.5 / sigma
    unit_roundoff = torch.finfo(torch.float32).eps / 2
    return 2 * 3 * unit_roundoff * float(w.abs().max()) * slope


def check_edge_map(kp, w, edges, H, W, sigma, gaussian, *, sequential=None, mode=None):
    grad_out = torch.randn(kp.shape[0], H, W, dtype=kp.dtype, generator=torch.Generator().manual_seed(3))
    out, winner = edge_map.forward(kp, w, edges, H, W, sigma, gaussian, sequential=sequential)
    gk, gw = edge_map.backward(grad_out.to(DEVICE), kp, w, edges, winner, sigma, gaussian, mode=mode)
    ref_out, ref_winner, ref_gk, ref_gw = spec_edge_map(kp, w, edges, H, W, sigma, gaussian, grad_out)
    f64 = kp.dtype == torch.float64
    atol = 1e-14 if f64 else float32_forward_atol(w, sigma, gaussian)
    torch.testing.assert_close(out.cpu(), ref_out, rtol=1e-12 if f64 else 2e-6, atol=atol)
    if ref_winner is not None and f64:  # random inputs: no near-ties, the same winners
        assert torch.equal(winner.cpu(), ref_winner)
    tol = dict(rtol=1e-9, atol=1e-10) if f64 else dict(rtol=2e-4, atol=2e-4 * max(ref_gk.abs().max().item(), 1))
    torch.testing.assert_close(gk.cpu(), ref_gk, **tol)
    torch.testing.assert_close(gw.cpu(), ref_gw, **tol)
    return out, winner


# ---- edge map: every kernel path --------------------------------------------------------------

@pytest.mark.parametrize("gaussian", [False, True], ids=["exp", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("B,K,H,W", [(1, 2, 1, 1), (2, 5, 7, 9), (3, 9, 12, 5), (1, 33, 9, 11)])
def test_edge_map_default_paths(gaussian, dtype, B, K, H, W):
    kp, w, edges = edge_inputs(B, K, dtype, seed=B * 10 + K)
    check_edge_map(kp, w, edges, H, W, 0.05 if not gaussian else 0.01, gaussian)


@pytest.mark.parametrize("gaussian", [False, True], ids=["exp", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_edge_map_gpu_paths(gaussian, dtype):
    """The one-edge-at-a-time forward and the per-distinct-winner backward loop (separate and
    fused reductions): the GPU defaults, here on shapes the interpreter runs quickly."""
    kp, w, edges = edge_inputs(2, 5, dtype, seed=4)
    check_edge_map(kp, w, edges, 6, 7, 0.1, gaussian, sequential=True, mode="loop")
    kp, w, edges = edge_inputs(1, 4, dtype, seed=5)
    check_edge_map(kp, w, edges, 3, 5, 0.1, gaussian, sequential=True, mode="fused")


@pytest.mark.parametrize("gaussian", [False, True], ids=["exp", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_edge_map_segmented_backward(gaussian, dtype, monkeypatch):
    """The segmented-reduction backward (sort by winning edge, segmented scan, one atomic per
    edge and value), on one tile and on several tiles whose atomics meet; with an out-of-range
    winner, which contributes nothing."""
    kp, w, edges = edge_inputs(2, 6, dtype, seed=6)
    check_edge_map(kp, w, edges, 7, 9, 0.1, gaussian, mode="segmented")
    monkeypatch.setattr(_config, "INTERPRET_MAX_PIXELS", 16)
    check_edge_map(kp, w, edges, 9, 11, 0.05, gaussian, mode="segmented")
    out, winner = edge_map.forward(kp, w, edges, 5, 6, 0.1, gaussian)
    go = torch.ones(2, 5, 6, dtype=dtype, device=kp.device)
    bad = winner.clone()
    bad[0, 0, 0] = edges.shape[0] + 3
    go_bad = go.clone()
    go_bad[0, 0, 0] = 0  # the reference gets no contribution from that pixel either
    ref_bad = edge_map.backward(go_bad, kp, w, edges, winner, 0.1, gaussian, mode="onehot")
    got = edge_map.backward(go, kp, w, edges, bad, 0.1, gaussian, mode="segmented")
    for a, b in zip(got, ref_bad):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_edge_map_many_tiles_and_edge_chunks(monkeypatch):
    """Several tiles per image (the atomic adds of several programs meet) and several edge
    chunks per tile (the running best carried across chunks)."""
    if not _config.INTERPRET:
        pytest.skip("interpreter block sizes")
    monkeypatch.setattr(_config, "INTERPRET_MAX_PIXELS", 16)
    monkeypatch.setattr(_config, "INTERPRET_MAX_PAIRS", 64)
    for gaussian in (False, True):
        kp, w, edges = edge_inputs(2, 8, seed=6)
        check_edge_map(kp, w, edges, 9, 13, 0.05, gaussian)
        check_edge_map(kp, w, edges, 5, 6, 0.05, gaussian, sequential=True, mode="loop")


def test_edge_map_int64_path(monkeypatch):
    kp, w, edges = edge_inputs(2, 6, seed=7)
    a = edge_map.forward(kp, w, edges, 7, 8, 0.05, False)
    g = torch.randn(2, 7, 8, dtype=kp.dtype, device=DEVICE)
    ga = edge_map.backward(g, kp, w, edges, a[1], 0.05, False)
    monkeypatch.setattr(_config, "FORCE_INT64", True)
    b = edge_map.forward(kp, w, edges, 7, 8, 0.05, False)
    gb = edge_map.backward(g, kp, w, edges, b[1], 0.05, False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(ga, gb, rtol=1e-13, atol=1e-15)
    check_edge_map(kp, w, edges, 7, 8, 0.05, True, sequential=True, mode="loop")


@pytest.mark.parametrize("sequential", [False, True], ids=["chunked", "sequential"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_edge_map_nan_and_tie_rules(sequential, dtype):
    """segment_math.h `better`: ties keep the lowest edge, the first NaN edge wins and sticks;
    all-zero weights give 0 with edge 0 the winner; a zero weight never wins."""
    K = 4
    kp, w, edges = edge_inputs(4, K, dtype, seed=8)
    kp[1, 2, 0] = float("nan")  # edges 1 (0, 2), 3 (1, 2), 5 (2, 3) are NaN
    w[2, 4] = float("nan")      # edge 4 is NaN
    w[3] = 0.0
    out, winner = edge_map.forward(kp, w, edges, 4, 5, 0.1, False, sequential=sequential)
    assert torch.isfinite(out[0]).all() and (out[0] > 0).all()
    assert torch.isnan(out[1]).all() and (winner[1] == 1).all()
    assert torch.isnan(out[2]).all() and (winner[2] == 4).all()
    assert (out[3] == 0).all() and (winner[3] == 0).all()
    # identical edges (coincident keypoints) with equal weights: the lowest index wins
    kp2 = torch.zeros(1, 3, 2, dtype=dtype, device=DEVICE)
    w2 = torch.full((1, 3), 0.5, dtype=dtype, device=DEVICE)
    out2, win2 = edge_map.forward(kp2, w2, kk.all_pairs(3, DEVICE), 3, 3, 0.1, True, sequential=sequential)
    assert (win2 == 0).all() and out2[0, 1, 1].item() == 0.5
    # a zero weight loses against any positive one
    w3 = torch.tensor([[0.0, 1e-30, 0.0]], dtype=dtype, device=DEVICE)
    kp3 = rand_keypoints(1, 3, seed=9, dtype=dtype).to(DEVICE)
    _, win3 = edge_map.forward(kp3, w3, kk.all_pairs(3, DEVICE), 4, 4, 0.1, False, sequential=sequential)
    if dtype == torch.float64:
        assert (win3 == 1).all()


def test_edge_map_out_of_range_indices_never_read_out_of_bounds():
    """Unchecked edges (possible only under torch.compile) give NaN, and a bad winner is skipped."""
    kp, w, _ = edge_inputs(1, 3, seed=10)
    bad = torch.tensor([[0, 1], [1, 7], [2, -1]], device=DEVICE)
    out, winner = edge_map.forward(kp, w, bad, 4, 4, 0.1, False)
    assert torch.isnan(out).all() and (winner == 1).all()
    good = kk.all_pairs(3, DEVICE)
    out, winner = edge_map.forward(kp, w, good, 4, 4, 0.1, False)
    winner[0, 0, 0] = 99
    winner[0, 1, 1] = -5
    gk, gw = edge_map.backward(torch.ones_like(out), kp, w, good, winner, 0.1, False)
    assert torch.isfinite(gk).all() and torch.isfinite(gw).all()


# ---- soft-argmax ------------------------------------------------------------------------------

def spec_soft_argmax(h, temperature, softmax, grad):
    h, grad = h.cpu(), grad.cpu()
    if CPU_OPS:
        coords, stats = OPS.soft_argmax_fwd(h, temperature, softmax)
        return coords, stats, OPS.soft_argmax_bwd(grad, h, coords, stats, temperature, softmax)
    hh = h.clone().requires_grad_()
    coords = kk.soft_argmax(hh, temperature=temperature, normalize="softmax" if softmax else "sum",
                            backend="torch")
    return coords.detach(), None, torch.autograd.grad((coords * grad).sum(), hh)[0]


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("small_blocks", [False, True], ids=["one-block", "many-blocks"])
def test_soft_argmax_against_cpu_op(softmax, dtype, small_blocks, monkeypatch):
    if small_blocks:
        if not _config.INTERPRET:
            pytest.skip("interpreter block sizes")
        monkeypatch.setattr(_config, "INTERPRET_MAX_PIXELS", 16)  # several online-softmax steps
    g = torch.Generator().manual_seed(11)
    h = torch.randn(3, 5, 7, 9, generator=g, dtype=torch.float64) * 3
    h = (h if softmax else h.abs()).to(dtype)
    grad = torch.randn(3, 5, 2, generator=g, dtype=torch.float64).to(dtype)
    coords, stats = soft_argmax.forward(h.to(DEVICE), 0.7, softmax)
    gh = soft_argmax.backward(grad.to(DEVICE), h.to(DEVICE), coords, stats, 0.7, softmax)
    ref_coords, ref_stats, ref_gh = spec_soft_argmax(h, 0.7, softmax, grad)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(coords.cpu(), ref_coords, **tol)
    torch.testing.assert_close(gh.cpu(), ref_gh, **tol)
    if ref_stats is not None:
        torch.testing.assert_close(stats.cpu(), ref_stats, **tol)


def test_soft_argmax_special_values(monkeypatch):
    monkeypatch.setattr(_config, "INTERPRET_MAX_PIXELS", 8)
    h = torch.randn(1, 5, 4, 5, dtype=torch.float64)
    h[0, 0, 0, 0] = float("-inf")   # -inf first: contributes 0, the rest is a normal softmax
    h[0, 1] = float("-inf")         # all -inf: NaN, as the reference
    h[0, 2, 3, 1] = float("nan")    # NaN: NaN coordinates
    h[0, 3] = 0.0
    h[0, 3, 2, 2] = 1e4             # a huge logit: its pixel centre, no overflow
    coords, _ = soft_argmax.forward(h.to(DEVICE), 1.0, True)
    ref = kk.soft_argmax(h, backend="torch")
    assert torch.isnan(coords[0, 1]).all() and torch.isnan(coords[0, 2]).all()
    for k in (0, 3, 4):
        torch.testing.assert_close(coords[0, k].cpu(), ref[0, k], rtol=1e-12, atol=1e-14)
    # sum normalisation: a NaN sum stays NaN (and so does the gradient), zeros use the floor
    hs = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    hs[0, 1, 1, 1] = float("nan")
    coords, stats = soft_argmax.forward(hs.to(DEVICE), 1.0, False)
    assert (coords[0, 0] == 0).all() and stats[0, 0, 1].item() == 1e-12
    assert torch.isnan(coords[0, 1]).all()
    gh = soft_argmax.backward(torch.ones(1, 2, 2, dtype=torch.float64, device=DEVICE), hs.to(DEVICE),
                              coords, stats, 1.0, False)
    assert torch.isfinite(gh[0, 0]).all() and torch.isnan(gh[0, 1]).all()


def test_soft_argmax_int64_path(monkeypatch):
    h = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=DEVICE)
    a = soft_argmax.forward(h, 0.5, True)
    ga = soft_argmax.backward(torch.ones_like(a[0]), h, *a, 0.5, True)
    monkeypatch.setattr(_config, "FORCE_INT64", True)
    b = soft_argmax.forward(h, 0.5, True)
    gb = soft_argmax.backward(torch.ones_like(b[0]), h, *b, 0.5, True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(ga, gb)


# ---- nearest neighbour and repulsion ----------------------------------------------------------

def spec_nn(points, bandwidth, grad_dist, grad_loss):
    p = points.cpu()
    if CPU_OPS:
        dist, index = OPS.nn_fwd(p)
        loss, _, _ = OPS.repulsion_fwd(p, bandwidth)
        return (dist, index, loss, OPS.nn_bwd(grad_dist.cpu(), p, dist, index),
                OPS.repulsion_bwd(grad_loss.cpu(), p, dist, index, bandwidth))
    pp = p.clone().requires_grad_()
    dist, index = kk.nearest_neighbor(pp, backend="torch")
    loss = kk.repulsion_loss(pp, bandwidth, reduction="none", backend="torch")
    g1 = torch.autograd.grad((dist * grad_dist.cpu()).sum(), pp, retain_graph=True)[0]
    g2 = torch.autograd.grad((loss * grad_loss.cpu()).sum(), pp)[0]
    return dist.detach(), index, loss.detach(), g1, g2


def check_nn(points, bandwidth=0.3):
    g = torch.Generator().manual_seed(12)
    B, K, _ = points.shape
    grad_dist = torch.randn(B, K, generator=g, dtype=torch.float64).to(points.dtype).to(DEVICE)
    grad_loss = torch.randn(B, generator=g, dtype=torch.float64).to(points.dtype).to(DEVICE)
    dist, index = nearest_neighbor.nn_forward(points)
    loss, dist2, index2 = nearest_neighbor.repulsion_forward(points, bandwidth)
    g1 = nearest_neighbor.nn_backward(grad_dist, points, dist, index)
    g2 = nearest_neighbor.repulsion_backward(grad_loss, points, dist, index, bandwidth)
    ref = spec_nn(points, bandwidth, grad_dist, grad_loss)
    assert torch.equal(index.cpu(), ref[1]) and torch.equal(index2.cpu(), ref[1])
    assert torch.equal(dist, dist2)
    f64 = points.dtype == torch.float64
    tol = dict(rtol=1e-12, atol=1e-14) if f64 else dict(rtol=1e-5, atol=1e-6)
    for got, exp in zip((dist, loss, g1, g2), (ref[0], ref[2], ref[3], ref[4])):
        torch.testing.assert_close(got.cpu(), exp, equal_nan=True, **tol)
    return dist, index


@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("B,K", [(1, 2), (3, 3), (2, 17), (1, 64), (2, 300)])
def test_nn_and_repulsion_against_cpu_op(D, dtype, B, K):
    check_nn(rand_keypoints(B, K, D, seed=K, dtype=dtype).to(DEVICE))


def test_nn_many_tiles(monkeypatch):
    """Point tiles smaller than K: the running best across column tiles, several row tiles,
    the gather of the neighbour terms across tiles."""
    monkeypatch.setattr(_config, "NN_MAX_BLOCK_INTERPRET", 16)
    monkeypatch.setattr(_config, "NN_MAX_BLOCK_GPU", 16)
    for D in (2, 3):
        check_nn(rand_keypoints(2, 45, D, seed=13).to(DEVICE))


def test_nn_ties_coincident_and_nan():
    # a unit grid: every point has several neighbours at distance 1, ties go to the lowest index
    grid = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]],
                        dtype=torch.float64)
    dist, index = check_nn(grid.to(DEVICE))
    assert index[0].tolist() == [1, 0, 0, 1, 1] and (dist == 1).all()
    # coincident points: distance 0, gradient 0 for that pair
    pts = torch.tensor([[[0.3, 0.1], [0.3, 0.1], [0.9, 0.9]]], dtype=torch.float64)
    dist, index = check_nn(pts.to(DEVICE))
    assert dist[0, :2].tolist() == [0.0, 0.0] and index[0].tolist() == [1, 0, 0]
    # NaN: the first NaN distance wins and sticks; the other samples are untouched
    pts = rand_keypoints(2, 5, seed=14).to(DEVICE)
    pts[1, 3, 1] = float("nan")
    dist, index = nearest_neighbor.nn_forward(pts)
    assert torch.isfinite(dist[0]).all()
    assert torch.isnan(dist[1]).all()
    assert index[1].tolist() == [3, 3, 3, 0, 3]
    loss, _, _ = nearest_neighbor.repulsion_forward(pts, 0.2)
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])
    # every other point at +inf: the lowest other index, distance inf
    pts = torch.tensor([[[0.0, 0.0], [float("inf"), 0.0], [float("inf"), 1.0]]], dtype=torch.float64)
    dist, index = nearest_neighbor.nn_forward(pts.to(DEVICE))
    assert index[0, 0].item() == 1 and dist[0, 0].item() == float("inf")


# ---- public API, registration, configuration --------------------------------------------------

def test_gradcheck_through_the_public_api():
    kp = rand_keypoints(2, 4, seed=15).to(DEVICE).requires_grad_()
    w = rand_weights((6,), seed=15).to(DEVICE).requires_grad_()
    for falloff, sigma in (("exp", 0.3), ("gaussian", 0.1)):
        assert torch.autograd.gradcheck(
            lambda k, ww: kk.edge_map(k, ww, (5, 6), sigma, falloff=falloff, backend="triton"),
            (kp, w), eps=1e-6, atol=1e-6, rtol=1e-4)
    h = torch.randn(2, 2, 3, 4, dtype=torch.float64, device=DEVICE).requires_grad_()
    for normalize in ("softmax", "sum"):
        hh = (h.detach().abs() + 0.1).requires_grad_() if normalize == "sum" else h
        assert torch.autograd.gradcheck(
            lambda x: kk.soft_argmax(x, temperature=0.7, normalize=normalize, backend="triton"), (hh,))
    p = rand_keypoints(2, 6, 3, seed=16).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: kk.nearest_neighbor(x, backend="triton")[0], (p,))
    assert torch.autograd.gradcheck(
        lambda x: kk.repulsion_loss(x, 0.4, reduction="sum", backend="triton"), (p,))


def test_opcheck_every_op():
    fam = {n: getattr(OPS, "triton_" + n) for n in ktr.SCHEMAS}
    kp, w, edges = edge_inputs(2, 4, seed=17)
    rg = lambda t: t.clone().requires_grad_()  # noqa: E731
    for gaussian in (False, True):
        out, winner = fam["edge_map_fwd"](kp, w, edges, 4, 5, 0.2, gaussian)
        torch.library.opcheck(fam["edge_map_fwd"], (rg(kp), rg(w), edges, 4, 5, 0.2, gaussian))
        torch.library.opcheck(fam["edge_map_bwd"], (torch.ones_like(out), kp, w, edges, winner, 0.2, gaussian))
    h = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=DEVICE)
    for softmax in (True, False):
        coords, stats = fam["soft_argmax_fwd"](h, 0.5, softmax)
        torch.library.opcheck(fam["soft_argmax_fwd"], (rg(h), 0.5, softmax))
        torch.library.opcheck(fam["soft_argmax_bwd"], (torch.ones_like(coords), h, coords, stats, 0.5, softmax))
    pts = rand_keypoints(2, 5, 3, seed=18).to(DEVICE)
    dist, index = fam["nn_fwd"](pts)
    torch.library.opcheck(fam["nn_fwd"], (rg(pts),))
    torch.library.opcheck(fam["nn_bwd"], (torch.ones_like(dist), pts, dist, index))
    torch.library.opcheck(fam["repulsion_fwd"], (rg(pts), 0.3))
    torch.library.opcheck(fam["repulsion_bwd"], (torch.ones(2, dtype=pts.dtype, device=DEVICE), pts, dist, index, 0.3))


def test_schemas_match_the_compiled_ops():
    for name, schema in ktr.SCHEMAS.items():
        op = getattr(OPS, "triton_" + name).default
        assert str(op._schema) == f"kp3d_kernels::triton_{name}{schema}"
        if CPU_OPS:
            compiled = str(getattr(OPS, name).default._schema)
            assert compiled == f"kp3d_kernels::{name}{schema}"


def test_bad_dtypes_are_refused():
    kp, w, edges = edge_inputs(1, 3)
    with pytest.raises(TypeError, match="keypoints"):
        OPS.triton_edge_map_fwd(kp.half(), w, edges, 3, 3, 0.1, False)
    with pytest.raises(TypeError, match="weights"):
        OPS.triton_edge_map_fwd(kp, w.float(), edges, 3, 3, 0.1, False)
    with pytest.raises(TypeError, match="points"):
        OPS.triton_nn_fwd(kp.to(torch.int32))


def test_scalars_reach_float64_kernels_exactly():
    """sigma, temperature and bandwidth travel as float64 bits, not as float32 arguments."""
    assert _config.f64_bits(1.0) == 0x3FF0000000000000
    sigma = 0.1 + 1e-12  # not representable in float32
    kp, w, edges = edge_inputs(1, 3, seed=19)
    out = kk.edge_map(kp, w, (4, 4), sigma, edges=edges, backend="triton")
    ref = kk.edge_map(kp.cpu(), w.cpu(), (4, 4), sigma, edges=edges.cpu(), backend="torch")
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-14, atol=1e-15)


def test_launch_configurations():
    lists = (_config.EDGE_MAP_FWD, _config.EDGE_MAP_BWD, _config.SOFT_ARGMAX_FWD,
             _config.SOFT_ARGMAX_BWD)
    for entries in lists:
        assert 2 <= len(entries) <= 6
        for meta, warps, stages in entries:
            assert warps in (1, 2, 4, 8, 16) and stages >= 1
            for v in meta.values():
                assert v >= 1 and v & (v - 1) == 0, meta  # powers of two (tl.arange)
            pixels = meta.get("BLOCK_H", 1) * meta.get("BLOCK_W", 1) * meta.get("BLOCK_M", 1) * meta.get("BLOCK_P", 1)
            assert 32 * warps <= pixels <= 8192
    tuners = (edge_map._edge_map_fwd_tuned, edge_map._edge_map_bwd_tuned,
              soft_argmax._fwd_tuned, soft_argmax._bwd_tuned)
    expected = 1 if _config.INTERPRET else None
    for tuner in tuners:
        assert len(tuner.configs) == (expected or len(tuner.configs))
    assert edge_map._edge_map_bwd_tuned.reset_to_zero == ["gkp_ptr", "gw_ptr"]
    assert _config.use_int64(2**31) and not _config.use_int64(2**31 - 1)


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a GPU")
def test_cuda_matches_cpu_op_at_a_training_shape():
    kp, w, edges = edge_inputs(4, 32, torch.float32, seed=20)
    for gaussian in (False, True):
        check_edge_map(kp, w, edges, 128, 128, 0.05 if not gaussian else 5e-4, gaussian)
    check_nn(rand_keypoints(8, 256, 2, seed=21, dtype=torch.float32).to(DEVICE))
