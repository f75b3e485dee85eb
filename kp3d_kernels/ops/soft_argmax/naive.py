"""Pure-PyTorch reference of the spatial soft-argmax (docs/kernels.md)."""

import torch

from ...grid import pixel_grid


def soft_argmax(heatmaps, temperature, softmax):
    """heatmaps (B, K, H, W) -> expected (x, y) position (B, K, 2) on the align-corners grid."""
    B, K, H, W = heatmaps.shape
    flat = heatmaps.reshape(B, K, H * W)
    if softmax:
        q = torch.softmax(flat / temperature, dim=-1)
    else:
        q = flat / flat.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    xs, ys = pixel_grid(H, W, heatmaps.dtype, heatmaps.device)
    gx = xs.repeat(H)  # x of each flattened position (row-major)
    gy = ys.repeat_interleave(W)
    return torch.stack(((q * gx).sum(-1), (q * gy).sum(-1)), dim=-1)
