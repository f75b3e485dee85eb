"""The whole model: detector -> 2D keypoints -> edge map -> decoder, plus the 3D structure.

    model = KeypointModel(ModelConfig(num_keypoints=16, image_size=64))
    out = model(images, generator=g)         # training forward (masking, reconstruction, 3D)
    pred = model.predict(images)             # inference: keypoints_2d (B,K,2), keypoints_3d (B,K,3)

`mode="autolink"` drops the 3D branch and its losses (the paper's 2D ablation).
"""

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kp3d_kernels import EdgeMapRenderer
from kp3d_kernels.modules import AUTOLINK_INITIAL_WEIGHT

from .appearance import refine_keypoints, template_loss, template_overlap
from .decoder import Decoder, keypoint_maps, part_colours, random_patch_mask, shuffle_cells
from .detector import Detector
from .equivariance import equivariance_loss
from .mirror_warp import warp_to_keypoints
from .parts import part_colour_loss
from .structure3d import Canonicalizer, Lifter, ShapeModel, random_rotations
from .view import ViewHead, planar_depth

MODES = ("3d", "autolink")
# AutoLink's line thickness (gaussian falloff, 128 x 128) by number of keypoints
_AUTOLINK_THICK = ((8, 2.5e-3), (16, 1e-3), (32, 7.5e-4))


def default_edge_sigma(num_keypoints, image_size, falloff="gaussian"):
    """AutoLink's `thick` for K (log-interpolated between its K = 8, 16, 32 settings), scaled by
    (128 / S)^2 so that lines keep their width in pixels at other image sizes; for the exp
    falloff, the distance at which the gaussian line falls to 1/e."""
    ks = [k for k, _ in _AUTOLINK_THICK]
    vs = [math.log(v) for _, v in _AUTOLINK_THICK]
    lk = min(max(num_keypoints, ks[0]), ks[-1])
    thick = math.exp(float(np.interp(math.log(lk), [math.log(k) for k in ks], vs)))
    thick *= (128.0 / image_size) ** 2
    return thick if falloff == "gaussian" else math.sqrt(thick)


DECODER_INPUTS = ("mask", "shuffle", "flip", "mirror-warp", "pair")


