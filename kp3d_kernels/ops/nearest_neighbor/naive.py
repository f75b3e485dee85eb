"""Pure-PyTorch reference of the nearest-neighbour search and the repulsion loss (docs/kernels.md)."""

import torch


def nearest_neighbor(points):
    """points (B, K, D) -> (dist (B, K), index (B, K) int64) of the nearest *other* point."""
    K = points.shape[1]
    diff = points[:, :, None, :] - points[:, None, :, :]  # (B, K, K, D)
    d2 = (diff * diff).sum(-1)
    self_mask = torch.eye(K, dtype=torch.bool, device=points.device)
    index = d2.masked_fill(self_mask, float("inf")).argmin(dim=-1)  # first of equal minima
    neighbour = torch.gather(points, 1, index[..., None].expand_as(points))
    r = points - neighbour
    r2 = (r * r).sum(-1)
    positive = r2 > 0
    dist = torch.where(positive, torch.sqrt(torch.where(positive, r2, 1)), 0)
    return dist, index


def repulsion_per_sample(points, bandwidth):
    """L_b = -sum_i d_i exp(-d_i / h), d_i the nearest-neighbour distance: (B,)."""
    dist, _ = nearest_neighbor(points)
    return -(dist * torch.exp(-dist / bandwidth)).sum(-1)
