"""Training losses: projection, repulsion, canonicalisation, and their weighted sum (with the
reconstruction and, where the model computes them, the equivariance and part-colour terms)."""

from dataclasses import dataclass

import torch

from kp3d_kernels import repulsion_loss

PROJECTION_LOSSES = ("l1", "l2", "huber")


def projection_loss(projected, keypoints, kind="huber", delta=0.02):
    """Mean over points of the 2D reprojection error |P3D Pi - P2D|.

    kind: "l2" (squared distance), "l1" (distance), "huber" (pseudo-Huber of the distance,
    ``delta (sqrt(1 + d^2 / delta^2) - 1)``, C3DPO's robust form: quadratic below delta, linear
    above). The distance uses a safe norm (gradient 0 where it is 0).
    """
    diff = projected - keypoints
    d2 = diff.pow(2).sum(-1)
    if kind == "l2":
        return d2.mean()
    if kind == "l1":
        return torch.sqrt(d2 + 1e-12).mean()
    if kind == "huber":
        return (delta * (torch.sqrt(1 + d2 / (delta * delta)) - 1)).mean()
    raise ValueError(f"unknown projection loss {kind!r} (expected one of {', '.join(PROJECTION_LOSSES)})")


def repulsion(keypoints, bandwidth, backend="auto"):
    """The nearest-neighbour repulsion loss (the kernels op), mean over the batch."""
    return repulsion_loss(keypoints.float(), bandwidth, reduction="mean", backend=backend)


def canonicalization_loss(canonical, recovered):
    """Mean absolute difference between the canonical shape and the one recovered from its
    randomly rotated copy (C3DPO)."""
    return (canonical - recovered).abs().mean()


@dataclass
class LossWeights:
    reconstruction: float = 1.0
    projection: float = 1.0
    repulsion: float = 0.05
    canonicalization: float = 1.0
    equivariance: float = 1.0
    part_colour: float = 1.0
    templates: float = 1.0
    projection_kind: str = "huber"
    projection_delta: float = 0.02
    repulsion_bandwidth: float = 0.1


def total_loss(out, target, reconstruction_fn, weights: LossWeights, *, backend="auto"):
    """Weighted sum of the loss terms of a model output. Returns (total, {name: detached value}).

    out: the dict of `KeypointModel.forward` (the projection target is its "points_2d", the
    keypoints and any refined copies; an optional "projection_target" replaces them, e.g.
    detached during a warm-up); target: the images the decoder reconstructs, its "target"
    (B, 3, S, S).
    """
    terms = {}
    terms["reconstruction"] = reconstruction_fn(out["reconstruction"].float(), target.float())
    if weights.repulsion > 0:
        terms["repulsion"] = repulsion(out["keypoints"], weights.repulsion_bandwidth, backend)
    if "projected" in out:
        if weights.projection > 0:
            target_2d = out.get("projection_target", out.get("points_2d", out["keypoints"])).float()
            terms["projection"] = projection_loss(out["projected"], target_2d,
                                                  weights.projection_kind, weights.projection_delta)
        if weights.canonicalization > 0 and "canonical_recovered" in out:
            terms["canonicalization"] = canonicalization_loss(out["canonical"],
                                                              out["canonical_recovered"])
    if "equivariance" in out and weights.equivariance > 0:  # computed by the model (its detector)
        terms["equivariance"] = out["equivariance"]
    if "part_colour" in out and weights.part_colour > 0:  # computed by the model (part maps)
        terms["part_colour"] = out["part_colour"]
    if "templates" in out and weights.templates > 0:  # computed by the model (refinement)
        terms["templates"] = out["templates"]
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


__all__ = ["projection_loss", "repulsion", "canonicalization_loss", "LossWeights", "total_loss",
           "PROJECTION_LOSSES"]
