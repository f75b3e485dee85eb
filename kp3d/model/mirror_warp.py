"""The mirror image warped onto the keypoints: an appearance source that shows the same head at
another pose (not AutoLink; ``ModelConfig.decoder_input = "mirror-warp"``).

A face, a car or a bird is close to mirror-symmetric, so the mirror of an image is the same
object at the mirrored pose: the same colours and parts, with the face on the other side of the
head when it is turned. The detector finds the keypoints of both images; each pixel of the
target then fetches the mirror image's pixel displaced by a blend of the keypoints'
displacements (each keypoint's weight a Gaussian of the pixel's distance to it, normalised over
the keypoints, as the zeroth-order motion of Siarohin et al., NeurIPS 2019). Keypoints that
follow the head's outline only bring the head to the right place with its face still mirrored;
keypoints on the face's parts bring the parts, and the reconstruction loss reaches the
keypoints through the warp itself. On the synthetic faces it does not help: with this motion
model the true landmarks warp worse than a rigid shift (docs/training.md, "Another pose of the
same head").
"""

import torch
from torch.nn import functional as F

from kp3d_kernels.ops.edge_map.naive import pixel_grid


def keypoint_flow(kp_target, kp_source, size, sigma):
    """(B, H, W, 2) sampling grid: for each target pixel p, p + sum_k w_k(p) (s_k - t_k), with
    w(p) = softmax_k(-|p - t_k|^2 / (2 sigma^2)). kp_* (B, K, 2) in (x, y), [-1, 1]."""
    if kp_target.shape != kp_source.shape or kp_target.dim() != 3 or kp_target.shape[-1] != 2:
        raise ValueError(f"kp_target and kp_source must both be (B, K, 2), got "
                         f"{tuple(kp_target.shape)} and {tuple(kp_source.shape)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    H, W = size
    xs, ys = pixel_grid(H, W, kp_target.dtype, kp_target.device)
    grid = torch.stack((xs.expand(H, W), ys[:, None].expand(H, W)), dim=-1)  # (H, W, (x, y))
    d2 = (grid[None, :, :, None, :] - kp_target[:, None, None]).square().sum(-1)  # (B, H, W, K)
    weights = torch.softmax(-d2 / (2 * sigma * sigma), dim=-1)
    return grid + weights @ (kp_source - kp_target)[:, None]  # (B, H, W, K) @ (B, 1, K, 2)


def warp_to_keypoints(source, kp_target, kp_source, sigma):
    """source (B, C, H, W) resampled so that its keypoints kp_source land on kp_target
    (bilinear, zeros outside the image)."""
    dtype = torch.promote_types(kp_target.dtype, torch.float32)  # fp16 keypoints in float32
    grid = keypoint_flow(kp_target.to(dtype), kp_source.to(dtype), source.shape[-2:], sigma)
    return F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=True)
