"""Reconstruction losses: the VGG16 perceptual loss (AutoLink) from a local state dict, and
fallbacks that need no pretrained weights.

Nothing here downloads anything. `VGG16Features.from_state_dict_file(path)` reads a
torchvision-format VGG16 state dict (`features.0.weight`, ..., `classifier.*` ignored) with
`torch.load(..., weights_only=True)`.

Fallbacks (`build_reconstruction_loss(kind)`):
- "random": L1 between the activations of a fixed random-weight convolutional pyramid (a
  VGG-shaped net with He-initialised, frozen weights drawn from a fixed seed) plus a pixel L1;
- "pyramid": L1 on pixels and on image gradients at several scales (no network at all);
- "ssim": L1 plus (1 - SSIM) at several scales;
- "l1": plain pixel L1.
docs/training.md has the measurement that picks the default fallback.
"""

import os

import torch
from torch import nn
from torch.nn import functional as F

# torchvision's vgg16 "D" configuration up to relu4_3 (features.0 ... features.22)
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FALLBACKS = ("random", "pyramid", "ssim", "l1")


class WeightsError(ValueError):
    """A perceptual-weights file that cannot be used."""


def _vgg_features(cfg, widths_scale=1.0):
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            w = max(8, int(v * widths_scale))
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=False)]
            c = w
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """VGG16 conv layers up to relu4_3 with torchvision's parameter names (`features.N.*`).

    forward(images in [-1, 1]) -> list of activations at relu1_2, relu2_2, relu3_3, relu4_3,
    ImageNet-normalised input, optionally resized to `resize` first (AutoLink: 224).
    """

    def __init__(self, resize=None):
        super().__init__()
        self.features = _vgg_features(_VGG16_CFG)
        self.resize = resize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.taps = sorted(VGG16_LAYERS.values())
        self.requires_grad_(False)

    @classmethod
    def from_state_dict_file(cls, path, resize=None):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise WeightsError(f"VGG16 weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise WeightsError(f"cannot read VGG16 weights {path}: not a torch state dict "
                               f"({type(exc).__name__})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise WeightsError(f"VGG16 weights {path}: expected a state dict, got {type(state).__name__}")
        model = cls(resize=resize)
        wanted = model.features.state_dict()
        picked = {}
        for key in wanted:
            full = "features." + key
            if full in state:
                picked[key] = state[full]
            elif "module." + full in state:
                picked[key] = state["module." + full]
            else:
                raise WeightsError(f"VGG16 weights {path}: missing {full!r} "
                                   f"(expected torchvision's vgg16 state dict)")
            if tuple(picked[key].shape) != tuple(wanted[key].shape):
                raise WeightsError(f"VGG16 weights {path}: {full} has shape "
                                   f"{tuple(picked[key].shape)}, expected {tuple(wanted[key].shape)}")
        model.features.load_state_dict(picked)
        return model

    def forward(self, x):
        x = (x + 1) / 2
        if self.resize is not None and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        out = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == last:
                break
        return out


class FeatureL1(nn.Module):
    """Sum over feature levels of the mean L1 distance (AutoLink's perceptual loss)."""

    def __init__(self, net, pixel_weight=0.0):
        super().__init__()
        self.net = net
        self.pixel_weight = pixel_weight

    def forward(self, pred, target):
        fp = self.net(pred)
        with torch.no_grad():
            ft = self.net(target)
        loss = sum(F.l1_loss(a, b) for a, b in zip(fp, ft))
        if self.pixel_weight:
            loss = loss + self.pixel_weight * F.l1_loss(pred, target)
        return loss


class RandomPyramid(nn.Module):
    """A fixed random-weight conv pyramid: levels of two 3x3 convs + ReLU, 2x pooling between
    them, He-normal weights from a fixed seed, frozen. Returns the activation of each level,
    each scaled by a fixed constant so levels contribute comparably at the start."""

    def __init__(self, widths=(16, 32, 64), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers, c = [], 3
        self.taps = []
        for i, w in enumerate(widths):
            if i:
                layers.append(nn.AvgPool2d(2))
            for _ in range(2):
                conv = nn.Conv2d(c, w, 3, padding=1)
                with torch.no_grad():
                    conv.weight.normal_(0.0, (2.0 / (9 * c)) ** 0.5, generator=g)
                    conv.bias.zero_()
                layers += [conv, nn.ReLU()]
                c = w
            self.taps.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, x):
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def _gradients(x):
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


class PyramidL1(nn.Module):
    """L1 on pixels and on horizontal/vertical image differences at `levels` scales."""

    def __init__(self, levels=3, gradient_weight=1.0):
        super().__init__()
        self.levels = levels
        self.gradient_weight = gradient_weight

    def forward(self, pred, target):
        loss = 0.0
        for level in range(self.levels):
            if level:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            loss = loss + F.l1_loss(pred, target)
            (px, py), (tx, ty) = _gradients(pred), _gradients(target)
            loss = loss + self.gradient_weight * (F.l1_loss(px, tx) + F.l1_loss(py, ty))
        return loss


def ssim(x, y, window=7, c1=0.01 ** 2, c2=0.03 ** 2):
    """Mean SSIM of images in [-1, 1] (computed on [0, 1]) with a uniform window."""
    x, y = (x + 1) / 2, (y + 1) / 2
    pad = window // 2
    mu = lambda t: F.avg_pool2d(F.pad(t, (pad,) * 4, mode="reflect"), window, 1)  # noqa: E731
    mx, my = mu(x), mu(y)
    sxx = mu(x * x) - mx * mx
    syy = mu(y * y) - my * my
    sxy = mu(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


class MultiScaleSSIM(nn.Module):
    """L1 + (1 - SSIM) at `levels` scales."""

    def __init__(self, levels=3):
        super().__init__()
        self.levels = levels

    def forward(self, pred, target):
        loss = 0.0
        for level in range(self.levels):
            if level:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            window = 7 if min(pred.shape[-2:]) >= 16 else 3
            loss = loss + F.l1_loss(pred, target) + (1 - ssim(pred, target, window))
        return loss


class PixelL1(nn.Module):
    def forward(self, pred, target):
        return F.l1_loss(pred, target)


def build_reconstruction_loss(kind="auto", *, vgg_weights=None, vgg_resize=None, seed=0):
    """The reconstruction loss module.

    kind: "vgg" (needs vgg_weights), "auto" (VGG16 when vgg_weights is given, else the
    default fallback "random"), or a fallback name in FALLBACKS.
    """
    if kind == "auto":
        kind = "vgg" if vgg_weights else "random"
    if kind == "vgg":
        if not vgg_weights:
            raise WeightsError("the VGG16 perceptual loss needs --vgg-weights PATH "
                               "(a local torchvision vgg16 state dict)")
        return FeatureL1(VGG16Features.from_state_dict_file(vgg_weights, resize=vgg_resize))
    if kind == "random":
        return FeatureL1(RandomPyramid(seed=seed), pixel_weight=1.0)
    if kind == "pyramid":
        return PyramidL1()
    if kind == "ssim":
        return MultiScaleSSIM()
    if kind == "l1":
        return PixelL1()
    raise ValueError(f"unknown reconstruction loss {kind!r} (expected auto, vgg, "
                     f"{', '.join(FALLBACKS)})")
