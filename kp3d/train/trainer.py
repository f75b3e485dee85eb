"""The training loop (plain PyTorch): AdamW, mixed precision on CUDA, DistributedDataParallel under
torchrun, seeded and exactly resumable.

Reproducibility. All randomness of a step (the patch masks, the canonicalisation rotations, the
flips) comes from a CPU generator seeded by (seed, step, rank), and the data order is a
function of (data seed, step): a run resumed from a checkpoint at step t replays exactly the
steps t+1... an uninterrupted run would, so on the CPU it ends with bitwise the same weights.
The torch/numpy/Python RNG states are saved and restored as well.
"""

import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from .. import checkpoint as ckpt
from .. import viz
from ..data import build_dataset
from ..errors import ConfigError
from ..model.keypoint_model import KeypointModel, ModelConfig
from ..model.losses import total_loss
from ..model.perceptual import build_reconstruction_loss
from .config import TrainConfig
from .metrics_log import MetricsLog, Progress


# ----------------------------------------------------------------------------- distribution

def setup_distributed(device: str):
    """(rank, world_size, device). Initialises the process group under torchrun (WORLD_SIZE > 1):
    NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is available")
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of one step of one process."""
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, step, rank, 0x6B703364])
    return torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> 1))


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for steps start..end-1, this process's share of the global batch of that step.

    The global sample stream is a concatenation of epochs, each a permutation of the dataset
    seeded by (seed, epoch); step t takes samples [t B, (t + 1) B) of it, and process r of W
    takes the r-th of W equal slices. Starting at any step needs no replay."""

    def __init__(self, length, global_batch, *, seed=0, start=0, end=1, rank=0, world=1):
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} must be divisible by the number of "
                             f"processes {world}")
        self.length, self.batch, self.seed = length, global_batch, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch):
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) & 0x7FFFFFFFFFFFFFFF)
            self._perm, self._perm_epoch = torch.randperm(self.length, generator=g), epoch
        return self._perm

    def indices(self, step):
        per = self.batch // self.world
        first = step * self.batch + self.rank * per
        out = []
        for c in range(first, first + per):
            epoch, pos = divmod(c, self.length)
            out.append(int(self._permutation(epoch)[pos]))
        return out

    def __iter__(self):
        for step in range(self.start, self.end):
            yield self.indices(step)

    def __len__(self):
        return max(0, self.end - self.start)


# ----------------------------------------------------------------------------- optimiser

def build_optimizer(model: KeypointModel, cfg: TrainConfig):
    """AdamW with three groups: the networks (lr, weight decay), the edge weights (lr x
    edge_lr_mult, no decay) and the 3D structure (mean shape, basis, Pi, lifter,
    canonicaliser; lr x structure_lr_mult)."""
    mult = {"networks": 1.0, "edges": cfg.edge_lr_mult, "structure": cfg.structure_lr_mult}
    groups = [{"params": params, "lr": cfg.lr * mult[name], "lr_mult": mult[name], "name": name,
               "weight_decay": 0.0 if name == "edges" else cfg.weight_decay}
              for name, params in model.parameter_groups().items() if params]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def learning_rate_factor(cfg: TrainConfig, step: int) -> float:
    """The multiplier of every group's lr at 0-based `step`: a linear warm-up, then constant
    (AutoLink) or a cosine decay to 0 at cfg.steps."""
    factor = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_decay == "cosine":
        factor *= 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return factor


def set_learning_rate(optimizer, cfg: TrainConfig, step: int):
    factor = learning_rate_factor(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * group.get("lr_mult", 1.0) * factor
    return cfg.lr * factor


def build_model(model_cfg: ModelConfig, seed: int = 0) -> KeypointModel:
    torch.manual_seed(seed)
    return KeypointModel(model_cfg)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------- training

def train(config, *, resume=False, dataset=None, log=print):
    """Train the model of a `kp3d.config.Config`; returns a summary dict: step, terms (the last
    loss terms), out, checkpoint (the newest, on rank 0) and model (the trained model).

    resume: continue from the newest checkpoint in config.train.out (the same weights, on the
    same device, as an uninterrupted run). dataset: an already built training dataset
    (default: the "train" split of config.data.spec).
    """
    cfg, model_cfg, data_cfg = config.train, config.model, config.data
    rank, world, device = setup_distributed(cfg.device)
    is_main = rank == 0
    os.makedirs(cfg.out, exist_ok=True)
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the number of "
                          f"processes {world}")

    state = None
    if resume:
        latest = ckpt.find_latest(cfg.out)
        if latest is not None:
            state = ckpt.load_checkpoint(latest)
            saved = ModelConfig.from_dict(dict(state["model_config"]))
            if saved.to_dict() != model_cfg.to_dict():
                diff = [k for k, v in saved.to_dict().items() if model_cfg.to_dict().get(k) != v]
                raise ckpt.CheckpointError(
                    f"cannot resume from {latest}: its model differs in {', '.join(diff)} "
                    f"(checkpoint {', '.join(f'{k}={saved.to_dict()[k]}' for k in diff)})")
        elif is_main:
            log(f"no checkpoint in {cfg.out}; starting from scratch")

    if dataset is None:
        dataset = build_dataset(data_cfg.spec, "train", model_cfg.image_size, seed=data_cfg.seed,
                                length=data_cfg.train_images or None)
    model = build_model(model_cfg, cfg.seed).to(device)
    rec_loss = build_reconstruction_loss(cfg.reconstruction, vgg_weights=cfg.vgg_weights or None,
                                         vgg_resize=cfg.vgg_resize or None, seed=cfg.seed).to(device)
    optimizer = build_optimizer(model, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"], device)
        start = int(state["step"])
        if is_main:
            log(f"resumed from {state['path']} at step {start}")
    if start >= cfg.steps:
        if is_main:
            log(f"already trained for {start} >= {cfg.steps} steps; nothing to do")
        return {"step": start, "terms": {}, "out": cfg.out, "model": model,
                "checkpoint": ckpt.find_latest(cfg.out) if is_main else None}

    ddp_model = model
    if world > 1:
        unused = model_cfg.mode == "3d" and (cfg.w_canonicalization == 0 or cfg.w_projection == 0)
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused)

    sampler = StepBatchSampler(len(dataset), cfg.batch_size, seed=data_cfg.seed, start=start,
                               end=cfg.steps, rank=rank, world=world)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                         num_workers=data_cfg.num_workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=False)
    weights = cfg.loss_weights(model_cfg.num_keypoints, model_cfg.mode)
    metrics = MetricsLog(cfg.out, resume_step=start) if is_main else None
    progress = Progress(cfg.steps, start, enabled=cfg.progress and is_main)
    vis_dir = os.path.join(cfg.out, "images")
    model.train()
    step = start
    terms = {}
    t_last = time.time()
    window_images, window_time = 0, 0.0
    try:
        for batch in loader:
            t0 = time.time()
            images = batch["image"].to(device, non_blocking=True)
            g = step_generator(cfg.seed, step, rank)
            if cfg.hflip:
                flip = torch.rand(images.shape[0], generator=g).to(device)[:, None, None, None] < 0.5
                images = torch.where(flip, images.flip(-1), images)
            lr = set_learning_rate(optimizer, cfg, step)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                out = ddp_model(images, g)
            loss, terms = total_loss(out, rec_loss, weights, backend=model_cfg.backend,
                                     detach_projection_target=step < cfg.projection_warmup)
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"the loss became {float(loss.detach())} at step {step + 1} "
                                         f"(terms {terms}); lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            dt = time.time() - t0
            window_images += images.shape[0] * world
            window_time += time.time() - t_last
            t_last = time.time()
            ips = window_images / max(window_time, 1e-9)
            terms = {"loss": float(loss.detach()), **terms}
            if is_main:
                progress.update(step, terms, ips)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    metrics.log(step, {**terms, "lr": lr, "images_per_s": ips, "step_time_s": dt})
                    window_images, window_time = 0, 0.0
                if step % cfg.image_every == 0 or step == cfg.steps:
                    save_pictures(model, images, out, vis_dir, step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                if is_main:
                    save_training_checkpoint(config, model, optimizer, scaler, step,
                                             device, terms)
                if world > 1:
                    dist.barrier()
    finally:
        progress.close()
        if metrics is not None:
            metrics.close()
    return {"step": step, "terms": terms, "out": cfg.out, "model": model,
            "checkpoint": ckpt.find_latest(cfg.out) if is_main else None}


def save_training_checkpoint(config, model, optimizer, scaler, step, device, terms=None):
    model = _unwrap(model)
    obj = {"format": ckpt.FORMAT, "version": ckpt.VERSION,
           "model_config": config.model.to_dict(), "train_config": config.train.to_dict(),
           "data_config": config.to_dict()["data"], "step": step,
           "model": model.state_dict(), "optimizer": optimizer.state_dict(),
           "scaler": scaler.state_dict(), "rng": ckpt.rng_state(device),
           "terms": dict(terms or {}), "torch_version": str(torch.__version__)}
    path = os.path.join(config.train.out, ckpt.checkpoint_name(step))
    ckpt.save_atomic(obj, path)
    ckpt.prune_checkpoints(config.train.out, config.train.keep_checkpoints)
    return path


def save_pictures(model, images, out, folder, step):
    os.makedirs(folder, exist_ok=True)
    model = _unwrap(model)
    edges = model.renderer.edges.tolist()
    w = model.renderer.weights.detach().cpu().numpy()
    viz.keypoint_sheet(images, out["keypoints"], edges, w,
                       os.path.join(folder, f"keypoints_{step:08d}.png"))
    viz.reconstruction_sheet(out["target"], out["masked"], out["edge_map"],
                             out["reconstruction"].float(),
                             os.path.join(folder, f"reconstruction_{step:08d}.png"))
    if model.has_3d:
        viz.structure_sheet(model.shape.mean_shape.detach().cpu().numpy(), edges, w,
                            os.path.join(folder, f"structure_{step:08d}.png"))

