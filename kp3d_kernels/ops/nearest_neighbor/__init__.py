"""Nearest other point of each keypoint, and the repulsion loss built on it (docs/kernels.md)."""

import torch

from ... import _backend, _validate
from ..._dispatch import compute_dtype, family
from . import naive

REDUCTIONS = ("mean", "sum", "none")


def nearest_neighbor(points: torch.Tensor, *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, D) points, D = 2 or 3 -> (dist (B, K), index (B, K) int64).

    For each point, the Euclidean distance to and index of the nearest *other* point of the
    same sample; ties go to the lowest index. `dist` is differentiable (gradient to the point
    and its neighbour, 0 where they coincide).

    Example:
        >>> dist, index = nearest_neighbor(torch.tensor([[[0.0, 0.0], [0.3, 0.4], [1.0, 1.0]]]))
        >>> dist.tolist(), index.tolist()
        ([[0.5, 0.5, 0.9219544529914856]], [[1, 0, 1]])
    """
    _validate.keypoints("points", points, dims=(2, 3))
    backend = _backend.resolve(backend, points.device)
    p = points.to(compute_dtype(points))
    if backend == "torch":
        dist, index = naive.nearest_neighbor(p)
    else:
        dist, index = family(backend).nn_fwd(p.contiguous())
    return dist.to(points.dtype), index


def repulsion_loss(points: torch.Tensor, bandwidth: float, *, reduction: str = "mean",
                   backend: str = "auto") -> torch.Tensor:
    """L = -sum_i d_i exp(-d_i / h) per sample, d_i the nearest-neighbour distance of point i.

    reduction: "mean" or "sum" over the batch, or "none" for the (B,) per-sample losses.
    Minimising it pushes keypoints apart up to about the bandwidth h.

    Example:
        >>> points = (torch.rand(4, 8, 2) * 2 - 1).requires_grad_()
        >>> loss = repulsion_loss(points, 0.25)
        >>> loss.backward()
        >>> loss.shape, points.grad.shape
        (torch.Size([]), torch.Size([4, 8, 2]))
    """
    _validate.keypoints("points", points, dims=(2, 3))
    bandwidth = _validate.positive_number("bandwidth", bandwidth)
    _validate.choice("reduction", reduction, REDUCTIONS)
    backend = _backend.resolve(backend, points.device)
    p = points.to(compute_dtype(points))
    if backend == "torch":
        per_sample = naive.repulsion_per_sample(p, bandwidth)
    else:
        per_sample, _, _ = family(backend).repulsion_fwd(p.contiguous(), bandwidth)
    per_sample = per_sample.to(points.dtype)
    if reduction == "none":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()
