"""Time one training step (forward, backward, optimiser) of a kp3d configuration, and its peak
memory. Any `kp3d train` option applies (`--preset`, `--keypoints`, `--model.backend`, ...):

    python benchmarks/train_step.py --preset cpu --timed-steps 5 --threads 2
    python benchmarks/train_step.py --preset paper --keypoints 32 --model.backend torch --timed-steps 10

Run each configuration in its own process: the peak resident memory (`ru_maxrss`) is per
process; `baseline_rss_mib` is the Python/torch baseline, measured before the model is built.
Prints one JSON line.
"""

import argparse
import json
import resource
import sys
import time

import torch

from kp3d.config import add_arguments, from_arguments
from kp3d.model import KeypointModel, build_reconstruction_loss, total_loss
from kp3d.train.trainer import build_optimizer


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/train_step.py")
    p.add_argument("--timed-steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add_arguments(p)
    a = p.parse_args(argv)
    config = from_arguments(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    base = _rss_mib()
    torch.manual_seed(0)
    dev = torch.device(config.train.device)
    model = KeypointModel(config.model).to(dev)
    rec = build_reconstruction_loss(config.train.reconstruction, vgg_weights=config.train.vgg_weights or None).to(dev)
    opt = build_optimizer(model, config.train)
    weights = config.train.loss_weights(config.model.num_keypoints, config.model.mode)
    S, B = config.model.image_size, config.train.batch_size
    x = torch.rand(B, 3, S, S, device=dev) * 2 - 1
    times = []
    for i in range(a.warmup + a.timed_steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=config.train.amp and dev.type == "cuda"):
            out = model(x, torch.Generator().manual_seed(i))
        loss, _ = total_loss(out, rec, weights, backend=config.model.backend)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    res = {"config": config.to_dict(), "threads": torch.get_num_threads(),
           "step_s_median": times[len(times) // 2], "step_s_all": times, "peak_rss_mib": _rss_mib(),
           "baseline_rss_mib": base, "torch": torch.__version__}
    if dev.type == "cuda":
        res["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
