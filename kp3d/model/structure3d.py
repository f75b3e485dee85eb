"""The 3D structure: rotations, the linear shape model, weak-perspective projection, and the
lifter that predicts the per-image pose and shape coefficients from the 2D keypoints.

Conventions. Shapes are (B, K, 3) row-vector point sets; a rotation acts as ``X @ R^T``.
The camera frame is the image frame of the 2D keypoints: x right, y down (both in [-1, 1]),
z the depth. ``P3D = S * (M + alpha B) R^T + T``, and the projection keeps x and y scaled by
the learnable ``Pi = [[s1, 0], [0, s2], [0, 0]]``: ``P2D = P3D Pi``.

Gauges (see docs/method.md):
- the mean shape is used normalised, zero centroid and unit RMS radius, and every basis shape
  has a zero centroid, so the scale lives in S and the translation in T alone;
- ``s1 s2 = 1`` (s1 = exp(a), s2 = exp(-a)): Pi keeps only the aspect ratio, the overall
  scale is S's;
- ``T_z = 0`` (depth translation is unobservable under weak perspective) and T_xy is solved in
  closed form (the 2D centroid), S is predicted positive, R has det +1;
- rotation leaking into the basis is discouraged by the C3DPO canonicalisation loss.
"""


import torch
from torch import nn
from torch.nn import functional as F


# ----------------------------------------------------------------------------- rotations

def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) rotation matrices (Zhou et al. 2019, Gram-Schmidt on two columns).

    The result is orthonormal with determinant +1 for every input whose two 3-vectors are not
    parallel; the map is continuous, unlike Euler angles or quaternions-to-matrix inverses.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1, eps=1e-8)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)  # columns b1, b2, b3


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Inverse of `rotation_6d_to_matrix` on rotation matrices: the first two columns."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (direction = axis, norm = angle) -> (..., 3, 3), Rodrigues' formula.

    Smooth at zero (uses the Taylor series of sin(t)/t and (1 - cos t)/t^2 for small angles).
    """
    theta2 = (v * v).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    Kx = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(Kx)
    return eye + a * Kx + b * (Kx @ Kx)


def random_rotations(n: int, *, generator=None, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(n, 3, 3) rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = (q / q.norm(dim=-1, keepdim=True)).to(dtype)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], dim=-1)
    return R.reshape(n, 3, 3).to(device)


# ----------------------------------------------------------------------------- shape model

def normalize_shape(X: torch.Tensor) -> torch.Tensor:
    """Zero centroid and unit RMS radius over the K points (last-but-one axis)."""
    Xc = X - X.mean(dim=-2, keepdim=True)
    rms = Xc.pow(2).sum(-1).mean(-1, keepdim=True).unsqueeze(-1).clamp_min(1e-12).sqrt()
    return Xc / rms


class ShapeModel(nn.Module):
    """Mean shape M (K x 3), basis B (n x 3K) and the weak-perspective projection Pi.

    ``mean_shape`` is the gauge-fixed (centred, unit-RMS) M; ``basis`` the (n, K, 3) centred
    basis. ``projection_scales`` returns (s1, s2) with s1 s2 = 1.
    """

    def __init__(self, num_keypoints: int, num_basis: int = 2, *, learn_aspect: bool = True,
                 generator=None):
        super().__init__()
        K, n = num_keypoints, num_basis
        self.num_keypoints, self.num_basis = K, n
        # A random, non-planar start: planar M is a saddle (depth would get no gradient).
        self.mean_raw = nn.Parameter(torch.randn(K, 3, generator=generator) * 0.5)
        self.basis_raw = nn.Parameter(torch.randn(n, K, 3, generator=generator) * 0.01)
        if learn_aspect:
            self.log_aspect = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("log_aspect", torch.zeros(()))

    @property
    def mean_shape(self) -> torch.Tensor:
        return normalize_shape(self.mean_raw)

    @property
    def basis(self) -> torch.Tensor:
        return self.basis_raw - self.basis_raw.mean(dim=-2, keepdim=True)

    def projection_scales(self) -> torch.Tensor:
        """(2,) = (s1, s2), positive, with s1 * s2 = 1 (the overall scale lives in S)."""
        a = self.log_aspect
        return torch.stack([torch.exp(a), torch.exp(-a)])

    def projection_matrix(self) -> torch.Tensor:
        """Pi (3, 2) = [[s1, 0], [0, s2], [0, 0]]."""
        s = self.projection_scales()
        Pi = torch.zeros(3, 2, dtype=s.dtype, device=s.device)
        return Pi.index_put((torch.tensor([0, 1]), torch.tensor([0, 1])), s)

    def canonical(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, n) -> (B, K, 3) canonical shapes M + alpha B."""
        M = self.mean_shape
        if self.num_basis == 0:
            return M.expand(alpha.shape[0], -1, -1)
        return M + torch.einsum("bn,nkd->bkd", alpha, self.basis)

    def pose(self, X: torch.Tensor, R: torch.Tensor, S: torch.Tensor, T: torch.Tensor):
        """P3D = S X R^T + T; X (B, K, 3), R (B, 3, 3), S (B,), T (B, 3)."""
        return S[:, None, None] * (X @ R.transpose(-1, -2)) + T[:, None, :]

    def project(self, P3D: torch.Tensor) -> torch.Tensor:
        """(B, K, 3) -> (B, K, 2) = P3D Pi."""
        return P3D[..., :2] * self.projection_scales()

    def to_image_frame(self, P3D: torch.Tensor) -> torch.Tensor:
        """3D points in the frame of the 2D keypoints: x, y through Pi, z scaled by sqrt(s1 s2) = 1."""
        return torch.cat([self.project(P3D), P3D[..., 2:]], dim=-1)


