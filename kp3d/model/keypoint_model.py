"""The whole model: detector -> 2D keypoints -> edge map -> decoder, plus the 3D structure.

    model = KeypointModel(ModelConfig(num_keypoints=16, image_size=64))
    out = model(images, generator=g)   # training forward: masking, reconstruction, 3D structure
    pred = model.predict(images)       # inference: keypoints_2d (B,K,2), keypoints_3d (B,K,3)

`mode="autolink"` drops the 3D branch (the paper's 2D ablation, AutoLink itself); its training
also drops the repulsion loss, so that only AutoLink's perceptual loss is left
(`kp3d.train.config.TrainConfig.loss_weights`).
"""

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from kp3d_kernels import EdgeMapRenderer
from kp3d_kernels.modules import AUTOLINK_INITIAL_WEIGHT

from ..errors import ConfigError
from ..options import option
from .decoder import Decoder, random_patch_mask
from .detector import Detector
from .structure3d import Canonicalizer, Lifter, ShapeModel, random_rotations

MODES = ("3d", "autolink")
# AutoLink's line thickness (gaussian falloff, 128 x 128) by number of keypoints
_AUTOLINK_THICK = ((8, 2.5e-3), (16, 1e-3), (32, 7.5e-4))


def default_edge_sigma(num_keypoints: int, image_size: int, falloff: str = "gaussian") -> float:
    """AutoLink's `thick` for K (log-interpolated between its K = 8, 16, 32 settings), scaled by
    (128 / S)^2 so that lines keep their width in pixels at other image sizes; for the exp
    falloff, the distance at which the gaussian line falls to 1/e."""
    ks = [k for k, _ in _AUTOLINK_THICK]
    vs = [math.log(v) for _, v in _AUTOLINK_THICK]
    lk = min(max(num_keypoints, ks[0]), ks[-1])
    thick = math.exp(float(np.interp(math.log(lk), [math.log(k) for k in ks], vs)))
    thick *= (128.0 / image_size) ** 2
    return thick if falloff == "gaussian" else math.sqrt(thick)


