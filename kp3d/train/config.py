"""Training configuration (a plain dataclass, stored in every checkpoint)."""

from dataclasses import asdict, dataclass, fields

from ..model.losses import PROJECTION_LOSSES, LossWeights

LR_DECAYS = ("none", "cosine")


@dataclass
class TrainConfig:
    data: str = "synthetic:face"
    out: str = "runs/kp3d"
    steps: int = 20000
    batch_size: int = 64          # global: split evenly over the processes under torchrun
    lr: float = 1e-4              # AutoLink's AdamW defaults
    weight_decay: float = 1e-3
    # Edge weights are softplus(512 theta): their lr_scale already makes them move 512x faster
    # than theta, so the default keeps AutoLink's plain lr (and no weight decay for them).
    edge_lr_mult: float = 1.0
    structure_lr_mult: float = 10.0  # mean shape, basis, projection, lifter, canonicaliser
    warmup_steps: int = 0         # linear learning-rate warm-up
    lr_decay: str = "none"        # none (AutoLink: constant) | cosine (to 0 at the last step)
    seed: int = 0
    data_seed: int = 0
    train_length: int = 0         # 0 = the dataset's default length
    device: str = "cpu"
    amp: bool = True              # mixed precision on CUDA (ignored on the CPU)
    num_workers: int = 0
    hflip: bool = False           # random horizontal flip (AutoLink uses it)
    reconstruction: str = "auto"  # auto (vgg with vgg_weights, else lite0) | vgg | lite0 | random | ...
    vgg_weights: str = ""
    vgg_resize: int = 0           # 0 = no resize (AutoLink: 224)
    w_reconstruction: float = 1.0
    w_projection: float = 1.0
    w_repulsion: float = 0.1      # mode "autolink" drops it: AutoLink's only loss is the perceptual one
    w_canonicalization: float = 1.0
    projection_loss: str = "huber"
    projection_delta: float = 0.02
    repulsion_bandwidth: float = 0.0  # 0 = auto: 0.7 / sqrt(K), about the spacing of K points on the object
    projection_warmup: int = 0    # steps during which the projection loss does not move the detector
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    image_every: int = 500
    progress: bool = True

    def validate(self):
        def positive_int(name, minimum=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{name.replace('_', '-')} must be an integer >= {minimum}, got {v!r}")

        positive_int("steps")
        positive_int("batch_size")
        for name in ("checkpoint_every", "log_every", "image_every", "keep_checkpoints"):
            positive_int(name)
        for name in ("train_length", "num_workers", "warmup_steps", "projection_warmup", "vgg_resize"):
            positive_int(name, 0)
        if not self.repulsion_bandwidth >= 0:
            raise ValueError(f"repulsion-bandwidth must be >= 0 (0 = auto), got {self.repulsion_bandwidth!r}")
        for name in ("lr", "edge_lr_mult", "structure_lr_mult", "projection_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "w_reconstruction", "w_projection", "w_repulsion",
                     "w_canonicalization"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)!r}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr-decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.projection_loss not in PROJECTION_LOSSES:
            raise ValueError(f"projection loss must be one of {', '.join(PROJECTION_LOSSES)}, "
                             f"got {self.projection_loss!r}")
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
        return cls(**{k: v for k, v in d.items() if k in known})
