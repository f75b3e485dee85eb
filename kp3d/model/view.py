"""The view head: which way, and how far, a face is turned, read off the image.

The keypoints alone carry the yaw only weakly: their odd part, the points on an image minus the
points on its mirror image, follows the yaw, but near frontal the lighting and the roll decide
its sign (docs/training.md, "Taking the teacher's errors away from the student"). The view head
is an image network that learns the yaw from that odd part without labels, trained after the
keypoints (kp3d/train/view_head.py), and shown what the odd part's errors do not follow:

- it is odd by construction, g(x) = h(x) - h(mirror of x), as the yaw is;
- it sees the colour without the brightness (`chromaticity`), so not the shading;
- its crop is centred on the points with the mirror image's points put back
  (`symmetric_frame`), which do not move with what turns the other way in the mirror.

`planar_depth` turns its view into depth: each point's x from the points' mean times tanh of
the view, the first-order depth of a head turned by that much (the regression of the
evaluation scales it).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def head_crops(images, frame, size, spread=2.0, jitter=0.0, generator=None):
    """(N, C, size, size): each image (N, C, H, W) resampled on a square centred on its frame
    points' mean ((N, P, 2), [-1, 1] frame) with a half side of `spread` times their RMS radius,
    the centre moved by up to `jitter` (same units) at random (CPU `generator`). The crop of the
    mirror image at the mirrored points is the mirror image of the crop."""
    p = torch.as_tensor(frame, dtype=images.dtype).to(images.device)
    centre = p.mean(1)
    half = spread * ((p - centre[:, None]) ** 2).sum(-1).mean(1).sqrt()
    if jitter:
        shift = 2 * torch.rand(centre.shape, generator=generator, dtype=images.dtype) - 1
        centre = centre + jitter * shift.to(images.device)
    theta = torch.zeros(len(p), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = half
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, (len(p), images.shape[1], size, size), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="border")


def chromaticity(images):
    """Each pixel's colour divided by its brightness (images in [-1, 1], as the datasets give
    them): the shading of a white light divides out, the colours of skin, eyes, lips and hair
    stay (highlights and clipped pixels remain)."""
    x = (images + 1).clamp(min=0) / 2 + 0.02  # [0, 1], with a floor: black has no colour
    return 3 * x / x.sum(1, keepdim=True) - 1


def symmetric_frame(points, mirror_points):
    """(N, 2P, 2): the points on each image (N, P, 2) and, mirrored back, the points on its mirror
    image. Their mean does not move with anything that turns the other way in the mirror (the
    lighting shifts the points; a crop that followed them would show the head the points'
    errors). Works on numpy arrays and tensors alike."""
    flip = mirror_points.clone() if torch.is_tensor(mirror_points) else mirror_points.copy()
    flip[..., 0] = -flip[..., 0]
    if torch.is_tensor(points):
        return torch.cat([points, flip], 1)
    return np.concatenate([points, flip], 1)


def normalised_layout(points):
    """(N, 2P): points (N, P, 2) centred and divided by their RMS radius: their layout, without
    the head's place and size."""
    c = points - points.mean(1, keepdim=True)
    r = (c ** 2).sum(-1).mean(1).sqrt()
    return (c / r[:, None, None]).flatten(1)


def odd_layout(points, mirror_points):
    """(N, 2P): the odd part of the layout, `normalised_layout` of the points on each image minus
    that of the points on its mirror image. What turns the other way in the mirror, the yaw above
    all, changes its sign."""
    return normalised_layout(points) - normalised_layout(mirror_points)


def odd_layout_direction(points, mirror_points):
    """(2P,): the top principal direction of `odd_layout` over the faces given; no labels. Not
    centred, so that swapping image and mirror gives exactly the negative coordinate."""
    return torch.linalg.svd(odd_layout(points, mirror_points), full_matrices=False)[2][0]


def planar_depth(points, view):
    """(N, P): the depth of each point (N, P, 2) on a plane through the points' mean turned by
    the view (N,): tanh(view) times the point's x from the mean."""
    return torch.tanh(view)[:, None] * (points[..., 0] - points[..., 0].mean(1, keepdim=True))


class ViewHead(nn.Module):
    """g(x) = h(x) - h(mirror of x) on a head crop: a number per image that is, by construction,
    its negative on the mirror image. h: four stride-2 convolutions and a linear read of the last
    map, which keeps the layout (where the face sits in the crop).

    `forward(images, points, mirror_points)` gives the view of each image, divided by `scale`
    (a buffer: the spread of the views over the faces it learnt on, so that tanh of it is a
    turn); `raw` gives g of ready crops."""

    def __init__(self, crop=48, widths=(32, 64, 96, 128), colour="chromaticity"):
        super().__init__()
        if colour not in ("chromaticity", "rgb"):
            raise ValueError(f"colour must be chromaticity or rgb, got {colour!r}")
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8:
            raise ValueError(f"the view head's crop must be an integer >= 8 pixels, got {crop!r}")
        self.crop, self.colour = crop, colour
        layers, c = [], 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 2, 1), nn.GroupNorm(8, w), nn.ReLU()]
            c = w
        side = crop
        for _ in widths:
            side = (side + 1) // 2
        self.h = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, 1))
        self.register_buffer("scale", torch.ones(()))

    def raw(self, crops):
        """(N,): g of head crops (N, 3, crop, crop), before `scale`."""
        x = chromaticity(crops) if self.colour == "chromaticity" else crops
        return (self.h(x) - self.h(x.flip(-1))).squeeze(1)

    def forward(self, images, points, mirror_points):
        """(N,): the view of images (N, 3, S, S) on which the model found `points` (N, P, 2), and
        `mirror_points` on their mirror images."""
        crops = head_crops(images.float(), symmetric_frame(points, mirror_points).float(), self.crop)
        return self.raw(crops) / self.scale


__all__ = ["ViewHead", "head_crops", "chromaticity", "symmetric_frame", "normalised_layout",
           "odd_layout", "odd_layout_direction", "planar_depth"]
