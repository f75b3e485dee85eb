"""The trainer: a short run lowers the loss, exact resume, checkpoints, sampler, logs."""

import csv
import math
import os
import pickle

import pytest
import torch

from kp3d import checkpoint as ckpt
from kp3d.checkpoint import load_model
from kp3d.config import Config, DataConfig
from kp3d.errors import ConfigError
from kp3d.model import KeypointModel, ModelConfig
from kp3d.train.config import TrainConfig
from kp3d.train.trainer import StepBatchSampler, step_generator, train

MODEL = dict(num_keypoints=4, image_size=32, detector_widths=(8, 16), decoder_widths=(8, 16),
             lifter_hidden=16, lifter_depth=1)



def _cfg(out, model=None, train_length=12, **kw):
    """A Config of a tiny run into out: the model config (default MODEL), 12 training faces."""
    base = dict(out=str(out), steps=4, batch_size=4, lr=1e-3, checkpoint_every=2, log_every=1,
                image_every=1000, progress=False, reconstruction="pyramid")
    base.update(kw)
    return Config(model=model or ModelConfig(**MODEL), train=TrainConfig(**base),
                  data=DataConfig(spec="synthetic:face", train_images=train_length))


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=40, batch_size=4, train_length=4, lr=3e-3, checkpoint_every=40,
               image_every=40)
    summary = train(cfg)
    assert summary["step"] == 40
    rows = _read_csv(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    first = sum(float(r["loss"]) for r in rows[:5]) / 5
    last = sum(float(r["loss"]) for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert {"reconstruction", "projection", "repulsion", "canonicalization",
            "images_per_s"} <= set(rows[0])
    pics = sorted(os.listdir(tmp_path / "images"))
    assert "keypoints_00000040.png" in pics and "reconstruction_00000040.png" in pics
    assert "structure_00000040.png" in pics


def _state(path):
    return torch.load(path, weights_only=True)


def test_resume_is_exact(tmp_path):
    model_cfg = ModelConfig(**MODEL)
    full = tmp_path / "full"
    part = tmp_path / "part"
    train(_cfg(full, model_cfg, steps=6, checkpoint_every=3))
    train(_cfg(part, model_cfg, steps=3, checkpoint_every=3))
    assert ckpt.find_latest(part).endswith("ckpt-00000003.pt")
    summary = train(_cfg(part, model_cfg, steps=6, checkpoint_every=3), resume=True)
    assert summary["step"] == 6
    a, b = _state(full / "ckpt-00000006.pt"), _state(part / "ckpt-00000006.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    rows = _read_csv(part / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows] == [r["loss"] for r in _read_csv(full / "metrics.csv")]


def test_resume_refuses_a_different_model(tmp_path):
    train(_cfg(tmp_path, steps=2))
    with pytest.raises(ckpt.CheckpointError, match="num_keypoints"):
        train(_cfg(tmp_path, ModelConfig(**{**MODEL, "num_keypoints": 5}), steps=4), resume=True)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    said = []
    train(_cfg(tmp_path, steps=1), resume=True, log=said.append)
    assert any("from scratch" in s for s in said)
    assert ckpt.find_latest(tmp_path).endswith("ckpt-00000001.pt")


def test_checkpoints_are_pruned_and_weights_only(tmp_path):
    train(_cfg(tmp_path, steps=8, checkpoint_every=2, keep_checkpoints=2))
    names = sorted(os.listdir(tmp_path))
    assert [n for n in names if n.startswith("ckpt-")] == ["ckpt-00000006.pt", "ckpt-00000008.pt"]
    assert not [n for n in names if n.startswith(".tmp")]
    raw = torch.load(tmp_path / "ckpt-00000008.pt", weights_only=True)
    assert raw["format"] == ckpt.FORMAT and raw["step"] == 8
    model, state = load_model(tmp_path)
    assert state["step"] == 8 and not model.training


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load_checkpoint(corrupt)
    train(_cfg(tmp_path / "run", steps=2))
    good = (tmp_path / "run" / "ckpt-00000002.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(ckpt.CheckpointError, match="not a kp3d checkpoint"):
        ckpt.load_checkpoint(foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": ckpt.FORMAT, "obj": pickle.loads(pickle.dumps(os.getcwd))}, code)
    with pytest.raises(ckpt.CheckpointError, match="plain-tensor"):
        ckpt.load_checkpoint(code)
    old = tmp_path / "old.pt"
    torch.save({"format": ckpt.FORMAT, "version": 99}, old)
    with pytest.raises(ckpt.CheckpointError, match="version"):
        ckpt.load_checkpoint(old)
    torch.save({"format": ckpt.FORMAT, "version": 1}, old)  # from before the model was the paper's
    with pytest.raises(ckpt.CheckpointError, match="older kp3d.*retrain"):
        ckpt.load_checkpoint(old)
    wrong = tmp_path / "wrong.pt"
    state = torch.load(tmp_path / "run" / "ckpt-00000002.pt", weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, wrong)
    with pytest.raises(ckpt.CheckpointError, match="does not match"):
        load_model(wrong)


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.pt"
    ckpt.save_atomic({"a": torch.zeros(1)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ckpt.save_atomic({"a": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(1))
    assert os.listdir(tmp_path) == ["x.pt"]


def test_step_sampler_is_a_function_of_the_step():
    full = StepBatchSampler(10, 4, seed=1, start=0, end=6)
    tail = StepBatchSampler(10, 4, seed=1, start=3, end=6)
    assert list(full)[3:] == list(tail)
    batches = list(full)
    seen = [i for b in batches[:5] for i in b][:20]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    r0 = StepBatchSampler(10, 4, seed=1, start=0, end=6, rank=0, world=2)
    r1 = StepBatchSampler(10, 4, seed=1, start=0, end=6, rank=1, world=2)
    assert [a + b for a, b in zip(r0, r1)] == batches
    with pytest.raises(ValueError, match="divisible"):
        StepBatchSampler(10, 3, world=2)


def test_step_generator_depends_on_seed_step_rank():
    draw = lambda *a: torch.rand(3, generator=step_generator(*a))  # noqa: E731
    assert torch.equal(draw(0, 5, 0), draw(0, 5, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 6, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5, 0), draw(1, 5, 0))


@pytest.mark.parametrize("bad, match", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"),
    (dict(projection_loss="l3"), "projection_loss"), (dict(w_repulsion=-1.0), "w_repulsion"),
    (dict(reconstruction="vgg"), "vgg_weights"), (dict(device="tpu"), "device"),
])
def test_train_config_is_validated_on_creation(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_autolink_mode_trains(tmp_path):
    summary = train(_cfg(tmp_path, ModelConfig(**{**MODEL, "mode": "autolink"}), steps=2))
    assert "projection" not in summary["terms"] and "reconstruction" in summary["terms"]


def test_default_edge_weight_step_is_autolinks():
    """One AdamW step moves the softplus argument lr_scale * theta by lr * edge_lr_mult * 512:
    with the defaults that is AutoLink's 1e-4 * 512 = 0.05, not several units (a 10x
    multiplier on top of the 512 scale once sent every weight to 0 or to 90 in a few steps)."""
    from kp3d.train.trainer import build_optimizer

    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(**MODEL))
    cfg = TrainConfig()
    opt = build_optimizer(model, cfg)
    before = model.renderer.lr_scale * model.renderer.theta.detach().clone()
    kp = torch.rand(2, MODEL["num_keypoints"], 2) * 2 - 1
    model.renderer(kp).sum().backward()
    opt.step()
    moved = (model.renderer.lr_scale * model.renderer.theta.detach() - before).abs()
    assert moved.max() <= 1.01 * cfg.lr * 512 and moved.max() > 0


def test_fixed_edge_weights_stay_put(tmp_path):
    model_cfg = ModelConfig(**{**MODEL, "learn_edge_weights": False, "edge_weight_init": 1.0})
    train(_cfg(tmp_path, model_cfg, steps=2))
    model, _ = load_model(str(tmp_path))
    torch.testing.assert_close(model.renderer.weights, torch.ones_like(model.renderer.weights))
    assert not any(p is model.renderer.theta for p in model.parameters())


def test_learning_rate_factor_warmup_and_cosine():
    from kp3d.train.trainer import learning_rate_factor

    const = TrainConfig(steps=100, warmup_steps=4)
    assert [learning_rate_factor(const, s) for s in (0, 3, 50, 99)] == [0.25, 1.0, 1.0, 1.0]
    cos = TrainConfig(steps=100, lr_decay="cosine")
    assert learning_rate_factor(cos, 0) == 1.0
    assert learning_rate_factor(cos, 50) == pytest.approx(0.5)
    assert learning_rate_factor(cos, 99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    with pytest.raises(ConfigError, match="lr_decay"):
        TrainConfig(lr_decay="step")
