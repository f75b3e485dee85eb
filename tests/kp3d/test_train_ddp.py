"""DistributedDataParallel with the gloo backend, two processes on the CPU."""

import json
import os
import socket

import torch
import torch.multiprocessing as mp

MODEL = dict(num_keypoints=4, image_size=32, detector_widths=(8, 16), decoder_widths=(8, 16),
             lifter_hidden=16, lifter_depth=1)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    from kp3d.model import ModelConfig
    from kp3d.config import Config, DataConfig
    from kp3d.train.config import TrainConfig
    from kp3d.train.trainer import train

    cfg = Config(model=ModelConfig(**MODEL),
                 train=TrainConfig(out=out, steps=3, batch_size=4, lr=1e-3, checkpoint_every=3,
                                   log_every=1, image_every=1000, progress=False,
                                   reconstruction="pyramid"),
                 data=DataConfig(spec="synthetic:face", train_images=8))
    summary = train(cfg)
    assert dist.is_initialized() and dist.get_world_size() == world
    flat = torch.cat([p.detach().flatten() for p in summary["model"].parameters()])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"step": summary["step"], "sum": float(flat.double().sum()),
                   "head": flat[:20].tolist()}, f)
    dist.destroy_process_group()


def test_ddp_gloo_two_processes(tmp_path):
    out = str(tmp_path)
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    r0 = json.load(open(tmp_path / "rank0.json"))
    r1 = json.load(open(tmp_path / "rank1.json"))
    assert r0["step"] == r1["step"] == 3
    assert os.path.exists(tmp_path / "ckpt-00000003.pt")
    # DDP keeps the replicas identical; rank 0's checkpoint is that model
    assert r0["sum"] == r1["sum"] and r0["head"] == r1["head"]
    state = torch.load(tmp_path / "ckpt-00000003.pt", weights_only=True)
    assert state["step"] == 3
    rows = open(tmp_path / "metrics.csv").read().strip().splitlines()
    assert len(rows) == 4  # header + 3 steps, written by rank 0 only
