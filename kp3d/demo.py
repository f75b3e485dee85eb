"""`kp3d demo`: the paper's comparison on the built-in synthetic faces, end to end.

Trains kp3d (keypoints, links and the 3D structure) and its 2D ablation, `--mode autolink`
(AutoLink itself: no 3D branch, no repulsion), with the same budget; evaluates both on held-out
test faces; and writes, under --out:

    metrics.json            kp3d's figures at the top level, the ablation's under "autolink"
    report.md               what was trained, how long, both models beside the baselines, pictures
    keypoints.png           kp3d's keypoints and links over test faces, ordered by yaw
    autolink_keypoints.png  the same for the ablation
    reconstruction.png      masked input, edge map, output, target (kp3d)
    structure.png           kp3d's learned mean shape with its links, three views
    reconstructions_3d.png  per-image 3D keypoints beside the ground-truth landmarks
    learning_curves.png     kp3d's loss terms over training
    kp3d/, autolink/        the training runs (checkpoints, metrics.csv, pictures)

Three settings: `cpu` (the default without a GPU: both runs within 15 minutes on two cores,
set-up included), `gpu` (the default with one) and `tiny` (the CI setting: seconds).
"""

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch

DATA = "synthetic:face"
METRIC_KEYS = ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_flat_baseline",
               "structure_yaw_corr", "num_keypoints", "num_points")


@dataclass(frozen=True)
class DemoSettings:
    """One demo setting: the budget and the paper's knobs it trains with."""

    name: str
    steps: int
    keypoints: int = 8
    image_size: int = 64
    batch_size: int = 16
    lr: float = 1e-3
    detector_widths: tuple = (16, 32, 64)
    decoder_widths: tuple = (16, 32, 64, 128)
    reconstruction: str = "auto"
    learn_edge_weights: bool = False
    edge_weight_init: float = 1.0
    w_repulsion: float = 0.1
    projection_warmup: int = 0
    regress_images: int = 2000
    test_images: int = 1000
    image_every: int = 500
    threads: int = 2
    data_workers: int = 0


SETTINGS = {
    "cpu": DemoSettings("cpu", steps=1200),
    "gpu": DemoSettings("gpu", steps=4000, keypoints=16, batch_size=64, lr=5e-4,
                        detector_widths=(32, 64, 128), decoder_widths=(32, 64, 128, 256),
                        image_every=1000, data_workers=min(8, max(0, (os.cpu_count() or 1) - 1))),
    "tiny": DemoSettings("tiny", steps=4, keypoints=6, image_size=32, batch_size=4,
                         detector_widths=(8, 16), decoder_widths=(8, 16, 32), regress_images=24,
                         test_images=16, image_every=1000),
}


def choose_settings(device, tiny=False, steps=None) -> DemoSettings:
    s = SETTINGS["tiny" if tiny else ("gpu" if str(device).startswith("cuda") else "cpu")]
    return s if steps is None else replace(s, steps=int(steps))


def configs(s: DemoSettings, mode: str, out: str, device, seed=0, progress=True):
    """(TrainConfig, ModelConfig) of one of the demo's two runs."""
    from .model import ModelConfig
    from .train.config import TrainConfig

    model_cfg = ModelConfig(num_keypoints=s.keypoints, image_size=s.image_size, mode=mode,
                            detector_widths=s.detector_widths, decoder_widths=s.decoder_widths,
                            learn_edge_weights=s.learn_edge_weights,
                            edge_weight_init=s.edge_weight_init)
    cfg = TrainConfig(data=DATA, out=out, steps=s.steps, batch_size=s.batch_size, lr=s.lr,
                      seed=seed, device=str(device), reconstruction=s.reconstruction,
                      w_repulsion=s.w_repulsion, projection_warmup=min(s.projection_warmup, s.steps),
                      checkpoint_every=s.steps, keep_checkpoints=1,
                      log_every=max(1, min(10, s.steps // 4)), image_every=s.image_every,
                      num_workers=s.data_workers, progress=progress)
    return cfg, model_cfg


def run_demo(out="runs/demo", device=None, steps=None, tiny=False, seed=0, progress=True,
             log=None) -> dict:
    """Train both models, evaluate, draw, report. Returns the metrics (also OUT/metrics.json)."""
    from . import report
    from .eval.io import write_json
    from .eval.evaluate import evaluate_model
    from .train.trainer import train

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    s = choose_settings(device, tiny, steps)
    if device == "cpu" and s.threads and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(s.threads, os.cpu_count() or 1))
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    runs = {}
    for mode, name in (("3d", "kp3d"), ("autolink", "autolink")):
        cfg, model_cfg = configs(s, mode, os.path.join(out, name), device, seed, progress)
        log(f"kp3d demo: training {name} on {DATA} ({s.name} setting: {s.steps} steps, "
            f"K = {s.keypoints}, {s.image_size} x {s.image_size}, batch {s.batch_size}, "
            f"device {device}, {torch.get_num_threads()} threads)")
        t0 = time.time()
        summary = train(cfg, model_cfg, log=log)
        t_train = time.time() - t0
        log(f"kp3d demo: evaluating {name} on {s.test_images} test faces "
            f"(regression fit on {s.regress_images})")
        t0 = time.time()
        model = summary["model"].eval()
        metrics, preds = evaluate_model(model, DATA, split="test", device=device,
                                        regress_length=s.regress_images, test_length=s.test_images)
        metrics.update({"step": int(summary["step"]), "checkpoint": summary.get("checkpoint"),
                        "time_train_s": t_train, "time_eval_s": time.time() - t0})
        runs[name] = (model, metrics, preds, cfg)

    t0 = time.time()
    model, metrics, preds, cfg = runs["kp3d"]
    pictures = report.draw_pictures(model, DATA, preds, out, device=device, train_dir=cfg.out)
    pictures.update(report.draw_pictures(runs["autolink"][0], DATA, runs["autolink"][2], out,
                                         device=device, prefix="autolink_", only_keypoints=True))
    metrics = {**metrics, "autolink": runs["autolink"][1], "setting": asdict(s),
               "device": str(device), "threads": torch.get_num_threads(), "seed": seed,
               "time_pictures_s": time.time() - t0, "time_total_s": time.time() - t_start}
    write_json(os.path.join(out, "metrics.json"), metrics)
    path = report.write_report(out, metrics, pictures)
    log(f"kp3d demo: done in {metrics['time_total_s']:.0f} s; report {path}")
    return metrics


def ratio(a, b):
    """a / b, or None where either is missing or b is 0."""
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return float(a) / float(b)


__all__ = ["run_demo", "SETTINGS", "DemoSettings", "choose_settings", "configs", "METRIC_KEYS"]
