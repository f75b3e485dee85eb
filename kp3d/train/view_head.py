"""Training the view head (kp3d/model/view.py), a second stage after the keypoints. No labels.

1. Run the trained keypoint model on `faces` training images and on their mirror images.
2. The teacher: each face's odd part of the layout along its top principal direction
   (`odd_layout_direction`), a signed number that follows the yaw, wrongly near frontal.
3. Train a `ViewHead` on the `keep` share of the faces the teacher calls most turned, to give
   the teacher's sign (a logistic loss), on crops moved, recoloured and turned in-plane by up to
   `turn` degrees at random: changes the teacher's errors do not follow.
4. From the second of `rounds` rounds, the last head's views of all the faces are the teacher.

With 6000 faces, two rounds of 1500 steps, the demo's model (seed 0) got 0.753 x the flat lift
in 3D (docs/training.md, "Taking the teacher's errors away from the student").
"""

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from ..model.view import ViewHead, head_crops, odd_layout, odd_layout_direction, symmetric_frame


@dataclass
class ViewHeadSettings:
    faces: int = 6000     # training images the teacher and the head see
    steps: int = 1500     # per round, batches of `batch`
    rounds: int = 2
    keep: float = 0.5     # share of the faces, those the teacher calls most turned
    turn: float = 30.0    # in-plane turns of the crops, up to this many degrees
    crop: int = 48        # the head's crop, pixels a side
    jitter: float = 0.125  # the crop's centre moved by up to this ([-1, 1] frame)
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    loss: str = "logistic"  # "logistic": the teacher's sign; "mse": its value
    colour: str = "chromaticity"  # or "rgb"
    seed: int = 0

    def validate(self):
        for name in ("faces", "steps", "rounds", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"view head {name} must be an integer >= 1, got {v!r}")
        if self.faces < 2:
            raise ValueError(f"view head faces must be >= 2, got {self.faces}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"view head keep must be in (0, 1], got {self.keep!r}")
        if not self.turn >= 0:
            raise ValueError(f"view head turn must be >= 0 degrees, got {self.turn!r}")
        if self.loss not in ("logistic", "mse"):
            raise ValueError(f"view head loss must be logistic or mse, got {self.loss!r}")
        return self


@torch.no_grad()
def faces_with_mirror_points(model, dataset, count, *, device="cpu", batch_size=64, progress=None):
    """{"images" (N, 3, S, S) float16 on the CPU: the images the model works on (S = its
    work_size); "points", "mirror_points" (N, P, 2) float64: its points on each image and on its
    mirror image} for the first `count` images of a dataset (N = count)."""
    out = {"images": [], "points": [], "mirror_points": []}
    for start in range(0, count, batch_size):
        images = torch.stack([dataset[i]["image"] for i in range(start, min(count, start + batch_size))])
        images = images.to(device)
        out["points"].append(model.predict_points(images).double().cpu())
        out["mirror_points"].append(model.predict_points(images.flip(-1)).double().cpu())
        out["images"].append(model.work_images(images).half().cpu())
        if progress is not None:
            progress(len(images))
    return {k: torch.cat(v) for k, v in out.items()}


def fit_view_net(images, frame, target, settings, device="cpu", progress=None):
    """A `ViewHead` trained to give `target` (N,) (its sign, with the logistic loss) from head
    crops of images (N, 3, S, S) placed on frame points (N, P, 2). progress: a tqdm
    description, to show a bar over the steps."""
    s = settings
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    net = ViewHead(s.crop, colour=s.colour).to(device)
    opt = torch.optim.AdamW(net.parameters(), s.lr, weight_decay=s.weight_decay)
    target = torch.as_tensor(target, dtype=torch.float32)
    frame = torch.as_tensor(frame)
    steps = range(s.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=progress, unit="step", leave=False)
    for _ in steps:
        i = torch.randint(len(images), (s.batch,), generator=gen)
        x = head_crops(images[i].float().to(device), frame[i], s.crop, jitter=s.jitter, generator=gen)
        # recoloured: gain and offset per channel
        gain = 0.9 + 0.2 * torch.rand(len(i), 3, 1, 1, generator=gen)
        offset = 0.1 * (torch.rand(len(i), 3, 1, 1, generator=gen) - 0.5)
        x = x * gain.to(device) + offset.to(device)
        # in-plane turns: the odd layout holds some of the roll, the yaw none. align_corners=False
        # as for the crops (equivariance.warp_similarity's True resamples differently)
        if s.turn:
            angle = torch.deg2rad(s.turn * (2 * torch.rand(len(i), generator=gen) - 1))
            rot = torch.zeros(len(i), 2, 3)
            rot[:, 0, 0] = rot[:, 1, 1] = torch.cos(angle)
            rot[:, 0, 1], rot[:, 1, 0] = -torch.sin(angle), torch.sin(angle)
            grid = F.affine_grid(rot.to(device), x.shape, align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False, padding_mode="border")
        out = net.raw(x)
        t = target[i].to(device)
        loss = F.softplus(-out * torch.sign(t)).mean() if s.loss == "logistic" else F.mse_loss(out, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def raw_views(net, images, frame, device="cpu", batch_size=256):
    """(N,) float64: a `ViewHead`'s g (before its scale) of each image's head crop."""
    frame = torch.as_tensor(frame)
    return torch.cat([net.raw(head_crops(images[i:i + batch_size].float().to(device),
                                         frame[i:i + batch_size], net.crop)).double().cpu()
                      for i in range(0, len(frame), batch_size)])


def train_view_head(model, dataset, settings=None, *, device="cpu", log=print, progress=False):
    """(a trained `ViewHead` with its scale set, a dict of what happened) for a trained keypoint
    `model`, from the first `settings.faces` images of `dataset` (the training split). The
    model is not changed: `model.attach_view_head` adds the head."""
    s = (settings or ViewHeadSettings()).validate()
    if s.faces > len(dataset):
        raise ValueError(f"view head faces {s.faces} > the dataset's {len(dataset)} images")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.faces, desc="view head: points on the images and their mirrors",
                   unit="img", leave=False)
    was_training = model.training
    model.eval()
    try:
        faces = faces_with_mirror_points(model, dataset, s.faces, device=device,
                                         progress=bar.update if bar else None)
    finally:
        model.train(was_training)
        if bar:
            bar.close()
    frame = symmetric_frame(faces["points"], faces["mirror_points"])
    direction = odd_layout_direction(faces["points"], faces["mirror_points"])
    target = odd_layout(faces["points"], faces["mirror_points"]) @ direction
    teacher = target
    for round_ in range(s.rounds):
        threshold = torch.quantile(target.abs(), 1 - s.keep)
        kept = torch.nonzero(target.abs() >= threshold).squeeze(1)
        log(f"view head: round {round_ + 1} of {s.rounds}, {s.steps} steps on the {len(kept)} "
            f"faces the {'odd layout' if round_ == 0 else 'last head'} calls most turned")
        net = fit_view_net(faces["images"][kept], frame[kept], target[kept] / target[kept].std(),
                           s, device, progress=progress and f"view head, round {round_ + 1}")
        target = raw_views(net, faces["images"], frame, device)
    net.scale.fill_(float(target.std()))
    agree = float(torch.mean((torch.sign(target) == torch.sign(teacher)).double()))
    return net.cpu(), {"settings": asdict(s), "scale": float(target.std()),
                       "agreement_with_odd_layout": agree}


__all__ = ["ViewHeadSettings", "train_view_head", "fit_view_net", "raw_views",
           "faces_with_mirror_points"]
