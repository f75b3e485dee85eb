"""Pure-PyTorch reference of the edge map (docs/kernels.md): the ground truth of every backend.

It materialises the (B, E, H, W) scores, exactly as AutoLink's renderer does, and lets autograd
differentiate it. Readable, not fast.
"""

import torch

from ...grid import pixel_grid


def edge_map(keypoints, weights, height, width, sigma, edges, gaussian):
    """keypoints (B, K, 2) (x, y); weights (E,) or (B, E); edges (E, 2) int64 -> (B, H, W)."""
    B = keypoints.shape[0]
    xs, ys = pixel_grid(height, width, keypoints.dtype, keypoints.device)
    px = xs.view(1, 1, 1, width)
    py = ys.view(1, 1, height, 1)
    a = keypoints[:, edges[:, 0]]  # (B, E, 2)
    b = keypoints[:, edges[:, 1]]
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]  # (B, E, 1, 1)
    vx, vy = (b[..., 0] - a[..., 0])[..., None, None], (b[..., 1] - a[..., 1])[..., None, None]
    dx, dy = px - ax, py - ay  # (B, E, H, W)
    t = ((dx * vx + dy * vy) / (vx * vx + vy * vy + 1e-12)).clamp(0, 1)
    rx, ry = dx - t * vx, dy - t * vy
    d2 = rx * rx + ry * ry
    if gaussian:
        f = d2 / sigma
    else:
        # sqrt with gradient 0 (not NaN) where d = 0
        positive = d2 > 0
        f = torch.where(positive, torch.sqrt(torch.where(positive, d2, 1)), 0) / sigma
    w = weights.to(keypoints.dtype).expand(B, -1)[..., None, None]
    scores = w * torch.exp(-f)
    # max over edges; torch.max picks the first of equal values, as the contract asks
    return scores.max(dim=1).values
