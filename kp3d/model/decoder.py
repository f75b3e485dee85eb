"""The image decoder: AutoLink's patch masking (or shuffled cells) and a UNet that reconstructs
the image from what it is shown of the image, the edge map and, optionally, one map per
keypoint."""

import torch
from torch import nn
from torch.nn import functional as F

from kp3d_kernels.ops.edge_map.naive import pixel_grid


def random_patch_mask(batch, size, grid=16, keep_prob=0.2, *, generator=None, device="cpu",
                      dtype=torch.float32):
    """(B, 1, H, W) mask of 0/1: the image is cut into a grid x grid array of cells and each
    cell is kept (1) independently with probability keep_prob (AutoLink: 16 x 16, 0.2).

    The draw uses `generator` (a CPU torch.Generator) so that a run is reproducible and
    resumable; the mask is moved to `device` afterwards.
    """
    H, W = (size, size) if isinstance(size, int) else size
    if H % grid or W % grid:
        raise ValueError(f"image size {H}x{W} must be divisible by the mask grid {grid}")
    cells = (torch.rand(batch, 1, grid, grid, generator=generator) < keep_prob).to(dtype)
    mask = cells.repeat_interleave(H // grid, dim=2).repeat_interleave(W // grid, dim=3)
    return mask.to(device)


def shuffle_cells(images, grid=16, *, generator=None):
    """Each image cut into grid x grid cells put back in a random order of its own: the decoder
    sees every colour and texture of the image but not where they belong, so the keypoints must
    say where (not AutoLink; ``ModelConfig.decoder_input = "shuffle"``).

    The order is drawn with `generator` (a CPU torch.Generator), like random_patch_mask.
    """
    B, C, H, W = images.shape
    if H % grid or W % grid:
        raise ValueError(f"image size {H}x{W} must be divisible by the shuffle grid {grid}")
    h, w = H // grid, W // grid
    order = torch.argsort(torch.rand(B, grid * grid, generator=generator), dim=1).to(images.device)
    cells = images.reshape(B, C, grid, h, grid, w).permute(0, 2, 4, 1, 3, 5).reshape(B, grid * grid, C, h, w)
    cells = cells[torch.arange(B, device=images.device)[:, None], order]
    return cells.reshape(B, grid, grid, C, h, w).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def _conv_block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class UNet(nn.Module):
    """A UNet: conv blocks at widths[0..L-1] with 2x downsampling between them, then back up with
    skip connections; output 3 channels, no activation (AutoLink: 64-128-256-512-512)."""

    def __init__(self, in_channels=4, out_channels=3, widths=(64, 128, 256, 512, 512),
                 global_context=False):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.enc = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.enc.append(_conv_block(c, w))
            c = w
        # the bottleneck's mean over the image, beside it: what the whole image holds (its
        # colours when the layout is hidden), which convolutions gather only at their coarsest
        self.global_context = global_context
        c = 2 * c if global_context else c
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.dec.append(_conv_block(c + w, w))
            c = w
        self.out = nn.Conv2d(c, out_channels, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        if self.global_context:
            x = torch.cat([x, x.mean((2, 3), keepdim=True).expand_as(x)], dim=1)
        for block in self.dec:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


class Decoder(nn.Module):
    """(masked image (B, 3, S, S), edge map (B, 1, S, S)[, extra maps (B, C, S, S)]) ->
    reconstruction (B, 3, S, S).

    The input is concat(a * masked_image, edge_map) with a learnable scalar a (initially 1),
    as in AutoLink; `extra_channels` more input channels (e.g. one map per keypoint) follow."""

    def __init__(self, widths=(64, 128, 256, 512, 512), extra_channels=0, global_context=False):
        super().__init__()
        self.image_gain = nn.Parameter(torch.ones(()))
        self.unet = UNet(4 + extra_channels, 3, widths, global_context)
        self.depth = len(widths)

    def forward(self, masked_image, edge_map, extra=None):
        x = [self.image_gain * masked_image, edge_map] + ([] if extra is None else [extra])
        return self.unet(torch.cat(x, dim=1))


def keypoint_maps(keypoints, size, sigma):
    """(B, K, H, W) Gaussian of width sigma around each keypoint (B, K, 2), (x, y) in [-1, 1]:
    unlike the edge map, it tells the decoder which keypoint is which (Jakab et al., 2018)."""
    H, W = (size, size) if isinstance(size, int) else size
    xs, ys = pixel_grid(H, W, keypoints.dtype, keypoints.device)
    dx = (xs[None, None, None, :] - keypoints[..., 0, None, None]).square()
    dy = (ys[None, None, :, None] - keypoints[..., 1, None, None]).square()
    return torch.exp(-(dx + dy) / (2 * sigma * sigma))


def part_colours(heatmaps, images, temperature=1.0):
    """(B, K, C) mean colour of the image under each keypoint's softmax heatmap (B, K, h, w):
    what each keypoint's part looks like, so that a decoder given these at the keypoints must
    get its layout from where the keypoints are (Lorenz et al., CVPR 2019)."""
    B, K, h, w = heatmaps.shape
    probs = torch.softmax(heatmaps.float().flatten(2) / temperature, dim=-1)  # (B, K, h*w)
    small = F.adaptive_avg_pool2d(images.float(), (h, w)).flatten(2)  # (B, C, h*w)
    return probs @ small.transpose(1, 2)
