"""``synthetic:car`` — a parametric car: body, tapered cabin with windows, four wheels with hubs,
head and tail lights, grille, and a ground shadow, seen from any side.

Shape modes (each independent, drawn per image): body length, width and height, ground
clearance, cabin length, height and fore-aft position, windscreen slope, wheel radius and
wheelbase, body boxiness. Pose: yaw uniform over 360 deg, the camera 5-30 deg above the
horizon, roll +-4 deg. Left/right in the landmark names are the car's own (left = +x when the
car faces the viewer).
"""

from __future__ import annotations

import numpy as np

from . import render
from .scene import Scene, make_part

LANDMARK_NAMES = [
    "wheel_front_left", "wheel_front_right", "wheel_rear_left", "wheel_rear_right",
    "headlight_left", "headlight_right", "taillight_left", "taillight_right",
    "roof_front_left", "roof_front_right", "roof_rear_left", "roof_rear_right",
    "grille_centre", "rear_centre", "windscreen_base", "rear_window_base",
]
EYE_INDICES = None

BOX = render.uv_sphere(14, 28)
WHEEL = render.uv_sphere(12, 20)
SMALL = render.uv_sphere(6, 10)

PAINT = np.array([[0.85, 0.85, 0.85], [0.08, 0.08, 0.09], [0.55, 0.56, 0.58], [0.65, 0.05, 0.05],
                  [0.05, 0.15, 0.5], [0.9, 0.7, 0.1], [0.1, 0.4, 0.15], [0.3, 0.3, 0.35]])
# wheel template: cylinder with its axis along x (a rotation of a superquadric with axis y)
_TO_X = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def sample_pose(rng: np.random.Generator):
    """(yaw, pitch, roll) of the car in degrees, drawn from the category's ranges (pitch is the
    camera's elevation, negative)."""
    return rng.uniform(-180, 180), -rng.uniform(5, 30), rng.uniform(-4, 4)


