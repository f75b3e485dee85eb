"""The kp3d command line: train, eval, infer, export, demo.

    kp3d train --data synthetic:face --keypoints 16 --steps 2000 --out runs/face
    kp3d eval --checkpoint runs/face --data synthetic:face --out runs/face/eval
    kp3d infer --checkpoint runs/face photo.png --out runs/face/infer
    kp3d export --checkpoint runs/face --out structure.json
    torchrun --nproc_per_node 2 -m kp3d.cli train ...     # DistributedDataParallel

Bad input ends with a one-line error and exit status 2 (no traceback); set KP3D_DEBUG=1 to see
the traceback.
"""

import argparse
import json
import os
import sys

MODEL_SIZES = {
    # name: (detector widths, decoder widths)
    "tiny": ((16, 32, 64), (16, 32, 64, 128)),
    "small": ((32, 64, 128), (32, 64, 128, 256)),
    "autolink": ((64, 128, 256, 512), (64, 128, 256, 512, 512)),
}


class UsageError(ValueError):
    """Bad command-line input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _widths(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"widths must be positive integers, got {text!r}")
    return values


def build_parser():
    p = _Parser(prog="kp3d", description="Unsupervised 2D keypoints, links and 3D structure "
                "from single images of one category (Wang, Cao, Bernard, CVPR 2024).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a model", description="Train a model; checkpoints "
                       "(ckpt-*.pt), metrics.csv and pictures go under --out.")
    t.add_argument("--data", required=True, help="dataset spec, e.g. synthetic:face, folder:PATH")
    t.add_argument("--keypoints", "-k", type=int, required=True, help="number of keypoints K (>= 2)")
    t.add_argument("--steps", type=int, required=True, help="training steps")
    t.add_argument("--batch-size", type=int, default=32, help="global batch size (default 32)")
    t.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    t.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--mode", choices=("3d", "autolink"), default="3d",
                   help="3d: the full method; autolink: AutoLink itself, without the 3D branch and the "
                        "repulsion loss (the paper's 2D ablation)")
    t.add_argument("--model-size", choices=tuple(MODEL_SIZES), default="small",
                   help="network widths preset (default small; autolink = the paper's)")
    t.add_argument("--detector-widths", type=_widths, help="override, e.g. 16,32,64")
    t.add_argument("--decoder-widths", type=_widths, help="override, e.g. 16,32,64,128")
    t.add_argument("--basis", type=int, default=2, help="number of deformation bases n (default 2)")
    t.add_argument("--edge-sigma", type=float, default=0.0, help="edge falloff width (0 = auto)")
    t.add_argument("--edge-falloff", choices=("gaussian", "exp"), default="gaussian")
    t.add_argument("--temperature", type=float, default=1.0,
                   help="soft-argmax temperature (softmax of heatmap / T; default 1)")
    t.add_argument("--mask-keep", type=float, default=0.2,
                   help="fraction of image patches the decoder sees (default 0.2, AutoLink)")
    t.add_argument("--mask-grid", type=int, default=16,
                   help="the mask's patches per side (default 16, AutoLink; must divide the image size)")
    t.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    t.add_argument("--weight-decay", type=float, default=1e-3)
    t.add_argument("--edge-lr-mult", type=float, default=1.0,
                   help="edge-weight lr multiplier (default 1: the softplus scale of 512 already "
                        "makes the weights fast)")
    t.add_argument("--edge-weight-init", type=float, default=None,
                   help="initial edge weight (default AutoLink's softplus(-4) = 0.018)")
    t.add_argument("--fixed-edge-weights", action="store_true",
                   help="keep every edge weight at --edge-weight-init (no learning)")
    t.add_argument("--structure-lr-mult", type=float, default=10.0)
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                   help="none (AutoLink: constant lr) or cosine (to 0 at the last step)")
    t.add_argument("--reconstruction", default="auto",
                   choices=("auto", "vgg", "lite0", "random", "pyramid", "ssim", "l1"),
                   help="reconstruction loss (auto: VGG16 with --vgg-weights, else the pretrained "
                        "EfficientNet-Lite0 features of the pip package)")
    t.add_argument("--vgg-weights", default="", help="local torchvision vgg16 state dict (.pth)")
    t.add_argument("--vgg-resize", type=int, default=0, help="resize before VGG (AutoLink 224; 0 = no)")
    t.add_argument("--w-projection", type=float, default=1.0)
    t.add_argument("--w-repulsion", type=float, default=0.1,
                   help="repulsion loss weight (default 0.1; --mode autolink has none)")
    t.add_argument("--w-canonicalization", type=float, default=1.0)
    t.add_argument("--projection-loss", choices=("huber", "l1", "l2"), default="huber")
    t.add_argument("--projection-warmup", type=int, default=0,
                   help="steps during which the projection loss does not move the detector")
    t.add_argument("--repulsion-bandwidth", type=float, default=0.0,
                   help="repulsion bandwidth h in [-1, 1] units (0 = auto, 0.7 / sqrt(K))")
    t.add_argument("--hflip", action="store_true", help="random horizontal flips")
    t.add_argument("--train-images", type=int, default=0, help="training images (0 = the dataset's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--image-every", type=int, default=500)
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--eval", action="store_true", help="evaluate at the end (writes OUT/metrics.json)")
    t.add_argument("--eval-split", choices=("val", "test"), default="val",
                   help="with --eval: val (default; choose settings on it) or test (published figures)")
    t.add_argument("--regress-images", type=int, default=0,
                   help="with --eval: images to fit the regressor (0 = all)")
    t.add_argument("--test-images", type=int, default=0, help="with --eval: images of the scored split (0 = all)")

    e = sub.add_parser("eval", help="evaluate a checkpoint",
                       description="2D/3D NME with baselines (docs/data.md); writes DIR/metrics.json.")
    e.add_argument("--checkpoint", required=True, help="checkpoint file or run folder (newest)")
    e.add_argument("--data", required=True)
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", required=True)
    e.add_argument("--split", choices=("val", "test"), default="test",
                   help="the split scored: test (default) or val (to choose settings)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--regress-images", type=int, default=0, help="images to fit the regressor (0 = all)")
    e.add_argument("--test-images", type=int, default=0,
                   help="images of the scored split (0 = all)")

    i = sub.add_parser("infer", help="keypoints of new images",
                       description="Per image: 2D and 3D keypoints as JSON and an overlay PNG.")
    i.add_argument("--checkpoint", required=True)
    i.add_argument("images", nargs="+", metavar="IMAGE")
    i.add_argument("--out", required=True)
    i.add_argument("--device", default="cpu")

    x = sub.add_parser("export", help="export the learned structure as JSON",
                       description="Mean shape, basis, edges and edge weights, projection scales.")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--out", required=True, help="output .json file")

    d = sub.add_parser("demo", help="train and evaluate on built-in synthetic data",
                       description="The main job on the built-in synthetic faces: train the full "
                       "method, evaluate on held-out images, and write DIR/report.md, "
                       "DIR/metrics.json and pictures. Sized to finish within 15 minutes on two "
                       "CPU cores; a longer setting runs on a GPU.")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    d.add_argument("--steps", type=int, default=None,
                   help="training steps (default: the setting's, 2000 on the CPU)")
    d.add_argument("--tiny", action="store_true",
                   help="a few steps on tiny images (a seconds-long end-to-end check)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# ----------------------------------------------------------------------------- commands

def _device(name):
    import torch

    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r} (expected cpu or cuda)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is available")
    return name


def cmd_train(a):
    from .model import ModelConfig
    from .train.config import TrainConfig
    from .eval.evaluate import evaluate_model
    from .train.trainer import train

    _device(a.device)
    if a.regress_images < 0 or a.test_images < 0:
        raise UsageError("--regress-images and --test-images must be >= 0")
    det, dec = MODEL_SIZES[a.model_size]
    model_cfg = ModelConfig(num_keypoints=a.keypoints, image_size=a.image_size, mode=a.mode,
                            detector_widths=a.detector_widths or det,
                            decoder_widths=a.decoder_widths or dec, num_basis=a.basis,
                            edge_sigma=a.edge_sigma, edge_falloff=a.edge_falloff,
                            temperature=a.temperature, mask_keep=a.mask_keep,
                            mask_grid=a.mask_grid, learn_edge_weights=not a.fixed_edge_weights,
                            **({} if a.edge_weight_init is None
                               else {"edge_weight_init": a.edge_weight_init}))
    cfg = TrainConfig(data=a.data, out=a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                      weight_decay=a.weight_decay, edge_lr_mult=a.edge_lr_mult,
                      structure_lr_mult=a.structure_lr_mult, warmup_steps=a.warmup_steps,
                      lr_decay=a.lr_decay,
                      seed=a.seed, train_length=a.train_images, device=a.device,
                      amp=not a.no_amp, num_workers=a.num_workers, hflip=a.hflip,
                      reconstruction=a.reconstruction, vgg_weights=a.vgg_weights,
                      vgg_resize=a.vgg_resize, w_projection=a.w_projection,
                      w_repulsion=a.w_repulsion, w_canonicalization=a.w_canonicalization,
                      projection_loss=a.projection_loss, projection_warmup=a.projection_warmup,
                      repulsion_bandwidth=a.repulsion_bandwidth,
                      checkpoint_every=a.checkpoint_every, log_every=a.log_every,
                      image_every=a.image_every, progress=not a.no_progress).validate()
    if a.reconstruction == "vgg" and not a.vgg_weights:
        raise UsageError("--reconstruction vgg needs --vgg-weights PATH")
    if a.vgg_weights and not os.path.isfile(a.vgg_weights):
        raise UsageError(f"--vgg-weights: file not found: {a.vgg_weights}")
    from .data import build_dataset

    dataset = build_dataset(a.data, "train", a.image_size, seed=cfg.data_seed,
                            length=a.train_images or None)
    summary = train(cfg, model_cfg, resume=a.resume, dataset=dataset,
                    log=lambda m: print(m, file=sys.stderr))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained to step {summary['step']}; checkpoint {summary.get('checkpoint')}")
    if a.eval:
        from .checkpoint import load_model

        model, _ = load_model(a.out, a.device)
        metrics, _ = evaluate_model(model, a.data, split=a.eval_split, device=a.device,
                                    regress_length=a.regress_images or None,
                                    test_length=a.test_images or None)
        metrics["checkpoint"], metrics["step"] = summary.get("checkpoint"), int(summary["step"])
        _write_metrics(metrics, a.out)
    return 0


def _write_metrics(metrics, out_dir):
    from .eval import format_metrics
    from .eval.io import write_json

    path = write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(format_metrics(metrics))
    print(f"metrics written to {path}")


def cmd_eval(a):
    from .checkpoint import load_model
    from .eval.evaluate import evaluate_model

    _device(a.device)
    for name in ("batch_size", "regress_images", "test_images"):
        if getattr(a, name) < (1 if name == "batch_size" else 0):
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    model, state = load_model(a.checkpoint, a.device)
    metrics, _ = evaluate_model(model, a.data, split=a.split, device=a.device, batch_size=a.batch_size,
                                regress_length=a.regress_images or None,
                                test_length=a.test_images or None)
    metrics["checkpoint"] = state["path"]
    metrics["step"] = int(state["step"])
    _write_metrics(metrics, a.out)
    return 0


def cmd_infer(a):
    import numpy as np
    import torch

    from . import viz as visualize
    from .checkpoint import load_model

    _device(a.device)
    missing = [p for p in a.images if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"image not found: {missing[0]}" +
                         (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    model, state = load_model(a.checkpoint, a.device)
    S = model.config.image_size
    os.makedirs(a.out, exist_ok=True)
    from PIL import Image, UnidentifiedImageError

    edges = model.renderer.edges.tolist()
    w = model.renderer.weights.detach().cpu().numpy()
    for path in a.images:
        try:
            with Image.open(path) as im:
                im.load()
                rgb = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise UsageError(f"cannot read image {path}: {exc}") from None
        W, H = rgb.size
        small = np.asarray(rgb.resize((S, S), Image.BILINEAR), dtype=np.float32) / 127.5 - 1
        x = torch.from_numpy(small.transpose(2, 0, 1).copy())[None].to(a.device)
        pred = model.predict(x)
        kp = pred["keypoints_2d"][0].cpu().numpy().astype(np.float64)
        scale = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
        px = (kp + 1.0) * scale
        rec = {"image": os.path.abspath(path), "width": W, "height": H,
               "keypoints_2d": px.tolist(), "keypoints_2d_normalized": kp.tolist(),
               "frame": "pixels of the input image, (0, 0) the centre of the top-left pixel, "
                        "x right, y down; normalized: [-1, 1] (the kernels' pixel-centre convention)"}
        in_pixels = lambda p: np.concatenate([(p[:, :2] + 1.0) * scale, p[:, 2:] * scale.mean()], 1)  # noqa: E731
        if "keypoints_3d" in pred:
            k3 = pred["keypoints_3d"][0].cpu().numpy().astype(np.float64)
            rec.update({"keypoints_3d": in_pixels(k3).tolist(), "keypoints_3d_normalized": k3.tolist(),
                        "depth_note": "keypoints_3d: the 2D keypoints with the depth of the 3D "
                                      "structure fitted to them; fitted_3d: "
                                      "the 3D structure fitted to them, x and y its projection; "
                                      "z in the units of x (pixels); its sign is a gauge (weak "
                                      "perspective cannot tell a shape from its mirror)"})
        if "fitted_3d" in pred:
            rec.update({"fitted_3d": in_pixels(pred["fitted_3d"][0].cpu().numpy().astype(np.float64)).tolist(),
                        "rotation": pred["rotation"][0].cpu().tolist(),
                        "scale": float(pred["scale"][0]),
                        "alpha": pred["alpha"][0].cpu().tolist()})
        stem = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(a.out, f"{stem}.json"), "w") as f:
            json.dump(rec, f, indent=1)
        big = max(256, min(W, H))
        view = np.asarray(rgb.resize((big, big), Image.BILINEAR))
        visualize.draw_keypoints(view, kp, edges, w, scale=1, top_edges=2 * len(kp),
                                 radius=max(2, big // 80)).save(
            os.path.join(a.out, f"{stem}_keypoints.png"))
        print(f"{path}: {len(kp)} keypoints -> {os.path.join(a.out, stem)}.json")
    return 0


def cmd_export(a):
    from .checkpoint import load_model

    model, state = load_model(a.checkpoint)
    out = model.structure()
    out.update({"checkpoint": state["path"], "step": int(state["step"]),
                "model_config": model.config.to_dict(),
                "conventions": "mean_shape (K, 3) centred, unit RMS radius; basis (n, K, 3); "
                               "P3D = S (M + alpha B) R^T + T; P2D = P3D[:, :2] * "
                               "projection_scales; coordinates of the image frame "
                               "(x right, y down, [-1, 1])"})
    folder = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(folder, exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"structure written to {a.out}")
    return 0


def cmd_demo(a):
    from .demo import run_demo

    if a.device is not None:
        _device(a.device)
    if a.steps is not None and a.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {a.steps}")
    metrics = run_demo(out=a.out, device=a.device, steps=a.steps, tiny=a.tiny, seed=a.seed,
                       progress=not a.no_progress)
    from .report import comparison_table

    print("\n".join(comparison_table(metrics)))
    print(f"report: {os.path.join(a.out, 'report.md')}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "infer": cmd_infer, "export": cmd_export,
            "demo": cmd_demo}


def _user_errors():
    from .data import DatasetError
    from .model.perceptual import WeightsError
    from .checkpoint import CheckpointError

    return (UsageError, DatasetError, CheckpointError, WeightsError, ValueError,
            FileNotFoundError, PermissionError, FloatingPointError)


def main(argv=None):
    parser = build_parser()
    prog = "kp3d"
    try:
        args = parser.parse_args(argv)
        prog = f"kp3d {args.command}"
        return COMMANDS[args.command](args)
    except SystemExit as exc:  # --help, or argparse exits
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("KP3D_DEBUG") == "1" or not isinstance(exc, _user_errors()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
