"""Training configuration: a dataclass validated on creation and stored in every checkpoint.
Its fields carry their command-line help and aliases (kp3d.config builds the CLI from them)."""

from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError
from ..options import option
from ..model.losses import PROJECTION_LOSSES, LossWeights

LR_DECAYS = ("none", "cosine")
RECONSTRUCTIONS = ("auto", "vgg", "lite0", "random", "pyramid", "ssim", "l1")


@dataclass
class TrainConfig:
    """How to train (AutoLink's optimiser settings by default)."""

    out: str = option("runs/kp3d", "run folder: checkpoints, metrics.csv, pictures", "--out")
    steps: int = option(20000, "training steps (AutoLink: 20000)", "--steps")
    batch_size: int = option(64, "global batch size, split over the processes under torchrun",
                             "--batch-size")
    lr: float = option(1e-4, "AdamW learning rate (AutoLink: 1e-4)", "--lr")
    weight_decay: float = option(1e-3, "AdamW weight decay (AutoLink: 1e-3)", "--weight-decay")
    edge_lr_mult: float = option(1.0, "edge-weight lr multiplier (their softplus scale already "
                                 "makes them fast)", "--edge-lr-mult")
    structure_lr_mult: float = option(10.0, "lr multiplier of the 3D structure (mean shape, basis, "
                                      "Pi, lifter, canonicaliser)", "--structure-lr-mult")
    warmup_steps: int = option(0, "linear learning-rate warm-up steps", "--warmup-steps")
    lr_decay: str = option("none", "none (AutoLink: constant) or cosine (to 0 at the last step)",
                           "--lr-decay")
    seed: int = option(0, "seed of the weights and of every random draw of a step", "--seed")
    device: str = option("cpu", "cpu or cuda", "--device")
    amp: bool = option(True, "mixed precision on CUDA (ignored on the CPU)", flags={"--no-amp": False})
    hflip: bool = option(False, "random horizontal flips (AutoLink uses them)", flags={"--hflip": True})
    reconstruction: str = option("auto", "perceptual loss: auto (vgg with vgg_weights, else lite0), "
                                 "vgg, lite0, or a fallback without pretrained weights: random, "
                                 "pyramid, ssim, l1", "--reconstruction")
    vgg_weights: str = option("", "a local torchvision vgg16 state dict (.pth), AutoLink's network",
                              "--vgg-weights")
    vgg_resize: int = option(0, "resize before VGG16 (AutoLink: 224; 0 = no resize)", "--vgg-resize")
    w_reconstruction: float = option(1.0, "reconstruction loss weight")
    w_projection: float = option(1.0, "projection loss weight", "--w-projection")
    w_repulsion: float = option(0.1, "repulsion loss weight (mode autolink has none)", "--w-repulsion")
    w_canonicalization: float = option(1.0, "canonicalisation loss weight", "--w-canonicalization")
    projection_loss: str = option("huber", "huber (C3DPO's pseudo-Huber), l1 or l2", "--projection-loss")
    projection_delta: float = option(0.02, "pseudo-Huber width, [-1, 1] frame")
    repulsion_bandwidth: float = option(0.0, "repulsion bandwidth h, [-1, 1] frame (0 = 0.7 / sqrt(K))",
                                        "--repulsion-bandwidth")
    projection_warmup: int = option(0, "steps during which the projection loss does not move the "
                                    "detector", "--projection-warmup")
    checkpoint_every: int = option(500, "steps between checkpoints", "--checkpoint-every")
    keep_checkpoints: int = option(3, "checkpoints kept in the run folder")
    log_every: int = option(10, "steps between rows of metrics.csv", "--log-every")
    image_every: int = option(500, "steps between training pictures", "--image-every")
    progress: bool = option(True, "a progress bar", flags={"--no-progress": False})

    def __post_init__(self):
        self.validate()

    def validate(self):
        def integer(name, minimum=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {v!r}")

        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "image_every",
                     "keep_checkpoints"):
            integer(name)
        for name in ("warmup_steps", "projection_warmup", "vgg_resize", "seed"):
            integer(name, 0)
        for name in ("lr", "edge_lr_mult", "structure_lr_mult", "projection_delta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "w_reconstruction", "w_projection", "w_repulsion",
                     "w_canonicalization", "repulsion_bandwidth"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.projection_loss not in PROJECTION_LOSSES:
            raise ConfigError(f"projection_loss must be one of {', '.join(PROJECTION_LOSSES)}, "
                              f"got {self.projection_loss!r}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, "
                              f"got {self.reconstruction!r}")
        if self.reconstruction == "vgg" and not self.vgg_weights:
            raise ConfigError("reconstruction vgg needs vgg_weights (--vgg-weights PATH)")
        if not (self.device in ("cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        return self

    def bandwidth(self, num_keypoints: int) -> float:
        """The repulsion bandwidth h: as set, or 0.7 / sqrt(K) (K points spread over an object
        about a unit square in the [-1, 1] frame sit about 1 / sqrt(K) apart)."""
        return self.repulsion_bandwidth or 0.7 / num_keypoints ** 0.5

    def loss_weights(self, num_keypoints: int = 16, mode: str = "3d") -> LossWeights:
        """The loss weights of a model of K keypoints. Mode "autolink" (AutoLink itself, the
        paper's 2D ablation) trains on the reconstruction loss alone: no repulsion, and no 3D
        terms (it has no 3D branch)."""
        paper = mode == "3d"
        return LossWeights(reconstruction=self.w_reconstruction,
                           projection=self.w_projection if paper else 0.0,
                           repulsion=self.w_repulsion if paper else 0.0,
                           canonicalization=self.w_canonicalization if paper else 0.0,
                           projection_kind=self.projection_loss,
                           projection_delta=self.projection_delta,
                           repulsion_bandwidth=self.bandwidth(num_keypoints))

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown train config keys: {', '.join(sorted(unknown))}")
        return cls(**d)
