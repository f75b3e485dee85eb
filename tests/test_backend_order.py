"""backend="auto": the GPU order follows the committed GPU measurements, and the resolution
takes the first available backend of that order."""

import json
import pathlib

import pytest
import torch

from kp3d_kernels import _backend

ROOT = pathlib.Path(__file__).resolve().parent.parent
# One row per op at the reference shape, forward + backward (the edge map: gaussian falloff).
REFERENCE_SHAPE = {"B": 64, "K": 32}
GPU_BACKENDS = ("cuda", "triton")


def order_from_measurements(path):
    """The GPU backends by the sum, over the ops, of their forward + backward medians at the
    reference shape; every op must have a figure for every backend."""
    rows = json.loads(path.read_text())["benchmarks"]
    totals, ops = {b: 0.0 for b in GPU_BACKENDS}, {b: set() for b in GPU_BACKENDS}
    for row in rows:
        p = row["params"]
        if (p["backend"] not in GPU_BACKENDS or p["direction"] != "fwd+bwd"
                or any(p.get(k) != v for k, v in REFERENCE_SHAPE.items())
                or p.get("falloff", "gaussian") != "gaussian" or p.get("D", 2) != 2):
            continue
        assert p["op"] not in ops[p["backend"]], f"two rows for {p['op']} / {p['backend']}"
        ops[p["backend"]].add(p["op"])
        totals[p["backend"]] += row["stats"]["median"]
    all_ops = {"edge_map", "soft_argmax", "nearest_neighbor", "repulsion_loss"}
    for b in GPU_BACKENDS:
        assert ops[b] == all_ops, f"{b}: figures for {sorted(ops[b])} only"
    return tuple(sorted(GPU_BACKENDS, key=totals.get))


def test_gpu_order_follows_the_committed_measurements():
    path = ROOT / _backend.GPU_EVIDENCE
    assert path.is_file(), f"{_backend.GPU_EVIDENCE} is missing"
    assert _backend.GPU_ORDER == order_from_measurements(path)


def test_auto_takes_the_first_available(monkeypatch):
    available = set()
    monkeypatch.setattr(_backend, "_why_unavailable",
                        lambda b, d: None if b in available or b == "torch" else "absent")
    cuda = torch.device("cuda")
    assert _backend.resolve("auto", cuda) == "torch"
    for name in reversed(_backend.GPU_ORDER):
        available.add(name)
        assert _backend.resolve("auto", cuda) == name
    assert _backend.resolve("auto", cuda) == _backend.GPU_ORDER[0]
    available.add("cpu")
    assert _backend.resolve("auto", torch.device("cpu")) == "cpu"


def test_auto_on_this_machine():
    cpu = _backend.resolve("auto", torch.device("cpu"))
    assert cpu == ("cpu" if "cpu" in _backend.available_backends("cpu") else "torch")
    if torch.cuda.is_available():
        gpu = _backend.available_backends("cuda")
        expected = next((b for b in _backend.GPU_ORDER if b in gpu), "torch")
        assert _backend.resolve("auto", torch.device("cuda")) == expected
    else:
        pytest.skip("no CUDA device: the GPU part needs one")