# ----------------------------------------------------------------------------- lifter

class ResMLP(nn.Module):
    """A small residual MLP: Linear -> [LayerNorm, SiLU, Linear] x depth (residual) -> head."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class Lifter(nn.Module):
    """Predicts (alpha, R, S, T) of each image from its 2D keypoints (C3DPO-style).

    The 2D keypoints are centred and divided by their RMS radius before the MLP, which makes
    the prediction of alpha and R invariant to image translation and scale; T_xy is the 2D
    centroid divided by (s1, s2) (exact because every shape has a zero centroid), T_z = 0, and
    S = exp(log-scale output) * RMS radius, positive.
    """

    def __init__(self, num_keypoints: int, num_basis: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        self.num_basis = num_basis
        self.mlp = ResMLP(2 * num_keypoints, num_basis + 6 + 1, hidden, depth)
        with torch.no_grad():  # start at R = I, S = RMS radius, alpha = 0
            last = self.mlp.out[-1]
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[num_basis:num_basis + 6] = torch.tensor(_IDENTITY_6D)

    def forward(self, kp2d: torch.Tensor, scales: torch.Tensor):
        centroid = kp2d.mean(dim=1)
        kc = kp2d - centroid[:, None]
        rms = kc.pow(2).sum(-1).mean(-1).clamp_min(1e-8).sqrt()
        out = self.mlp((kc / rms[:, None, None]).flatten(1))
        n = self.num_basis
        alpha = out[:, :n]
        R = rotation_6d_to_matrix(out[:, n:n + 6])
        S = rms * torch.exp(out[:, n + 6].clamp(-5, 5))
        T = torch.cat([centroid / scales, torch.zeros_like(centroid[:, :1])], dim=-1)
        return alpha, R, S, T


class Canonicalizer(nn.Module):
    """C3DPO's canonicalisation network: from a randomly rotated canonical shape, recover its
    basis coefficients. Training it jointly (loss |M + psi(X R'^T) B - X|) makes the set of
    canonical shapes contain no rotated copies of one another, so rotation cannot leak into B."""

    def __init__(self, num_keypoints: int, num_basis: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        self.mlp = ResMLP(3 * num_keypoints, max(num_basis, 1), hidden, depth)
        self.num_basis = num_basis

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.mlp(X.flatten(1))[:, :self.num_basis]


def procrustes_rotation(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Rotation R (det +1) minimising |A R^T - B| for (..., K, 3) point sets (Kabsch)."""
    H = A.transpose(-1, -2) @ B
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.transpose(-1, -2) @ U.transpose(-1, -2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return Vh.transpose(-1, -2) @ D @ U.transpose(-1, -2)


def angle_between(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (radians) between rotations."""
    c = ((R1.transpose(-1, -2) @ R2).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.arccos(c.clamp(-1.0, 1.0))


__all__ = ["rotation_6d_to_matrix", "matrix_to_rotation_6d", "axis_angle_to_matrix",
           "random_rotations", "normalize_shape", "ShapeModel", "Lifter", "Canonicalizer",
           "ResMLP", "procrustes_rotation", "angle_between"]
