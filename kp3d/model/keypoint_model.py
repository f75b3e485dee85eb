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
    """The model's architecture; stored in every checkpoint.

    Widths: AutoLink's are detector (64, 128, 256, 512) and decoder (64, 128, 256, 512, 512).
    edge_sigma 0 means AutoLink's line width for K (`default_edge_sigma`). The edge weights are
    softplus(edge_lr_scale * theta) (AutoLink's parameterisation), starting near
    edge_weight_init; learn_edge_weights False keeps them there. The decoder sees mask_keep of
    the mask_grid^2 patches of the image (AutoLink: 0.2 of 16 x 16). num_basis is the size of
    the deformation basis B; canonicalization adds C3DPO's canonicalisation network.
    """

    num_keypoints: int = 16
    image_size: int = 64
    mode: str = "3d"
    detector_widths: tuple = (32, 64, 128)
    decoder_widths: tuple = (32, 64, 128, 256)
    temperature: float = 1.0
    edge_falloff: str = "gaussian"
    edge_sigma: float = 0.0
    edge_lr_scale: float = 512.0
    edge_weight_init: float = AUTOLINK_INITIAL_WEIGHT
    learn_edge_weights: bool = True
    mask_grid: int = 16
    mask_keep: float = 0.2
    num_basis: int = 2
    lifter_hidden: int = 256
    lifter_depth: int = 2
    canonicalization: bool = True
    backend: str = "auto"

    def __post_init__(self):
        self.detector_widths = tuple(int(w) for w in self.detector_widths)
        self.decoder_widths = tuple(int(w) for w in self.decoder_widths)
        self.validate()

    def validate(self):
        K, S = self.num_keypoints, self.image_size
        if isinstance(K, bool) or not isinstance(K, int) or K < 2:
            raise ValueError(f"the number of keypoints must be an integer >= 2, got {K!r}")
        if isinstance(S, bool) or not isinstance(S, int) or S < 16:
            raise ValueError(f"the image size must be an integer >= 16, got {S!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        down = 2 ** len(self.detector_widths)
        if len(self.detector_widths) < 2 or S % down:
            raise ValueError(f"image size {S} must be divisible by 2^{len(self.detector_widths)} "
                             f"= {down} (detector levels) and there must be >= 2 levels")
        if S % (2 ** (len(self.decoder_widths) - 1)):
            raise ValueError(f"image size {S} must be divisible by "
                             f"{2 ** (len(self.decoder_widths) - 1)} (decoder levels)")
        if isinstance(self.mask_grid, bool) or not isinstance(self.mask_grid, int) or self.mask_grid < 1:
            raise ValueError(f"mask_grid must be an integer >= 1, got {self.mask_grid!r}")
        if S % self.mask_grid:
            raise ValueError(f"image size {S} must be divisible by the mask grid {self.mask_grid}")
        if not 0.0 <= self.mask_keep <= 1.0:
            raise ValueError(f"mask_keep must be in [0, 1], got {self.mask_keep!r}")
        if isinstance(self.num_basis, bool) or not isinstance(self.num_basis, int) or self.num_basis < 0:
            raise ValueError(f"num_basis must be an integer >= 0, got {self.num_basis!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not self.edge_sigma >= 0:
            raise ValueError(f"edge_sigma must be >= 0 (0 = AutoLink's width), got {self.edge_sigma!r}")
        if not self.edge_weight_init > 0:
            raise ValueError(f"edge_weight_init must be > 0, got {self.edge_weight_init!r}")
        if self.edge_falloff not in ("exp", "gaussian"):
            raise ValueError(f"edge_falloff must be exp or gaussian, got {self.edge_falloff!r}")

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
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
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
