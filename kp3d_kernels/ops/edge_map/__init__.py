"""The edge map: max over segments of w exp(-d / sigma) or w exp(-d^2 / sigma) (docs/kernels.md)."""

import contextlib
import functools
import os

import torch

from ... import _backend, _validate
from ..._dispatch import compute_dtype, family
from . import naive

FALLOFFS = ("exp", "gaussian")

# The fused backends whose forward culls, per tile of pixels, the edges that cannot win there
# (docs/kernels.md, "Exact culling"). KP3D_EDGE_MAP_CULL=0 in the environment, read at each
# call, makes them evaluate every edge instead (the tests compare the two bit for bit).
CULLING_BACKENDS = ("cpu", "cuda", "triton")


@contextlib.contextmanager
def culling(enabled: bool):
    """Within the block, the fused forwards cull (True, the default outside) or evaluate every
    edge at every pixel (False); the output is the same either way. It sets
    KP3D_EDGE_MAP_CULL, so it reaches every thread of this process.

    Example:
        >>> with culling(False):
        ...     pass
    """
    old = os.environ.get("KP3D_EDGE_MAP_CULL")
    os.environ["KP3D_EDGE_MAP_CULL"] = "1" if enabled else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["KP3D_EDGE_MAP_CULL"]
        else:
            os.environ["KP3D_EDGE_MAP_CULL"] = old


@functools.lru_cache(maxsize=64)
def _all_pairs(num_keypoints: int, device: torch.device) -> torch.Tensor:
    return torch.triu_indices(num_keypoints, num_keypoints, 1, device=device).t().contiguous()


def all_pairs(num_keypoints: int, device: torch.device | str | None = None) -> torch.Tensor:
    """All pairs a < b in the order of torch.triu_indices(K, K, 1): (K(K-1)/2, 2) int64.

    Example:
        >>> all_pairs(3).tolist()
        [[0, 1], [0, 2], [1, 2]]
    """
    return _all_pairs(num_keypoints, torch.device(device or "cpu")).clone()


def edge_map(keypoints: torch.Tensor, weights: torch.Tensor, size: int | tuple[int, int],
             sigma: float, *, edges: torch.Tensor | None = None, falloff: str = "exp",
             backend: str = "auto") -> torch.Tensor:
    """Render the weighted segments between keypoints into a (B, H, W) map.

    Args:
        keypoints: (B, K, 2) in (x, y) order, normalised to [-1, 1] on the align-corners grid
            (pixel (r, c) has centre x = -1 + 2c/(W-1), y = -1 + 2r/(H-1)).
        weights: (E,) shared by the batch, or (B, E); non-negative.
        size: H, or (H, W).
        sigma: the falloff width (> 0); AutoLink's `thick` for the gaussian falloff.
        edges: (E, 2) integer pairs (a, b); None means all pairs a < b (triu order).
        falloff: "exp" (w exp(-d/sigma)) or "gaussian" (w exp(-d^2/sigma)).
        backend: "auto", "torch", "cpu", "cuda" or "triton" (docs/kernels.md).

    Returns:
        (B, H, W) in the dtype of `keypoints`: S(p) = max_e w_e exp(-f_e(p)). Gradients reach
        the keypoints and the weights through each pixel's winning edge.

    Example:
        >>> kp = torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5]]])   # (1, 3, 2)
        >>> out = edge_map(kp, torch.ones(3), 16, 1e-2, falloff="gaussian")
        >>> out.shape, float(out.max()) <= 1.0
        (torch.Size([1, 16, 16]), True)
    """
    return _edge_map(keypoints, weights, size, sigma, edges, falloff, backend,
                     check_edge_values=True)


def _edge_map(keypoints, weights, size, sigma, edges, falloff, backend, *, check_edge_values):
    """edge_map; `check_edge_values=False` trusts the edge indices (EdgeMapRenderer's own,
    checked at its construction), so that nothing here reads a tensor's values on the host."""
    _validate.keypoints("keypoints", keypoints)
    B, K, _ = keypoints.shape
    height, width = _validate.size2d("size", size)
    sigma = _validate.positive_number("sigma", sigma)
    _validate.choice("falloff", falloff, FALLOFFS)
    if edges is None:
        edges = _all_pairs(K, keypoints.device)
    else:
        _validate.edges("edges", edges, K, keypoints.device, check_values=check_edge_values)
    _validate.edge_weights("weights", weights, B, edges.shape[0], keypoints.device)
    backend = _backend.resolve(backend, keypoints.device)
    gaussian = falloff == "gaussian"

    dtype = compute_dtype(keypoints, weights)
    kp = keypoints.to(dtype)
    w = weights.to(dtype)
    if backend == "torch":
        out = naive.edge_map(kp, w, height, width, sigma, edges.long(), gaussian)
    else:
        w = w.expand(B, -1).contiguous()  # autograd sums the (B, E) gradient back to (E,)
        out, _ = family(backend).edge_map_fwd(kp.contiguous(), w, edges.long().contiguous(),
                                              height, width, sigma, gaussian)
    return out.to(keypoints.dtype)
