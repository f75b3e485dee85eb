"""Refined keypoints: each keypoint's best match of a learned template, near the keypoint
(``ModelConfig.refine_reach``).

The reconstruction objective places the keypoints on the head's place and outline, as a pattern
that barely turns with the head (docs/training.md, "How far can keypoints on the head's outline
go?"). Each keypoint k therefore also gets a refined copy: the place near it where a small patch
of the image best shows a template T_k, the soft-argmax over pixels of

    amplitude_k(p) / temperature - |p - keypoint_k|^2 / (2 reach^2),

where amplitude_k(p) = <patch(p), T_k / |T_k|> / sqrt(D), the patch being the (2r+1)^2 pixels
around p minus their mean colour (so that skin tone and lighting drop out), D = C (2r+1)^2. The
templates are learned from the refined keypoints: the template loss, minus the mean amplitude at
them, moves each T_k towards the mean patch it finds (k-means, by gradient). What they settle on
is whatever looks alike near keypoint k on every image; on the synthetic faces, above all an
eye, which moves inside the head as it turns. SCOPS (Hung et al. CVPR 2019) asks the same of
each part's VGG features; here the features are patches and the search is weighted towards the
keypoint, because over the whole image the best match of even the true eye's mean patch is an
eye in only about 58 % of the synthetic faces (`scripts/demo_diagnostics.py appearance`): the
outline and the background win the rest.

The reach is the width of a Gaussian prior, not a bound: it is traded against amplitude /
temperature, and amplitudes differ by up to about 0.2, i.e. 10 at the default temperature,
while three reaches away the prior costs only 4.5: a strong match there can still win. With
the demo's reach (0.19) at 64 x 64, the copies sat 9.5 pixels from their keypoints on average,
and the search moves a true eye 4.5 pixels off with its own mean patch as the template
(`scripts/demo_diagnostics.py search`).
"""

import torch
from torch.nn import functional as F

from kp3d_kernels import soft_argmax
from kp3d_kernels.ops.edge_map.naive import pixel_grid


def patch_offsets(radius, size, dtype=torch.float32, device="cpu"):
    """((2r+1)^2, 2) offsets (x, y) of a patch's samples in the [-1, 1] frame of a `size`-pixel
    image: whole pixels from -radius to radius, row-major."""
    step = 2.0 / (size - 1)  # one pixel on the align-corners grid
    o = torch.arange(-radius, radius + 1, dtype=dtype, device=device) * step
    oy, ox = torch.meshgrid(o, o, indexing="ij")
    return torch.stack([ox.reshape(-1), oy.reshape(-1)], -1)


def local_patches(images, keypoints, radius):
    """(B, K, C (2r+1)^2) patches of `images` (B, C, S, S) around `keypoints` (B, K, 2), sampled
    bilinearly (outside the image, its border), each minus its mean colour."""
    B, C, H, W = images.shape
    if H != W:
        raise ValueError(f"images must be square, got {H} x {W}")
    K = keypoints.shape[1]
    offsets = patch_offsets(radius, H, keypoints.dtype, keypoints.device)  # (P, 2)
    grid = (keypoints[:, :, None] + offsets).reshape(B, K * offsets.shape[0], 1, 2)
    s = F.grid_sample(images.to(keypoints.dtype), grid, mode="bilinear", padding_mode="border",
                      align_corners=True).reshape(B, C, K, -1).transpose(1, 2)  # (B, K, C, P)
    return (s - s.mean(-1, keepdim=True)).flatten(2)


def template_loss(images, keypoints, templates, radius):
    """Minus the mean over images and keypoints of <patch, T_k / |T_k|> / sqrt(D): how strongly
    keypoint k's patch shows its template, in the image's units per sample (D = C (2r+1)^2).
    templates: (K, D). Computed in float32 (float64 stays float64)."""
    dtype = torch.float64 if keypoints.dtype == torch.float64 else torch.float32
    patches = local_patches(images, keypoints.to(dtype), radius)
    if templates.shape != patches.shape[1:]:
        raise ValueError(f"templates must be {tuple(patches.shape[1:])} for these images and "
                         f"radius {radius}, got {tuple(templates.shape)}")
    t = F.normalize(templates.to(dtype), dim=-1)
    return -(patches * t).sum(-1).mean() / patches.shape[-1] ** 0.5


