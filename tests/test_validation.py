"""Every bad input of docs/kernels.md raises a clear error naming the argument."""

import pytest
import torch

import kp3d_kernels as kk

KP = torch.zeros(2, 4, 2)
W = torch.ones(6)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(keypoints=torch.zeros(4, 2)), ValueError, "keypoints must have 3 dimensions"),
    (dict(keypoints=torch.zeros(2, 4, 3)), ValueError, "keypoints must have shape (B, K, 2)"),
    (dict(keypoints=torch.zeros(2, 1, 2), weights=torch.ones(0)), ValueError, "at least K = 2"),
    (dict(keypoints=torch.zeros(2, 4, 2, dtype=torch.int64)), TypeError, "keypoints must be a floating"),
    (dict(keypoints=[[0.0, 0.0]]), TypeError, "keypoints must be a torch.Tensor"),
    (dict(weights=torch.ones(5)), ValueError, "weights must have shape (6,) or (2, 6)"),
    (dict(weights=torch.ones(3, 6)), ValueError, "weights must have shape"),
    (dict(weights=torch.ones(6, dtype=torch.int32)), TypeError, "weights must be a floating"),
    (dict(weights=torch.ones(6, device="meta")), ValueError, "weights is on meta"),
    (dict(size=0), ValueError, "size must be positive"),
    (dict(size=(4, 5, 6)), TypeError, "size must be an int or a pair"),
    (dict(size=4.5), TypeError, "size must be an int"),
    (dict(sigma=0.0), ValueError, "sigma must be a finite number > 0"),
    (dict(sigma=-1.0), ValueError, "sigma must be"),
    (dict(sigma=float("nan")), ValueError, "sigma must be"),
    (dict(sigma="big"), TypeError, "sigma must be a number"),
    (dict(falloff="linear"), ValueError, "falloff must be one of 'exp', 'gaussian'"),
    (dict(edges=torch.tensor([[0, 4]])), ValueError, "edges must index keypoints in [0, 3]"),
    (dict(edges=torch.tensor([[-1, 2]])), ValueError, "edges must index keypoints"),
    (dict(edges=torch.tensor([0, 1])), ValueError, "edges must have shape (E, 2)"),
    (dict(edges=torch.zeros(0, 2, dtype=torch.int64)), ValueError, "E >= 1"),
    (dict(edges=torch.tensor([[0.0, 1.0]])), TypeError, "edges must be an integer tensor"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
])
def test_edge_map_bad_input(kwargs, error, words):
    args = dict(keypoints=KP, weights=W, size=8, sigma=0.1)
    args.update(kwargs)
    if "edges" in kwargs and "weights" not in kwargs:
        args["weights"] = torch.ones(max(kwargs["edges"].shape[0], 1))
    with pytest.raises(error) as info:
        kk.edge_map(args.pop("keypoints"), args.pop("weights"), args.pop("size"), args.pop("sigma"), **args)
    assert words in str(info.value)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(heatmaps=torch.zeros(2, 3, 4)), ValueError, "heatmaps must have 4 dimensions"),
    (dict(heatmaps=torch.zeros(2, 3, 0, 4)), ValueError, "heatmaps must not be empty"),
    (dict(heatmaps=torch.zeros(1, 1, 2, 2, dtype=torch.int32)), TypeError, "heatmaps must be a floating"),
    (dict(temperature=0), ValueError, "temperature must be a finite number > 0"),
    (dict(normalize="l1"), ValueError, "normalize must be one of 'softmax', 'sum'"),
    (dict(backend="nope"), ValueError, "backend must be one of"),
])
def test_soft_argmax_bad_input(kwargs, error, words):
    args = dict(heatmaps=torch.zeros(1, 2, 3, 4))
    args.update(kwargs)
    with pytest.raises(error) as info:
        kk.soft_argmax(args.pop("heatmaps"), **args)
    assert words in str(info.value)


@pytest.mark.parametrize("points,kwargs,error,words", [
    (torch.zeros(2, 4, 4), {}, ValueError, "points must have shape (B, K, 2|3)"),
    (torch.zeros(2, 1, 3), {}, ValueError, "at least K = 2"),
    (torch.zeros(4, 3), {}, ValueError, "points must have 3 dimensions"),
    (torch.zeros(2, 4, 3, dtype=torch.int64), {}, TypeError, "points must be a floating"),
    (torch.zeros(2, 4, 3), dict(bandwidth=0.0), ValueError, "bandwidth must be"),
    (torch.zeros(2, 4, 3), dict(bandwidth=0.1, reduction="max"), ValueError, "reduction must be one of"),
])
def test_points_bad_input(points, kwargs, error, words):
    with pytest.raises(error) as info:
        if kwargs:
            kk.repulsion_loss(points, **kwargs)
        else:
            kk.nearest_neighbor(points)
    assert words in str(info.value)


def test_unavailable_backend_says_why():
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="backend='cuda' is not available: it runs on CUDA tensors"):
            kk.edge_map(KP, W, 8, 0.1, backend="cuda")
    with pytest.raises(RuntimeError, match="not available"):
        kk.soft_argmax(torch.zeros(1, 2, 3, 3, device="meta"), backend="cpu")


def test_renderer_bad_construction():
    with pytest.raises(ValueError, match="num_keypoints must be an int >= 2"):
        kk.EdgeMapRenderer(1, 8, 0.1)
    with pytest.raises(ValueError, match="edges must index keypoints in \\[0, 2\\]"):
        kk.EdgeMapRenderer(3, 8, 0.1, edges=[[0, 3]])
    with pytest.raises(ValueError, match="sigma must be"):
        kk.EdgeMapRenderer(3, 8, -0.1)
    r = kk.EdgeMapRenderer(3, 8, 0.1)
    with pytest.raises(ValueError, match="keypoints must have K = 3"):
        r(torch.zeros(1, 4, 2))
