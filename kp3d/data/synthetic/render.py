"""A small numpy renderer: superquadric meshes, a vectorised z-buffer rasteriser, shading,
procedural backgrounds and blur.

Frames. Objects are built in a right-handed object frame (x right, y up, z towards the viewer).
The camera is orthographic (weak perspective): a rotated point ``P`` lands on pixel
``(cx + s P_x, cy - s P_y)`` with depth ``s P_z`` (towards the viewer), so the returned camera
frame is (x right, y down, z towards the viewer) in pixel units, pixel centres at integers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .scene import Scene


# ----------------------------------------------------------------------------- meshes

@lru_cache(maxsize=None)
def uv_sphere(n_lat: int, n_lon: int):
    """Unit-sphere template: returns (lat, lon, faces) with outward (counter-clockwise) winding.

    Vertex 0 is the south pole, vertex 1 the north pole, then ``n_lat - 1`` rings of ``n_lon``.
    ``lon = 0`` faces +z (the viewer when unrotated), ``lon = +pi/2`` faces +x.
    """
    lats = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)[1:-1]
    lons = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)
    LAT, LON = np.meshgrid(lats, lons, indexing="ij")
    lat = np.concatenate([[-np.pi / 2, np.pi / 2], LAT.ravel()])
    lon = np.concatenate([[0.0, 0.0], LON.ravel()])
    faces = []
    R = n_lat - 1

    def vid(r, c):
        return 2 + r * n_lon + (c % n_lon)

    for c in range(n_lon):
        faces.append((0, vid(0, c + 1), vid(0, c)))
        faces.append((1, vid(R - 1, c), vid(R - 1, c + 1)))
        for r in range(R - 1):
            a, b, cc, d = vid(r, c), vid(r, c + 1), vid(r + 1, c + 1), vid(r + 1, c)
            faces.append((a, b, cc))
            faces.append((a, cc, d))
    faces = np.asarray(faces, np.int64)
    # make the winding outward: the face normal must point away from the centre
    p = sphere_points(lat, lon)
    v = p[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    flip = (n * v.mean(1)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    lat.setflags(write=False)
    lon.setflags(write=False)
    faces.setflags(write=False)
    return lat, lon, faces


def sphere_points(lat, lon):
    """Unit vectors for latitude/longitude (lon = 0 towards +z, lon = pi/2 towards +x)."""
    cl = np.cos(lat)
    return np.stack([cl * np.sin(lon), np.sin(lat), cl * np.cos(lon)], axis=-1)


def _spow(t, e):
    return np.sign(t) * np.abs(t) ** e


def superquadric_points(lat, lon, e_lat: float = 1.0, e_lon: float = 1.0):
    """Points of a unit superquadric (e = 1: sphere; e < 1: boxier; e -> 0: a box)."""
    cl = _spow(np.cos(lat), e_lat)
    return np.stack([cl * _spow(np.sin(lon), e_lon), _spow(np.sin(lat), e_lat), cl * _spow(np.cos(lon), e_lon)], -1)


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """R = Rz(roll) @ Rx(pitch) @ Ry(yaw) in the right-handed object frame (angles in radians).

    Positive yaw turns the object's front (+z) towards +x (image right); positive pitch turns the
    front up (towards +y, image up) and the top away from the viewer; positive roll rotates
    counter-clockwise as seen by the viewer.
    """
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the sum of the area-weighted normals of the adjacent faces."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    f0, f1, f2 = faces[:, 0], faces[:, 1], faces[:, 2]
    ax, ay, az = x[f1] - x[f0], y[f1] - y[f0], z[f1] - z[f0]
    bx, by, bz = x[f2] - x[f0], y[f2] - y[f0], z[f2] - z[f0]
    idx = faces.T.ravel()
    V = len(verts)
    n = np.empty_like(verts)
    for c, fn in enumerate((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)):
        n[:, c] = np.bincount(idx, weights=np.tile(fn, 3), minlength=V)
    n /= np.sqrt(n[:, 0] ** 2 + n[:, 1] ** 2 + n[:, 2] ** 2)[:, None] + 1e-12
    return n


# ----------------------------------------------------------------------------- rasteriser

def rasterize(xy: np.ndarray, z: np.ndarray, faces: np.ndarray, size: int):
    """Z-buffer rasterisation (see ``_rasterize_boxes``); picks the faster expansion for the size."""
    if size > 80:
        return _rasterize_rows(xy, z, faces, size)
    return _rasterize_boxes(xy, z, faces, size)


def _triangle_setup(xy, faces, S):
    """What both expansions share: the triangles that cover at least one pixel centre's bounding
    box and are not degenerate (ids), their integer pixel boxes (xmin, xmax, ymin, ymax; all
    triangles), and per kept triangle the barycentric coefficients A, B, C (weight i at pixel
    (x, y) is A_i x + B_i y + C_i). None when no triangle is kept."""
    x0, y0 = xy[faces[:, 0], 0], xy[faces[:, 0], 1]
    x1, y1 = xy[faces[:, 1], 0], xy[faces[:, 1], 1]
    x2, y2 = xy[faces[:, 2], 0], xy[faces[:, 2], 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    # (reductions over an axis of length 3 are slow in numpy: write them out)
    xmin = np.maximum(np.ceil(np.minimum(np.minimum(x0, x1), x2)), 0).astype(np.int64)
    xmax = np.minimum(np.floor(np.maximum(np.maximum(x0, x1), x2)), S - 1).astype(np.int64)
    ymin = np.maximum(np.ceil(np.minimum(np.minimum(y0, y1), y2)), 0).astype(np.int64)
    ymax = np.minimum(np.floor(np.maximum(np.maximum(y0, y1), y2)), S - 1).astype(np.int64)
    ids = np.nonzero((xmax >= xmin) & (ymax >= ymin) & (np.abs(area) > 1e-10))[0]
    if ids.size == 0:
        return None
    x0, x1, x2, y0, y1, y2 = x0[ids], x1[ids], x2[ids], y0[ids], y1[ids], y2[ids]
    inv = 1.0 / area[ids]
    A = np.stack([(y1 - y2) * inv, (y2 - y0) * inv, (y0 - y1) * inv], 1)
    B = np.stack([(x2 - x1) * inv, (x0 - x2) * inv, (x1 - x0) * inv], 1)
    C = np.stack([(x1 * y2 - x2 * y1) * inv, (x2 * y0 - x0 * y2) * inv, (x0 * y1 - x1 * y0) * inv], 1)
    return ids, (xmin, xmax, ymin, ymax), A, B, C


def _no_pixels(S):
    e = np.zeros(0, np.int64)
    return e, e, np.zeros((0, 3)), np.full(S * S, -np.inf)


def _resolve_depth(pid, tri, bary, z, faces, S):
    """Z-buffer the covered samples (flat pixel index, triangle, barycentric weights): the nearest
    sample per pixel, one of them where depths tie (the last write wins)."""
    fz = z[faces[tri]]
    depth = bary[:, 0] * fz[:, 0] + bary[:, 1] * fz[:, 1] + bary[:, 2] * fz[:, 2]
    zbuf = np.full(S * S, -np.inf)
    np.maximum.at(zbuf, pid, depth)
    win = depth >= zbuf[pid]
    pid, tri, bary = pid[win], tri[win], bary[win]
    owner = np.full(S * S, -1, np.int64)
    owner[pid] = np.arange(pid.size)
    first = owner[owner >= 0]
    return pid[first], tri[first], bary[first], zbuf


def _rasterize_rows(xy, z, faces, size):
    """Scanline variant of ``rasterize`` (identical output): expands triangles to the exact pixel
    span of each bounding-box row instead of the whole box; faster for larger images."""
    S = size
    setup = _triangle_setup(xy, faces, S)
    if setup is None:
        return _no_pixels(S)
    ids, (xmin, xmax, ymin, ymax), A, B, C = setup
    # rows: one entry per (triangle, pixel row) of its bounding box
    hh = (ymax - ymin + 1)[ids]
    rt = np.repeat(np.arange(ids.size), hh)
    start = np.cumsum(hh) - hh
    ry = (ymin[ids][rt] + (np.arange(rt.size) - np.repeat(start, hh))).astype(np.float64)
    # on a row, weight i is A_i x + c_i with c_i = B_i y + C_i; all >= -eps gives an x interval
    eps = 1e-7
    c = B[rt] * ry[:, None] + C[rt]
    a = A[rt]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (-eps - c) / a
    lo = np.where(a > 0, bound, -np.inf).max(1)
    hi = np.where(a < 0, bound, np.inf).min(1)
    dead = ((a == 0) & (c < -eps)).any(1)
    xl = np.maximum(np.ceil(lo), xmin[ids][rt])
    xr = np.minimum(np.floor(hi), xmax[ids][rt])
    n = np.where(dead, 0, np.maximum(xr - xl + 1, 0)).astype(np.int64)
    # pixels of every row span
    pr = np.repeat(np.arange(rt.size), n)
    st = np.cumsum(n) - n
    px = xl[pr] + (np.arange(pr.size) - np.repeat(st, n))
    py = ry[pr]
    tl = rt[pr]
    bary = A[tl] * px[:, None] + B[tl] * py[:, None] + C[tl]
    pid = py.astype(np.int64) * S + px.astype(np.int64)
    return _resolve_depth(pid, ids[tl], bary, z, faces, S)


def _rasterize_boxes(xy: np.ndarray, z: np.ndarray, faces: np.ndarray, size: int):
    """Z-buffer rasterisation of triangles sampled at integer pixel centres.

    xy: (V, 2) pixel coordinates (x right, y down); z: (V,) depth, larger = nearer the viewer;
    faces: (F, 3). Returns (pix, tri, bary, zbuf): flat indices of the covered pixels, the winning
    triangle and its barycentric weights there, and the full (size*size,) depth buffer (-inf where
    empty). Fully vectorised: every triangle is expanded to the pixels of its bounding box.
    """
    S = size
    setup = _triangle_setup(xy, faces, S)
    if setup is None:
        return _no_pixels(S)
    ids, (xmin, xmax, ymin, ymax), A, B, C = setup
    w, h = xmax - xmin + 1, ymax - ymin + 1
    n = (w * h)[ids]
    tri_local = np.repeat(np.arange(ids.size), n)
    start = np.cumsum(n) - n
    off = np.arange(int(n.sum())) - np.repeat(start, n)
    wl = w[ids][tri_local]
    px = xmin[ids][tri_local] + off % wl
    py = ymin[ids][tri_local] + off // wl
    bary = A[tri_local] * px[:, None].astype(np.float64) + B[tri_local] * py[:, None].astype(np.float64) + C[tri_local]
    inside = (bary >= -1e-7).all(1)
    return _resolve_depth(py[inside] * S + px[inside], ids[tri_local[inside]], bary[inside], z, faces, S)


def shade(normals, albedo, spec_strength, light_dir, ambient: float, diffuse: float,
          shininess: float = 20.0, light_colour=(1.0, 1.0, 1.0)):
    """Lambert + Blinn-Phong shading in the object-aligned camera frame (viewer along +z)."""
    n = normals / (np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-12)
    ndl = np.clip(n @ light_dir, 0.0, None)
    half = light_dir + np.array([0.0, 0.0, 1.0])
    half = half / np.linalg.norm(half)
    spec = np.clip(n @ half, 0.0, None) ** shininess * spec_strength
    lc = np.asarray(light_colour)
    return albedo * (ambient + diffuse * ndl[:, None] * lc) + spec[:, None] * lc


# ----------------------------------------------------------------------------- image helpers

def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur of an (H, W, C) image with reflected borders."""
    if sigma <= 0.05:
        return img
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="reflect")
    out = np.zeros_like(img)
    H, W = img.shape[:2]
    for i, kv in enumerate(k):
        out += kv * pad[i:i + H]
    pad = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="reflect")
    out2 = np.zeros_like(img)
    for i, kv in enumerate(k):
        out2 += kv * pad[:, i:i + W]
    return out2


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Value noise: a (cells x cells) random grid bilinearly upsampled to (size, size, channels)."""
    g = rng.random((cells + 1, cells + 1, channels))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = (t - i)[:, None, None]
    rows = g[i] * (1 - f) + g[i + 1] * f  # (size, cells+1, C)
    fc = (t - i)[None, :, None]
    return rows[:, i] * (1 - fc) + rows[:, i + 1] * fc


def random_colour(rng, lo=0.0, hi=1.0):
    return lo + (hi - lo) * rng.random(3)


@lru_cache(maxsize=8)
def _unit_grid(S: int):
    yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def random_background(rng: np.random.Generator, size: int, kind: str = "any") -> np.ndarray:
    """A random cluttered background: gradient, value-noise texture, shapes and stripes."""
    S = size
    yy, xx = _unit_grid(S)
    c0, c1 = random_colour(rng, 0.05, 0.95), random_colour(rng, 0.05, 0.95)
    ang = rng.uniform(0, 2 * np.pi)
    t = (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) + 0.5
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    if kind == "outdoor":  # sky above a ground plane
        horizon = rng.uniform(0.35, 0.7)
        sky = np.array([0.45, 0.65, 0.9]) * rng.uniform(0.7, 1.15) + rng.normal(0, 0.05, 3)
        ground = random_colour(rng, 0.15, 0.6) * np.array([1.0, 0.95, 0.85])
        skyimg = sky * (1 - 0.4 * yy[..., None]) + 0.25 * (1 - yy[..., None]) * (1 - sky)
        gt = np.clip((yy - horizon) / max(1e-6, 1 - horizon), 0, 1)[..., None]
        gimg = ground * (0.8 + 0.4 * gt) + 0.15 * (smooth_noise(rng, S, 12, 1) - 0.5)
        img = np.where((yy > horizon)[..., None], gimg, 0.7 * skyimg + 0.3 * img)
    amp = rng.uniform(0.0, 0.5)
    img = img + amp * (smooth_noise(rng, S, int(rng.integers(2, 8)), 3) - 0.5)
    for _ in range(int(rng.integers(0, 6))):
        col = random_colour(rng)
        cx, cy = rng.random(2)
        if rng.random() < 0.5:  # ellipse
            rx, ry = rng.uniform(0.04, 0.35, 2)
            reach_x, reach_y = rx, ry
            shape = ("ellipse", rx, ry)
        else:  # rotated rectangle or stripe
            a = rng.uniform(0, np.pi)
            hu, hv = rng.uniform(0.02, 0.3), rng.uniform(0.05, 0.8)
            reach_x = reach_y = np.hypot(hu, hv)
            shape = ("rect", a, hu, hv)
        alpha = rng.uniform(0.4, 1.0)
        # work on the shape's bounding box only
        c0_, c1_ = max(0, int((cx - reach_x) * (S - 1))), min(S, int(np.ceil((cx + reach_x) * (S - 1))) + 1)
        r0_, r1_ = max(0, int((cy - reach_y) * (S - 1))), min(S, int(np.ceil((cy + reach_y) * (S - 1))) + 1)
        if c1_ <= c0_ or r1_ <= r0_:
            continue
        X, Y = xx[r0_:r1_, c0_:c1_] - cx, yy[r0_:r1_, c0_:c1_] - cy
        if shape[0] == "ellipse":
            m = (X / shape[1]) ** 2 + (Y / shape[2]) ** 2 < 1
        else:
            ca, sa = np.cos(shape[1]), np.sin(shape[1])
            m = (np.abs(ca * X + sa * Y) < shape[2]) & (np.abs(-sa * X + ca * Y) < shape[3])
        sub = img[r0_:r1_, c0_:c1_]
        sub[m] = (1 - alpha) * sub[m] + alpha * col
    return np.clip(img, 0, 1)


def finish_image(rng: np.random.Generator, img: np.ndarray, size: int, blur_max: float = 0.8,
                 noise_max: float = 0.03) -> np.ndarray:
    """Camera effects: blur (sigma scales with the image size), colour jitter, gamma, noise."""
    sigma = rng.uniform(0.0, blur_max) * size / 64.0
    if rng.random() < 0.6:
        img = gaussian_blur(img, sigma)
    img = img * rng.uniform(0.85, 1.15, 3) + rng.uniform(-0.06, 0.06)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    img = img + np.float32(rng.uniform(0.0, noise_max)) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


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
    pid, tri, bary, zbuf = rasterize(xy, z, front, S)
    vn = vertex_normals(V, F)
    fv = front[tri]
    attr = np.concatenate([vn, col, spc[:, None]], 1)  # interpolate normal, albedo, specular together
    a = bary[:, 0:1] * attr[fv[:, 0]] + bary[:, 1:2] * attr[fv[:, 1]] + bary[:, 2:3] * attr[fv[:, 2]]
    nrm, alb, sp = a[:, 0:3], a[:, 3:6], a[:, 6]
    rgb = shade(nrm, alb, sp, scene.light_dir, scene.ambient, scene.diffuse, scene.shininess, scene.light_colour)
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
