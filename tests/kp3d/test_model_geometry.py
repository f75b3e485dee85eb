"""Rotations, the shape model, the projection and the lifter's closed-form pieces."""

import math

import pytest
import torch

from kp3d.model.structure3d import (Lifter, ShapeModel, angle_between, axis_angle_to_matrix,
                                    matrix_to_rotation_6d, normalize_shape, procrustes_rotation,
                                    random_rotations, rotation_6d_to_matrix)


def _is_rotation(R, atol=1e-5):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    return (torch.allclose(R.transpose(-1, -2) @ R, eye, atol=atol)
            and torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=atol))


def test_6d_gives_rotations_with_det_plus_one():
    g = torch.Generator().manual_seed(0)
    d6 = torch.randn(500, 6, generator=g) * 3
    assert _is_rotation(rotation_6d_to_matrix(d6))


def test_6d_roundtrip():
    R = random_rotations(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert _is_rotation(R)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(R)), R, atol=1e-10)


def test_6d_gradient_is_finite():
    d6 = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rotation_6d_to_matrix, (d6,))


def test_axis_angle_rodrigues():
    v = torch.randn(100, 3, dtype=torch.float64)
    R = axis_angle_to_matrix(v)
    assert _is_rotation(R, 1e-10)
    # the axis is fixed, the angle is |v|
    assert torch.allclose((R @ v[..., None])[..., 0], v, atol=1e-10)
    assert torch.allclose(angle_between(torch.eye(3, dtype=torch.float64).expand_as(R), R),
                          v.norm(dim=-1).remainder(2 * math.pi).where(
                              v.norm(dim=-1).remainder(2 * math.pi) <= math.pi,
                              2 * math.pi - v.norm(dim=-1).remainder(2 * math.pi)), atol=1e-6)
    # smooth at zero: identity and a finite gradient
    z = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(axis_angle_to_matrix(z), torch.eye(3, dtype=torch.float64)[None])
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (z + 1e-9,))
    # a quarter turn about z sends x to y
    Rz = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))[0]
    assert torch.allclose(Rz @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)


def test_procrustes_recovers_rotation():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    R = random_rotations(4, generator=g, dtype=torch.float64)
    Rh = procrustes_rotation(A, A @ R.transpose(-1, -2))
    assert torch.allclose(Rh, R, atol=1e-8)


def test_normalize_shape_gauge():
    X = torch.randn(3, 7, 3) * 5 + 2
    N = normalize_shape(X)
    assert torch.allclose(N.mean(1), torch.zeros(3, 3), atol=1e-5)
    assert torch.allclose(N.pow(2).sum(-1).mean(-1), torch.ones(3), atol=1e-5)


def test_shape_model_gauges_and_projection():
    shape = ShapeModel(6, 2)
    with torch.no_grad():
        shape.log_aspect.fill_(0.3)
    s = shape.projection_scales()
    assert torch.all(s > 0) and torch.allclose(s.prod(), torch.tensor(1.0))
    Pi = shape.projection_matrix()
    assert Pi.shape == (3, 2) and Pi[2].abs().sum() == 0
    assert torch.allclose(torch.diagonal(Pi), s)
    assert torch.allclose(shape.basis.mean(1), torch.zeros(2, 3), atol=1e-6)
    alpha = torch.randn(4, 2)
    X = shape.canonical(alpha)
    assert X.shape == (4, 6, 3)
    R = random_rotations(4, generator=torch.Generator().manual_seed(0))
    S = torch.rand(4) + 0.5
    T = torch.randn(4, 3)
    P3D = shape.pose(X, R, S, T)
    manual = torch.stack([S[b] * (R[b] @ X[b].T).T + T[b] for b in range(4)])
    assert torch.allclose(P3D, manual, atol=1e-5)
    # P2D = P3D Pi
    assert torch.allclose(shape.project(P3D), P3D @ Pi, atol=1e-6)
    img = shape.to_image_frame(P3D)
    assert torch.allclose(img[..., :2], P3D @ Pi) and torch.allclose(img[..., 2], P3D[..., 2])


def test_lifter_translation_and_scale_are_closed_form():
    torch.manual_seed(0)
    K = 9
    lifter = Lifter(K, 2, hidden=32, depth=1)
    shape = ShapeModel(K, 2)
    kp = torch.rand(5, K, 2) * 1.6 - 0.8
    scales = shape.projection_scales()
    alpha, R, S, T = lifter(kp, scales)
    assert alpha.shape == (5, 2) and R.shape == (5, 3, 3) and S.shape == (5,) and T.shape == (5, 3)
    assert _is_rotation(R)
    assert torch.all(S > 0)
    assert torch.all(T[:, 2] == 0)
    # every shape is centred, so the projected centroid equals the 2D centroid
    P3D = shape.pose(shape.canonical(alpha), R, S, T)
    assert torch.allclose(shape.project(P3D).mean(1), kp.mean(1), atol=1e-5)
    # translation and scale invariance of alpha and R
    alpha2, R2, S2, _ = lifter(kp * 2 + 0.1, scales)
    assert torch.allclose(alpha2, alpha, atol=1e-5) and torch.allclose(R2, R, atol=1e-5)
    assert torch.allclose(S2, 2 * S, atol=1e-5)


def test_lifter_starts_at_identity_rotation():
    lifter = Lifter(5, 3, hidden=16, depth=1)
    _, R, _, _ = lifter(torch.randn(2, 5, 2), torch.ones(2))
    assert angle_between(R, torch.eye(3).expand_as(R)).max() < 0.2


@pytest.mark.parametrize("n", [0, 1, 3])
def test_shape_model_any_basis_size(n):
    shape = ShapeModel(4, n)
    assert shape.canonical(torch.zeros(2, n)).shape == (2, 4, 3)
