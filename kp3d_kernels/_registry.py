"""Fake (meta) implementations and autograd formulas of the low-level ops.

Two families share one schema (csrc/ops.cpp): the compiled ops `kp3d_kernels::<name>` (CPU and
CUDA kernels) and the Triton ops `kp3d_kernels::triton_<name>` (kp3d_kernels/triton). Each
family's forward op gets its autograd formula here, which calls that family's backward op.
"""

import torch

OP_NAMES = ("edge_map_fwd", "edge_map_bwd", "soft_argmax_fwd", "soft_argmax_bwd",
            "nn_fwd", "nn_bwd", "repulsion_fwd", "repulsion_bwd")


class Family:
    """The eight low-level ops of one implementation family, as torch.ops overload packets."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        ns = torch.ops.kp3d_kernels
        for name in OP_NAMES:
            setattr(self, name, getattr(ns, prefix + name))

    def qualname(self, name):
        return f"kp3d_kernels::{self.prefix}{name}"


# ---- fake implementations: output shapes and dtypes only -------------------------------------

def _fake_edge_map_fwd(keypoints, weights, edges, height, width, sigma, gaussian):
    B = keypoints.shape[0]
    out = keypoints.new_empty((B, height, width))
    winner = keypoints.new_empty((B, height, width), dtype=torch.int32)
    return out, winner


def _fake_edge_map_bwd(grad_out, keypoints, weights, edges, winner, sigma, gaussian):
    return torch.empty_like(keypoints), torch.empty_like(weights)


def _fake_soft_argmax_fwd(heatmaps, temperature, softmax):
    B, K = heatmaps.shape[:2]
    return heatmaps.new_empty((B, K, 2)), heatmaps.new_empty((B, K, 2))


def _fake_soft_argmax_bwd(grad_coords, heatmaps, coords, stats, temperature, softmax):
    return torch.empty_like(heatmaps)


def _fake_nn_fwd(points):
    B, K = points.shape[:2]
    return points.new_empty((B, K)), points.new_empty((B, K), dtype=torch.int64)


def _fake_nn_bwd(grad_dist, points, dist, index):
    return torch.empty_like(points)


def _fake_repulsion_fwd(points, bandwidth):
    B, K = points.shape[:2]
    return (points.new_empty((B,)), points.new_empty((B, K)),
            points.new_empty((B, K), dtype=torch.int64))


def _fake_repulsion_bwd(grad_loss, points, dist, index, bandwidth):
    return torch.empty_like(points)


_FAKES = {name: globals()[f"_fake_{name}"] for name in OP_NAMES}


# ---- autograd -------------------------------------------------------------------------------

def _register_autograd(fam: Family):
    def edge_map_setup(ctx, inputs, output):
        keypoints, weights, edges, _, _, sigma, gaussian = inputs
        ctx.set_materialize_grads(False)  # the int32 winner has no gradient
        ctx.save_for_backward(keypoints, weights, edges, output[1])
        ctx.sigma, ctx.gaussian = sigma, gaussian

    def edge_map_backward(ctx, grad_out, _grad_winner):
        if grad_out is None:
            return None, None, None, None, None, None, None
        keypoints, weights, edges, winner = ctx.saved_tensors
        gk, gw = fam.edge_map_bwd(grad_out.contiguous(), keypoints, weights, edges, winner,
                                  ctx.sigma, ctx.gaussian)
        return gk, gw, None, None, None, None, None

    def soft_argmax_setup(ctx, inputs, output):
        heatmaps, temperature, softmax = inputs
        ctx.save_for_backward(heatmaps, output[0], output[1])
        ctx.temperature, ctx.softmax = temperature, softmax

    def soft_argmax_backward(ctx, grad_coords, _grad_stats):
        heatmaps, coords, stats = ctx.saved_tensors
        grad = fam.soft_argmax_bwd(grad_coords.contiguous(), heatmaps, coords, stats,
                                   ctx.temperature, ctx.softmax)
        return grad, None, None

    def nn_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output[0], output[1])

    def nn_backward(ctx, grad_dist, _grad_index):
        points, dist, index = ctx.saved_tensors
        return fam.nn_bwd(grad_dist.contiguous(), points, dist, index)

    def repulsion_setup(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # unused distances then give None, not zeros
        ctx.save_for_backward(inputs[0], output[1], output[2])
        ctx.bandwidth = inputs[1]

    def repulsion_backward(ctx, grad_loss, grad_dist, _grad_index):
        points, dist, index = ctx.saved_tensors
        grad = None
        if grad_loss is not None:
            grad = fam.repulsion_bwd(grad_loss.contiguous(), points, dist, index, ctx.bandwidth)
        if grad_dist is not None:  # the distances are outputs too; route their gradient
            extra = fam.nn_bwd(grad_dist.contiguous(), points, dist, index)
            grad = extra if grad is None else grad + extra
        return grad, None

    torch.library.register_autograd(fam.qualname("edge_map_fwd"), edge_map_backward,
                                    setup_context=edge_map_setup)
    torch.library.register_autograd(fam.qualname("soft_argmax_fwd"), soft_argmax_backward,
                                    setup_context=soft_argmax_setup)
    torch.library.register_autograd(fam.qualname("nn_fwd"), nn_backward, setup_context=nn_setup)
    torch.library.register_autograd(fam.qualname("repulsion_fwd"), repulsion_backward,
                                    setup_context=repulsion_setup)


def register_family(prefix: str, *, fakes: bool = True) -> Family:
    """Attach fake implementations (unless the ops were defined with them) and autograd."""
    fam = Family(prefix)
    if fakes:
        for name in OP_NAMES:
            torch.library.register_fake(fam.qualname(name))(_FAKES[name])
    _register_autograd(fam)
    return fam


fake_impl = _FAKES  # for families defined in Python with torch.library.custom_op
