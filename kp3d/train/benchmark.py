"""Time one training step (forward, backward, optimiser) and its peak memory.

    python -m kp3d.train.benchmark --batch-size 64 --keypoints 32 --image-size 128 \
        --model-size small --backend cpu --steps 2

Each configuration should run in its own process: the peak resident memory
(`ru_maxrss`) is per process. On the CPU the figure includes the Python/torch baseline
(reported separately as `baseline_rss_mib`, measured before the model is built).
"""

import argparse
import json
import resource
import sys
import time

import torch


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    from ..cli import MODEL_SIZES
    from ..model import KeypointModel, LossWeights, ModelConfig, build_reconstruction_loss, total_loss
    from .config import TrainConfig
    from .trainer import build_optimizer

    p = argparse.ArgumentParser(prog="python -m kp3d.train.benchmark")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keypoints", type=int, default=32)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--model-size", default="small", choices=tuple(MODEL_SIZES))
    p.add_argument("--backend", default="auto")
    p.add_argument("--reconstruction", default="random")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mode", default="3d")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    base = _rss_mib()
    det, dec = MODEL_SIZES[a.model_size]
    torch.manual_seed(0)
    cfg = ModelConfig(num_keypoints=a.keypoints, image_size=a.image_size, detector_widths=det,
                      decoder_widths=dec, backend=a.backend, mode=a.mode)
    dev = torch.device(a.device)
    model = KeypointModel(cfg).to(dev)
    rec = build_reconstruction_loss(a.reconstruction).to(dev)
    opt = build_optimizer(model, TrainConfig())
    x = torch.rand(a.batch_size, 3, a.image_size, a.image_size, device=dev) * 2 - 1
    times = []
    for i in range(a.warmup + a.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(x, torch.Generator().manual_seed(i))
        loss, _ = total_loss(out, out["target"], rec, LossWeights(), backend=a.backend)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    res = {"batch_size": a.batch_size, "keypoints": a.keypoints, "image_size": a.image_size,
           "model_size": a.model_size, "backend": a.backend, "reconstruction": a.reconstruction,
           "threads": torch.get_num_threads(), "step_s_median": times[len(times) // 2],
           "step_s_all": times, "peak_rss_mib": _rss_mib(), "baseline_rss_mib": base,
           "torch": torch.__version__}
    if dev.type == "cuda":
        res["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
