"""The keypoint detector: an AutoLink-style convolutional encoder (no pretrained weights).

Residual blocks halve the resolution from the input down to 1/2^len(widths), two (or more)
upsampling blocks come back to a quarter of the input resolution, and a 3x3 convolution gives
K heatmaps; the 2D keypoints are their spatial soft-argmax (the `kp3d_kernels` op), in (x, y)
order on [-1, 1]. AutoLink's configuration is widths (64, 128, 256, 512) at 128 x 128.
"""

import torch
from torch import nn
from torch.nn import functional as F

from kp3d_kernels import SoftArgmax2d


class DownBlock(nn.Module):
    """3x3 conv -> bilinear /2 -> BN -> LeakyReLU -> 3x3 conv -> BN, plus a 1x1 shortcut."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        h = F.interpolate(self.conv1(x), scale_factor=0.5, mode="bilinear", align_corners=False)
        h = F.leaky_relu(self.bn1(h), 0.2)
        h = self.bn2(self.conv2(h))
        s = self.skip(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))
        return F.leaky_relu(h + s, 0.2)


class UpBlock(nn.Module):
    """Bilinear x2 -> 3x3 conv -> BN -> LeakyReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.leaky_relu(self.bn(self.conv(x)), 0.2)


class Detector(nn.Module):
    """Image (B, 3, S, S) in [-1, 1] -> keypoints (B, K, 2) and heatmaps (B, K, S/4, S/4).

    Args:
        num_keypoints: K.
        widths: channels of the downsampling blocks; the bottleneck is at S / 2^len(widths),
            which must be at most S / 4.
        temperature: soft-argmax temperature (softmax over the S/4 x S/4 positions).
        backend: kernel backend of the soft-argmax op.

    Example:
        >>> det = Detector(8, (16, 32))
        >>> keypoints, heatmaps = det(torch.zeros(2, 3, 64, 64))
        >>> keypoints.shape, heatmaps.shape
        (torch.Size([2, 8, 2]), torch.Size([2, 8, 16, 16]))
    """

    def __init__(self, num_keypoints: int, widths=(64, 128, 256, 512), *, temperature: float = 1.0,
                 backend: str = "auto"):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"detector widths need at least 2 levels, got {widths}")
        self.num_keypoints = num_keypoints
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.LeakyReLU(0.2))
        chans = [widths[0]] + list(widths)
        self.down = nn.ModuleList(DownBlock(chans[i], chans[i + 1]) for i in range(len(widths)))
        ups = []
        c = widths[-1]
        for i in range(len(widths) - 2):  # from 1/2^L back to 1/4
            cout = widths[-2 - i]
            ups.append(UpBlock(c, cout))
            c = cout
        self.up = nn.Sequential(*ups)
        self.head = nn.Conv2d(c, num_keypoints, 3, padding=1)
        self.soft_argmax = SoftArgmax2d(temperature=temperature, backend=backend)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, S, S) -> (keypoints (B, K, 2) float32, heatmaps (B, K, S/4, S/4))."""
        h = self.stem(image)
        for block in self.down:
            h = block(h)
        heatmaps = self.head(self.up(h))
        return self.soft_argmax(heatmaps.float()), heatmaps