@dataclass
class ModelConfig:
    """The model's architecture; stored in every checkpoint, validated on creation."""

    num_keypoints: int = option(16, "number of keypoints K (>= 2)", "--keypoints", "-k")
    image_size: int = option(64, "image side in pixels", "--image-size")
    mode: str = option("3d", "3d: the paper's method; autolink: AutoLink itself, without the 3D "
                       "branch and the repulsion loss (the paper's 2D ablation)", "--mode")
    detector_widths: tuple = option(None, "detector channels per level, e.g. 16,32,64 "
                                    "(AutoLink: 64,128,256,512)", "--detector-widths",
                                    factory=lambda: (32, 64, 128))
    decoder_widths: tuple = option(None, "decoder UNet channels per level "
                                   "(AutoLink: 64,128,256,512,512)", "--decoder-widths",
                                   factory=lambda: (32, 64, 128, 256))
    temperature: float = option(1.0, "soft-argmax temperature (softmax of heatmap / T)",
                                "--temperature")
    edge_falloff: str = option("gaussian", "gaussian (AutoLink: exp(-d^2/sigma)) or exp "
                               "(exp(-d/sigma))", "--edge-falloff")
    edge_sigma: float = option(0.0, "edge width sigma (0 = AutoLink's for K and the image size)",
                               "--edge-sigma")
    edge_lr_scale: float = option(512.0, "edge weights are softplus(scale * theta) (AutoLink: 512)")
    edge_weight_init: float = option(AUTOLINK_INITIAL_WEIGHT, "initial edge weight (AutoLink: "
                                     "softplus(-4) = 0.018)", "--edge-weight-init")
    learn_edge_weights: bool = option(True, "learn the edge weights (false: they stay at "
                                      "edge_weight_init)", flags={"--fixed-edge-weights": False})
    mask_grid: int = option(16, "the mask's cells per side (AutoLink: 16)", "--mask-grid")
    mask_keep: float = option(0.2, "fraction of mask cells the decoder sees (AutoLink: 0.2)",
                              "--mask-keep")
    num_basis: int = option(2, "number of deformation bases n", "--basis")
    lifter_hidden: int = option(256, "width of the lifter and canonicaliser MLPs")
    lifter_depth: int = option(2, "residual blocks of the lifter and canonicaliser MLPs")
    canonicalization: bool = option(True, "C3DPO's canonicalisation network and loss")
    backend: str = option("auto", "kernel backend: auto, torch, cpu, cuda, triton")

    def __post_init__(self):
        for name in ("detector_widths", "decoder_widths"):
            widths = getattr(self, name)
            try:
                widths = tuple(int(w) for w in widths)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a sequence of integers, got {widths!r}") from None
            if not widths or min(widths) < 1:
                raise ConfigError(f"{name} must be positive integers, got {widths!r}")
            setattr(self, name, widths)
        self.validate()

    def validate(self):
        K, S = self.num_keypoints, self.image_size
        if isinstance(K, bool) or not isinstance(K, int) or K < 2:
            raise ConfigError(f"the number of keypoints must be an integer >= 2, got {K!r}")
        if isinstance(S, bool) or not isinstance(S, int) or S < 16:
            raise ConfigError(f"the image size must be an integer >= 16, got {S!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        down = 2 ** len(self.detector_widths)
        if len(self.detector_widths) < 2 or S % down:
            raise ConfigError(f"image size {S} must be divisible by 2^{len(self.detector_widths)} "
                              f"= {down} (detector levels) and there must be >= 2 levels")
        if S % (2 ** (len(self.decoder_widths) - 1)):
            raise ConfigError(f"image size {S} must be divisible by "
                              f"{2 ** (len(self.decoder_widths) - 1)} (decoder levels)")
        if isinstance(self.mask_grid, bool) or not isinstance(self.mask_grid, int) or self.mask_grid < 1:
            raise ConfigError(f"mask_grid must be an integer >= 1, got {self.mask_grid!r}")
        if S % self.mask_grid:
            raise ConfigError(f"image size {S} must be divisible by the mask grid {self.mask_grid}")
        if not 0.0 <= self.mask_keep <= 1.0:
            raise ConfigError(f"mask_keep must be in [0, 1], got {self.mask_keep!r}")
        if isinstance(self.num_basis, bool) or not isinstance(self.num_basis, int) or self.num_basis < 0:
            raise ConfigError(f"num_basis must be an integer >= 0, got {self.num_basis!r}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        if not self.edge_sigma >= 0:
            raise ConfigError(f"edge_sigma must be >= 0 (0 = AutoLink's width), got {self.edge_sigma!r}")
        if not self.edge_weight_init > 0:
            raise ConfigError(f"edge_weight_init must be > 0, got {self.edge_weight_init!r}")
        if self.edge_falloff not in ("exp", "gaussian"):
            raise ConfigError(f"edge_falloff must be exp or gaussian, got {self.edge_falloff!r}")
        if not self.edge_lr_scale > 0:
            raise ConfigError(f"edge_lr_scale must be > 0, got {self.edge_lr_scale!r}")
        for name, least in (("lifter_hidden", 1), ("lifter_depth", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {v!r}")
        if self.backend not in ("auto", "torch", "cpu", "cuda", "triton"):
            raise ConfigError(f"backend must be auto, torch, cpu, cuda or triton, got {self.backend!r}")

    @property
    def sigma(self) -> float:
        return self.edge_sigma or default_edge_sigma(self.num_keypoints, self.image_size,
                                                     self.edge_falloff)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["detector_widths"] = list(self.detector_widths)
        d["decoder_widths"] = list(self.decoder_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


class KeypointModel(nn.Module):
    """The paper's model: AutoLink's keypoints and links, and a 3D structure behind them.

    forward(images (B, 3, S, S) in [-1, 1]) returns a dict with
    - keypoints (B, K, 2) in (x, y), [-1, 1]; heatmaps (B, K, S/4, S/4);
    - edge_map (B, 1, S, S); masked (B, 3, S, S), what the decoder sees of the image;
      reconstruction (B, 3, S, S); target, the images;
    - with the 3D branch: alpha (B, n), rotation (B, 3, 3), scale (B,), translation (B, 3),
      canonical = M + alpha B (B, K, 3), points_3d = S R (M + alpha B) + T, projected (its
      image through Pi, (B, K, 2)), and, with canonicalisation, canonical_recovered.

    Example:
        >>> model = KeypointModel(ModelConfig(num_keypoints=8, image_size=32,
        ...                                   detector_widths=(8, 16), decoder_widths=(8, 16)))
        >>> out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
        >>> out["keypoints"].shape, out["projected"].shape
        (torch.Size([2, 8, 2]), torch.Size([2, 8, 2]))
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        K, S = config.num_keypoints, config.image_size
        self.detector = Detector(K, config.detector_widths, temperature=config.temperature,
                                 backend=config.backend)
        self.renderer = EdgeMapRenderer(K, S, config.sigma, falloff=config.edge_falloff,
                                        learnable=config.learn_edge_weights,
                                        backend=config.backend, lr_scale=config.edge_lr_scale,
                                        initial_weight=config.edge_weight_init)
        self.decoder = Decoder(config.decoder_widths)
        self.has_3d = config.mode == "3d"
        if self.has_3d:
            n, hidden, depth = config.num_basis, config.lifter_hidden, config.lifter_depth
            self.shape = ShapeModel(K, n)
            self.lifter = Lifter(K, n, hidden, depth)
            self.canonicalizer = (Canonicalizer(K, n, hidden, depth)
                                  if config.canonicalization and n > 0 else None)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Training forward (see the class docstring). generator: a CPU torch.Generator for the
        patch mask and the canonicalisation rotations, so that runs are reproducible and
        resumable."""
        c = self.config
        keypoints, heatmaps = self.detector(images)
        edge_map = self.renderer(keypoints).to(images.dtype)
        mask = random_patch_mask(images.shape[0], images.shape[-2:], c.mask_grid, c.mask_keep,
                                 generator=generator, device=images.device, dtype=images.dtype)
        masked = images * mask
        out = {"keypoints": keypoints, "heatmaps": heatmaps, "edge_map": edge_map,
               "masked": masked, "reconstruction": self.decoder(masked, edge_map),
               "target": images}
        if self.has_3d:
            out.update(self.lift(keypoints))
            if self.canonicalizer is not None:
                out["canonical_recovered"] = self.canonicalize(out["canonical"], generator)
        return out

    def lift(self, keypoints: torch.Tensor) -> dict:
        """2D keypoints (B, K, 2) -> the 3D structure (dict), in float32.

        The lifter sees the keypoints detached, so the projection loss reaches the detector
        only through its target side. keypoints_3d: the keypoints, each with the depth of the
        structure's point fitted to it; fitted_3d: the structure itself, x and y through Pi."""
        with torch.autocast(device_type=keypoints.device.type, enabled=False):
            points = keypoints.detach().float()
            alpha, R, S, T = self.lifter(points, self.shape.projection_scales().float())
            X = self.shape.canonical(alpha)
            P3D = self.shape.pose(X, R, S, T)
            fitted = self.shape.to_image_frame(P3D)
        return {"alpha": alpha, "rotation": R, "scale": S, "translation": T, "canonical": X,
                "points_3d": P3D, "projected": fitted[..., :2], "fitted_3d": fitted,
                "keypoints_3d": torch.cat([points, P3D[..., 2:]], -1)}

    def canonicalize(self, canonical: torch.Tensor, generator=None) -> torch.Tensor:
        """C3DPO: the canonical shapes (B, K, 3) under random rotations, their coefficients
        recovered by the canonicaliser, and the shapes those give (B, K, 3)."""
        R = random_rotations(canonical.shape[0], generator=generator, dtype=canonical.dtype,
                             device=canonical.device)
        with torch.autocast(device_type=canonical.device.type, enabled=False):
            return self.shape.canonical(self.canonicalizer(canonical @ R.transpose(-1, -2)))

    def parameter_groups(self) -> dict:
        """The parameters by optimiser group: "edges" (the edge weights' theta), "structure"
        (mean shape, basis, Pi, lifter, canonicaliser) and "networks" (detector, decoder)."""
        edges = [self.renderer.theta] if isinstance(self.renderer.theta, nn.Parameter) else []
        structure = []
        if self.has_3d:
            for module in (self.shape, self.lifter, self.canonicalizer):
                if module is not None:
                    structure += list(module.parameters())
        taken = {id(p) for p in edges + structure}
        networks = [p for p in self.parameters() if id(p) not in taken]
        return {"networks": networks, "edges": edges, "structure": structure}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict:
        """Inference: {"keypoints_2d" (B, K, 2)} and, with the 3D branch, "keypoints_3d"
        (B, K, 3): the keypoints at the depth of the structure fitted to them; "fitted_3d" the
        structure in the keypoints' frame (x, y through Pi); alpha, rotation, scale,
        translation, projected. Depth is in the units of x and y; its sign is a gauge: weak
        perspective cannot tell a shape from its depth mirror."""
        keypoints = self.detector(images)[0].float()
        res = {"keypoints_2d": keypoints}
        if self.has_3d:
            lift = self.lift(keypoints)
            res.update({k: lift[k] for k in ("keypoints_3d", "fitted_3d", "alpha", "rotation",
                                             "scale", "translation", "projected")})
        return res

    def structure(self) -> dict:
        """The learned structure as plain lists (for `kp3d export`)."""
        out = {"num_keypoints": self.config.num_keypoints, "mode": self.config.mode,
               "edges": self.renderer.edges.tolist(),
               "edge_weights": self.renderer.weights.detach().cpu().tolist(),
               "edge_sigma": self.config.sigma, "edge_falloff": self.config.edge_falloff}
        if self.has_3d:
            out.update({"num_basis": self.config.num_basis,
                        "mean_shape": self.shape.mean_shape.detach().cpu().tolist(),
                        "basis": self.shape.basis.detach().cpu().tolist(),
                        "projection_scales": self.shape.projection_scales().detach().cpu().tolist()})
        return out


__all__ = ["ModelConfig", "KeypointModel", "default_edge_sigma", "MODES"]
