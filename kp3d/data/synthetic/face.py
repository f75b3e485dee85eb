"""``synthetic:face`` — a parametric 3D head with neck and shoulders.

Shape modes (each independent, drawn per image): head width, upper and lower head height,
jaw taper, face depth, eye size and spacing, eyebrow height and tilt, nose length (protrusion),
nose width, mouth width and opening, ear size, hairline height and hair volume.
Two pose-and-framing profiles (docs/data.md has their distributions):
- ``celeba`` (``synthetic:face``, the default): AutoLink's CelebA-in-the-wild protocol keeps
  photos whose face box covers at least 30 % of the frame, and CelebA is mostly near-frontal;
  so the head fills the frame (0.43 image sides per world unit) and turns yaw +-30 deg,
  pitch +-20 deg, roll +-15 deg.
- ``wide`` (``synthetic:face-wide``, 300W-LP-like): the same framing, yaw +-75 deg,
  pitch +-30 deg, roll +-20 deg, where the 3D structure needs a wide spread of views.
The head turns about the neck; the body follows 30 %.
"""

from __future__ import annotations

import numpy as np

from . import render
from .scene import Part, Scene, ellipsoid_map, extreme_point, make_part

LANDMARK_NAMES = [
    "left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right",  # the five MAFL landmarks, MAFL order
    "left_eye_outer", "left_eye_inner", "right_eye_inner", "right_eye_outer",
    "left_brow_outer", "left_brow_inner", "right_brow_inner", "right_brow_outer",
    "nose_bridge", "left_nostril", "right_nostril",
    "upper_lip", "lower_lip", "chin",
    "left_jaw", "right_jaw", "left_ear_lobe", "right_ear_lobe", "forehead",
]
EYE_INDICES = (0, 1)

HEAD = render.uv_sphere(22, 32)
EYE = render.uv_sphere(10, 14)
SMALL = render.uv_sphere(6, 10)
BODY = render.uv_sphere(8, 16)
# unit-sphere / superquadric points of the templates, computed once
P_HEAD = render.sphere_points(*HEAD[:2])
P_EYE = render.sphere_points(*EYE[:2])
P_SMALL = render.sphere_points(*SMALL[:2])
P_NECK = render.superquadric_points(*BODY[:2], 0.3, 1.0)
P_TORSO = render.superquadric_points(*BODY[:2], 0.8, 0.9)

SKIN_LIGHT = np.array([0.96, 0.80, 0.68])
SKIN_DARK = np.array([0.40, 0.26, 0.18])
HAIR = np.array([[0.07, 0.06, 0.05], [0.22, 0.14, 0.09], [0.42, 0.28, 0.16], [0.80, 0.66, 0.40],
                 [0.62, 0.60, 0.58], [0.55, 0.24, 0.10]])
IRIS = np.array([[0.30, 0.18, 0.08], [0.15, 0.10, 0.06], [0.25, 0.45, 0.65], [0.30, 0.45, 0.30]])


class _Attach:
    """Deferred Head.attach: collects surface-attached parts and points, then places them all
    with one vectorised surface lookup (the per-call overhead dominated the sampling time)."""

    def __init__(self, head):
        self.head = head
        self.jobs = []  # (target, key, local (n, 3), cx, cy, dz)

    def part(self, args, faces, colour, spec=0.0) -> Part:
        prt = make_part(np.zeros((0, 3)), faces, colour, spec)
        self.jobs.append((prt, None) + self._norm(args))
        return prt

    def point(self, key, args):
        self.jobs.append((None, key) + self._norm(args))

    @staticmethod
    def _norm(args):
        local, cx, cy = args[:3]
        dz = args[3] if len(args) > 3 else 0.0
        return (np.asarray(local, float).reshape(-1, 3), cx, cy, dz)

    def resolve(self, lm: dict):
        counts = [len(j[2]) for j in self.jobs]
        local = np.concatenate([j[2] for j in self.jobs])
        rep = lambda k: np.repeat([j[k] for j in self.jobs], counts)  # noqa: E731
        X = rep(3) + local[:, 0]
        Y = rep(4) + local[:, 1]
        Z = self.head.surface_z(X, Y) + local[:, 2] + rep(5)
        P = np.stack([X, Y, Z], 1)
        start = 0
        for (prt, key, *_), n in zip(self.jobs, counts):
            if prt is not None:
                prt.verts = P[start:start + n]
            else:
                lm[key] = P[start]
            start += n


