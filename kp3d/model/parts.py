"""Keypoints as the centres of parts that tile the image, and the loss that makes each part one
colour (``ModelConfig.part_maps``).

With part maps, the detector's K heatmaps are log-softmaxed across the keypoints at every
position: each position is shared out among the K parts, and keypoint k, the spatial soft-argmax
of its log-probability map, is the centroid of part k (at temperature 1). The colour loss is the
within-part variance of the image's colours (soft k-means in colour, with the detector's maps as
the assignment): it makes each part cover a region of one colour, such as the skin of the face or
the hair. Where those regions sit inside the head's outline follows the head's yaw and pitch,
which keypoints on the outline alone cannot see (docs/training.md, "Keypoints at the centres of
colour regions").
"""

import torch
from torch.nn import functional as F

from kp3d_kernels.ops.edge_map.naive import pixel_grid


def part_log_probs(heatmaps):
    """(B, K, h, w) heatmaps -> the log-probability of each position belonging to each part
    (a log-softmax across the K maps at every position)."""
    return torch.log_softmax(heatmaps.float(), dim=1)


def part_colour_loss(part_probs, images, compactness=0.0):
    """Within-part colour variance: mean over pixels of sum_k p_k(x) |f(x) - c_k|^2, where f(x) is
    the pixel's colour and c_k the p_k-weighted mean of f over part k in that image.

    compactness > 0 appends the pixel's position, (x, y) on [-1, 1] times `compactness`, to its
    colour (as superpixels do), so that a part must also keep to one place: the term then adds
    compactness^2 times each part's spatial variance.

    part_probs: (B, K, h, w), summing to 1 over K at every position (upsampled bilinearly to the
    image's size, which keeps that sum); images: (B, C, H, W).
    """
    if part_probs.shape[0] != images.shape[0]:
        raise ValueError(f"part_probs and images must have the same batch size, got "
                         f"{part_probs.shape[0]} and {images.shape[0]}")
    if not compactness >= 0:
        raise ValueError(f"compactness must be >= 0, got {compactness!r}")
    p = F.interpolate(part_probs.float(), size=images.shape[-2:], mode="bilinear",
                      align_corners=False).flatten(2)  # (B, K, N)
    x = images.float().flatten(2)  # (B, C, N)
    if compactness > 0:
        H, W = images.shape[-2:]
        xs, ys = pixel_grid(H, W, x.dtype, x.device)
        where = torch.stack([xs.repeat(H), ys.repeat_interleave(W)])  # (2, N), row-major
        x = torch.cat([x, (compactness * where).expand(x.shape[0], -1, -1)], 1)
    means = (p @ x.transpose(1, 2)) / p.sum(-1, keepdim=True).clamp_min(1e-6)  # (B, K, C)
    spread = (p[:, :, None] * (x[:, None] - means[..., None]).square()).sum((1, 2))  # (B, N)
    return spread.mean()


__all__ = ["part_log_probs", "part_colour_loss"]
