"""Checkpoints: written atomically (temp file + fsync + rename), read with weights_only=True;
`load_model` rebuilds the model a checkpoint holds.

A checkpoint is a dict {"format": "kp3d-checkpoint", "version": 2, "model_config", "train_config",
"step", "model", "optimizer", "scaler", "rng", ...} holding only tensors and plain Python
values, so `torch.load(..., weights_only=True)` reads it without unpickling any code.
"""

import os
import random
import re
import tempfile
import zipfile

import numpy as np
import torch

from .model import KeypointModel, ModelConfig

FORMAT = "kp3d-checkpoint"
# 2: the model is the paper's method alone; version 1 models carried experiment branches
# (refined copies, a view head, other decoder inputs) that this kp3d no longer has
VERSION = 2
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not a kp3d checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def save_atomic(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then os.replace."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_checkpoint(path, map_location="cpu"):
    """Read and check a kp3d checkpoint; raise CheckpointError with a one-line reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        newest = find_latest(path)
        if newest is None:
            raise CheckpointError(f"no checkpoint (ckpt-*.pt) in folder {path}")
        path = newest
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt or truncated file "
                              f"({msg[:120]})") from None
    except Exception as exc:  # pickle.UnpicklingError for foreign objects and other pickles
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: not a plain-tensor kp3d "
                              f"checkpoint ({msg[:120]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kp3d checkpoint (a foreign or unrelated torch file)")
    if obj.get("version") == 1:
        raise CheckpointError(f"{path} was written by an older kp3d (checkpoint version 1), whose "
                              f"model had options this kp3d no longer has; retrain it with this "
                              f"version")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported kp3d checkpoint version {obj.get('version')!r} "
                              f"(this kp3d reads version {VERSION})")
    for key in ("model_config", "model", "step"):
        if key not in obj:
            raise CheckpointError(f"{path}: kp3d checkpoint without {key!r} (incomplete file)")
    obj["path"] = path
    return obj


def list_checkpoints(folder):
    """[(step, path)] of ckpt-*.pt files in folder, by step."""
    if not os.path.isdir(folder):
        return []
    out = []
    for name in os.listdir(folder):
        m = _NAME.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(folder, name)))
    return sorted(out)


def find_latest(folder):
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(folder, keep):
    for _, path in list_checkpoints(folder)[:-keep]:
        try:
            os.unlink(path)
        except OSError:
            pass


# ----------------------------------------------------------------------------- RNG states

def rng_state(device=None):
    """The torch, CUDA, numpy and Python RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "python": _py_state_to_plain(random.getstate())}
    if torch.cuda.is_available() and device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state, device=None):
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_plain_to_py_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and device is not None \
            and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def _py_state_to_plain(s):
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _plain_to_py_state(s):
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def load_model(path, device="cpu"):
    """(model in eval mode, checkpoint dict) from a checkpoint file (or a run folder: its newest).

    Raises CheckpointError with a one-line reason when the file is missing, unreadable, not a
    kp3d checkpoint, from an older kp3d, or holds a model this kp3d cannot build."""
    state = load_checkpoint(path)
    try:
        model = KeypointModel(ModelConfig.from_dict(dict(state["model_config"])))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        msg = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{state['path']}: the model in the checkpoint does not match "
                              f"this kp3d ({msg})") from None
    return model.to(device).eval(), state