class Head:
    """The deformed head ellipsoid: unit-sphere direction -> surface point, and depth lookup."""

    def __init__(self, w, h_up, h_low, d, jaw):
        self.w, self.h_up, self.h_low, self.d, self.jaw = w, h_up, h_low, d, jaw

    def taper(self, py):
        return 1.0 - self.jaw * np.minimum(np.maximum(-py, 0.0), 1.0) ** 1.5

    def point(self, p):
        p = np.asarray(p, float)
        px, py, pz = p[..., 0], p[..., 1], p[..., 2]
        X = px * self.w * self.taper(py)
        Y = py * np.where(py > 0, self.h_up, self.h_low)
        Z = pz * self.d * (1.0 - 0.12 * np.minimum(np.maximum(-py, 0.0), 1.0))
        return np.stack([X, Y, Z], -1)

    def surface_z(self, X, Y):
        """Depth of the front surface at (X, Y) (clamped to the silhouette)."""
        py = np.minimum(np.maximum(Y / np.where(Y > 0, self.h_up, self.h_low), -1.0), 1.0)
        px = X / (self.w * self.taper(py))
        pz = np.sqrt(np.maximum(1.0 - px ** 2 - py ** 2, 0.0))
        return pz * self.d * (1.0 - 0.12 * np.minimum(np.maximum(-py, 0.0), 1.0))

    def attach(self, local, cx, cy, dz=0.0):
        """Place points given relative to the surface point above (cx, cy): z follows the surface."""
        X = cx + local[..., 0]
        Y = cy + local[..., 1]
        Z = self.surface_z(X, Y) + local[..., 2] + dz
        return np.stack([X, Y, Z], -1)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


# profile: (yaw, pitch, roll) half-ranges in degrees, pixels per world unit / image side
PROFILES = {"celeba": ((30.0, 20.0, 15.0), 0.43), "wide": ((75.0, 30.0, 20.0), 0.43)}


def sample_pose(rng: np.random.Generator, profile: str = "celeba"):
    """(yaw, pitch, roll) of the head in degrees, uniform in the profile's ranges."""
    return tuple(rng.uniform(-r, r) for r in PROFILES[profile][0])


