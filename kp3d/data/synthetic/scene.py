"""The scene kit the synthetic categories build on: mesh parts posed in a right-handed world
frame (x right, y up, z towards the viewer), the landmarks in the same frame, an orthographic
camera (centre and pixels per unit), the lighting and a background image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Part:
    verts: np.ndarray  # (V, 3) world frame
    faces: np.ndarray  # (F, 3)
    colour: np.ndarray  # (V, 3) albedo in [0, 1]
    spec: np.ndarray  # (V,) specular strength


@dataclass
class Scene:
    parts: list
    landmarks: np.ndarray  # (L, 3) world frame
    centre: tuple  # pixel position of the world origin (x, y)
    scale: float  # pixels per world unit
    light_dir: np.ndarray  # (3,) unit, world frame
    ambient: float
    diffuse: float
    light_colour: np.ndarray
    background: np.ndarray  # (S, S, 3)
    yaw_deg: float = float("nan")
    pitch_deg: float = float("nan")
    roll_deg: float = float("nan")
    object_centre: np.ndarray | None = None  # (3,) world frame: the posed centre of the object (the head's)
    shininess: float = 20.0
    occlusion_tol: float = 0.05  # world units of depth slack for the visibility test

    def to_pixels(self, points):
        """(N, 2) pixel positions (x right, y down) of (N, 3) world points: the orthographic camera."""
        cx, cy = self.centre
        return np.stack([cx + self.scale * points[:, 0], cy - self.scale * points[:, 1]], 1)


def make_part(points, faces, colour, spec=0.0) -> Part:
    """A mesh part; colour is (3,) or (V, 3), spec a scalar or (V,) (broadcast when rendered)."""
    return Part(np.asarray(points, float), faces, np.asarray(colour, float), np.asarray(spec, float))


def ellipsoid_map(centre, radii, R=None):
    """Return (M, c) so that unit-sphere point u maps to c + M u."""
    M = np.diag(np.asarray(radii, float))
    if R is not None:
        M = R @ M
    return M, np.asarray(centre, float)


def extreme_point(M, c, direction):
    """Point of the ellipsoid {c + M u, |u| = 1} furthest along ``direction``."""
    d = np.asarray(direction, float)
    m = M.T @ d
    return c + M @ (m / (np.linalg.norm(m) + 1e-12))