def sample_scene(rng: np.random.Generator, size: int, pose=None) -> Scene:
    """pose: (yaw, pitch, roll) in degrees in place of the drawn one (see synthetic_face)."""
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    hl = 2.0 * u(0.85, 1.15)  # half length
    hw = 0.85 * u(0.9, 1.1)  # half width
    hh = 0.30 * u(0.85, 1.2)  # half height of the lower body
    wr = 0.36 * u(0.85, 1.15)  # wheel radius
    clear = u(0.08, 0.2)
    body_y = clear + hh + 0.05
    wb = hl * u(0.58, 0.72)  # half wheelbase
    cab_l = hl * u(0.42, 0.6)
    cab_h = 0.27 * u(0.8, 1.25)
    cab_z = hl * u(-0.22, 0.05)
    slope = u(0.15, 0.45)
    e_box = u(0.18, 0.4)

    paint = np.clip(PAINT[rng.integers(len(PAINT))] * u(0.85, 1.15) + rng.normal(0, 0.04, 3), 0, 1)
    glass = np.array([0.12, 0.16, 0.22]) * u(0.6, 1.4)
    parts = []
    lm = {}

    # lower body
    lat, lon, f = BOX
    pb = render.superquadric_points(lat, lon, e_box, e_box)
    parts.append(make_part(pb * [hw, hh, hl] + [0, body_y, 0], f, paint, 0.6))
    top = body_y + hh
    # cabin: tapered box, glass on the sides, paint on the roof
    pc = render.superquadric_points(lat, lon, 0.25, 0.3)
    t = (pc[:, 1] + 1) / 2  # 0 at the bottom, 1 at the roof
    cab = np.stack([pc[:, 0] * hw * 0.9 * (1 - 0.15 * t),
                    top - 0.05 + (pc[:, 1] + 1) * cab_h,
                    cab_z + pc[:, 2] * cab_l * (1 - slope * t)], 1)
    is_glass = ((lat > -0.6) & (lat < 1.2)).astype(float)[:, None]
    parts.append(make_part(cab, f, glass * is_glass + paint * (1 - is_glass), 0.3 + 0.5 * is_glass[:, 0]))
    roof_y = top - 0.05 + 2 * cab_h
    for zs, zn in ((1, "front"), (-1, "rear")):
        for xs, xn in ((1, "left"), (-1, "right")):
            lm[f"roof_{zn}_{xn}"] = np.array([xs * hw * 0.9 * 0.85 * 0.92, roof_y - 0.02,
                                              cab_z + zs * cab_l * (1 - slope) * 0.92])
    lm["windscreen_base"] = np.array([0.0, top, cab_z + cab_l * 0.97])
    lm["rear_window_base"] = np.array([0.0, top, cab_z - cab_l * 0.97])

    # wheels: dark tyre, silver hub disc on the outer face
    lw, ow, fw = WHEEL
    pw = render.superquadric_points(lw, ow, 0.2, 1.0)
    r_axis = np.hypot(pw[:, 0], pw[:, 2])
    tyre = np.array([0.06, 0.06, 0.065]) * u(0.8, 1.5)
    hub = np.array([0.7, 0.7, 0.72]) * u(0.6, 1.1)
    wcol = np.where(((r_axis < 0.62) & (np.abs(pw[:, 1]) > 0.9))[:, None], hub, tyre)
    wthick = 0.13
    for zs, zn in ((1, "front"), (-1, "rear")):
        for xs, xn in ((1, "left"), (-1, "right")):
            c = np.array([xs * (hw - wthick * 0.6), wr, zs * wb])
            pts = (pw * [wr, wthick, wr]) @ _TO_X.T + c
            parts.append(make_part(pts, fw, wcol, 0.15))
            lm[f"wheel_{zn}_{xn}"] = c + [xs * wthick, 0, 0]

    # lights and grille on the body ends
    ls, os_, fs = SMALL
    ps = render.sphere_points(ls, os_)
    ly = body_y + hh * 0.35
    for xs, xn in ((1, "left"), (-1, "right")):
        x = xs * hw * 0.68
        parts.append(make_part(ps * [hw * 0.2, hh * 0.22, 0.08] + [x, ly, hl * 0.985], fs, np.array([1.0, 0.97, 0.8]), 0.8))
        parts.append(make_part(ps * [hw * 0.2, hh * 0.2, 0.08] + [x, ly, -hl * 0.985], fs, np.array([0.8, 0.04, 0.03]), 0.6))
        lm[f"headlight_{xn}"] = np.array([x, ly, hl * 0.985 + 0.08])
        lm[f"taillight_{xn}"] = np.array([x, ly, -hl * 0.985 - 0.08])
    gy = body_y - hh * 0.15
    parts.append(make_part(ps * [hw * 0.42, hh * 0.25, 0.06] + [0, gy, hl * 0.99], fs, np.array([0.05, 0.05, 0.05]), 0.3))
    lm["grille_centre"] = np.array([0.0, gy, hl * 0.99 + 0.06])
    parts.append(make_part(ps * [hw * 0.3, hh * 0.2, 0.04] + [0, gy, -hl * 0.99], fs, np.array([0.92, 0.92, 0.85]), 0.2))
    lm["rear_centre"] = np.array([0.0, gy, -hl * 0.99 - 0.04])
    # ground shadow
    parts.append(make_part(ps * [hw * 1.2, 0.004, hl * 1.08] + [0, 0.004, 0], fs, np.array([0.06, 0.06, 0.06]), 0.0))

    # pose: yaw about the vertical, then the camera elevation, then a little roll
    drawn = sample_pose(rng)
    yaw, pitch, roll = np.radians(drawn if pose is None else pose)
    R = render.rotation_matrix(yaw, pitch, roll)
    pivot = np.array([0.0, body_y, 0.0])
    for prt in parts:
        prt.verts = (prt.verts - pivot) @ R.T + pivot
    L = (np.stack([lm[n] for n in LANDMARK_NAMES]) - pivot) @ R.T + pivot

    scale = size * 0.21 * u(0.85, 1.1)
    centre = (size / 2 - 0.5 + size * u(-0.06, 0.06), size / 2 - 0.5 + body_y * scale + size * u(-0.06, 0.06))
    az, el = np.radians(u(-70, 70)), np.radians(u(20, 70))
    light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    bg = render.random_background(rng, size, kind="outdoor")
    return Scene(parts=parts, landmarks=L, centre=centre, scale=scale, light_dir=light,
                 ambient=u(0.3, 0.5), diffuse=u(0.5, 0.8), light_colour=1 + rng.normal(0, 0.04, 3),
                 background=bg, yaw_deg=float(np.degrees(yaw)), shininess=u(20, 50), occlusion_tol=0.08)
