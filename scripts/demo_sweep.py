"""Train one variant of the demo's setting and evaluate it every N steps: the runs behind the
tables of docs/training.md ("Longer training, and other edge graphs").

    python scripts/demo_sweep.py NAME '{"model": {...}, "train": {...}, "eval_every": 1000}' \
        [--out-dir runs/sweep] [--device cuda]

NAME names the run folder (OUT_DIR/NAME); the JSON overrides a fixed base setting, the demo's
CPU setting before refined keypoints (K = 8, 64 x 64 images, no refinement; the base of the
older tables; the demo's current setting needs "num_keypoints": 12, "image_size": 128,
"work_scale": 2, "refine_reach": 0.19 in "model" and "steps": 1500 in "train"):
"model" -> ModelConfig fields, "train" -> TrainConfig fields (default: steps 30000, batch 16,
lr 1e-3, fixed edge weights 1, projection loss on the 3D structure only), "eval_every" (steps
between evaluations), "eval" ([regress images, test images], default [500, 300]) and
"edge_graph" (fixed edge weights other than all ones: "uniform" = drawn from U(0.05, 1),
"ring" = 1 on (k, k+1 mod K) and 1e-4 elsewhere, "sparseP" = 1 on a random fraction P of the
pairs and 1e-4 elsewhere; drawn with a fixed seed) and "background" ("flat": every synthetic
image, training and test, on a flat mid-grey background instead of the clutter) and "pairs"
(true: every training image comes with a second view of the same scene, the head at another
pose, and the decoder is shown that view: "model" gets decoder_input "pair"). Each
evaluation appends one JSON line to OUT_DIR/results.jsonl and prints it: r2 = 2D NME / mean-landmark baseline, r3 = 3D NME /
flat-lift baseline, and the lifted keypoints' yaw spread and correlation with the true yaw.
A run killed between evaluations resumes from its last checkpoint; a rerun with more steps
goes on from there.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kp3d import report  # noqa: E402
from kp3d.data import build_dataset  # noqa: E402
from kp3d.data.synthetic import SyntheticDataset  # noqa: E402
from kp3d.model import ModelConfig  # noqa: E402
from kp3d.model import keypoint_model  # noqa: E402
from kp3d.train.checkpoint import list_checkpoints  # noqa: E402
from kp3d.train.config import TrainConfig  # noqa: E402
from kp3d.train.trainer import evaluate_model, train  # noqa: E402


def fixed_graph_weights(edges, graph):
    """The (E,) fixed weights of an `edge_graph` name over the renderer's (E, 2) edges."""
    g = torch.Generator().manual_seed(1234)
    if graph == "uniform":
        return 0.05 + 0.95 * torch.rand(edges.shape[0], generator=g)
    if graph == "ring":
        K = int(edges.max()) + 1
        ring = (edges[:, 1] - edges[:, 0] == 1) | ((edges[:, 0] == 0) & (edges[:, 1] == K - 1))
        return torch.where(ring, 1.0, 1e-4)
    if graph.startswith("sparse"):
        return torch.where(torch.rand(edges.shape[0], generator=g) < float(graph[6:]), 1.0, 1e-4)
    raise ValueError(f"edge_graph must be uniform, ring or sparseP, got {graph!r}")


def use_fixed_graph(graph):
    """Make every model built from now on start from the graph's weights (a fixed buffer)."""
    base = keypoint_model.EdgeMapRenderer

    class FixedGraphRenderer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            w = fixed_graph_weights(self.edges, graph).double()
            with torch.no_grad():  # theta such that softplus(lr_scale theta) = w
                self.theta.copy_((torch.log(torch.expm1(w)) / self.lr_scale).to(self.theta.dtype))

    keypoint_model.EdgeMapRenderer = FixedGraphRenderer


def use_flat_background():
    """Render every synthetic image from now on over a flat mid-grey background (a diagnostic:
    is the background clutter what keeps the keypoints off the face's parts?)."""
    from kp3d.data import render

    render.random_background = lambda rng, size, kind="any": np.full((size, size, 3), 0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("overrides", nargs="?", default="{}")
    p.add_argument("--out-dir", default="runs/sweep")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    over = json.loads(a.overrides)
    out = os.path.join(a.out_dir, a.name)
    model_cfg = dict(num_keypoints=8, image_size=64, detector_widths=(16, 32, 64),
                     decoder_widths=(16, 32, 64, 128), learn_edge_weights=False,
                     edge_weight_init=1.0, mask_keep=0.2)
    model_cfg.update(over.get("model", {}))
    for key in ("detector_widths", "decoder_widths"):
        model_cfg[key] = tuple(model_cfg[key])
    train_cfg = dict(data="synthetic:face", out=os.path.join(out, "train"), steps=30000,
                     batch_size=16, lr=1e-3, seed=0, device=a.device, reconstruction="random",
                     keep_checkpoints=1, log_every=50, image_every=10 ** 6, progress=False,
                     projection_warmup=10 ** 9, structure_lr_mult=1.0, num_workers=0)
    train_cfg.update(over.get("train", {}))
    if over.get("edge_graph"):
        use_fixed_graph(over["edge_graph"])
    if over.get("background", "clutter") != "clutter":
        if over["background"] != "flat":
            raise ValueError(f"background must be clutter or flat, got {over['background']!r}")
        use_flat_background()
    dataset = None
    if over.get("pairs"):
        if model_cfg.get("decoder_input", "pair") != "pair":
            raise ValueError(f"pairs needs decoder_input 'pair', got {model_cfg['decoder_input']!r}")
        model_cfg["decoder_input"] = "pair"
        cfg = TrainConfig(**train_cfg)  # the training set the trainer would build, with second views
        dataset = build_dataset(cfg.data, "train", model_cfg["image_size"], seed=cfg.data_seed,
                                length=cfg.train_length or None)
        if not isinstance(dataset, SyntheticDataset):
            raise ValueError(f"pairs needs synthetic data, got {cfg.data!r}")
        dataset.pair_view = True
    total, every = train_cfg["steps"], over.get("eval_every", 1000)
    regress, test = over.get("eval", [500, 300])
    t0 = time.time()
    # a rerun with more steps goes on from the newest checkpoint, without re-evaluating it
    done = max([step for step, _ in list_checkpoints(train_cfg["out"])], default=0)
    for step in range(every, total + 1, every):
        if step <= done:
            continue
        train_cfg.update(steps=step, checkpoint_every=step)
        summary = train(TrainConfig(**train_cfg), ModelConfig(**model_cfg), resume=True,
                        log=lambda message: None, dataset=dataset)
        model = summary["model"].eval()
        m, preds = evaluate_model(model, "synthetic:face", device=a.device,
                                  regress_length=regress, test_length=test)
        m.update(report.structure_stats(preds))
        row = dict(name=a.name, step=step, seconds=round(time.time() - t0),
                   r2=round(m["nme_2d"] / m["nme_2d_mean_baseline"], 3),
                   r3=round(m["nme_3d"] / m["nme_3d_flat_baseline"], 3),
                   yaw_spread_deg=round(m.get("predicted_yaw_spread_deg", 0.0), 2),
                   yaw_corr=round(m.get("predicted_yaw_corr_with_true", 0.0), 3),
                   reconstruction=round(float(summary["terms"].get("reconstruction", float("nan"))), 4),
                   overrides=over)
        print(json.dumps(row), flush=True)
        with open(os.path.join(a.out_dir, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
