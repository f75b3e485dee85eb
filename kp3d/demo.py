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

Three settings, the presets of kp3d.config: `cpu` (the default without a GPU: both runs
within 15 minutes on two cores, set-up included), `gpu` (the default with one) and `tiny` (the
CI setting: seconds).
"""

import os
import sys
import time

import torch

# (images the regressors are fit on, test images) by setting
EVAL_IMAGES = {"cpu": (2000, 1000), "gpu": (2000, 1000), "tiny": (24, 16)}
CPU_THREADS = 2


def choose_setting(device, tiny=False) -> str:
    """The preset the demo runs: tiny, gpu on a CUDA device, else cpu."""
    return "tiny" if tiny else ("gpu" if str(device).startswith("cuda") else "cpu")


def demo_config(setting: str, mode: str, out: str, device, *, steps=None, seed=0, progress=True):
    """The `kp3d.config.Config` of one of the demo's two runs: the preset, the mode, and where
    it writes; the data are the built-in faces."""
    from .config import build_config

    steps = steps or build_config(setting).train.steps
    return build_config(setting, overrides={
        "model.mode": mode, "data.spec": "synthetic:face", "train.out": out,
        "train.device": str(device), "train.seed": seed, "train.progress": progress,
        "train.steps": steps, "train.checkpoint_every": steps, "train.keep_checkpoints": 1,
        "train.log_every": max(1, min(10, steps // 4))})


def run_demo(out="runs/demo", device=None, steps=None, tiny=False, seed=0, progress=True,
             log=None) -> dict:
    """Train both models, evaluate, draw, report. Returns the metrics (also OUT/metrics.json)."""
    from . import report
    from .eval.evaluate import evaluate_model
    from .eval.io import write_json
    from .train.trainer import train

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    setting = choose_setting(device, tiny)
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(CPU_THREADS, os.cpu_count() or 1))
    regress_images, test_images = EVAL_IMAGES[setting]
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    runs = {}
    for mode, name in (("3d", "kp3d"), ("autolink", "autolink")):
        config = demo_config(setting, mode, os.path.join(out, name), device, steps=steps, seed=seed,
                             progress=progress)
        m = config.model
        log(f"kp3d demo: training {name} on {config.data.spec} ({setting} setting: "
            f"{config.train.steps} steps, K = {m.num_keypoints}, {m.image_size} x {m.image_size}, "
            f"batch {config.train.batch_size}, device {device}, {torch.get_num_threads()} threads)")
        t0 = time.time()
        summary = train(config, log=log)
        t_train = time.time() - t0
        log(f"kp3d demo: evaluating {name} on {test_images} test faces "
            f"(regression fit on {regress_images})")
        t0 = time.time()
        model = summary["model"].eval()
        metrics, preds = evaluate_model(model, config.data.spec, split="test", device=device,
                                        regress_length=regress_images, test_length=test_images)
        metrics.update({"step": int(summary["step"]), "checkpoint": summary.get("checkpoint"),
                        "time_train_s": t_train, "time_eval_s": time.time() - t0})
        runs[name] = (model, metrics, preds, config)

    t0 = time.time()
    model, metrics, preds, config = runs["kp3d"]
    pictures = report.draw_pictures(model, config.data.spec, preds, out, device=device,
                                    train_dir=config.train.out)
    pictures.update(report.draw_pictures(runs["autolink"][0], config.data.spec, runs["autolink"][2],
                                         out, device=device, prefix="autolink_", only_keypoints=True))
    metrics = {**metrics, "autolink": runs["autolink"][1], "setting": setting,
               "config": config.to_dict(), "device": str(device), "threads": torch.get_num_threads(),
               "seed": seed, "time_pictures_s": time.time() - t0, "time_total_s": time.time() - t_start}
    write_json(os.path.join(out, "metrics.json"), metrics)
    path = report.write_report(out, metrics, pictures)
    log(f"kp3d demo: done in {metrics['time_total_s']:.0f} s; report {path}")
    return metrics


__all__ = ["run_demo", "demo_config", "choose_setting", "EVAL_IMAGES"]
