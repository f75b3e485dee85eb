"""nn.Module forms of the ops: EdgeMapRenderer (owns learnable edge weights), SoftArgmax2d,
RepulsionLoss."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import _validate
from .ops.edge_map import FALLOFFS, _edge_map, all_pairs
from .ops.nearest_neighbor import REDUCTIONS, repulsion_loss
from .ops.soft_argmax import NORMALIZATIONS, soft_argmax


AUTOLINK_INITIAL_WEIGHT = math.log1p(math.exp(-4.0))  # softplus(-4), about 0.018


def _inverse_softplus(w: float) -> float:
    """c with softplus(c) = w (w > 0), stable for small and large w."""
    return w + math.log(-math.expm1(-w))


class EdgeMapRenderer(nn.Module):
    """Draws the weighted links between keypoints as a (B, 1, H, W) image.

    The edge weights are w = softplus(lr_scale * theta), one per edge (AutoLink's `sklr`
    parameterisation: the scale lets the weights move fast under a small learning rate); theta
    starts at (N(0, 1) / 10 + c) / lr_scale with softplus(c) = initial_weight, so by default
    (AutoLink's c = -4) w starts near softplus(-4) = 0.018.

    Adopting it in an AutoLink model, whose keypoints are (row, col) = (y, x) and whose renderer
    is `draw_lines` with `thick`::

        renderer = EdgeMapRenderer(num_keypoints=K, size=128, sigma=thick, falloff="gaussian")
        edge_map = renderer(keypoints_rc.flip(-1))      # (B, 1, 128, 128)

    Example:
        >>> renderer = EdgeMapRenderer(4, 32, 1e-2, falloff="gaussian")
        >>> renderer(torch.rand(2, 4, 2) * 2 - 1).shape
        torch.Size([2, 1, 32, 32])

    Args:
        num_keypoints: K >= 2.
        size: H, or (H, W).
        sigma: falloff width (> 0).
        edges: (E, 2) integer pairs; None means all pairs a < b. Checked once, here (the buffer
            `edges` is not meant to be changed in place afterwards).
        falloff: "exp" or "gaussian" (see `kp3d_kernels.edge_map`).
        learnable: whether theta is a parameter (else a buffer: every weight is initial_weight).
        backend: as in `kp3d_kernels.edge_map`.
        lr_scale: the scale of the softplus parameterisation (AutoLink: 512).
        initial_weight: the weight every edge starts near (> 0; AutoLink: softplus(-4)).
    """

    def __init__(self, num_keypoints: int, size: int | tuple[int, int], sigma: float, *,
                 edges: torch.Tensor | None = None, falloff: str = "exp", learnable: bool = True,
                 backend: str = "auto", lr_scale: float = 512.0,
                 initial_weight: float = AUTOLINK_INITIAL_WEIGHT):
        super().__init__()
        if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 2:
            raise ValueError(f"num_keypoints must be an int >= 2, got {num_keypoints!r}")
        self.size = _validate.size2d("size", size)
        self.sigma = _validate.positive_number("sigma", sigma)
        self.falloff = _validate.choice("falloff", falloff, FALLOFFS)
        self.lr_scale = _validate.positive_number("lr_scale", lr_scale)
        initial_weight = _validate.positive_number("initial_weight", initial_weight)
        self.backend = backend
        self.num_keypoints = num_keypoints
        if edges is None:
            edges = all_pairs(num_keypoints)
        else:
            edges = torch.as_tensor(edges)
            _validate.edges("edges", edges, num_keypoints, edges.device)
            edges = edges.long().cpu()
        self.register_buffer("edges", edges.contiguous())
        num_edges = edges.shape[0]
        centre = _inverse_softplus(initial_weight)
        if learnable:
            self.theta = nn.Parameter((torch.randn(num_edges) / 10 + centre) / self.lr_scale)
        else:
            self.register_buffer("theta", torch.full((num_edges,), centre / self.lr_scale))

    @property
    def weights(self) -> torch.Tensor:
        """The current edge weights (E,)."""
        return F.softplus(self.lr_scale * self.theta)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) keypoints in (x, y), [-1, 1] -> (B, 1, H, W)."""
        if keypoints.dim() == 3 and keypoints.shape[1] != self.num_keypoints:
            raise ValueError(f"keypoints must have K = {self.num_keypoints} points, "
                             f"got shape {tuple(keypoints.shape)}")
        # The edges were checked at construction: nothing here reads a tensor on the host, so
        # the call never waits for the device.
        out = _edge_map(keypoints, self.weights, self.size, self.sigma, self.edges, self.falloff,
                        self.backend, check_edge_values=False)
        return out.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"num_keypoints={self.num_keypoints}, size={self.size}, sigma={self.sigma}, "
                f"edges={self.edges.shape[0]}, falloff={self.falloff!r}, backend={self.backend!r}")


class SoftArgmax2d(nn.Module):
    """Spatial soft-argmax as a module: (B, K, H, W) heatmaps -> (B, K, 2) keypoints in (x, y),
    [-1, 1], the expected pixel centre under softmax(h / temperature) (or h / sum h with
    normalize="sum"); see `kp3d_kernels.soft_argmax`.

    Args:
        temperature: divides the heatmaps before the softmax (> 0).
        normalize: "softmax" (AutoLink) or "sum" (maps already in [0, 1]).
        backend: "auto", "torch", "cpu", "cuda" or "triton".

    Example:
        >>> SoftArgmax2d()(torch.randn(2, 8, 16, 16)).shape
        torch.Size([2, 8, 2])
    """

    def __init__(self, temperature: float = 1.0, normalize: str = "softmax", backend: str = "auto"):
        super().__init__()
        self.temperature = _validate.positive_number("temperature", temperature)
        self.normalize = _validate.choice("normalize", normalize, NORMALIZATIONS)
        self.backend = backend

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return soft_argmax(heatmaps, temperature=self.temperature, normalize=self.normalize,
                           backend=self.backend)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize!r}, backend={self.backend!r}"


class RepulsionLoss(nn.Module):
    """The repulsion loss as a module: (B, K, D) points -> the mean (or sum) over the batch of
    -sum_i d_i exp(-d_i / h), d_i the distance from point i to its nearest other point; see
    `kp3d_kernels.repulsion_loss`.

    Args:
        bandwidth: h, the distance up to which points are pushed apart (> 0).
        reduction: "mean" or "sum" over the batch, or "none" for (B,) per-sample losses.
        backend: "auto", "torch", "cpu", "cuda" or "triton".

    Example:
        >>> RepulsionLoss(0.25)(torch.rand(2, 8, 2) * 2 - 1).shape
        torch.Size([])
    """

    def __init__(self, bandwidth: float, reduction: str = "mean", backend: str = "auto"):
        super().__init__()
        self.bandwidth = _validate.positive_number("bandwidth", bandwidth)
        self.reduction = _validate.choice("reduction", reduction, REDUCTIONS)
        self.backend = backend

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return repulsion_loss(points, self.bandwidth, reduction=self.reduction,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return f"bandwidth={self.bandwidth}, reduction={self.reduction!r}, backend={self.backend!r}"
