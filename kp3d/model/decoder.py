"""The image decoder: AutoLink's patch masking and a UNet that reconstructs the image from the
masked image and the edge map."""

import torch
from torch import nn
from torch.nn import functional as F



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


def _conv_block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class UNet(nn.Module):
    """A UNet: conv blocks at widths[0..L-1] with 2x downsampling between them, then back up with
    skip connections; output 3 channels, no activation (AutoLink: 64-128-256-512-512)."""

    def __init__(self, in_channels=4, out_channels=3, widths=(64, 128, 256, 512, 512)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.enc = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.enc.append(_conv_block(c, w))
            c = w
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
        for block in self.dec:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


class Decoder(nn.Module):
    """(masked image (B, 3, S, S), edge map (B, 1, S, S)) -> reconstruction (B, 3, S, S).

    The input is concat(a * masked_image, edge_map) with a learnable scalar a (initially 1),
    as in AutoLink.

    Example:
        >>> dec = Decoder((8, 16, 32))
        >>> dec(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, widths=(64, 128, 256, 512, 512)):
        super().__init__()
        self.image_gain = nn.Parameter(torch.ones(()))
        self.unet = UNet(4, 3, widths)

    def forward(self, masked_image: torch.Tensor, edge_map: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([self.image_gain * masked_image, edge_map], dim=1))
