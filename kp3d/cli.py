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

from .config import add_arguments as add_config_arguments
from .config import from_arguments as config_from_arguments
from .errors import ConfigError, UsageError

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser():
    p = _Parser(prog="kp3d", description="Unsupervised 2D keypoints, links and 3D structure "
                "from single images of one category (Wang, Cao, Bernard, CVPR 2024).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a model", description="Train a model; checkpoints "
                       "(ckpt-*.pt), metrics.csv and pictures go under --out. Every field of the "
                       "configuration (kp3d.config) is an option; later sources win: the "
                       "defaults, --preset, --config FILE, then the options given.")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as JSON (a --config FILE) and exit")
    t.add_argument("--eval", action="store_true", help="evaluate at the end (writes OUT/metrics.json)")
    t.add_argument("--eval-split", choices=("val", "test"), default="val",
                   help="with --eval: val (default; choose settings on it) or test (published figures)")
    t.add_argument("--regress-images", type=int, default=0,
                   help="with --eval: images to fit the regressor (0 = all)")
    t.add_argument("--test-images", type=int, default=0,
                   help="with --eval: images of the scored split (0 = all)")
    add_config_arguments(t)

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
    from .eval.evaluate import evaluate_model
    from .train.trainer import train

    config = config_from_arguments(a)
    if a.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    _device(config.train.device)
    if a.regress_images < 0 or a.test_images < 0:
        raise UsageError("--regress-images and --test-images must be >= 0")
    if config.train.vgg_weights and not os.path.isfile(config.train.vgg_weights):
        raise UsageError(f"--vgg-weights: file not found: {config.train.vgg_weights}")
    summary = train(config, resume=a.resume, log=lambda m: print(m, file=sys.stderr))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained to step {summary['step']}; checkpoint {summary.get('checkpoint')}")
    if a.eval:
        from .checkpoint import load_model

        out, device = config.train.out, config.train.device
        model, _ = load_model(out, device)
        metrics, _ = evaluate_model(model, config.data.spec, split=a.eval_split, device=device,
                                    regress_length=a.regress_images or None,
                                    test_length=a.test_images or None)
        metrics["checkpoint"], metrics["step"] = summary.get("checkpoint"), int(summary["step"])
        _write_metrics(metrics, out)
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
    """The errors a user can fix: printed as one line. Anything else is a bug and keeps its
    traceback."""
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .model.perceptual import WeightsError

    return (UsageError, ConfigError, DatasetError, CheckpointError, WeightsError,
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
