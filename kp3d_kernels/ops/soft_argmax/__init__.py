"""Spatial soft-argmax: the expected (x, y) position under each normalised heatmap (docs/kernels.md)."""

import torch

from ... import _backend, _validate
from ..._dispatch import compute_dtype, family
from . import naive

NORMALIZATIONS = ("softmax", "sum")


def soft_argmax(heatmaps: torch.Tensor, *, temperature: float = 1.0, normalize: str = "softmax",
                backend: str = "auto") -> torch.Tensor:
    """(B, K, H, W) heatmaps -> (B, K, 2) expected positions in (x, y), in [-1, 1].

    normalize="softmax": q = softmax(h / temperature) over the H*W positions (AutoLink);
    normalize="sum": q = h / max(sum h, 1e-12), for maps already in [0, 1].
    Positions are the pixel centres of the align-corners grid (docs/kernels.md).

    Example:
        >>> h = torch.full((1, 1, 5, 5), -1e4)
        >>> h[0, 0, 1, 3] = 0.0                      # row 1, column 3
        >>> soft_argmax(h).tolist()
        [[[0.5, -0.5]]]
    """
    _validate.tensor("heatmaps", heatmaps, ndim=4)
    if 0 in heatmaps.shape:
        raise ValueError(f"heatmaps must not be empty, got shape {tuple(heatmaps.shape)}")
    temperature = _validate.positive_number("temperature", temperature)
    _validate.choice("normalize", normalize, NORMALIZATIONS)
    backend = _backend.resolve(backend, heatmaps.device)
    softmax = normalize == "softmax"

    h = heatmaps.to(compute_dtype(heatmaps))
    if backend == "torch":
        out = naive.soft_argmax(h, temperature, softmax)
    else:
        out, _ = family(backend).soft_argmax_fwd(h.contiguous(), temperature, softmax)
    return out.to(heatmaps.dtype)
