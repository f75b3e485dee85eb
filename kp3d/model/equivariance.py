"""Keypoints that follow the image: the detector's keypoints on a turned, scaled and shifted copy
of an image must be the same transform of its keypoints on the image (the equivariance
constraint of Thewlis et al., ICCV 2017). `ModelConfig.equivariance_shift` > 0 turns it on.

A detector can lower the reconstruction loss with keypoints that cling partly to the image
frame (near the corners, where they paint the background); this loss makes them pay for it.
Frame: [-1, 1] on the align-corners pixel grid, x right, y down (SPEC section 2).
"""

import math

import torch
from torch.nn import functional as F

MAX_ANGLE_DEG = 15.0
MAX_SCALE_CHANGE = 0.1


def random_similarity(batch, max_shift, *, generator=None, device="cpu"):
    """(A (B, 2, 2), t (B, 2)) of random similarity transforms: a turn of up to 15 degrees, a
    scale of 1 +- 0.1 and a shift of up to max_shift along each axis, drawn uniformly with
    `generator` (a CPU torch.Generator, for reproducible and resumable runs)."""
    u = torch.rand(batch, 4, generator=generator).to(device) * 2 - 1
    angle = u[:, 0] * math.radians(MAX_ANGLE_DEG)
    scale = 1 + MAX_SCALE_CHANGE * u[:, 1]
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    A = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    return A, u[:, 2:] * max_shift


def warp_similarity(images, A, t):
    """The images (B, C, H, W) resampled so that output pixel p shows the input at A p + t
    (bilinear; outside the image, its border)."""
    theta = torch.cat([A, t[..., None]], -1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def transform_points(points, A, t):
    """Where points (B, K, 2) of an input image land in `warp_similarity`'s output: A^-1 (x - t)."""
    return torch.linalg.solve(A[:, None], (points - t[:, None]).unsqueeze(-1)).squeeze(-1)


def equivariance_loss(detector, images, keypoints, max_shift, *, generator=None):
    """Mean squared distance between the detector's keypoints on a randomly warped copy of the
    images and the same warp applied to `keypoints` (the detector's keypoints on the images)."""
    A, t = random_similarity(images.shape[0], max_shift, generator=generator, device=images.device)
    on_warped = detector(warp_similarity(images, A, t))["keypoints"].float()
    expected = transform_points(keypoints.float(), A, t)
    return (on_warped - expected).square().sum(-1).mean()
