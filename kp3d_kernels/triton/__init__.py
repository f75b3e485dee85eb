"""The `triton` backend: the eight low-level ops as `kp3d_kernels::triton_<name>` custom ops.

Same schemas, dtypes and semantics as the compiled ops of csrc/ops.cpp (float32 or float64,
contiguous; edges int64 (E, 2); weights (B, E)). Importing this package defines the ops with
their fake (meta) implementations; kp3d_kernels._dispatch.triton_family() attaches autograd.
The kernels run on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (set before this
import). See docs/triton-kernels.md.
"""

import torch
import triton  # noqa: F401  (ImportError here: the backend is unavailable)

from .._registry import fake_impl
from . import _config, edge_map, nearest_neighbor, soft_argmax

_FLOATS = (torch.float32, torch.float64)

# The schemas of csrc/ops.cpp, verbatim.
SCHEMAS = {
    "edge_map_fwd": "(Tensor keypoints, Tensor weights, Tensor edges, int height, int width, "
                    "float sigma, bool gaussian) -> (Tensor, Tensor)",
    "edge_map_bwd": "(Tensor grad_out, Tensor keypoints, Tensor weights, Tensor edges, "
                    "Tensor winner, float sigma, bool gaussian) -> (Tensor, Tensor)",
    "soft_argmax_fwd": "(Tensor heatmaps, float temperature, bool softmax) -> (Tensor, Tensor)",
    "soft_argmax_bwd": "(Tensor grad_coords, Tensor heatmaps, Tensor coords, Tensor stats, "
                       "float temperature, bool softmax) -> Tensor",
    "nn_fwd": "(Tensor points) -> (Tensor, Tensor)",
    "nn_bwd": "(Tensor grad_dist, Tensor points, Tensor dist, Tensor index) -> Tensor",
    "repulsion_fwd": "(Tensor points, float bandwidth) -> (Tensor, Tensor, Tensor)",
    "repulsion_bwd": "(Tensor grad_loss, Tensor points, Tensor dist, Tensor index, "
                     "float bandwidth) -> Tensor",
}


def _float(name, t, dtype=None):
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64 (the Python layer converts), got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of the other inputs ({dtype}), got {t.dtype}")
    return t.contiguous()


def _define(name, impl):
    op = torch.library.custom_op(f"kp3d_kernels::triton_{name}", impl, mutates_args=(),
                                 schema=SCHEMAS[name])
    op.register_fake(fake_impl[name])
    return op


def _edge_map_fwd(keypoints, weights, edges, height, width, sigma, gaussian):
    kp = _float("keypoints", keypoints)
    w = _float("weights", weights, kp.dtype)
    with _config.device_ctx(kp):
        return edge_map.forward(kp, w, edges.contiguous(), height, width, sigma, gaussian)


def _edge_map_bwd(grad_out, keypoints, weights, edges, winner, sigma, gaussian):
    kp = _float("keypoints", keypoints)
    with _config.device_ctx(kp):
        return edge_map.backward(_float("grad_out", grad_out, kp.dtype), kp,
                                 _float("weights", weights, kp.dtype), edges.contiguous(),
                                 winner.contiguous(), sigma, gaussian)


def _soft_argmax_fwd(heatmaps, temperature, softmax):
    h = _float("heatmaps", heatmaps)
    with _config.device_ctx(h):
        return soft_argmax.forward(h, temperature, softmax)


def _soft_argmax_bwd(grad_coords, heatmaps, coords, stats, temperature, softmax):
    h = _float("heatmaps", heatmaps)
    with _config.device_ctx(h):
        return soft_argmax.backward(_float("grad_coords", grad_coords, h.dtype), h,
                                    _float("coords", coords, h.dtype),
                                    _float("stats", stats, h.dtype), temperature, softmax)


def _nn_fwd(points):
    p = _float("points", points)
    with _config.device_ctx(p):
        return nearest_neighbor.nn_forward(p)


def _nn_bwd(grad_dist, points, dist, index):
    p = _float("points", points)
    with _config.device_ctx(p):
        return nearest_neighbor.nn_backward(_float("grad_dist", grad_dist, p.dtype), p,
                                            _float("dist", dist, p.dtype), index.contiguous())


def _repulsion_fwd(points, bandwidth):
    p = _float("points", points)
    with _config.device_ctx(p):
        return nearest_neighbor.repulsion_forward(p, bandwidth)


def _repulsion_bwd(grad_loss, points, dist, index, bandwidth):
    p = _float("points", points)
    with _config.device_ctx(p):
        return nearest_neighbor.repulsion_backward(_float("grad_loss", grad_loss, p.dtype), p,
                                                   _float("dist", dist, p.dtype),
                                                   index.contiguous(), bandwidth)


edge_map_fwd = _define("edge_map_fwd", _edge_map_fwd)
edge_map_bwd = _define("edge_map_bwd", _edge_map_bwd)
soft_argmax_fwd = _define("soft_argmax_fwd", _soft_argmax_fwd)
soft_argmax_bwd = _define("soft_argmax_bwd", _soft_argmax_bwd)
nn_fwd = _define("nn_fwd", _nn_fwd)
nn_bwd = _define("nn_bwd", _nn_bwd)
repulsion_fwd = _define("repulsion_fwd", _repulsion_fwd)
repulsion_bwd = _define("repulsion_bwd", _repulsion_bwd)

__all__ = ["edge_map_fwd", "edge_map_bwd", "soft_argmax_fwd", "soft_argmax_bwd", "nn_fwd",
           "nn_bwd", "repulsion_fwd", "repulsion_bwd", "SCHEMAS"]
