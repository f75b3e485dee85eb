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

    def __init__(self, num_keypoints, size, sigma, *, edges=None, falloff="exp", learnable=True,
                 backend="auto", lr_scale=512.0, initial_weight=AUTOLINK_INITIAL_WEIGHT):
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

    def forward(self, keypoints):
        """(B, K, 2) keypoints in (x, y), [-1, 1] -> (B, 1, H, W)."""
        if keypoints.dim() == 3 and keypoints.shape[1] != self.num_keypoints:
            raise ValueError(f"keypoints must have K = {self.num_keypoints} points, "
                             f"got shape {tuple(keypoints.shape)}")
        # The edges were checked at construction: nothing here reads a tensor on the host, so
        # the call never waits for the device.
        out = _edge_map(keypoints, self.weights, self.size, self.sigma, self.edges, self.falloff,
                        self.backend, check_edge_values=False)
        return out.unsqueeze(1)

    def extra_repr(self):
        return (f"num_keypoints={self.num_keypoints}, size={self.size}, sigma={self.sigma}, "
                f"edges={self.edges.shape[0]}, falloff={self.falloff!r}, backend={self.backend!r}")


class SoftArgmax2d(nn.Module):
    """(B, K, H, W) heatmaps -> (B, K, 2) keypoints in (x, y); see `kp3d_kernels.soft_argmax`."""

    def __init__(self, temperature=1.0, normalize="softmax", backend="auto"):
        super().__init__()
        self.temperature = _validate.positive_number("temperature", temperature)
        self.normalize = _validate.choice("normalize", normalize, NORMALIZATIONS)
        self.backend = backend

    def forward(self, heatmaps):
        return soft_argmax(heatmaps, temperature=self.temperature, normalize=self.normalize,
                           backend=self.backend)


class RepulsionLoss(nn.Module):
    """-sum_i d_i exp(-d_i / h) over nearest-neighbour distances; see `repulsion_loss`."""

    def __init__(self, bandwidth, reduction="mean", backend="auto"):
        super().__init__()
        self.bandwidth = _validate.positive_number("bandwidth", bandwidth)
        self.reduction = _validate.choice("reduction", reduction, REDUCTIONS)
        self.backend = backend

    def forward(self, points):
        return repulsion_loss(points, self.bandwidth, reduction=self.reduction,
                              backend=self.backend)