def template_response(images, templates, radius):
    """(B, K, S, S): at every pixel, <patch, T_k / |T_k|> / sqrt(D), the amplitude of template k
    in the patch around that pixel (the image's border repeated outside it). One convolution:
    <patch - its mean colour, t> = <patch, t - its mean per colour>."""
    C = images.shape[1]
    side = 2 * radius + 1
    t = F.normalize(templates.to(images.dtype), dim=-1).reshape(-1, C, side * side)
    t = (t - t.mean(-1, keepdim=True)).reshape(-1, C, side, side)
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    return F.conv2d(padded, t) / (C * side * side) ** 0.5


def _centred_templates(templates, radius, channels):
    """(K, C, 2r+1, 2r+1): each template minus its mean colour, scaled to unit norm (the patch
    as the search compares it)."""
    K = templates.shape[0]
    side = 2 * radius + 1
    t = templates.reshape(K, channels, side * side)
    t = F.normalize((t - t.mean(-1, keepdim=True)).reshape(K, -1), dim=-1)
    return t.reshape(K, channels, side, side)


def template_overlap(templates, radius, channels=3):
    """Mean over pairs j != k of the largest squared normalised cross-correlation of templates
    j and k over all relative shifts (patches compared as the search sees them: mean colour
    removed). 1 when two templates are the same pattern, even shifted; small when they are
    distinct. Without it every template settles on the strongest feature (an eye's corner)."""
    K = templates.shape[0]
    t = _centred_templates(templates, radius, channels)
    xc = F.conv2d(t, t, padding=2 * radius)  # (K, K, 2 side - 1, 2 side - 1)
    peak = xc.square().flatten(2).amax(-1)
    off = ~torch.eye(K, dtype=torch.bool, device=templates.device)
    return peak[off].mean() if K > 1 else peak.sum() * 0


def mirror_overlap(templates, radius, channels=3):
    """(K,): for each template, the largest normalised cross-correlation with its own left-right
    mirror image over all shifts. 1 for a mirror-symmetric pattern (an eye's centre), which the
    search cannot tell from the same feature on the face's other side; below 1 for a one-sided
    one (an eye's outer corner: skin on one side, the eye on the other)."""
    t = _centred_templates(templates, radius, channels)
    xc = F.conv2d(t[None].flatten(1, 2), t.flip(-1).flatten(0, 1)[:, None], padding=2 * radius,
                  groups=t.shape[0] * channels)  # (1, K C, ...): per template, per colour
    return xc.reshape(t.shape[0], channels, -1).sum(1).amax(-1)


def refine_keypoints(images, keypoints, templates, radius, reach, temperature, *, backend="auto"):
    """(B, K, 2): for each keypoint, the soft-argmax over the image's pixels of
    template_response / temperature - |p - keypoint|^2 / (2 reach^2) (reach in the [-1, 1]
    frame): where near the keypoint its template shows best."""
    if not (reach > 0 and temperature > 0):
        raise ValueError(f"reach and temperature must be > 0, got {reach!r} and {temperature!r}")
    S = images.shape[-1]
    response = template_response(images, templates, radius)
    xs, ys = pixel_grid(S, S, response.dtype, response.device)
    kp = keypoints.to(response.dtype)
    d2 = ((xs - kp[..., 0, None]).square()[..., None, :]  # (B, K, 1, S) + (B, K, S, 1)
          + (ys - kp[..., 1, None]).square()[..., :, None])
    logits = response / temperature - d2 / (2 * reach * reach)
    return soft_argmax(logits, backend=backend)


__all__ = ["patch_offsets", "local_patches", "template_loss", "template_overlap", "mirror_overlap",
           "template_response", "refine_keypoints"]
