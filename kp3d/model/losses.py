"""Training losses: projection, repulsion, canonicalisation, and their weighted sum with the
reconstruction loss (`kp3d.model.perceptual`)."""

from dataclasses import dataclass

import torch

from kp3d_kernels import repulsion_loss

PROJECTION_LOSSES = ("l1", "l2", "huber")


def projection_loss(projected: torch.Tensor, keypoints: torch.Tensor, kind: str = "huber",
                    delta: float = 0.02) -> torch.Tensor:
    """Mean over points of the 2D reprojection error |P3D Pi - P2D| of (B, K, 2) point sets.

    kind: "l2" (squared distance), "l1" (distance), "huber" (pseudo-Huber of the distance,
    ``delta (sqrt(1 + d^2 / delta^2) - 1)``, C3DPO's robust form: quadratic below delta, linear
    above). The distance uses a safe norm (gradient 0 where it is 0).
    """
    d2 = (projected - keypoints).pow(2).sum(-1)
    if kind == "l2":
        return d2.mean()
    if kind == "l1":
        return torch.sqrt(d2 + 1e-12).mean()
    if kind == "huber":
        return (delta * (torch.sqrt(1 + d2 / (delta * delta)) - 1)).mean()
    raise ValueError(f"unknown projection loss {kind!r} (expected one of {', '.join(PROJECTION_LOSSES)})")


def canonicalization_loss(canonical: torch.Tensor, recovered: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the canonical shapes and the ones recovered from their
    randomly rotated copies (C3DPO)."""
    return (canonical - recovered).abs().mean()


@dataclass
class LossWeights:
    """The weight of each term (0 leaves a term out) and the terms' own settings."""

    reconstruction: float = 1.0
    projection: float = 1.0
    repulsion: float = 0.1
    canonicalization: float = 1.0
    projection_kind: str = "huber"
    projection_delta: float = 0.02
    repulsion_bandwidth: float = 0.1


def total_loss(out: dict, reconstruction_fn, weights: LossWeights, *, backend: str = "auto",
               detach_projection_target: bool = False):
    """The weighted sum of the loss terms of a `KeypointModel.forward` output.

    Returns (total, {name: float value}). The projection loss compares the structure's
    projection with the keypoints; detach_projection_target keeps it from moving the detector.
    """
    terms = {"reconstruction": reconstruction_fn(out["reconstruction"].float(), out["target"].float())}
    if weights.repulsion > 0:
        terms["repulsion"] = repulsion_loss(out["keypoints"].float(), weights.repulsion_bandwidth,
                                            reduction="mean", backend=backend)
    if "projected" in out and weights.projection > 0:
        target = out["keypoints"].float()
        terms["projection"] = projection_loss(out["projected"],
                                              target.detach() if detach_projection_target else target,
                                              weights.projection_kind, weights.projection_delta)
    if "canonical_recovered" in out and weights.canonicalization > 0:
        terms["canonicalization"] = canonicalization_loss(out["canonical"], out["canonical_recovered"])
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


__all__ = ["projection_loss", "canonicalization_loss", "LossWeights", "total_loss",
           "PROJECTION_LOSSES"]
