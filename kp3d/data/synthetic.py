"""Procedural synthetic categories: a common scene renderer and the on-the-fly dataset.

Each category module provides ``LANDMARK_NAMES``, ``EYE_INDICES`` and
``sample_scene(rng, size) -> Scene``. A scene is a list of mesh parts already posed in the
right-handed world frame (x right, y up, z towards the viewer), the landmarks in the same frame,
the orthographic camera (centre and pixels per unit), the lighting and a background image.
Rendering, landmark projection and z-buffer visibility are shared here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import render
from .base import DatasetError, DatasetInfo, check_image_size, check_split, pack_item

SPLIT_CODES = {"train": 0, "regress": 1, "test": 2, "val": 3}  # each split its own seed stream
DEFAULT_LENGTHS = {"train": 10000, "val": 1000, "regress": 1000, "test": 1000}


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


def render_scene(scene: Scene, size: int):
    """Render a scene. Returns (image (S, S, 3) in [0, 1], landmarks_2d (L, 2), landmarks_3d (L, 3), visible (L,))."""
    S = size
    nv = sum(len(p.verts) for p in scene.parts)
    V = np.concatenate([p.verts for p in scene.parts])
    col = np.empty((nv, 3))
    spc = np.empty(nv)
    faces = []
    off = 0
    for p in scene.parts:
        n = len(p.verts)
        col[off:off + n] = p.colour
        spc[off:off + n] = p.spec
        faces.append(p.faces + off)
        off += n
    F = np.concatenate(faces)
    s = scene.scale
    xy = scene.to_pixels(V)
    z = s * V[:, 2]
    x, y = V[:, 0], V[:, 1]
    f0, f1, f2 = F[:, 0], F[:, 1], F[:, 2]
    fn_z = (x[f1] - x[f0]) * (y[f2] - y[f0]) - (y[f1] - y[f0]) * (x[f2] - x[f0])
    front = F[fn_z > 0]  # back-face culling (outward winding, viewer along +z)
    pid, tri, bary, zbuf = render.rasterize(xy, z, front, S)
    vn = render.vertex_normals(V, F)
    fv = front[tri]
    attr = np.concatenate([vn, col, spc[:, None]], 1)  # interpolate normal, albedo, specular together
    a = bary[:, 0:1] * attr[fv[:, 0]] + bary[:, 1:2] * attr[fv[:, 1]] + bary[:, 2:3] * attr[fv[:, 2]]
    nrm, alb, sp = a[:, 0:3], a[:, 3:6], a[:, 6]
    rgb = render.shade(nrm, alb, sp, scene.light_dir, scene.ambient, scene.diffuse, scene.shininess, scene.light_colour)
    img = scene.background.reshape(S * S, 3).copy()
    img[pid] = rgb
    img = img.reshape(S, S, 3)

    L = scene.landmarks
    lm2d = scene.to_pixels(L)
    lm3d = np.concatenate([lm2d, s * L[:, 2:3]], 1)
    r = np.rint(lm2d).astype(np.int64)
    inside = (r[:, 0] >= 0) & (r[:, 0] < S) & (r[:, 1] >= 0) & (r[:, 1] < S)
    visible = np.zeros(len(L), bool)
    if inside.any():
        ri = r[inside]
        # nearest surface depth in a 3x3 neighbourhood, so silhouette landmarks are not lost to sampling
        # visible when no surface lies more than a small tolerance in front of it at its pixel
        zc = zbuf[ri[:, 1] * S + ri[:, 0]]
        visible[inside] = lm3d[inside, 2] >= zc - scene.occlusion_tol * s
    return img, lm2d, lm3d, visible


def _categories():
    """category name -> (module, keyword arguments of its sample_scene)."""
    from . import synthetic_car, synthetic_face

    return {"face": (synthetic_face, {"profile": "celeba"}),
            "face-wide": (synthetic_face, {"profile": "wide"}), "car": (synthetic_car, {})}


class SyntheticDataset(torch.utils.data.Dataset):
    """On-the-fly procedural dataset; item ``i`` of a split is a pure function of (seed, split, i),
    and each split draws from its own seed stream, so the splits share no scene."""

    def __init__(self, spec: str, category: str, split: str = "train", image_size: int = 64, *, seed: int = 0,
                 length: int | None = None):
        if category not in _categories():
            raise DatasetError(f"dataset {spec!r}: unknown synthetic category {category!r} "
                               f"(available: {', '.join(sorted(_categories()))})")
        check_split(spec, split)
        self.spec = spec
        self.category = category
        self.split = split
        self.image_size = check_image_size(spec, image_size)
        self.seed = int(seed)
        if length is None:
            length = DEFAULT_LENGTHS[split]
        if int(length) < 1:
            raise DatasetError(f"dataset {spec!r}: length must be >= 1, got {length!r}")
        self.length = int(length)
        names = list(self.module.LANDMARK_NAMES)
        self.info = DatasetInfo(name=spec, landmark_names=names, num_landmarks=len(names), has_3d=True,
                                eye_indices=self.module.EYE_INDICES, image_size=self.image_size)

    @property
    def module(self):  # looked up, not stored: the dataset must pickle (DataLoader workers, spawn)
        return _categories()[self.category][0]

    def __len__(self):
        return self.length

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, SPLIT_CODES[self.split], int(i), 0x6B703364])

    def render(self, i: int, pose=None):
        """Return (image (S, S, 3) float in [0, 1], lm2d, lm3d, visible, yaw_deg) for item i;
        pose: (yaw, pitch, roll) in degrees in place of the item's own."""
        rng = self.rng(i)
        scene = self.module.sample_scene(rng, self.image_size, pose=pose,
                                         **_categories()[self.category][1])
        img, lm2d, lm3d, vis = render_scene(scene, self.image_size)
        img = render.finish_image(rng, img, self.image_size)
        return img, lm2d, lm3d, vis, scene.yaw_deg

    def __getitem__(self, i):
        i = int(i)
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of {self.length} images")
        i %= self.length
        img, lm2d, lm3d, vis, yaw = self.render(i)
        return pack_item(img, i, self.info.num_landmarks, lm2d, lm3d, vis, yaw)
