"""Rendering throughput of the synthetic categories on one core.

    taskset -c 0 python benchmarks/render_speed.py            # face and car at 64 and 128
    python benchmarks/render_speed.py --spec synthetic:face --size 64 --n 500
"""

from __future__ import annotations

import argparse
import os
import time


def throughput(spec: str, size: int, n: int = 300, seed: int = 0):
    """Images per second of ``ds[i]`` (full item: render, camera effects, tensor), one process.

    Returns (per wall-clock second, per second of this process's CPU time). The second figure is
    what one dedicated core delivers; it is the one to trust on a shared, loaded machine."""
    from kp3d.data import build_dataset

    ds = build_dataset(spec, "train", size, seed=seed, length=n + 5)
    for i in range(3):  # warm up caches
        ds[n + i]
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def main(argv=None):
    p = argparse.ArgumentParser(description="Synthetic rendering throughput (images/s, one process).")
    p.add_argument("--spec", action="append")
    p.add_argument("--size", type=int, action="append")
    p.add_argument("--n", type=int, default=300)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for spec in a.spec or ["synthetic:face", "synthetic:car"]:
        for size in a.size or [64, 128]:
            wall, cpu = throughput(spec, size, a.n)
            print(f"{spec:16s} {size:4d} px  {cpu:6.0f} images/s per CPU-second  ({wall:.0f} per wall second; "
                  f"load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