def sample_scene(rng: np.random.Generator, size: int, pose=None, profile: str = "celeba") -> Scene:
    """A face scene of the given profile (PROFILES). pose: (yaw, pitch, roll) in degrees in
    place of the drawn one (the same head, camera, light and background as without it: the
    draw still happens, so later draws are unchanged)."""
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    # ---------------------------------------------------------------- shape
    head = Head(w=0.80 * u(0.88, 1.12), h_up=1.0 * u(0.95, 1.06), h_low=1.02 * u(0.92, 1.1),
                d=0.90 * u(0.92, 1.06), jaw=u(0.12, 0.42))
    eye_r = 0.125 * u(0.85, 1.15)
    eye_sep = 0.31 * u(0.92, 1.08)
    eye_y = 0.06 * u(0.5, 1.5)
    brow_y = eye_y + 0.19 + u(-0.03, 0.05)
    brow_tilt = u(-0.2, 0.25)
    nose_len = 0.22 * u(0.7, 1.35)
    nose_w = 0.13 * u(0.8, 1.3)
    nose_y = -0.16
    mouth_y = -0.56 * u(0.95, 1.05)
    mouth_w = 0.27 * u(0.85, 1.2)
    mouth_open = 0.16 * rng.random() ** 2.0
    ear_s = u(0.85, 1.2)
    hairline = u(0.5, 0.85)
    hair_vol = u(0.02, 0.14)
    long_hair = rng.random() < 0.4
    hair_len = u(0.3, 1.0)

    # ---------------------------------------------------------------- appearance
    t = rng.random()
    skin = SKIN_LIGHT * (1 - t) + SKIN_DARK * t
    skin = np.clip(skin * u(0.95, 1.05) + rng.normal(0, 0.02, 3), 0, 1)
    hair = np.clip(HAIR[rng.integers(len(HAIR))] * u(0.8, 1.2) + rng.normal(0, 0.02, 3), 0, 1)
    iris = IRIS[rng.integers(len(IRIS))]
    lips = np.clip(skin * np.array([0.95, 0.55, 0.55]) * u(0.8, 1.05) + np.array([0.12, 0.0, 0.02]), 0, 1)
    cloth = render.random_colour(rng, 0.05, 0.9)
    brow_col = hair * 0.6 + 0.05 * (1 - t)

    parts_head, parts_body = [], []
    # head with hair
    f = HEAD[2]
    p = P_HEAD
    hairness = np.clip((p[:, 1] - (hairline - 0.55 * (1 - p[:, 2]))) / 0.08, 0, 1)
    hp = head.point(p) * (1 + hair_vol * hairness)[:, None]
    vcol = skin * (1 + rng.normal(0, 0.025, (len(p), 1)))
    hcol = hair * (1 + rng.normal(0, 0.08, (len(p), 1)))
    colour = vcol * (1 - hairness[:, None]) + hcol * hairness[:, None]
    parts_head.append(make_part(hp, f, np.clip(colour, 0, 1), 0.04 + 0.1 * hairness))

    lm = {}
    att = _Attach(head)
    # eyes: sclera + iris + pupil, with a dark upper lid
    f = EYE[2]
    pe = P_EYE
    eye_col = np.where((pe[:, 2] > 0.93)[:, None], np.array([0.03, 0.03, 0.03]),
                       np.where((pe[:, 2] > 0.80)[:, None], iris, np.array([0.92, 0.9, 0.86])))
    fs = SMALL[2]
    ps = P_SMALL
    for side, name in ((-1, "left"), (1, "right")):
        cx = side * eye_sep
        radii = np.array([eye_r * 1.45, eye_r * 0.78, eye_r * 0.55])
        parts_head.append(att.part((pe * radii, cx, eye_y, -eye_r * 0.15), f, eye_col, 0.5))
        lid = np.array([eye_r * 1.65, eye_r * 0.42, eye_r * 0.45])
        parts_head.append(att.part((ps * lid + [0, eye_r * 0.62, 0], cx, eye_y, -eye_r * 0.12),
                                    fs, brow_col * 0.7, 0.05))
        att.point(f"{name}_eye", (np.array([0, 0, radii[2]]), cx, eye_y, -eye_r * 0.15))
        o = np.array([side * radii[0] * 0.92, 0, radii[2] * np.sqrt(1 - 0.92 ** 2)])
        att.point(f"{name}_eye_outer", (o, cx, eye_y, -eye_r * 0.15))
        att.point(f"{name}_eye_inner", (o * [-1, 1, 1], cx, eye_y, -eye_r * 0.15))
        # eyebrow
        bw = 0.16 * u(0.9, 1.15)
        Rb = _rot_z(-side * brow_tilt)[:2, :2]
        loc = ps * np.array([bw, 0.042, 0.04])
        loc[:, :2] = loc[:, :2] @ Rb.T
        bcx = side * (eye_sep + 0.02)
        parts_head.append(att.part((loc, bcx, brow_y, 0.0), fs, brow_col, 0.02))
        end = (np.array([side * bw, 0]) @ Rb.T)
        att.point(f"{name}_brow_outer", (np.array([end[0], end[1], 0.035]), bcx, brow_y))
        att.point(f"{name}_brow_inner", (np.array([-end[0], -end[1], 0.035]), bcx, brow_y))

    # nose: a tilted ellipsoid, nostrils as dark blobs on its underside
    Rn = _rot_x(-0.35)
    nz = head.surface_z(0.0, nose_y)
    Mn, cn = ellipsoid_map([0, nose_y, nz - nose_len * 0.45], [nose_w, 0.23, nose_len], Rn)
    parts_head.append(make_part(cn + ps @ Mn.T, fs, skin * [0.97, 0.88, 0.84], 0.15))
    lm["nose_tip"] = extreme_point(Mn, cn, [0, 0, 1])
    att.point("nose_bridge", (np.array([0.0, 0.0, 0.01]), 0.0, eye_y - 0.02))  # on the skin between the eyes
    for side, name in ((-1, "left"), (1, "right")):
        q = cn + Mn @ _unit([side * 0.55, -0.78, 0.3])
        parts_head.append(make_part(q + ps * [0.032, 0.018, 0.02], fs, skin * 0.25, 0.0))
        lm[f"{name}_nostril"] = q

    # mouth: interior, upper and lower lips following the face surface
    half = mouth_open / 2
    parts_head.append(att.part((ps * [mouth_w * 0.9, half + 0.03, 0.02], 0.0, mouth_y, -0.015), fs,
                                np.array([0.22, 0.05, 0.06]), 0.0))
    if mouth_open > 0.05:  # upper teeth
        parts_head.append(att.part((ps * [mouth_w * 0.6, 0.03, 0.02] + [0, half - 0.02, 0], 0.0,
                                                mouth_y, -0.005), fs, np.array([0.9, 0.88, 0.8]), 0.2))
    up_y, lo_y = mouth_y + half + 0.04, mouth_y - half - 0.05
    parts_head.append(att.part((ps * [mouth_w, 0.048, 0.045], 0.0, up_y), fs, lips, 0.25))
    parts_head.append(att.part((ps * [mouth_w * 0.9, 0.058, 0.05], 0.0, lo_y), fs, lips * 1.05, 0.3))
    att.point("mouth_left", (np.array([-mouth_w * 0.97, 0, 0.0]), 0.0, mouth_y))
    att.point("mouth_right", (np.array([mouth_w * 0.97, 0, 0.0]), 0.0, mouth_y))
    att.point("upper_lip", (np.array([0, 0.035, 0.035]), 0.0, up_y))
    att.point("lower_lip", (np.array([0, -0.04, 0.04]), 0.0, lo_y))

    att.resolve(lm)

    # head-surface landmarks
    lm["chin"] = head.point(_unit([0, -0.93, 0.37]))
    lm["left_jaw"] = head.point(_unit([-0.72, -0.55, 0.42]))
    lm["right_jaw"] = head.point(_unit([0.72, -0.55, 0.42]))
    lm["forehead"] = head.point(_unit([0, min(hairline - 0.12, 0.5), 0.88]))

    # ears
    ear_y = eye_y - 0.12
    for side, name in ((-1, "left"), (1, "right")):
        ex = side * head.w * head.taper(ear_y) * 0.97
        Me, ce = ellipsoid_map([ex, ear_y, -0.12], np.array([0.07, 0.19, 0.12]) * ear_s,
                               render.rotation_matrix(yaw=side * 0.35))
        pts = ce + ps @ Me.T
        # inner ear darker on the outward side
        ecol = skin * (0.88 - 0.2 * np.clip(ps[:, 0] * side, 0, 1))[:, None]
        parts_head.append(make_part(pts, fs, ecol, 0.05))
        lm[f"{name}_ear_lobe"] = ce + Me @ _unit([side * 0.3, -0.95, 0.1])

    # long hair: a volume behind the head that falls to the shoulders
    if long_hair:
        ph = P_HEAD
        drop = np.clip(-ph[:, 1], 0, 1)
        pts = np.stack([ph[:, 0] * head.w * (1.12 + 0.1 * drop), ph[:, 1] * (1.02 + hair_len * 0.5 * (ph[:, 1] < 0)),
                        ph[:, 2] * 0.62 - 0.32], 1) * (1 + hair_vol)
        parts_head.append(make_part(pts, HEAD[2], np.clip(hair * (1 + rng.normal(0, 0.08, (len(ph), 1))), 0, 1), 0.12))

    # neck and shoulders
    fb = BODY[2]
    parts_body.append(make_part(P_NECK * [0.36, 0.45, 0.34] + [0, -1.2, -0.2], fb, skin * 0.85, 0.03))
    parts_body.append(make_part(P_TORSO * [1.75, 0.75, 0.7] + [0, -2.1, -0.3], fb, cloth, 0.05))

    # ---------------------------------------------------------------- pose
    drawn = sample_pose(rng, profile)
    yaw, pitch, roll = np.radians(drawn if pose is None else pose)
    pivot = np.array([0.0, -0.75, -0.2])
    Rh = render.rotation_matrix(yaw, pitch, roll)
    Rb = render.rotation_matrix(0.3 * yaw, 0.0, 0.3 * roll)
    parts = []
    for prt in parts_head:
        prt.verts = (prt.verts - pivot) @ Rh.T + pivot
        parts.append(prt)
    for prt in parts_body:
        prt.verts = (prt.verts - pivot) @ Rb.T + pivot
        parts.append(prt)
    L = np.stack([lm[n] for n in LANDMARK_NAMES])
    L = (L - pivot) @ Rh.T + pivot

    # ---------------------------------------------------------------- camera, light, background
    scale = size * PROFILES[profile][1] * u(0.85, 1.12)
    centre = (size / 2 - 0.5 + size * u(-0.07, 0.07), size / 2 - 0.5 - size * 0.04 + size * u(-0.07, 0.07))
    az, el = np.radians(u(-65, 65)), np.radians(u(-15, 55))
    light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    bg = render.random_background(rng, size)
    return Scene(parts=parts, landmarks=L, centre=centre, scale=scale, light_dir=light,
                 ambient=u(0.4, 0.6), diffuse=u(0.4, 0.75), light_colour=1 + rng.normal(0, 0.05, 3),
                 background=bg, yaw_deg=float(np.degrees(yaw)), pitch_deg=float(np.degrees(pitch)),
                 roll_deg=float(np.degrees(roll)), object_centre=(np.zeros(3) - pivot) @ Rh.T + pivot,
                 shininess=u(10, 30), occlusion_tol=0.06)