@dataclass
class ModelConfig:
    num_keypoints: int = 16
    image_size: int = 64
    mode: str = "3d"
    detector_widths: tuple = (32, 64, 128)
    decoder_widths: tuple = (32, 64, 128, 256)
    temperature: float = 1.0
    edge_falloff: str = "gaussian"
    edge_sigma: float = 0.0  # 0 = default_edge_sigma(K, S, falloff)
    edge_lr_scale: float = 512.0
    edge_weight_init: float = AUTOLINK_INITIAL_WEIGHT  # every edge weight starts near this
    learn_edge_weights: bool = True  # False: the weights stay at edge_weight_init
    mask_grid: int = 16
    mask_keep: float = 0.2
    # what the decoder sees of the image: "mask" (AutoLink: mask_keep of the mask_grid^2 patches)
    # or "shuffle" (all mask_grid^2 cells, in a random order: the layout must come from the edge map)
    # or "flip" (mask_keep of the patches of the mirror image: the same head at the mirrored pose,
    # so where the face sits inside the head must come from the edge map) or "mirror-warp" (the
    # mirror image warped so that its keypoints land on the image's: kp3d/model/mirror_warp.py)
    # or "pair" (mask_keep of the patches of a second view of the same scene, the object at
    # another pose: forward's `pair`, from a dataset built with pair_view; a diagnostic)
    decoder_input: str = "mask"
    warp_sigma: float = 0.15  # mirror-warp: each keypoint's reach, in the [-1, 1] frame
    keypoint_map_sigma: float = 0.0  # > 0: the decoder also gets one Gaussian map per keypoint
    decoder_global_context: bool = False  # the decoder's bottleneck also sees its image-wide mean
    # with keypoint maps: each map also carries the mean colour under its keypoint's heatmap, so
    # that a decoder shown no image (mask_keep 0) must paint each part where its keypoint is
    keypoint_appearance: bool = False
    # > 0: the keypoints of a copy of the image turned by up to 15 degrees, scaled by 1 +- 0.1 and
    # shifted by up to this much ([-1, 1] frame) must follow it (kp3d/model/equivariance.py)
    equivariance_shift: float = 0.0
    # the keypoints are the centroids of K parts that tile the image, and the model returns the
    # parts' colour variance ("part_colour", weighted by TrainConfig.w_part_colour) so that each
    # part covers a region of one colour (kp3d/model/parts.py; not AutoLink)
    part_maps: bool = False
    part_compactness: float = 1.0  # weight of a pixel's place beside its colour (parts.py)
    # > 0: each keypoint also gets a refined copy, the best match of a learned template near it;
    # the width, [-1, 1] frame, of a Gaussian prior on its distance from the keypoint, traded
    # against the template's amplitude / refine_temperature, so a strong match a few widths away
    # can still win (kp3d/model/appearance.py). The model returns both, and the template loss
    # ("templates", TrainConfig.w_templates) that learns the templates
    refine_reach: float = 0.0
    refine_radius: int = 2          # the templates' patches: (2r+1)^2 pixels
    refine_temperature: float = 0.02  # of the template's amplitude, in the image's units
    # > 0: the template loss also pays this times the templates' mutual overlap (appearance.py
    # template_overlap), so that the templates settle on different features
    template_diversity: float = 0.0
    # > 1: the detector, the edge map and the decoder work on the image average-pooled by this
    # factor (work_size pixels a side); the refinement searches the full image_size one, so its
    # templates see finer detail while the network runs at the smaller size (docs/method.md)
    work_scale: int = 1
    # > 0: the model has a view head (kp3d/model/view.py) on crops of this many pixels a side,
    # trained after the keypoints (kp3d/train/view_head.py); its view gives the 3D keypoints
    # their depth. 0: none; the structure gives the depth
    view_crop: int = 0
    num_basis: int = 2
    lifter_hidden: int = 256
    lifter_depth: int = 2
    canonicalization: bool = True
    backend: str = "auto"

    def __post_init__(self):
        self.detector_widths = tuple(int(w) for w in self.detector_widths)
        self.decoder_widths = tuple(int(w) for w in self.decoder_widths)
        self.validate()

    @property
    def work_size(self):
        """The side of the image the detector, edge map and decoder work on."""
        return self.image_size // self.work_scale

    def validate(self):
        K, S = self.num_keypoints, self.image_size
        if isinstance(K, bool) or not isinstance(K, int) or K < 2:
            raise ValueError(f"the number of keypoints must be an integer >= 2, got {K!r}")
        if isinstance(S, bool) or not isinstance(S, int) or S < 16:
            raise ValueError(f"the image size must be an integer >= 16, got {S!r}")
        f = self.work_scale
        if isinstance(f, bool) or not isinstance(f, int) or f < 1 or S % f or S // f < 16:
            raise ValueError(f"work_scale must be an integer >= 1 that divides the image size {S} "
                             f"into a side >= 16, got {f!r}")
        S, size = self.work_size, ("image size" if f == 1 else "working image size")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        down = 2 ** len(self.detector_widths)
        if len(self.detector_widths) < 2 or S % down:
            raise ValueError(f"{size} {S} must be divisible by 2^{len(self.detector_widths)} "
                             f"= {down} (detector levels) and there must be >= 2 levels")
        if S % (2 ** (len(self.decoder_widths) - 1)):
            raise ValueError(f"{size} {S} must be divisible by "
                             f"{2 ** (len(self.decoder_widths) - 1)} (decoder levels)")
        if not (isinstance(self.mask_grid, int) and self.mask_grid >= 1):
            raise ValueError(f"mask_grid must be an integer >= 1, got {self.mask_grid!r}")
        if S % self.mask_grid:
            raise ValueError(f"{size} {S} must be divisible by the mask grid {self.mask_grid}")
        if self.decoder_input not in DECODER_INPUTS:
            raise ValueError(f"decoder_input must be one of {', '.join(DECODER_INPUTS)}, "
                             f"got {self.decoder_input!r}")
        if not self.keypoint_map_sigma >= 0:
            raise ValueError(f"keypoint_map_sigma must be >= 0, got {self.keypoint_map_sigma!r}")
        if self.keypoint_appearance and not self.keypoint_map_sigma > 0:
            raise ValueError("keypoint_appearance needs keypoint_map_sigma > 0 (the maps it colours)")
        if not self.equivariance_shift >= 0:
            raise ValueError(f"equivariance_shift must be >= 0, got {self.equivariance_shift!r}")
        r = self.refine_radius
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"refine_radius must be an integer >= 1, got {r!r}")
        v = self.view_crop
        if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or v >= 8):
            raise ValueError(f"view_crop must be 0 (no view head) or an integer >= 8, got {v!r}")
        if not self.refine_reach >= 0:
            raise ValueError(f"refine_reach must be >= 0, got {self.refine_reach!r}")
        if not self.refine_temperature > 0:
            raise ValueError(f"refine_temperature must be > 0, got {self.refine_temperature!r}")
        if not self.template_diversity >= 0:
            raise ValueError(f"template_diversity must be >= 0, got {self.template_diversity!r}")
        if not self.part_compactness >= 0:
            raise ValueError(f"part_compactness must be >= 0, got {self.part_compactness!r}")
        if not self.warp_sigma > 0:
            raise ValueError(f"warp_sigma must be > 0, got {self.warp_sigma!r}")
        if not 0.0 <= self.mask_keep <= 1.0:
            raise ValueError(f"mask_keep must be in [0, 1], got {self.mask_keep}")
        if self.num_basis < 0:
            raise ValueError(f"num_basis must be >= 0, got {self.num_basis}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not self.edge_weight_init > 0:
            raise ValueError(f"edge_weight_init must be > 0, got {self.edge_weight_init!r}")
        if self.edge_falloff not in ("exp", "gaussian"):
            raise ValueError(f"edge_falloff must be exp or gaussian, got {self.edge_falloff!r}")

    @property
    def sigma(self):
        return self.edge_sigma or default_edge_sigma(self.num_keypoints, self.work_size,
                                                     self.edge_falloff)

    def to_dict(self):
        d = asdict(self)
        d["detector_widths"] = list(self.detector_widths)
        d["decoder_widths"] = list(self.decoder_widths)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


class KeypointModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        K, S = config.num_keypoints, config.work_size
        self.detector = Detector(K, config.detector_widths, temperature=config.temperature,
                                 backend=config.backend, part_maps=config.part_maps)
        self.renderer = EdgeMapRenderer(K, S, config.sigma, falloff=config.edge_falloff,
                                        learnable=config.learn_edge_weights,
                                        backend=config.backend, lr_scale=config.edge_lr_scale,
                                        initial_weight=config.edge_weight_init)
        # one map per keypoint, and with keypoint_appearance its colour times the map (3 more)
        maps = (config.num_keypoints if config.keypoint_map_sigma else 0) * (
            4 if config.keypoint_appearance else 1)
        self.decoder = Decoder(config.decoder_widths, maps, config.decoder_global_context)
        if config.refine_reach:
            side = 2 * config.refine_radius + 1
            self.templates = nn.Parameter(0.01 * torch.randn(K, 3 * side * side))
        self.has_3d = config.mode == "3d"
        if self.has_3d:  # the 3D structure explains the keypoints and their refined copies
            P = self.num_points
            self.shape = ShapeModel(P, config.num_basis)
            self.lifter = Lifter(P, config.num_basis, config.lifter_hidden, config.lifter_depth)
            self.canonicalizer = (Canonicalizer(P, config.num_basis, config.lifter_hidden,
                                                config.lifter_depth)
                                  if config.canonicalization and config.num_basis > 0 else None)
        self.view_head = ViewHead(config.view_crop) if config.view_crop else None

    # ------------------------------------------------------------------ pieces
    @property
    def num_points(self):
        """The 2D points the model gives per image: the K keypoints, then with refinement their
        K refined copies."""
        return self.config.num_keypoints * (2 if self.config.refine_reach else 1)

    def points_2d(self, images, keypoints):
        """(keypoints and their refined copies (B, num_points, 2), refined or None). The copies
        carry no gradient: the templates learn from the template loss alone."""
        if not self.config.refine_reach:
            return keypoints, None
        c = self.config
        with torch.no_grad():
            refined = refine_keypoints(images.float(), keypoints.float(), self.templates.float(),
                                       c.refine_radius, c.refine_reach, c.refine_temperature,
                                       backend=c.backend)
        return torch.cat([keypoints.float(), refined], 1), refined

    def lift(self, keypoints):
        """2D points (B, num_points, 2) -> the 3D structure (dict). The lifter sees the points
        detached: the projection loss shapes the detector only through its target side.

        keypoints_3d: the given points, each with the depth of the structure's point fitted to
        it (the point on its viewing ray at that depth); fitted_3d: the fitted structure
        itself, x and y through Pi. The low-rank structure cannot follow every detection, and
        its projection places the landmarks worse than the detections do (docs/training.md,
        "What the 3D figure is made of"), so the 3D keypoints keep the detections' x and y."""
        with torch.autocast(device_type=keypoints.device.type, enabled=False):  # geometry in fp32
            scales = self.shape.projection_scales().float()
            points = keypoints.detach().float()
            alpha, R, S, T = self.lifter(points, scales)
            X = self.shape.canonical(alpha)
            P3D = self.shape.pose(X, R, S, T)
            fitted = self.shape.to_image_frame(P3D)  # projected once, for both outputs
        return {"alpha": alpha, "rotation": R, "scale": S, "translation": T, "canonical": X,
                "points_3d": P3D, "projected": fitted[..., :2],
                "keypoints_3d": torch.cat([points, P3D[..., 2:]], -1), "fitted_3d": fitted}

    def parameter_groups(self):
        """(edge-weight parameters, everything else) for the optimiser."""
        edge = [self.renderer.theta] if isinstance(self.renderer.theta, nn.Parameter) else []
        ids = {id(p) for p in edge}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return edge, rest

    def work_images(self, images):
        """The images the detector, edge map and decoder work on: average-pooled by work_scale."""
        f = self.config.work_scale
        return images if f == 1 else F.avg_pool2d(images, f)

    # ------------------------------------------------------------------ forward
    def forward(self, images, generator=None, pair=None):
        """Training forward. images (B, 3, S, S) in [-1, 1]; generator: CPU torch.Generator for
        the patch mask and the canonicalisation rotations (reproducible, resumable runs); pair:
        the second views (B, 3, S, S) the "pair" decoder input shows in place of the images."""
        B = images.shape[0]
        shown = self.config.decoder_input
        if shown == "pair" and (pair is None or pair.shape != images.shape):
            raise ValueError(f"decoder_input 'pair' needs pair images of the images' shape "
                             f"{tuple(images.shape)}, got {None if pair is None else tuple(pair.shape)}")
        full, images = images, self.work_images(images)  # the refinement searches the full image
        pair = None if pair is None else self.work_images(pair)
        mirror = images.flip(-1) if shown in ("flip", "mirror-warp") else None
        det = self.detector(torch.cat((images, mirror)) if shown == "mirror-warp" else images)
        kp, heatmaps = det["keypoints"][:B], det["heatmaps"][:B]
        edge = self.renderer(kp).to(images.dtype)
        if shown == "mirror-warp":
            masked = warp_to_keypoints(mirror, kp, det["keypoints"][B:], self.config.warp_sigma)
        elif shown == "shuffle":
            masked = shuffle_cells(images, self.config.mask_grid, generator=generator)
        else:
            source = pair if shown == "pair" else images if mirror is None else mirror
            masked = source * random_patch_mask(
                B, images.shape[-2:], self.config.mask_grid, self.config.mask_keep,
                generator=generator, device=images.device, dtype=images.dtype)
        maps = (keypoint_maps(kp, images.shape[-2:], self.config.keypoint_map_sigma).to(images.dtype)
                if self.config.keypoint_map_sigma else None)
        if self.config.keypoint_appearance:
            colours = part_colours(heatmaps, images, self.config.temperature).to(images.dtype)
            maps = torch.cat([maps, (maps[:, :, None] * colours[..., None, None]).flatten(1, 2)], 1)
        out = {"keypoints": kp, "heatmaps": heatmaps, "edge_map": edge, "masked": masked,
               "reconstruction": self.decoder(masked, edge, maps), "target": images}
        if self.config.equivariance_shift > 0:
            out["equivariance"] = equivariance_loss(self.detector, images, kp,
                                                    self.config.equivariance_shift, generator=generator)
        if self.config.part_maps:
            out["part_colour"] = part_colour_loss(heatmaps.exp(), images,
                                                  self.config.part_compactness)
        out["points_2d"], refined = self.points_2d(full, kp)
        if refined is not None:
            out["refined"] = refined
            out["templates"] = template_loss(full, refined, self.templates,
                                             self.config.refine_radius)
            if self.config.template_diversity:
                out["templates"] = out["templates"] + self.config.template_diversity * template_overlap(
                    self.templates, self.config.refine_radius)
        if self.has_3d:
            out.update(self.lift(out["points_2d"]))
            if self.canonicalizer is not None:
                X = out["canonical"]
                Rr = random_rotations(B, generator=generator, dtype=X.dtype, device=X.device)
                with torch.autocast(device_type=X.device.type, enabled=False):
                    alpha_c = self.canonicalizer(X @ Rr.transpose(-1, -2))
                    out["canonical_recovered"] = self.shape.canonical(alpha_c)
        return out

    def attach_view_head(self, head: ViewHead):
        """Add a trained view head (kp3d/train/view_head.py); the config records its crop, so
        that a checkpoint of the model rebuilds it."""
        if head.colour != "chromaticity":  # the config rebuilds the head with its default colour
            raise ValueError(f"the model's view head sees chromaticity, got a head on {head.colour!r}")
        self.config = replace(self.config, view_crop=head.crop)
        self.view_head = head.to(next(self.parameters()).device)
        return self

    @torch.no_grad()
    def predict_points(self, images):
        """(B, P, 2): the keypoints, then with refinement their refined copies."""
        det = self.detector(self.work_images(images))
        return self.points_2d(images, det["keypoints"].float())[0]

    @torch.no_grad()
    def predict(self, images):
        """Inference: {"keypoints_2d" (B,P,2), "keypoints_3d" (B,P,3) or absent, ...}: the K
        keypoints, then with refinement their K refined copies (P = `num_points`).

        keypoints_3d: the 2D points with the depth of the 3D structure fitted to them or, with a
        view head, the depth of a plane through them turned by its view ("view" (B,): > 0 and
        < 0 are the two ways a face turns; the points are also found on the mirror image, so a
        view head doubles the detector's work). fitted_3d: the structure, P3D, in the frame of
        the 2D keypoints (x, y through Pi). Depth is in the units of x and y; its sign is a
        gauge: a weak-perspective model cannot tell a shape from its depth mirror."""
        points = self.predict_points(images)
        res = {"keypoints_2d": points}
        if self.has_3d:
            lift = self.lift(points)
            res.update({k: lift[k] for k in ("keypoints_3d", "fitted_3d", "alpha", "rotation",
                                             "scale", "translation", "projected")})
        if self.view_head is not None:
            mirror = self.predict_points(images.flip(-1))
            view = self.view_head(self.work_images(images), points, mirror)
            res["view"] = view
            res["keypoints_3d"] = torch.cat([points, planar_depth(points, view)[..., None]], -1)
        return res

    def structure(self):
        """The learned structure as plain lists (for `kp3d export`)."""
        out = {"num_keypoints": self.config.num_keypoints, "num_points": self.num_points,
               "mode": self.config.mode,
               "edges": self.renderer.edges.tolist(),
               "edge_weights": self.renderer.weights.detach().cpu().tolist(),
               "edge_sigma": self.config.sigma, "edge_falloff": self.config.edge_falloff}
        if self.has_3d:
            out.update({"num_basis": self.config.num_basis,
                        "mean_shape": self.shape.mean_shape.detach().cpu().tolist(),
                        "basis": self.shape.basis.detach().cpu().tolist(),
                        "projection_scales": self.shape.projection_scales().detach().cpu().tolist()})
        return out


@torch.no_grad()
def predict_dataset(model, dataset, *, batch_size=64, device="cpu", num_workers=0):
    """Run the model over a dataset. Returns numpy arrays: keypoints_2d (N, K, 2) and, with the
    3D branch, keypoints_3d and fitted_3d (N, K, 3) (kp3d frame, [-1, 1]; see `predict`); with a
    view head, view (N,); and
    the dataset's landmarks_2d, landmarks_3d, visible, yaw_deg, index."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    acc = {}
    for batch in loader:
        pred = model.predict(batch["image"].to(device))
        items = {k: pred[k] for k in ("keypoints_2d", "keypoints_3d", "fitted_3d", "view")
                 if k in pred}
        for key in ("landmarks_2d", "landmarks_3d", "visible", "yaw_deg", "index"):
            if key in batch:
                items[key] = batch[key]
        for k, v in items.items():
            acc.setdefault(k, []).append(torch.as_tensor(v).cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


__all__ = ["ModelConfig", "KeypointModel", "predict_dataset", "default_edge_sigma", "MODES"]
