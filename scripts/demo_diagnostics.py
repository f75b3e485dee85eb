"""What limits the demo on synthetic faces? The checks behind docs/training.md ("Edge weights,
the projection loss on the detector, and other levers").

    python scripts/demo_diagnostics.py noise             # ideal depth + noisy 2D landmarks
    python scripts/demo_diagnostics.py gt --lr 1e-3      # lifter trained on true 2D landmarks
    python scripts/demo_diagnostics.py refit RUN_DIR     # lifter refit on a detector's keypoints
    python scripts/demo_diagnostics.py copies RUN_DIR    # r2 of the keypoints, their refined copies, both
    python scripts/demo_diagnostics.py pictures RUN_DIR  # the demo's pictures of any run
    python scripts/demo_diagnostics.py heatmaps RUN_DIR  # how spread out the detector's heatmaps are
    python scripts/demo_diagnostics.py follow RUN_DIR    # do the keypoints follow a shifted image?
    python scripts/demo_diagnostics.py regions RUN_DIR   # do they carry the skin and hair centres?
    python scripts/demo_diagnostics.py parts RUN_DIR     # picture of a part-map model's parts
    python scripts/demo_diagnostics.py edge-use RUN_DIR  # how much the decoder relies on the edge map
    python scripts/demo_diagnostics.py oracle landmarks  # does the loss reward keypoints on parts?
    python scripts/demo_diagnostics.py ceiling           # the best r2 of keypoints that see part of the pose,
                                                         # and of keypoints at the centres of colour regions
    python scripts/demo_diagnostics.py mirror            # the mirror image warped by true keypoints
    python scripts/demo_diagnostics.py appearance        # the refinement's template amplitude at true
                                                         # landmarks, on a ring, at random; and what
                                                         # a search of the whole image finds
    python scripts/demo_diagnostics.py rigid RUN_DIR     # how far the points are from a rigid head, and
                                                         # the r3 of an ideal rigid lifter on them
    python scripts/demo_diagnostics.py where RUN_DIR     # which true landmark each point is nearest to
    python scripts/demo_diagnostics.py depth-ceiling [RUN_DIR]  # r3 of depth regressed from the points
                                                         # with true depths (what depth labels would allow)
    python scripts/demo_diagnostics.py depth-share [RUN_DIR]  # the flat lift's 3D NME split into its
                                                         # image-plane and depth parts; the model's
                                                         # 3D keypoints and structure beside it
    python scripts/demo_diagnostics.py search [RUN_DIR]  # how far the refinement's search moves true
                                                         # landmarks; an active-shape fit from the
                                                         # model's pose
    python scripts/demo_diagnostics.py pose-search       # the pose from a rigid head's appearance,
                                                         # everything true but the rotation
    python scripts/demo_diagnostics.py corners           # can one-sided templates (an eye's outer
                                                         # corner) tell the left eye from the right?
    python scripts/demo_diagnostics.py copy-side RUN_DIR # can the patch at the copies tell which eye
                                                         # they sit on?
    python scripts/demo_diagnostics.py midline           # do templates on the face's midline (nose,
                                                         # lip) stay on their feature as it turns?
    python scripts/demo_diagnostics.py view-head RUN_DIR # can an image network, taught by the points'
                                                         # odd layout, give the yaw the 3D figure needs?

The figures of noise, gt and refit are r2 = 2D NME / mean-landmark baseline and r3 = 3D NME /
flat-lift baseline on 300 test faces, the regressor fit on 500 (SPEC section 8). One thread; a
few minutes each.
"""

import argparse

import numpy as np
import torch

from kp3d.data import build_dataset
from kp3d.demo import SETTINGS
from kp3d.eval import evaluate_keypoints
from kp3d.model.keypoint_model import ModelConfig
from kp3d.model.losses import projection_loss
from kp3d.model.structure3d import Lifter, ResMLP, ShapeModel
from kp3d.model.view import odd_layout, odd_layout_direction, symmetric_frame
from kp3d.model.view import planar_depth as view_planar_depth
from kp3d.train.view_head import ViewHeadSettings, fit_view_net, raw_views
from kp3d.train.visualize import to_pixels

DATA = "synthetic:face"
DEMO = SETTINGS["cpu"]  # the oracle's decoder defaults follow the demo's CPU setting
SIZE = 64
# eyes, nose tip, mouth corners, chin, ear lobes: 8 landmarks spread over the head
LANDMARKS = [0, 1, 2, 3, 4, 18, 21, 22]


def landmarks(split, n):
    """(2D (n, L, 2) pixels, 3D (n, L, 3), yaw (n,)) of a synthetic split, images not kept."""
    ds = build_dataset(DATA, split, SIZE, length=n)
    items = [ds.render(i) for i in range(n)]
    return (np.array([it[1] for it in items], np.float64), np.array([it[2] for it in items], np.float64),
            np.array([it[4] for it in items], np.float64))


def to_frame(px, size=None):
    """Pixels of a `size`-pixel image (default SIZE) -> the kp3d frame [-1, 1] (align-corners
    grid, SPEC section 2; the inverse of kp3d.train.visualize.to_pixels)."""
    return px / ((size or SIZE) - 1) * 2 - 1


def load_test_images(size, n):
    """(n, 3, size, size) images of the synthetic test split."""
    ds = build_dataset(DATA, "test", size, length=n)
    return torch.stack([ds[i]["image"] for i in range(n)])


def ratios(p2_reg, p2_test, p3_reg, p3_test, reg, test):
    m = evaluate_keypoints(p2_reg, reg[0], p2_test, test[0], eye_indices=(0, 1),
                           pred_train_3d=p3_reg, gt_train_3d=reg[1], pred_test_3d=p3_test,
                           gt_test_3d=test[1])
    return m["nme_2d"] / m["nme_2d_mean_baseline"], m["nme_3d"] / m["nme_3d_flat_baseline"]


def fit_lifter(kp_train, num_keypoints, lr, steps, seed=0):
    """Train a fresh ShapeModel + Lifter on 2D keypoints (N, K, 2) with the projection loss."""
    torch.manual_seed(seed)
    shape, lifter = ShapeModel(num_keypoints, 2), Lifter(num_keypoints, 2)
    opt = torch.optim.AdamW([*shape.parameters(), *lifter.parameters()], lr=lr, weight_decay=1e-3)
    X = torch.as_tensor(kp_train, dtype=torch.float32)
    for _ in range(steps):
        kp = X[torch.randint(0, len(X), (16,))]
        alpha, R, S, T = lifter(kp, shape.projection_scales())
        loss = projection_loss(shape.project(shape.pose(shape.canonical(alpha), R, S, T)), kp)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def lift(kp):  # the points with the structure's depth, as the model's keypoints_3d
        kp = torch.as_tensor(kp, dtype=torch.float32)
        alpha, R, S, T = lifter(kp, shape.projection_scales())
        depth = shape.pose(shape.canonical(alpha), R, S, T)[..., 2:]
        return torch.cat([kp, depth], -1).numpy(), R.numpy()

    return lift


def yaw_corr(R, yaw_deg):
    """Correlation of the lifted rotation's sideways turn with the true yaw (sign is a gauge)."""
    return float(np.corrcoef(R[:, 0, 2], np.sin(np.radians(yaw_deg)))[0, 1])


def cmd_noise(a):
    reg, test = landmarks("regress", 500), landmarks("test", 300)
    rng = np.random.default_rng(0)
    for sigma in a.sigmas:
        def pred(split):
            p2 = to_frame(split[0][:, LANDMARKS] + rng.normal(0, sigma, split[0][:, LANDMARKS].shape))
            return p2, np.concatenate([p2, split[1][:, LANDMARKS, 2:] / (SIZE - 1) * 2], -1)
        (r2d, r3d), (t2d, t3d) = pred(reg), pred(test)
        r2, r3 = ratios(r2d, t2d, r3d, t3d, reg, test)
        print(f"noise {sigma:g} px: r2 {r2:.3f}  r3 (true depth) {r3:.3f}")


def cmd_gt(a):
    train, reg, test = landmarks("train", 1500), landmarks("regress", 500), landmarks("test", 300)
    lift = fit_lifter(to_frame(train[0][:, LANDMARKS]), len(LANDMARKS), a.lr, a.steps)
    (p_reg, _), (p_test, R) = lift(to_frame(reg[0][:, LANDMARKS])), lift(to_frame(test[0][:, LANDMARKS]))
    _, r3 = ratios(to_frame(reg[0][:, LANDMARKS]), to_frame(test[0][:, LANDMARKS]), p_reg, p_test, reg, test)
    print(f"lifter on true 2D landmarks, lr {a.lr:g}, {a.steps} steps: r3 {r3:.3f}, "
          f"yaw correlation {yaw_corr(R, test[2]):+.2f}")


def cmd_refit(a):
    from kp3d.model.keypoint_model import predict_dataset
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    S, K = model.config.image_size, model.num_points  # keypoints and any refined copies
    P = {split: predict_dataset(model, build_dataset(DATA, split, S, length=n))
         for split, n in (("train", 1500), ("regress", 500), ("test", 300))}
    gt = {s: (P[s]["landmarks_2d"], P[s]["landmarks_3d"]) for s in ("regress", "test")}
    lift = fit_lifter(P["train"]["keypoints_2d"], K, a.lr, a.steps)
    (p_reg, _), (p_test, R) = lift(P["regress"]["keypoints_2d"]), lift(P["test"]["keypoints_2d"])
    for name, reg3, test3 in (("the model's lifter", P["regress"]["keypoints_3d"], P["test"]["keypoints_3d"]),
                              ("a refit lifter", p_reg, p_test)):
        r2, r3 = ratios(P["regress"]["keypoints_2d"], P["test"]["keypoints_2d"], reg3, test3,
                        gt["regress"], gt["test"])
        print(f"{name}: r2 {r2:.3f}  r3 {r3:.3f}")
    print(f"refit lifter's yaw correlation {yaw_corr(R, P['test']['yaw_deg']):+.2f}")


def cmd_pictures(a):
    """The demo's pictures (kp3d/report.py) of any run: keypoints over test faces ordered by yaw,
    reconstructions, the structure, per-image 3D; and its figures."""
    import os

    from kp3d import report
    from kp3d.train.trainer import evaluate_model, load_model

    model, _ = load_model(a.run)
    m, preds = evaluate_model(model, DATA, regress_length=a.regress, test_length=a.test)
    os.makedirs(a.out, exist_ok=True)
    names = report.draw_pictures(model, DATA, preds, a.out)
    print(f"r2 {m['nme_2d'] / m['nme_2d_mean_baseline']:.3f}, r3 {m['nme_3d'] / m['nme_3d_flat_baseline']:.3f}; "
          f"wrote {', '.join(sorted(names.values()))} under {a.out}")


def cmd_copies(a):
    """r2 of a model with refined keypoints (ModelConfig.refine_reach) from all its points, from
    the keypoints alone and from their refined copies alone (regression on 500 faces, 300 test faces)."""
    from kp3d.model.keypoint_model import predict_dataset
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    if not model.config.refine_reach:
        raise SystemExit("copies: this model has no refined keypoints (refine_reach 0)")
    S, K = model.config.image_size, model.config.num_keypoints
    P = {split: predict_dataset(model, build_dataset(DATA, split, S, length=n))
         for split, n in (("regress", 500), ("test", 300))}
    for name, points in (("keypoints and copies", slice(None)), ("keypoints alone", slice(0, K)),
                         ("copies alone", slice(K, None))):
        m = evaluate_keypoints(P["regress"]["keypoints_2d"][:, points], P["regress"]["landmarks_2d"],
                               P["test"]["keypoints_2d"][:, points], P["test"]["landmarks_2d"],
                               eye_indices=(0, 1))
        print(f"{name:<22} r2 {m['nme_2d'] / m['nme_2d_mean_baseline']:.3f}")


def nearest_landmarks(points, landmarks_px):
    """(N, P) index of the nearest landmark and (N, P) its distance, for points (N, P, 2) and
    landmarks (N, L, 2), both in pixels."""
    d = np.linalg.norm(points[:, :, None] - landmarks_px[:, None], axis=-1)
    return d.argmin(-1), d.min(-1)


def side_bands(yaw, side_deg=20.0, frontal=True):
    """{label: mask} of the faces turned one way, (with `frontal`) roughly frontal, and turned
    the other way."""
    bands = {f"yaw < -{side_deg:g}": yaw < -side_deg}
    if frontal:
        bands[f"|yaw| <= {side_deg:g}"] = np.abs(yaw) <= side_deg
    bands[f"yaw > {side_deg:g}"] = yaw > side_deg
    return bands


def where_report(points, landmarks_px, yaw, names, num_keypoints, side_deg=20.0):
    """One line per point: the median distance to its nearest landmark, the landmarks it is
    nearest to most often, and the one it is nearest to on the faces turned one way (yaw below
    -side_deg) and the other (above side_deg), with how often."""
    near, dist = nearest_landmarks(points, landmarks_px)
    L = len(names)
    for k in range(points.shape[1]):
        counts = np.bincount(near[:, k], minlength=L) / len(near)
        top = ", ".join(f"{names[j]} {counts[j]:.0%}" for j in np.argsort(-counts)[:3])
        sides = []
        for label, faces in side_bands(yaw, side_deg, frontal=False).items():
            if faces.any():
                c = np.bincount(near[faces, k], minlength=L) / faces.sum()
                sides.append(f"{label}: {names[c.argmax()]} {c.max():.0%}")
        kind = "keypoint" if k < num_keypoints else "copy"
        print(f"{kind} {k % num_keypoints:2d}: {np.median(dist[:, k]):4.1f} px from the nearest "
              f"landmark (median); nearest to {top}; {'; '.join(sides)}", flush=True)


def cmd_where(a):
    """Where a model's points land: for each keypoint and refined copy, which of the 24 true
    landmarks it is nearest to on the test faces, overall and on the faces turned either way
    (pixels at the model's image size); with refinement, first how alike its templates are, to
    each other and each to its own mirror image."""
    from kp3d.model.keypoint_model import predict_dataset
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    S, K = model.config.image_size, model.config.num_keypoints
    if model.config.refine_reach:
        from kp3d.model.appearance import mirror_overlap, template_overlap

        templates, radius = model.templates.detach(), model.config.refine_radius
        mirrored = mirror_overlap(templates, radius)
        print(f"the templates' mutual overlap {float(template_overlap(templates, radius)):.3f} (1: one "
              f"pattern, even shifted; random templates: about 0.05); each one's overlap with its own "
              f"mirror image (1: mirror-symmetric, blind to the side; an eye's outer corner: about 0.7; "
              f"random: about 0.3), copy 0 to {len(mirrored) - 1}: "
              + " ".join(f"{v:.2f}" for v in mirrored.tolist()), flush=True)
    ds = build_dataset(DATA, "test", S, length=a.faces)
    P = predict_dataset(model, ds)
    where_report(to_pixels(P["keypoints_2d"], S), np.asarray(P["landmarks_2d"], np.float64),
                 np.asarray(P["yaw_deg"], np.float64), ds.info.landmark_names, K)


# K = 8 points on a ring of radius 0.7 head units (the head's half-width is about 0.8, its
# half-height 1.0) around the head's centre, 0.5 in front of it
RING = np.array([[0.7 * np.cos(t), 0.7 * np.sin(t), 0.5] for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
RING_POSES = {"image": "centre and size (a rigid pattern in the image)",
              "roll": "centre, size and roll (what the outline shows)",
              "pose": "the full pose (points fixed on the head in 3D)"}


def ring_keypoints(scene, turn, ring=RING):
    """(8, 2) pixels: RING around the posed head centre of a synthetic face scene, turned by
    none of the head's pose (`image`), its roll only (`roll`) or all of it (`pose`)."""
    from kp3d.data import render

    R = {"image": np.eye(3), "roll": render.rotation_matrix(roll=np.radians(scene.roll_deg)),
         "pose": head_rotation(scene)}[turn]
    return scene.to_pixels(scene.object_centre + ring @ R.T)


def scene_of(ds, i):
    """The generator's scene of item i of a synthetic dataset (its true pose), not rendered."""
    return ds.module.sample_scene(ds.rng(int(i)), ds.image_size)


def cmd_ceiling(a):
    """The best 2D figure of keypoints that follow only part of a head's pose: K points at fixed
    places around the head's centre, in the image plane or on the head in 3D, placed from the
    generator's true pose. Keypoints on the head's outline see its position, size and roll; the
    yaw and pitch move the face inside that outline, and only keypoints on the face, or at the
    centres of the regions inside it (the skin, the hair), see them."""
    ds = {split: build_dataset(DATA, split, SIZE, length=n) for split, n in (("regress", 500), ("test", 300))}
    scenes = {s: [scene_of(d, i) for i in range(len(d))] for s, d in ds.items()}
    gt = {s: np.stack([sc.to_pixels(sc.landmarks) for sc in scenes[s]]) for s in scenes}

    def r2(place):  # place(split, i) -> (K, 2) pixels
        kp = {s: to_frame(np.stack([place(s, i) for i in range(len(scenes[s]))])) for s in scenes}
        m = evaluate_keypoints(kp["regress"], gt["regress"], kp["test"], gt["test"], eye_indices=(0, 1))
        return m["nme_2d"] / m["nme_2d_mean_baseline"]

    ring = lambda s, i, turn="image": ring_keypoints(scenes[s][i], turn)  # noqa: E731
    for turn, name in RING_POSES.items():
        print(f"{name:<52} r2 {r2(lambda s, i: ring(s, i, turn)):.3f}")
    true = lambda s, i: scenes[s][i].to_pixels(scenes[s][i].landmarks[LANDMARKS])  # noqa: E731
    print(f"{'8 true landmarks (on the parts)':<52} r2 {r2(true):.3f}")
    # keypoints at the centres of colour regions (what `part_maps` can learn), placed from the
    # regions the generator paints, not from the pose
    regions = {s: [region_centroids(ds[s], i) for i in range(len(scenes[s]))] for s in scenes}
    at = lambda s, i, *names: np.stack([regions[s][i][n] for n in names])  # noqa: E731
    print(f"{'the rigid ring and the skin and hair centroids':<52} r2 "
          f"{r2(lambda s, i: np.vstack([ring(s, i), at(s, i, 'skin', 'hair')])):.3f}")
    print(f"{'the skin, hair and head centroids alone (3 points)':<52} r2 "
          f"{r2(lambda s, i: at(s, i, 'skin', 'hair', 'head')):.3f}")
    # how far those centres move inside the head: a few pixels, less than a 16 x 16 heatmap's cell
    shift = np.stack([regions["test"][i]["skin"] - sc.to_pixels(sc.object_centre[None])[0]
                      for i, sc in enumerate(scenes["test"])])[:, 0]
    yaw = np.array([sc.yaw_deg for sc in scenes["test"]])
    print(f"the skin's centroid, x from the head's centre: {shift[yaw < -50].mean():+.1f} px at yaw "
          f"< -50, {shift[np.abs(yaw) < 10].mean():+.1f} px at |yaw| < 10, {shift[yaw > 50].mean():+.1f} "
          f"px at yaw > 50 (test faces)")


def head_rotation(scene):
    """The head's true rotation in a synthetic scene (head frame -> world)."""
    from kp3d.data import render

    return render.rotation_matrix(*(np.radians(getattr(scene, f"{n}_deg")) for n in ("yaw", "pitch", "roll")))


def head_cameras(scenes):
    """(A (N, 2, 3), base (N, 2)): the pixel of a head-frame point X in scene i is base_i + A_i X,
    A_i = diag(s, -s) R_i[:2] (the generator's weak perspective; image y points down)."""
    A = np.stack([np.diag([sc.scale, -sc.scale]) @ head_rotation(sc)[:2] for sc in scenes])
    return A, np.stack([sc.to_pixels(sc.object_centre[None])[0] for sc in scenes])


def rigid_head_fit(points, scenes):
    """The head-frame position X (K, 3) of each of K points that best explains its pixels
    (N, K, 2) as a point fixed on the head, at the scenes' true poses (least squares)."""
    A, base = head_cameras(scenes)
    rhs = (points - base[:, None]).transpose(0, 2, 1).reshape(-1, points.shape[1])  # (2N, K)
    return np.linalg.lstsq(A.reshape(-1, 3), rhs, rcond=None)[0].T


def distance_from_head(points, scenes, X):
    """(N, K) pixel distances of the points (N, K, 2) from the rigid head X, (K, 3) or one per
    face (N, K, 3), at the scenes' true poses (`head_cameras`)."""
    A, base = head_cameras(scenes)
    X = np.broadcast_to(X, (len(points),) + X.shape[-2:])
    return np.linalg.norm(np.einsum("nij,nkj->nki", A, X) + base[:, None] - points, axis=-1)


def scaled_orthographic_camera(X, p):
    """(rows (2, 3), translation (2,)): the weak-perspective camera, pixel = X rows^T +
    translation, that best fits the pixels p (K, 2) of the head-frame points X (K, 3): an affine
    camera by least squares, made a scaled rotation (the nearest one by SVD, one scale)."""
    cam = np.linalg.lstsq(np.c_[X, np.ones(len(X))], p, rcond=None)[0][:3].T  # (2, 3)
    U, sv, Vt = np.linalg.svd(cam, full_matrices=False)
    rows = sv.mean() * U @ Vt
    return rows, p.mean(0) - X.mean(0) @ rows.T


def fitted_head_rotations(points, X):
    """((N, 3, 3) rotations, (N,) scales): the weak-perspective pose of the rigid head X (K, 3)
    that best fits each image's points (N, K, 2) (`scaled_orthographic_camera`); image y points
    down, the head's y up; the third row is the cross product of the first two."""
    rotations, scales = [], []
    for p in points:
        rows = scaled_orthographic_camera(X, p)[0]
        scale = np.linalg.norm(rows[0])
        r0, r1 = rows[0] / scale, -rows[1] / scale
        rotations.append(np.stack([r0, r1, np.cross(r0, r1)]))
        scales.append(scale)
    return np.array(rotations), np.array(scales)


def head_depth(X, rotations, scales):
    """Depth (N, K), pixels, of the rigid head X (K, 3) at rotations (N, 3, 3) and scales (N,)
    (pixels per head unit)."""
    return scales[:, None] * np.einsum("kj,nj->nk", X, rotations[:, 2])


def fitted_head_depth(points, X):
    """Depth (N, K), pixels, of the rigid head X (K, 3) at the pose that best fits each image's
    points (N, K, 2) (`fitted_head_rotations`)."""
    return head_depth(X, *fitted_head_rotations(points, X))


def rotation_angle_deg(R1, R2):
    """(N,) geodesic angles in degrees between rotations (N, 3, 3)."""
    c = (np.einsum("nij,nij->n", R1, R2) - 1) / 2
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def head_rotation_off(scene, rng, sigma_deg):
    """The head's rotation in a synthetic scene with Gaussian noise of sigma_deg degrees added to
    its yaw and its pitch (the roll, which the 2D points show, kept)."""
    from kp3d.data import render

    yaw, pitch = rng.normal(0.0, sigma_deg, 2) + (scene.yaw_deg, scene.pitch_deg)
    return render.rotation_matrix(np.radians(yaw), np.radians(pitch), np.radians(scene.roll_deg))


def ratios_with_depth(points, depth, gt):
    """(r2, r3) of 2D points {split: (N, K, 2) pixels} with a depth {split: (N, K) pixels}
    appended, in the [-1, 1] frame; gt: {split: (2D, 3D) landmarks} of the regress and test splits."""
    p3 = {s: np.concatenate([to_frame(points[s]), depth[s][..., None] / ((SIZE - 1) / 2)], -1)
          for s in ("regress", "test")}
    return ratios(to_frame(points["regress"]), to_frame(points["test"]), p3["regress"], p3["test"],
                  gt["regress"], gt["test"])


def rigid_report(name, points, scenes, gt, pose_noise=()):
    """Print how far the test points sit from a rigid head (fit on the train split) at the true
    pose, and r3 with that head's depth at the true pose and at the pose fitted to the points;
    then for each of `pose_noise` (degrees), r3 at the true pose with that much Gaussian noise on
    its yaw and pitch. points, scenes: {split: (N, K, 2) pixels / scenes} for train, regress, test."""
    X = rigid_head_fit(points["train"], scenes["train"])
    dist = distance_from_head(points["test"], scenes["test"], X).mean(0)
    splits = ("regress", "test")
    r3 = lambda depth: ratios_with_depth(points, depth, gt)  # noqa: E731
    scales = {s: np.array([sc.scale for sc in scenes[s]]) for s in splits}
    true_depth = {s: head_depth(X, np.stack([head_rotation(sc) for sc in scenes[s]]), scales[s]) for s in splits}
    r2, at_true_pose = r3(true_depth)
    at_fitted_pose = r3({s: fitted_head_depth(points[s], X) for s in splits})[1]
    true_test = np.stack([head_rotation(sc) for sc in scenes["test"]])
    fitted_off = np.median(rotation_angle_deg(fitted_head_rotations(points["test"], X)[0], true_test))
    print(f"{name}: {dist.mean():.1f} px from a rigid head (per point {np.array2string(dist, precision=1, max_line_width=10 ** 6)}); "
          f"r2 {r2:.3f}, r3 with its depth at the true pose {at_true_pose:.3f}, "
          f"at the pose fitted to the points {at_fitted_pose:.3f} (off by {fitted_off:.0f} deg, median)",
          flush=True)
    for sigma in pose_noise:
        rng = np.random.default_rng(0)  # the same draw whichever sigmas are asked for
        off = {s: np.stack([head_rotation_off(sc, rng, sigma) for sc in scenes[s]]) for s in splits}
        depth = {s: head_depth(X, off[s], scales[s]) for s in splits}
        print(f"  r3 with its depth at the true pose, yaw and pitch off by {sigma:g} deg (Gaussian; "
              f"{np.median(rotation_angle_deg(off['test'], true_test)):.0f} deg median): {r3(depth)[1]:.3f}",
              flush=True)


def fit_residual(X, p):
    """Mean distance (pixels) of the points p (K, 2) from the rigid head X (K, 3) at the
    weak-perspective pose that fits them best."""
    rows, t = scaled_orthographic_camera(X, p)
    return np.linalg.norm(X @ rows.T + t - p, axis=-1).mean()


def two_head_depth(points, scenes, mode, gt):
    """Two rigid heads (`rigid_head_fit`), one fit on the training faces whose `mode` {split: (N,)
    bool} is True, one on the others. Returns (mean distance of the test points from the head of
    their mode at the true pose, r3 with each face's depth at the pose fitted to its points with
    the head of its mode, r3 with the head that fits the points better, {split: that choice})."""
    splits = ("regress", "test")
    heads = {m: rigid_head_fit(points["train"][mode["train"] == m],
                               [sc for sc, t in zip(scenes["train"], mode["train"]) if t == m])
             for m in (True, False)}
    dist = distance_from_head(points["test"], scenes["test"], np.stack([heads[m] for m in mode["test"]])).mean()
    better = {s: np.array([fit_residual(heads[True], p) < fit_residual(heads[False], p) for p in points[s]])
              for s in splits}
    found = []
    for choice in (mode, better):
        depth = {s: np.stack([fitted_head_depth(p[None], heads[m])[0] for p, m in zip(points[s], choice[s])])
                 for s in splits}
        found.append(ratios_with_depth(points, depth, gt)[1])
    return dist, found[0], found[1], better


def copies_side(points, num_keypoints):
    """(N,) bool: the copies (the points after the first num_keypoints) sit right of the
    keypoints, their median x above the keypoints' mean x: which eye they took, as the points
    show it."""
    return np.median(points[:, num_keypoints:, 0], 1) > points[:, :num_keypoints, 0].mean(1)


def two_mode_report(points, scenes, gt, num_keypoints=None):
    """A head that may differ with the side the face is turned to: one rigid head fit on the
    training faces of yaw >= 0, one on the others (`two_head_depth`). Prints how far the test
    points sit from the head of their true side at the true pose, and r3 with the depth at the
    pose fitted to the points, taking the head of the true side (what a lifter that knew the side
    could do) or the head that fits the points better (what the points themselves tell). With
    num_keypoints (a model with refined copies), the same with the two heads split by the side
    of the keypoints the copies sit on, which the points show."""
    yaw = {s: np.array([sc.yaw_deg for sc in scenes[s]]) for s in scenes}
    true_side = {s: yaw[s] >= 0 for s in scenes}
    dist, given, better, chosen = two_head_depth(points, scenes, true_side, gt)
    print(f"  two rigid heads, one per side the face is turned to: {dist:.1f} px from the head of the "
          f"true side; r3 at the pose fitted to the points with the head of the true side "
          f"{given:.3f}, with the head that fits them better {better:.3f} (the true side on "
          f"{np.mean(chosen['test'] == true_side['test']):.0%} of the test faces)", flush=True)
    if num_keypoints is not None and points["test"].shape[1] > num_keypoints:
        side = {s: copies_side(points[s], num_keypoints) for s in points}
        flipped = np.mean(side["train"][yaw["train"] >= 0]) < 0.5  # name the copies' sides like the yaw's
        side = {s: v ^ flipped for s, v in side.items()}
        dist, given, _, _ = two_head_depth(points, scenes, side, gt)
        print(f"  two rigid heads, one per side of the keypoints the copies sit on: {dist:.1f} px from "
              f"the head of that side; r3 at the pose fitted to the points with it {given:.3f} (that "
              f"side is the true one on {np.mean(side['test'] == true_side['test']):.0%} of the test "
              f"faces)", flush=True)


def cmd_rigid(a):
    """Can any lifter find depth in these 2D points? Each point is given the head-frame position
    that fits it best over 1500 training faces at their TRUE poses (a rigid head); then on the
    test faces: how far the points sit from it (pixels at 64 x 64, or at the model's image
    size), and r3 when their depth is that head's at the true pose, and at the pose fitted to
    the 2D points themselves (what an ideal rigid lifter could do). Beside them, 8 true
    landmarks with Gaussian noise (pixels at the same size)."""
    global SIZE
    model = None
    if a.run:
        from kp3d.train.trainer import load_model

        model, _ = load_model(a.run)
        SIZE = model.config.image_size  # every conversion of this script follows the model's size
    n = {"train": 1500, "regress": 500, "test": 300}
    ds = {s: build_dataset(DATA, s, SIZE, length=k) for s, k in n.items()}
    scenes = {s: [scene_of(d, i) for i in range(len(d))] for s, d in ds.items()}
    gt = {s: landmarks(s, n[s])[:2] for s in ("regress", "test")}
    if model is not None:
        from kp3d.model.keypoint_model import predict_dataset

        px = {s: to_pixels(predict_dataset(model, d)["keypoints_2d"], SIZE) for s, d in ds.items()}
        rigid_report("the model's points", px, scenes, gt, a.pose_noise)
        if a.two_modes:
            two_mode_report(px, scenes, gt, model.config.num_keypoints if model.config.refine_reach else None)
    true = {s: np.stack([sc.to_pixels(sc.landmarks[LANDMARKS]) for sc in scenes[s]]) for s in scenes}
    for sigma in a.sigmas:
        rng = np.random.default_rng(0)  # the same draw whichever sigmas are asked for
        noisy = {s: true[s] + rng.normal(0, sigma, true[s].shape) for s in true}
        rigid_report(f"8 true landmarks, noise {sigma:g} px", noisy, scenes, gt)
        if a.two_modes:
            two_mode_report(noisy, scenes, gt)


CONTROL_SEEDS = (0, 1, 2, 3, 4)


def untrained_mlp(x, out_dim, seed):
    """(N, out_dim) float64: the outputs of an untrained MLP of the lifter's size (weights drawn
    from `seed`) on inputs x (N, D): arbitrary nonlinear functions of the points, no depth."""
    torch.manual_seed(seed)
    net = ResMLP(x.shape[1], out_dim, 256, 2)
    with torch.no_grad():
        return net(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


def lifter_view(points):
    """(N, 2P) points (N, P, 2) as the lifter sees them, centred and divided by their RMS
    radius, and (N,) those radii."""
    c = points - points.mean(1, keepdims=True)
    r = np.sqrt((c ** 2).sum(-1).mean(1))
    return (c / r[:, None, None]).reshape(len(c), -1), r


def with_untrained_depths(points, seed):
    """(N, P, 3): points (N, P, 2) in the [-1, 1] frame, each at the depth an untrained MLP gives
    it from all of them (as the lifter sees them, the depth scaled back by their RMS radius):
    the 3D keypoints' format with no depth in it."""
    x, r = lifter_view(points)
    z = untrained_mlp(x, points.shape[1], seed) * r[:, None]
    return np.concatenate([points, z[..., None]], -1)


def cmd_depth_ceiling(a):
    """About the most any lifter could get from a model's points: an MLP from the points (centred,
    divided by their RMS radius, as the lifter sees them) to the true depth of every landmark,
    trained WITH the true depths of N training faces; r3 when its depths are appended to the
    points. An unsupervised lifter has less to go on than this, so a ceiling near or above the
    target says the points, not the lifter, stop the 3D figure. Beside it, the true depths
    appended (what the points' 2D errors leave, with perfect depth), and the control: the same
    MLP untrained, whose outputs are no depth at all but still nonlinear in the points, which
    the regression can use. Without RUN: the 8 true
    landmarks with Gaussian noise (pixels at 64 x 64) in place of a model's points."""
    n = {"train": max(a.labelled), "regress": 500, "test": 300}
    if a.run:
        from kp3d.model.keypoint_model import predict_dataset
        from kp3d.train.trainer import load_model

        model, _ = load_model(a.run)
        size = model.config.image_size
        P = {s: predict_dataset(model, build_dataset(DATA, s, size, length=k), batch_size=128)
             for s, k in n.items()}
        truth = {s: (P[s]["landmarks_2d"], P[s]["landmarks_3d"]) for s in n}
        depth_ceiling_report("the model's points", {s: P[s]["keypoints_2d"] for s in n}, truth, size, a)
        return
    truth = {s: landmarks(s, k)[:2] for s, k in n.items()}
    for sigma in a.sigmas:
        rng = np.random.default_rng(0)
        points = {s: to_frame(truth[s][0][:, LANDMARKS] + rng.normal(0, sigma, truth[s][0][:, LANDMARKS].shape))
                  for s in n}
        depth_ceiling_report(f"8 true landmarks, noise {sigma:g} px", points, truth, SIZE, a)


def depth_ceiling_report(name, points, truth, size, a):
    """`depth-ceiling` for points {split: (N, K, 2), [-1, 1] frame} and truth {split: (2D, 3D)
    landmarks, pixels at `size`} of the train, regress and test splits."""
    kp = {s: np.asarray(p, np.float64) for s, p in points.items()}

    def lifter_input(s):  # (inputs, RMS radii)
        x, r = lifter_view(kp[s])
        return torch.tensor(x, dtype=torch.float32), r

    def true_depth(s):  # (N, L) centred depth in the [-1, 1] frame's units
        z = np.asarray(truth[s][1][..., 2], np.float64)
        return (z - z.mean(1, keepdims=True)) * 2 / (size - 1)

    def with_depths(s, z):  # the points at z = 0 (frame -1), then one point (0, 0, z_l) per landmark
        N, K = kp[s].shape[:2]
        return np.concatenate([np.concatenate([kp[s], -np.ones((N, K, 1))], -1),
                               np.concatenate([-np.ones((N, z.shape[1], 2)), z[..., None]], -1)], 1)

    def r3(z):
        p3 = {s: with_depths(s, z[s]) for s in ("regress", "test")}
        return ratios(kp["regress"], kp["test"], p3["regress"], p3["test"], truth["regress"], truth["test"])[1]

    inputs = {s: lifter_input(s) for s in kp}  # each split's once, for every labelled count
    x_all, r_all = inputs["train"]
    z_all = true_depth("train")
    found = []
    for labelled in a.labelled:
        torch.manual_seed(0)
        x = x_all[:labelled]
        target = torch.tensor(z_all[:labelled] / r_all[:labelled, None], dtype=torch.float32)
        net = ResMLP(x.shape[1], target.shape[1], 256, 2)
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
        for _ in range(a.steps):
            i = torch.randint(0, labelled, (64,))
            loss = (net(x[i]) - target[i]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = {s: net(inputs[s][0]).double().numpy() * inputs[s][1][:, None] for s in ("regress", "test")}
        found.append(f"{r3(z):.3f} ({labelled} faces)")
    print(f"{name}: r3 with depth regressed from the points by an MLP trained on true depths "
          f"{', '.join(found)}; with the true depths {r3({s: true_depth(s) for s in ('regress', 'test')}):.3f}",
          flush=True)
    # The control: the regression rewards any nonlinear function of the points, depth or not
    untrained = []
    for seed in CONTROL_SEEDS:
        z = {s: untrained_mlp(inputs[s][0], z_all.shape[1], seed) * inputs[s][1][:, None]
             for s in ("regress", "test")}
        untrained.append(f"{r3(z):.3f}")
    print(f"{name}: r3 with the outputs of the same MLP untrained (no depth at all) in place of depths, "
          f"seeds {CONTROL_SEEDS[0]} to {CONTROL_SEEDS[-1]}: {' '.join(untrained)}", flush=True)


def nme_3d_parts(points, gt3):
    """The evaluation's 3D regression (bias-free, fit on the regress split) from 3D points
    {split: (N, P, 3), [-1, 1] frame} to the landmarks gt3 {split: (N, L, 3) pixels}: on the test
    split, the mean per-landmark error (fractions of sqrt(w h), as nme_3d) and its image-plane
    and depth parts: (3D, x y, z)."""
    from kp3d.eval.metrics import _centre_depth, _centre_like, box_size, to_regression_frame
    from kp3d.eval.regression import fit_bias_free

    X = {s: to_regression_frame(points[s], "kp3d").reshape(len(points[s]), -1) for s in points}
    G = {s: _centre_depth(np.asarray(gt3[s], np.float64)) for s in gt3}
    W = fit_bias_free(X["regress"], G["regress"].reshape(len(G["regress"]), -1))
    P = _centre_like((X["test"] @ W).reshape(G["test"].shape), G["test"])
    norm = box_size(G["test"], "sqrtwh")[:, None]
    xy = np.linalg.norm(P[..., :2] - G["test"][..., :2], axis=-1) / norm
    z = np.abs(P[..., 2] - G["test"][..., 2]) / norm
    return np.hypot(xy, z).mean(), xy.mean(), z.mean()


def depth_share_report(name, sets, gt3, regress_counts):
    """Print, for each regression count, the flat lift's 3D NME split into its image-plane and
    depth parts, what exact depth would leave (its image-plane part), and each 3D point set of
    `sets` {label: {split: (N, P, 3)}} beside it. The first set is the flat lift."""
    for n in regress_counts:
        cut = lambda d: {"regress": d["regress"][:n], "test": d["test"]}  # noqa: E731
        flat, *others = [(label, nme_3d_parts(cut(p), cut(gt3))) for label, p in sets.items()]
        e3, xy, z = flat[1]
        line = (f"{name}, regression on {n}: flat lift 3D {e3:.4f} (image plane {xy:.4f}, depth "
                f"{z:.4f}); exact depth {xy:.4f} ({xy / e3:.3f} x)")
        for label, (m3, mxy, mz) in others:
            line += f"; {label} {m3:.4f} (image plane {mxy:.4f}, depth {mz:.4f}; {m3 / e3:.3f} x)"
        print(line, flush=True)


def untrained_depth_sets(points):
    """{label: {split: (N, P, 3)}}: the control of `depth-share`, the points (split: (N, P, 2))
    at an untrained MLP's depths, one set per seed of CONTROL_SEEDS."""
    return {f"untrained-MLP depth, seed {seed}": {s: with_untrained_depths(np.asarray(p, np.float64), seed)
                                                  for s, p in points.items()}
            for seed in CONTROL_SEEDS}


def cmd_depth_share(a):
    """How much of the 3D figure depth can win. The flat lift's 3D NME splits into an
    image-plane part (the 2D regression's error) and a depth part; exact depth that left the
    image plane alone would remove only the second, so the image-plane part over the flat lift's
    3D NME is what such depth gives at best. With RUN: the model's 3D keypoints (the points at
    the fitted structure's depth) and the structure itself (x, y its projection) beside it.
    Without RUN: the 8 true landmarks with Gaussian noise (pixels at 64 x 64). Last, the control:
    the points at an untrained MLP's depths, which are no depth at all but nonlinear in the
    points, as the regression can use any such function: a depth that carries the pose must
    beat it."""
    zero = lambda p: np.concatenate([p, np.zeros_like(p[..., :1])], -1)  # noqa: E731
    counts = {"regress": max(a.regress), "test": a.test}
    if a.run:
        from kp3d.model.keypoint_model import predict_dataset
        from kp3d.train.trainer import load_model

        model, _ = load_model(a.run)
        P = {s: predict_dataset(model, build_dataset(DATA, s, model.config.image_size, length=n))
             for s, n in counts.items()}
        sets = {"flat": {s: zero(P[s]["keypoints_2d"]) for s in P}}
        if "keypoints_3d" in P["test"]:
            sets["3D keypoints"] = {s: P[s]["keypoints_3d"] for s in P}
            sets["fitted structure"] = {s: P[s]["fitted_3d"] for s in P}
        sets.update(untrained_depth_sets({s: P[s]["keypoints_2d"] for s in P}))
        depth_share_report("the model's points", sets, {s: P[s]["landmarks_3d"] for s in P}, a.regress)
    gt = {s: landmarks(s, n) for s, n in counts.items()} if a.sigmas else {}
    for sigma in a.sigmas:
        rng = np.random.default_rng(0)  # the same draw whichever sigmas are asked for
        flat = {s: zero(to_frame(g[0][:, LANDMARKS] + rng.normal(0, sigma, g[0][:, LANDMARKS].shape)))
                for s, g in gt.items()}
        sets = {"flat": flat, **untrained_depth_sets({s: p[..., :2] for s, p in flat.items()})}
        depth_share_report(f"8 true landmarks, noise {sigma:g} px", sets, {s: g[1] for s, g in gt.items()},
                           a.regress)


# (reach, temperature) pairs of the refinement's search scored by `search`: the default first
SEARCH_SETTINGS = ((0.19, 0.02), (0.13, 0.02), (0.10, 0.02), (0.065, 0.02), (0.19, 0.005))


def template_search(images, templates, start_px, reach, temperature, radius=2):
    """(N, L, 2) pixels: the refinement's search (kp3d/model/appearance.py) for templates
    (L, D) from start_px (N, L, 2), in batches."""
    from kp3d.model.appearance import refine_keypoints

    found = [refine_keypoints(images[i:i + 100], torch.as_tensor(to_frame(start_px[i:i + 100]), dtype=images.dtype),
                              templates, radius, reach, temperature).numpy()
             for i in range(0, len(images), 100)]
    return to_pixels(np.concatenate(found), SIZE)


def cmd_search(a):
    """How local is the refinement's search? Each of 8 true landmarks gets its own mean patch
    over the training faces as its template (the best a learned template could be). From the
    landmarks' true places on the test faces, the search (soft-argmax of amplitude / temperature
    - d^2 / (2 reach^2)) moves them this far, for a few reaches and temperatures; beside it the
    hard best match within a disc. With RUN: how far the model's copies sit from its keypoints,
    and an active-shape fit with everything true but the start: the 8 landmarks' rigid head
    (their head-frame places at the true poses), placed at the pose that best fits the model's
    points (their own rigid head), searched for, the pose refit to what was found, repeated."""
    from kp3d.model.appearance import local_patches, template_response

    n = {"train": a.train_faces, "test": a.faces}
    ds = {s: build_dataset(DATA, s, SIZE, length=k) for s, k in n.items()}
    scenes = {s: [scene_of(d, i) for i in range(len(d))] for s, d in ds.items()}
    images = {s: torch.stack([d[i]["image"] for i in range(len(d))]) for s, d in ds.items()}
    true = {s: np.stack([sc.to_pixels(sc.landmarks[LANDMARKS]) for sc in scenes[s]]) for s in scenes}
    templates = local_patches(images["train"], torch.as_tensor(to_frame(true["train"]), dtype=torch.float32), 2).mean(0)

    def err(found):  # (mean over the two eyes, mean over all 8) in pixels
        e = np.linalg.norm(found - true["test"], axis=-1).mean(0)
        return f"eyes {e[:2].mean():.1f} px, all 8 {e.mean():.1f} px"
    print(f"from the true landmarks of {a.faces} test faces, each with its own mean patch as template:")
    for reach, temperature in SEARCH_SETTINGS:
        found = template_search(images["test"], templates, true["test"], reach, temperature)
        print(f"  search, reach {reach:g} ({reach * (SIZE - 1) / 2:.0f} px), temperature {temperature:g}: "
              f"moved {err(found)}")
    response = template_response(images["test"], templates, 2).numpy()  # (N, 8, S, S)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for disc in (2, 3, 6):
        d2 = (xs - true["test"][..., 0, None, None]) ** 2 + (ys - true["test"][..., 1, None, None]) ** 2
        best = np.where(d2 <= disc * disc, response, -np.inf).reshape(*response.shape[:2], -1).argmax(-1)
        print(f"  best match within {disc} px: moved {err(np.stack([best % SIZE, best // SIZE], -1))}")
    if not a.run:
        return
    from kp3d.model.keypoint_model import predict_dataset
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    if model.config.image_size != SIZE or not model.config.refine_reach:
        raise SystemExit(f"search: the model must work at {SIZE} x {SIZE} and have refined keypoints")
    K = model.config.num_keypoints
    points = {s: to_pixels(predict_dataset(model, d)["keypoints_2d"], SIZE) for s, d in ds.items()}
    gap = np.linalg.norm(points["test"][:, K:] - points["test"][:, :K], axis=-1)
    print(f"the model's copies sit {gap.mean():.1f} px from their keypoints (median "
          f"{np.median(gap):.1f}, 90th percentile {np.percentile(gap, 90):.1f}, largest {gap.max():.0f})")
    X_points = rigid_head_fit(points["train"], scenes["train"])
    X_marks = rigid_head_fit(true["train"], scenes["train"])
    cams = [scaled_orthographic_camera(X_points, p) for p in points["test"]]
    print("active-shape fit from the pose of the model's points, true templates and head:")
    for step, reach in enumerate(a.reaches):
        start = np.stack([X_marks @ rows.T + t for rows, t in cams])
        found = template_search(images["test"], templates, start, reach, 0.02)
        print(f"  round {step + 1}: start {err(start)} off; search, reach {reach:g}: {err(found)}")
        cams = [scaled_orthographic_camera(X_marks, p) for p in found]


OUTER_CORNERS = (5, 8)  # left_eye_outer, right_eye_outer (the copies' feature, `where`)


def corner_hits(found, corners_px, yaw, tol):
    """For each side band: the share of faces whose found point (N, 2) lies within tol pixels of
    the left and of the right outer corner (corners_px (N, 2, 2)), as 'L x % R y %'."""
    near = np.linalg.norm(found[:, None] - corners_px, axis=-1) < tol  # (N, 2)
    return "; ".join(f"{label}: L {near[m, 0].mean():.0%} R {near[m, 1].mean():.0%}"
                     for label, m in side_bands(yaw).items() if m.any())


def faces_with_landmarks(split, count, size):
    """{"image" (N, 3, S, S), "visible" (N, L) bool tensors; "landmarks" (N, L, 2) pixels, "yaw"
    (N,) degrees, "centre" (N, 2) pixels of the head's centre} of `count` synthetic faces."""
    ds = build_dataset(DATA, split, size, length=count)
    items = [ds[i] for i in range(count)]
    faces = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "visible")}
    faces["landmarks"] = np.stack([np.asarray(it["landmarks_2d"], np.float64) for it in items])
    faces["yaw"] = np.array([float(it["yaw_deg"]) for it in items])
    scenes = [scene_of(ds, i) for i in range(count)]
    faces["centre"] = np.stack([sc.to_pixels(sc.object_centre[None])[0] for sc in scenes])
    return faces


def cmd_corners(a):
    """Could a template tell the left eye from the right, where the learned ones take the eye
    nearer the camera (`where`)? The learned templates are their own mirror images (`where`
    prints their mirror overlap), so they cannot. This gives the search the best one-sided
    templates a learned one could become: the mean patch of each eye's outer corner over the training faces where
    it is visible (skin on one side, the eye on the other). Printed: how often each outer corner
    is visible on the faces turned each way; each template's mirror overlap; and where each
    lands on the test faces, by side: its best match in the whole image, and the refinement's
    search (kp3d/model/appearance.py) from the head's centre at the demo's reach and temperature.
    Beside them the left corner's patch made symmetric (its mean with its mirror image)."""
    from kp3d.model.appearance import local_patches, mirror_overlap, refine_keypoints, template_response

    S, r = a.size, a.radius
    frame = lambda px: torch.as_tensor(to_frame(px, S), dtype=torch.float32)  # noqa: E731
    train, test = (faces_with_landmarks(split, count, S) for split, count in (("train", a.train_faces), ("test", a.faces)))
    for part in (train, test):
        part["corners"] = part["landmarks"][:, list(OUTER_CORNERS)]
    for j, name in enumerate(("left", "right")):
        shown = test["visible"][:, OUTER_CORNERS[j]].numpy()
        print(f"the {name} eye's outer corner is visible on " + "; ".join(
            f"{label} {shown[m].mean():.0%}" for label, m in side_bands(test["yaw"]).items() if m.any()))
    templates = []
    for j in range(2):
        seen = train["visible"][:, OUTER_CORNERS[j]]
        patches = local_patches(train["image"][seen], frame(train["corners"][seen.numpy(), j])[:, None], r)
        templates.append(patches.mean(0)[0])
    side = 2 * r + 1
    mirrored = templates[0].reshape(3, side, side).flip(-1).reshape(-1)
    templates = torch.stack(templates + [(templates[0] + mirrored) / 2])
    names = ("left outer corner", "right outer corner", "left outer corner, made symmetric")
    overlap = mirror_overlap(templates, r)
    response = template_response(test["image"], templates, r)  # (N, 3, S, S)
    best = response.flatten(2).argmax(-1).numpy()
    start = frame(test["centre"])[:, None].expand(-1, len(templates), -1)
    searched = np.concatenate([refine_keypoints(test["image"][i:i + 100], start[i:i + 100], templates, r,
                                                a.reach, a.temperature).numpy()
                               for i in range(0, len(start), 100)])
    searched = to_pixels(searched, S)
    tol = a.tolerance * S / 128
    print(f"within {tol:g} px of the left (L) / right (R) outer corner, on {a.faces} test faces at {S} x {S}:")
    for j, name in enumerate(names):
        print(f"{name} template (mirror overlap {float(overlap[j]):.2f}):")
        print("  best match in the image: " + corner_hits(np.stack([best[:, j] % S, best[:, j] // S], -1),
                                                         test["corners"], test["yaw"], tol))
        print(f"  search from the head's centre, reach {a.reach:g}: "
              + corner_hits(searched[:, j], test["corners"], test["yaw"], tol), flush=True)


MIDLINE = (13, 2, 16, 5)  # nose bridge, nose tip, upper lip; an eye's outer corner to compare


def cmd_midline(a):
    """Would a template on the face's midline stay on its feature as the face turns? A feature
    on the midline has no mirror twin to jump to, and its place beside the head's outline would
    give the way the face is turned. Each landmark's true mean patch over the training faces
    where it is visible is its template (patches of several sizes: large ones take in both eyes
    around the nose bridge), searched for from the head's centre as the refinement searches (the
    demo's reach and temperature). Printed: the median distance from that landmark on the test
    faces, and the share within the tolerance, per side band."""
    from kp3d.model.appearance import local_patches, refine_keypoints

    S = a.size
    frame = lambda px: torch.as_tensor(to_frame(px, S), dtype=torch.float32)  # noqa: E731
    train, test = faces_with_landmarks("train", a.train_faces, S), faces_with_landmarks("test", a.faces, S)
    names = build_dataset(DATA, "test", S, length=1).info.landmark_names
    start = frame(test["centre"])[:, None]
    tol = a.tolerance * S / 128
    print(f"the template's search from the head's centre (reach {a.reach:g}), on {a.faces} test faces at "
          f"{S} x {S}: median distance from its landmark, and the share within {tol:g} px")
    for landmark in a.landmarks:
        seen = train["visible"][:, landmark]
        for radius in a.radii:
            template = local_patches(train["image"][seen], frame(train["landmarks"][seen.numpy(), landmark])[:, None],
                                     radius).mean(0)
            found = torch.cat([refine_keypoints(test["image"][i:i + 100], start[i:i + 100], template, radius,
                                                a.reach, a.temperature) for i in range(0, a.faces, 100)])
            dist = np.linalg.norm(to_pixels(found[:, 0].numpy(), S) - test["landmarks"][:, landmark], axis=-1)
            print(f"  {names[landmark]}, {2 * radius + 1} x {2 * radius + 1} patches: median {np.median(dist):.1f} px; "
                  + "; ".join(f"{label} {np.mean(dist[m] < tol):.0%}" for label, m in side_bands(test["yaw"]).items()
                              if m.any()), flush=True)


def antisymmetric_patches(images, points, radius):
    """(N, C (2r+1)^2): per image, the mean over its `points` (N, P, 2; the [-1, 1] frame) of the
    point's patch minus that patch's mirror image (flipped left to right about the point), each
    scaled to unit norm. A patch that is its own mirror image gives 0, and the mirror image of
    the face, at the mirrored points, gives the negative: what the patches say of the side of
    the face they are on."""
    from kp3d.model.appearance import local_patches

    N, P = points.shape[:2]
    side = 2 * radius + 1
    p = local_patches(images, points, radius).reshape(N, P, -1, side, side)
    d = (p - p.flip(-1)).flatten(2)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return d.mean(1).double().numpy()


def side_accuracy(score, side):
    """Share of faces whose sign of `score` is `side` (+-1), the better of the two namings of
    the signs (an unsupervised direction has no sign of its own)."""
    agree = float(np.mean(np.sign(score) == side))
    return max(agree, 1 - agree)


def cmd_copy_side(a):
    """Could the image at the copies tell which eye they sit on? The copies take the outer
    corner of the eye nearer the camera, which side the 3D figure needs (`rigid --two-modes`),
    and the points show it on only 72 to 78 % of the faces. An eye's outer corner is one-sided
    (`corners`: mirror overlap about 0.7), so the part of the patch that its mirror image does
    not share (`antisymmetric_patches`) should flip sign from one eye to the other. Printed: how
    often the copies sit on the eye nearer the camera; then, per patch radius, how often on the
    test faces the sign of the top principal direction of that part over the training faces
    (no labels) gives the eye the copies sit on, and a linear classifier trained on the true eye
    of the training faces (ridge least squares: what labels would allow)."""
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    if not model.config.refine_reach:
        raise SystemExit("copy-side: this model has no refined copies (refine_reach 0)")
    model.eval()
    S, K = model.config.image_size, model.config.num_keypoints
    data = {}
    for split, count in (("train", a.train_faces), ("test", a.faces)):
        faces = faces_with_landmarks(split, count, S)
        with torch.no_grad():
            copies = torch.cat([model.predict(faces["image"][i:i + 64])["keypoints_2d"][:, K:]
                                for i in range(0, count, 64)]).float()
        corners = faces["landmarks"][:, list(OUTER_CORNERS)]
        dist = np.linalg.norm(to_pixels(copies.numpy(), S)[:, :, None] - corners[:, None], axis=-1)  # (N, K, 2)
        eye = np.where(np.median(dist[..., 0], 1) < np.median(dist[..., 1], 1), 1.0, -1.0)  # +1: the left eye
        data[split] = {"images": faces["image"], "copies": copies, "eye": eye, "yaw": faces["yaw"]}
    test = data["test"]
    turned = np.abs(test["yaw"]) > 20
    nearer = np.sign(test["yaw"]) == test["eye"]  # yaw > 0 turns the left eye to the camera (`where`)
    print(f"the copies sit on the outer corner of the eye nearer the camera on {nearer.mean():.0%} of {a.faces} "
          f"test faces ({nearer[turned].mean():.0%} of those turned more than 20 degrees)")
    print(f"the eye the copies sit on, told by the part of the patches at them that is not their "
          f"mirror image ({a.train_faces} training faces; all test faces / turned more than 20 degrees):")
    for radius in a.radii:
        A = {s: antisymmetric_patches(d["images"], d["copies"], radius) for s, d in data.items()}
        mean = A["train"].mean(0)
        direction = np.linalg.svd(A["train"] - mean, full_matrices=False)[2][0]
        unsupervised = (A["test"] - mean) @ direction
        X, y = A["train"], data["train"]["eye"]
        ridge = 1e-4 * np.trace(X.T @ X)
        w = np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)
        labelled = A["test"] @ w
        print(f"  {2 * radius + 1} x {2 * radius + 1} patches: principal direction "
              f"{side_accuracy(unsupervised, test['eye']):.0%} / {side_accuracy(unsupervised[turned], test['eye'][turned]):.0%}; "
              f"linear classifier trained on the true eye {np.mean(np.sign(labelled) == test['eye']):.0%} / "
              f"{np.mean(np.sign(labelled[turned]) == test['eye'][turned]):.0%}", flush=True)


def odd_layout_coordinate(points, mirror_points, direction=None):
    """(N,) numpy: each face's odd part of the layout (kp3d.model.view.odd_layout; points and
    mirror_points (N, P, 2) numpy) along `direction` (default: its top principal direction over
    these faces, kp3d.model.view.odd_layout_direction), and that direction."""
    p, m = torch.as_tensor(points), torch.as_tensor(mirror_points)
    if direction is None:
        direction = odd_layout_direction(p, m)
    return (odd_layout(p, m) @ direction).numpy(), direction


def crop_frame(faces, centre):
    """(N, P', 2) points whose mean and RMS radius place each face's head crop: its points, or
    ("symmetric", as the model's view head) its points with its mirror image's points put back
    (kp3d.model.view.symmetric_frame)."""
    if centre == "symmetric":
        return symmetric_frame(faces["points"], faces["mirror_points"])
    return faces["points"]


def train_view_net(images, frame, target, a):
    """A `ViewHead` trained to give `target` (N,) from the head crops of images (N, C, S, S)
    placed on frame points (N, P, 2) (kp3d.train.view_head.fit_view_net, at the options of `a`:
    a.loss "mse" the target's value, "logistic" its sign alone; a.colour; a.turn degrees)."""
    settings = ViewHeadSettings(steps=a.steps, turn=a.turn, crop=a.crop, loss=a.loss,
                                colour=a.colour, seed=a.seed)
    return fit_view_net(images, frame, target, settings)


def planar_depth(points, view):
    """(N, P) numpy: kp3d.model.view.planar_depth of numpy points (N, P, 2) and views (N,)."""
    return view_planar_depth(torch.as_tensor(points), torch.as_tensor(view)).numpy()


def faces_with_mirror_points(model, split, count, pooled):
    """{"points", "mirror_points" (N, P, 2) [-1, 1] frame (the model's, on each image and on its
    mirror image); "images" (N, 3, pooled, pooled) float16; "landmarks_2d", "landmarks_3d",
    "yaw"} of `count` synthetic faces, rendered and run in batches of 64."""
    ds = build_dataset(DATA, split, model.config.image_size, length=count)
    out = {k: [] for k in ("points", "mirror_points", "images", "landmarks_2d", "landmarks_3d", "yaw")}
    for start in range(0, count, 64):
        items = [ds[i] for i in range(start, min(count, start + 64))]
        images = torch.stack([it["image"] for it in items])
        with torch.no_grad():
            out["points"].append(model.predict_points(images).double().numpy())
            out["mirror_points"].append(model.predict_points(images.flip(-1)).double().numpy())
        out["images"].append(torch.nn.functional.adaptive_avg_pool2d(images, pooled).half())
        out["landmarks_2d"].append(np.stack([np.asarray(it["landmarks_2d"], np.float64) for it in items]))
        out["landmarks_3d"].append(np.stack([np.asarray(it["landmarks_3d"], np.float64) for it in items]))
        out["yaw"].append(np.array([float(it["yaw_deg"]) for it in items]))
    return {k: torch.cat(v) if k == "images" else np.concatenate(v) for k, v in out.items()}


def light_side_and_roll(split, count, size):
    """(N, 2): for the first `count` synthetic faces of a split, the x of the light's direction
    (its side) and the head's roll (degrees), read off the generator's scene: labels, for the
    analysis of a view's errors only."""
    ds = build_dataset(DATA, split, size, length=count)
    scenes = (ds.module.sample_scene(ds.rng(i), size) for i in range(count))
    return np.array([(scene.light_dir[0], scene.roll_deg) for scene in scenes])


def view_of(net, faces, a):
    """(N,) numpy: a trained `ViewHead`'s g of each face ({"images", "points", "mirror_points"})."""
    return raw_views(net, faces["images"], torch.as_tensor(crop_frame(faces, a.centre))).numpy()


def cmd_view_head(a):
    """Could an image network learn the yaw the 3D figure needs, taught by the points alone? The
    teacher is the odd part of the model's layout (`odd_layout_direction`: its points on each
    training image minus its points on the mirror image, top principal direction; no labels). The
    student is a `ViewHead` (kp3d.model.view) on head crops, trained to give the teacher's coordinate. Printed,
    on the test faces: how closely each follows the true yaw, and how often it tells which way a
    face is turned, by how far it is turned; then r3 with `planar_depth` at the view (the
    regression fit on the regress faces), beside the true yaw with Gaussian noise of a few sizes,
    each view scaled to unit spread: the bar a view must clear; and, as a control, the student's
    views shuffled across the faces, which keep their spread and carry no pose.

    The teacher's errors are not noise the student averages out: where the points' odd part is
    small (near frontal), the lighting, the roll and the crop's place decide its sign, and an
    image network learns those from the image as readily as the yaw. The options take them
    away from the student: --keep (only the faces the teacher calls most turned), --loss
    logistic (only the teacher's sign), --colour chromaticity (no shading), --centre symmetric
    (a crop that does not follow the points' shift), --turn (in-plane turns the teacher does
    not follow); --teacher yaw gives the student the true yaw (labels) in its place."""
    from kp3d.train.trainer import load_model

    torch.set_num_threads(a.threads)
    model, _ = load_model(a.run)
    model.eval()
    faces = {s: faces_with_mirror_points(model, s, n, a.pooled)
             for s, n in (("train", a.train_faces), ("regress", a.regress_faces), ("test", a.faces))}
    if a.teacher == "yaw":  # labels: what this student could reach with a perfect teacher
        teacher = {s: f["yaw"].astype(np.float64) for s, f in faces.items()}
    else:
        direction = odd_layout_coordinate(faces["train"]["points"], faces["train"]["mirror_points"])[1]
        teacher = {s: odd_layout_coordinate(f["points"], f["mirror_points"], direction)[0] for s, f in faces.items()}
    target = teacher["train"]
    for round_ in range(a.rounds):  # after the first, the student's views of the training faces teach the next
        # the faces the target calls most turned: where the points' odd part is small, lighting
        # and noise decide its sign
        kept = np.nonzero(np.abs(target) >= np.quantile(np.abs(target), 1 - a.keep))[0]
        net = train_view_net(faces["train"]["images"][kept], torch.as_tensor(crop_frame(faces["train"], a.centre)[kept]),
                             target[kept] / target[kept].std(), a)
        if round_ + 1 < a.rounds:
            target = view_of(net, faces["train"], a)
    student = {s: view_of(net, faces[s], a) for s in ("regress", "test")}
    yaw = faces["test"]["yaw"]
    bands = ((0, 10), (10, 20), (20, 30), (30, 45), (45, 91))
    print(f"the view on {a.faces} test faces (teacher fit on {a.train_faces} training faces; student on the "
          f"{a.keep:.0%} of them it calls most turned, {a.colour}, crops on the {a.centre} frame turned up to "
          f"{a.turn:g} degrees, {a.loss} loss, {a.steps} steps, "
          f"{a.rounds} round(s)): correlation with the true yaw; share of faces told the way they are turned, "
          f"by |yaw| ({', '.join(f'{lo}-{min(hi, 90)}' for lo, hi in bands)} degrees)")
    teacher_name = "teacher (the true yaw: labels)" if a.teacher == "yaw" else "teacher (the odd part of the points)"
    for name, view in ((teacher_name, teacher["test"]), ("student (the image network)", student["test"])):
        sign = np.sign(np.corrcoef(view, yaw)[0, 1])  # the direction's sign is a gauge
        told = [f"{np.mean(np.sign(sign * view[m]) == np.sign(yaw[m])):.0%}" if m.any() else "-"
                for m in (((np.abs(yaw) >= lo) & (np.abs(yaw) < hi)) for lo, hi in bands)]
        print(f"  {name}: correlation {abs(np.corrcoef(view, yaw)[0, 1]):.3f}; told {' / '.join(told)}", flush=True)
    nuisance = light_side_and_roll("test", a.faces, model.config.image_size)
    fit = np.stack([np.sin(np.radians(yaw)), np.ones_like(yaw)], 1)
    print("the part of each view the yaw does not explain (after a fit on sin(yaw)): its correlation with the "
          "light's side (x of its direction) and with the roll, which also turn the other way in the mirror")
    for name, view in ((teacher_name, teacher["test"]), ("student (the image network)", student["test"])):
        rest = view - fit @ np.linalg.lstsq(fit, view, rcond=None)[0]
        rest = rest * np.sign(np.corrcoef(view, yaw)[0, 1])  # read in the yaw's sign
        print(f"  {name}: light's side {np.corrcoef(rest, nuisance[:, 0])[0, 1]:+.2f}, "
              f"roll {np.corrcoef(rest, nuisance[:, 1])[0, 1]:+.2f}")
    truth = {s: (faces[s]["landmarks_2d"], faces[s]["landmarks_3d"]) for s in ("regress", "test")}

    def r3(view):
        unit = {s: v / view["regress"].std() for s, v in view.items()}
        p3 = {s: np.concatenate([faces[s]["points"], planar_depth(faces[s]["points"], unit[s])[..., None]], -1)
              for s in unit}
        return ratios(faces["regress"]["points"], faces["test"]["points"], p3["regress"], p3["test"],
                      truth["regress"], truth["test"])[1]

    print(f"r3 with the points at the depth of a plane turned by the view ({a.regress_faces} regress faces):")
    rng = np.random.default_rng(0)
    shuffled = {s: rng.permutation(v) for s, v in student.items()}
    print(f"  teacher {r3({s: teacher[s] for s in student}):.3f}; student {r3(student):.3f}; "
          f"a view that is none (the student's, shuffled across the faces) {r3(shuffled):.3f}")
    noisy = [(sigma, {s: faces[s]["yaw"] + rng.normal(0, sigma, len(faces[s]["yaw"])) for s in student})
             for sigma in a.noise]
    print("  the true yaw with Gaussian noise: " + "; ".join(
        f"{sigma:g} deg (correlation {np.corrcoef(v['test'], yaw)[0, 1]:.2f}) {r3(v):.3f}" for sigma, v in noisy))


def rotation_grid(step_deg):
    """((R, 3, 3) head rotations, (R, 3) their yaw, pitch and roll in degrees) on a grid
    `step_deg` apart, covering the generator's ranges (yaw +-75, pitch +-30, roll +-20 degrees)
    with a margin."""
    from kp3d.data import render

    axes = [np.arange(-limit, limit + 1e-9, step_deg) for limit in (90.0, 40.0, 30.0)]
    angles = np.array([(yaw, pitch, roll) for yaw in axes[0] for pitch in axes[1] for roll in axes[2]])
    return np.array([render.rotation_matrix(*np.radians(a)) for a in angles]), angles


def appearance_pose_search(response, X, cameras, rotations):
    """(N,) index into `rotations` (R, 3, 3) of the pose at which the rigid head X (L, 3) shows
    its templates best in each face: the mean of response (N, L, S, S) at the pixels base + A X_l,
    A = diag(s, -s) R[:2] (`head_cameras`; scale s and base from cameras = ((N,) scales,
    (N, 2) pixels)), over the landmarks not behind the head (depth at least -0.2 of the head's
    extent: an eye turned away shows nothing of its template)."""
    S = response.shape[-1]
    scales, base = cameras
    depth = np.einsum("rj,lj->rl", rotations[:, 2], X)  # (R, L)
    facing = depth > -0.2 * np.abs(X).max()
    # pixels per unit head-frame distance, before the face's scale: (R, L, 2), image y down
    unit = np.einsum("rij,lj->rli", rotations[:, :2], X) * np.array([1.0, -1.0])
    found = []
    for i in range(len(response)):
        px = np.clip(np.rint(scales[i] * unit + base[i]).astype(int), 0, S - 1)
        amplitude = response[i, np.arange(X.shape[0]), px[..., 1], px[..., 0]]  # (R, L)
        found.append(((amplitude * facing).sum(1) / np.maximum(facing.sum(1), 1)).argmax())
    return np.array(found)


def cmd_pose_search(a):
    """Could the appearance of a rigid 3D head give the pose the 3D target needs, where the
    model's points do not? Everything true but the rotation: the 8 landmarks' mean patches over
    the training faces as templates, their rigid head (head-frame places at the true poses), the
    true centre and scale of each face. The rotation is searched over a grid: where the templates,
    max-pooled over a few pixels for the faces' shape variation, show best at the landmarks'
    projections. Printed: how far the found rotation is from the true one, and r3 of the true 2D
    landmarks with the head's depth at the found pose, at the true pose and at the pose fitted to
    the landmarks (their best case)."""
    import torch.nn.functional as F

    from kp3d.data.base import image_tensor
    from kp3d.model.appearance import local_patches, template_response

    global SIZE
    SIZE = a.size  # every conversion of this script follows the asked size
    n = {"train": a.train_faces, "regress": 500, "test": a.faces}
    ds = {s: build_dataset(DATA, s, SIZE, length=k) for s, k in n.items()}
    scenes = {s: [scene_of(d, i) for i in range(len(d))] for s, d in ds.items()}
    true = {s: np.stack([sc.to_pixels(sc.landmarks[LANDMARKS]) for sc in scenes[s]]) for s in scenes}
    train_images = torch.stack([ds["train"][i]["image"] for i in range(n["train"])])
    templates = local_patches(train_images, torch.as_tensor(to_frame(true["train"]), dtype=torch.float32),
                              a.radius).mean(0)
    X = rigid_head_fit(true["train"], scenes["train"])
    rotations, angles = rotation_grid(a.step)
    gt, depth = {}, {"true": {}, "found": {}, "fitted": {}}
    off, index = {}, {}
    for s in ("regress", "test"):
        rendered = [ds[s].render(i) for i in range(n[s])]  # once, for the images and the landmarks
        gt[s] = tuple(np.array([r[j] for r in rendered], np.float64) for j in (1, 2))
        images = torch.stack([image_tensor(r[0]) for r in rendered])
        response = F.max_pool2d(template_response(images, templates, a.radius), 2 * a.pool + 1, 1, a.pool)
        cameras = (np.array([sc.scale for sc in scenes[s]]), head_cameras(scenes[s])[1])
        index[s] = appearance_pose_search(response.numpy(), X, cameras, rotations)
        found = rotations[index[s]]
        true_rotations = np.stack([head_rotation(sc) for sc in scenes[s]])
        off[s] = rotation_angle_deg(found, true_rotations)
        depth["found"][s] = head_depth(X, found, cameras[0])
        depth["true"][s] = head_depth(X, true_rotations, cameras[0])
        depth["fitted"][s] = fitted_head_depth(true[s], X)
    grid_off = np.median([rotation_angle_deg(rotations, np.broadcast_to(head_rotation(sc), rotations.shape)).min()
                          for sc in scenes["test"]])
    r3 = {k: ratios_with_depth(true, d, gt)[1] for k, d in depth.items()}
    e = off["test"]
    far = e > 45
    # the far misses: a head turned one way found turned the other (faces turned 15 degrees or more)
    true_yaw = np.array([sc.yaw_deg for sc in scenes["test"]])
    turned = far & (np.abs(true_yaw) >= 15)
    flipped = np.mean(np.sign(angles[index["test"], 0][turned]) != np.sign(true_yaw[turned])) if turned.any() else 0.0
    print(f"{SIZE} x {SIZE}, {2 * a.radius + 1} x {2 * a.radius + 1} templates, pooled over "
          f"{2 * a.pool + 1} x {2 * a.pool + 1} px, {len(rotations)} rotations {a.step:g} deg apart "
          f"(the nearest {grid_off:.1f} deg from the true one, median): the found rotation is off by "
          f"{np.median(e):.1f} deg (median; 75th percentile {np.percentile(e, 75):.1f}; within 15 deg for "
          f"{np.mean(e < 15):.0%} of the faces, more than 45 for {np.mean(far):.0%}; of these, "
          f"{flipped:.0%} of the heads turned 15 deg or more found turned the other way); r3 of the true "
          f"landmarks with the head's depth at the found pose {r3['found']:.3f}, at the true pose "
          f"{r3['true']:.3f}, at the pose fitted to them {r3['fitted']:.3f}", flush=True)


# landmark groups of synthetic:face scored by `appearance` (indices into LANDMARK_NAMES)
APPEARANCE_GROUPS = {"eyes": [0, 1], "eye corners": [5, 6, 7, 8], "brows": [9, 10, 11, 12],
                     "nose tip": [2], "nostrils": [14, 15], "mouth corners": [3, 4],
                     "chin": [18], "ear lobes": [21, 22]}


# (one landmark whose mean patch is the template, the landmarks of its kind) for `appearance`
APPEARANCE_SEARCHES = {"eye": (0, [0, 1]), "brow": (9, [9, 10, 11, 12]),
                       "nostril": (14, [14, 15]), "mouth corner": (3, [3, 4])}


def cmd_appearance(a):
    """The template amplitude of the refinement (kp3d/model/appearance.py) at point sets on 300
    test faces, each point with its best template (the direction of its mean patch): the
    higher, the more a refined keypoint gains there. True landmarks, the rigid ring of
    `ceiling` (inside the head's outline), the ring fixed on the head in 3D, points scattered
    around the head's centre, random points.

    Then, for one landmark of each kind with its best template, how often the template's best
    match over the whole image lies within 3 pixels of a landmark of that kind (either side):
    what a search over the image for the template can be trusted to find."""
    from kp3d.model.appearance import local_patches, template_response

    ds = build_dataset(DATA, "test", SIZE, length=300)
    scenes = [scene_of(ds, i) for i in range(len(ds))]
    images = torch.stack([ds[i]["image"] for i in range(len(ds))]).double()
    rng = np.random.default_rng(0)
    centre = np.stack([sc.to_pixels(sc.object_centre[None]) for sc in scenes])
    gt = np.stack([sc.to_pixels(sc.landmarks) for sc in scenes])
    sets = {f"landmarks: {name}": gt[:, idx] for name, idx in APPEARANCE_GROUPS.items()}
    ring = {turn: np.stack([ring_keypoints(sc, turn) for sc in scenes]) for turn in ("image", "pose")}
    sets.update({"ring in the image (centre and size)": ring["image"],
                 "ring fixed on the head in 3D": ring["pose"],
                 "around the head's centre (4 px)": centre + rng.normal(0, 4, (len(ds), 8, 2)),
                 "random in the image": rng.uniform(8, SIZE - 8, (len(ds), 8, 2))})
    for name, px in sets.items():
        patches = local_patches(images, torch.as_tensor(to_frame(px)), a.radius)  # (N, K, D)
        best = torch.nn.functional.normalize(patches.mean(0), dim=-1)
        score = (patches * best).sum(-1).mean(0) / patches.shape[-1] ** 0.5  # per point
        print(f"{name:<40} {score.mean():.3f}  (per point {' '.join(f'{v:.3f}' for v in score)})")
    gt = torch.as_tensor(gt)
    for name, (one, kind) in APPEARANCE_SEARCHES.items():
        patches = local_patches(images, to_frame(gt[:, [one]]), a.radius)
        response = template_response(images, patches.mean(0), a.radius)[:, 0]
        best = response.flatten(1).argmax(1)
        at = torch.stack([best % SIZE, best // SIZE], -1).double()  # (x, y) pixels
        miss = (at[:, None] - gt[:, kind]).norm(dim=-1).min(1).values
        print(f"{name} template: its best match in the image is within 3 px of a landmark of its "
              f"kind in {float((miss < 3).double().mean()):.0%} of the faces")


def region_centroids(ds, i):
    """{"skin", "hair", "head" (both): centroid (2,) in pixels} of item i of a synthetic face
    dataset. The scene is rendered again with every skin colour pure red, every hair colour pure
    green and the clothes and background blue or black (the generator's random draws, and so the
    geometry, unchanged); each region is the pixels of its hue. The skin includes the neck."""
    from unittest import mock

    from kp3d.data import render, synthetic_face
    from kp3d.data.synthetic import render_scene

    def drawn(fn, value):  # make the draw, so that the later ones stay the same, then replace it
        return lambda rng, *args, **kwargs: (fn(rng, *args, **kwargs), value(*args))[1]

    red, green, blue = np.eye(3)
    clothes = drawn(render.random_colour, lambda *a: blue)
    black = drawn(render.random_background, lambda size, *a: np.zeros((size, size, 3)))
    with mock.patch.multiple(synthetic_face, SKIN_LIGHT=red, SKIN_DARK=red,
                             HAIR=np.tile(green, (len(synthetic_face.HAIR), 1))), \
            mock.patch.multiple(render, random_colour=clothes, random_background=black):
        scene = scene_of(ds, i)  # the item's geometry, with the label colours
        labels = render_scene(scene, ds.image_size)[0]
    r, g, b = labels[..., 0], labels[..., 1], labels[..., 2]
    masks = {"skin": (r > 0.05) & (r > 2 * g) & (r > 2 * b), "hair": (g > 0.05) & (g > 2 * r) & (g > 2 * b)}
    masks["head"] = masks["skin"] | masks["hair"]
    ys, xs = np.mgrid[0:ds.image_size, 0:ds.image_size]
    centre = scene.to_pixels(scene.object_centre[None])[0]  # where a region is missing
    return {n: np.array([xs[m].mean(), ys[m].mean()]) if m.any() else centre for n, m in masks.items()}


# LANDMARKS with left and right swapped: the same parts of the mirror image
LANDMARKS_MIRRORED = [1, 0, 2, 4, 3, 18, 22, 21]


def cmd_mirror(a):
    """How well the mirror image, warped so that its keypoints land on the image's
    (`decoder_input = "mirror-warp"`), reconstructs 64 test faces (the demo's loss), for keypoint
    pairs placed from the true pose: the rigid ring of `ceiling` moved to the mirrored head
    (the whole head shifted), the ring turned with the head, and the 8 true landmarks, each
    paired with the same part of the mirrored face. A loss that rewards keypoints on the parts
    scores the last two best."""
    from kp3d.model.mirror_warp import warp_to_keypoints
    from kp3d.model.perceptual import build_reconstruction_loss

    ds = build_dataset(DATA, "test", SIZE, length=64)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    scenes = [scene_of(ds, i) for i in range(len(ds))]
    mirror = images.flip(-1)
    flip_px = lambda px: np.stack([SIZE - 1 - px[:, 0], px[:, 1]], 1)  # noqa: E731

    def pairs(scene, source):  # (image keypoints, the same parts in the mirror image), pixels
        if source == "landmarks":
            px = scene.to_pixels(scene.landmarks)
            return px[LANDMARKS], flip_px(px[LANDMARKS_MIRRORED])
        ring = ring_keypoints(scene, source)
        if source == "image":  # a rigid pattern: the same offsets around the mirrored centre
            c = scene.to_pixels(scene.object_centre[None])[0]
            return ring, ring - c + flip_px(c[None])[0]
        # the mirror shows the head at the mirrored pose: the ring's mirrored points, mirrored
        return ring, flip_px(ring_keypoints(scene, "pose", RING * [-1, 1, 1]))

    loss = build_reconstruction_loss(DEMO.reconstruction)
    with torch.no_grad():
        print(f"{'the mirror image as it is':<44} loss {loss(mirror, images).item():.4f}")
        for source, name in (("image", "ring moved to the mirrored head (rigid)"),
                             ("pose", "ring turned with the head"),
                             ("landmarks", "8 true landmarks")):
            kp = [pairs(sc, source) for sc in scenes]
            t, m = (torch.tensor(to_frame(np.stack([k[j] for k in kp])), dtype=torch.float32)
                    for j in (0, 1))
            scores = [loss(warp_to_keypoints(mirror, t, m, sigma), images).item() for sigma in a.sigmas]
            row = "  ".join(f"sigma {sigma:g}: {v:.4f}" for sigma, v in zip(a.sigmas, scores))
            print(f"{name:<44} {row}")


def cmd_heatmaps(a):
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    model.eval()
    with torch.no_grad():
        h = model.detector(load_test_images(model.config.image_size, 32))["heatmaps"]
    q = torch.softmax(h.float().flatten(2) / model.config.temperature, -1)  # (B, K, H*W)
    perplexity = torch.exp(-(q * q.clamp_min(1e-12).log()).sum(-1)).mean(0)
    H, W = h.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], -1)  # (H*W, 2)
    mean = q @ grid
    spread = ((q * ((grid - mean[..., None, :]) ** 2).sum(-1)).sum(-1)).sqrt().mean(0)
    print(f"{H * W} positions; per keypoint, over 32 test faces:")
    print("  perplexity (positions):", " ".join(f"{v:.0f}" for v in perplexity))
    print("  spatial std ([-1, 1]): ", " ".join(f"{v:.2f}" for v in spread))


def cmd_regions(a):
    """How much of what the centres of the skin and the hair tell (the `ceiling` rows) a trained
    detector's keypoints carry: r2 of its keypoints alone and with the true skin and hair
    centroids appended, and the R^2 (test split) of a linear fit from its keypoints to each
    region's centroid relative to the head's centre (what moves with the yaw and pitch)."""
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    model.eval()
    data = {}
    for split, n in (("regress", 500), ("test", 300)):
        ds = build_dataset(DATA, split, model.config.image_size, length=n)
        with torch.no_grad():
            kp = model.detector(torch.stack([ds[i]["image"] for i in range(n)]))["keypoints"].numpy()
        scenes = [scene_of(ds, i) for i in range(n)]
        regions = [region_centroids(ds, i) for i in range(n)]
        centre = np.stack([sc.to_pixels(sc.object_centre[None])[0] for sc in scenes])
        data[split] = {"kp": kp.astype(np.float64), "centre": to_frame(centre),
                       "gt": np.stack([sc.to_pixels(sc.landmarks) for sc in scenes]),
                       **{r_: to_frame(np.stack([r[r_] for r in regions])) for r_ in ("skin", "hair")}}

    def r2(extra):
        kp = {s: np.concatenate([d["kp"]] + [d[r_][:, None] for r_ in extra], 1)
              for s, d in data.items()}
        m = evaluate_keypoints(kp["regress"], data["regress"]["gt"], kp["test"], data["test"]["gt"],
                               eye_indices=(0, 1))
        return m["nme_2d"] / m["nme_2d_mean_baseline"]

    def fit(name):  # R^2 on the test split, x and y
        X = {s: np.concatenate([d["kp"].reshape(len(d["kp"]), -1), np.ones((len(d["kp"]), 1))], 1)
             for s, d in data.items()}
        y = {s: d[name] - d["centre"] for s, d in data.items()}
        W = np.linalg.lstsq(X["regress"], y["regress"], rcond=None)[0]
        err = ((X["test"] @ W - y["test"]) ** 2).sum(0)
        return 1 - err / ((y["test"] - y["test"].mean(0)) ** 2).sum(0)

    print(f"r2 of the keypoints {r2([]):.3f}; "
          f"with the true skin and hair centroids {r2(['skin', 'hair']):.3f}")
    for name in ("skin", "hair"):
        print(f"R^2 of the {name} centroid relative to the head centre, from the keypoints: "
              + " ".join(f"{v:.2f}" for v in fit(name)) + " (x y)")


def cmd_parts(a):
    """A picture of a part-map detector (`ModelConfig.part_maps`): 8 test faces ordered by yaw,
    each with its keypoints, and below it every heatmap cell in the colour of its most likely
    part (the same colour as that part's keypoint)."""
    from PIL import Image

    from kp3d.train.trainer import load_model
    from kp3d.train.visualize import PALETTE, draw_keypoints, grid, to_uint8

    model, _ = load_model(a.run)
    if not model.config.part_maps:
        raise SystemExit(f"{a.run}: not a part-map model (ModelConfig.part_maps is off)")
    model.eval()
    ds = build_dataset(DATA, "test", model.config.image_size, length=40)
    order = np.argsort([ds[i]["yaw_deg"] for i in range(len(ds))])[::5]
    images = torch.stack([ds[int(i)]["image"] for i in order])
    with torch.no_grad():
        det = model.detector(images)
    palette = np.array([PALETTE[k % len(PALETTE)] for k in range(model.config.num_keypoints)], np.uint8)
    scale, S = 2, model.config.image_size
    tiles = []
    for b in range(len(order)):
        top = draw_keypoints(to_uint8(images[b]), det["keypoints"][b].numpy(), scale=scale)
        parts = Image.fromarray(palette[det["heatmaps"][b].argmax(0).numpy()])
        tiles.append(grid([top, parts.resize((S * scale, S * scale), Image.NEAREST)], 1))
    grid(tiles, len(tiles)).save(a.out)
    print(f"{a.out}: yaw " + " ".join(f"{ds[int(i)]['yaw_deg']:.0f}" for i in order))


def follow_fraction(detector, images, pixels=8):
    """(K,) how far each keypoint moves when the image content moves `pixels` to the right
    (border pixels repeated), as a fraction of the move, averaged over the images: 1 = it
    follows the image; less = it clings to the image frame."""
    from kp3d.model.equivariance import warp_similarity

    move = pixels * 2 / (images.shape[-1] - 1)  # in the [-1, 1] frame
    A = torch.eye(2, dtype=images.dtype).expand(len(images), 2, 2)
    t = torch.tensor([-move, 0.0], dtype=images.dtype).expand(len(images), 2)  # pixel p shows p + t
    with torch.no_grad():
        before = detector(images)["keypoints"].double()
        after = detector(warp_similarity(images, A, t))["keypoints"].double()
    return ((after - before)[..., 0] / move).mean(0)


def cmd_follow(a):
    from kp3d.train.trainer import load_model

    model, _ = load_model(a.run)
    model.eval()
    followed = follow_fraction(model.detector, load_test_images(model.config.image_size, 64))
    print("fraction of an 8-pixel move of the image each keypoint follows (64 test faces):")
    print("  " + " ".join(f"{v:.2f}" for v in followed) + f"   mean {followed.mean():.2f}")


def cmd_edge_use(a):
    """The reconstruction loss of a trained model on test faces with its own edge map, with an
    empty one, with another image's, and with the batch-mean keypoints' (one fixed patch mask):
    if they are close, the decoder reconstructs from the masked image and the keypoints get
    little gradient."""
    from kp3d.model.decoder import random_patch_mask
    from kp3d.model.perceptual import build_reconstruction_loss
    from kp3d.train.trainer import load_model

    model, state = load_model(a.run)
    if model.config.decoder_input != "mask" or model.config.keypoint_map_sigma:
        raise SystemExit("edge-use: for models whose decoder sees masked patches and the edge map "
                         f"only; this one sees {model.config.decoder_input!r} input"
                         + (" and keypoint maps" if model.config.keypoint_map_sigma else ""))
    model.eval()
    cfg = state["train_config"]
    loss_name = cfg.get("reconstruction", "auto")
    reconstruction_loss = build_reconstruction_loss(loss_name, vgg_weights=cfg.get("vgg_weights") or None)
    x = load_test_images(model.config.image_size, 64)
    g = torch.Generator().manual_seed(0)
    mask = random_patch_mask(len(x), x.shape[-2:], model.config.mask_grid, model.config.mask_keep,
                             generator=g)
    with torch.no_grad():
        kp = model.detector(x)["keypoints"].float()
        own = model.renderer(kp)
        edges = {"own": own, "empty": torch.zeros_like(own), "another image's": own.roll(1, 0),
                 "batch-mean keypoints'": model.renderer(kp.mean(0, keepdim=True).expand_as(kp))}
        print(f"{loss_name} reconstruction loss on 64 test faces (mask keeps "
              f"{model.config.mask_keep:.0%} of {model.config.mask_grid}^2 patches):")
        for name, edge in edges.items():
            out = model.decoder(x * mask, edge)
            print(f"  {name + ' edge map':<32} {float(reconstruction_loss(out, x)):.4f}")


def gaussian_blur(images, sigma):
    """images (B, C, H, W) blurred by a Gaussian of `sigma` pixels (separable, truncated at 3
    sigma, the border repeated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-x * x / (2 * sigma * sigma))
    k = k / k.sum()
    C = images.shape[1]
    out = torch.nn.functional.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = torch.nn.functional.conv2d(out, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = torch.nn.functional.pad(out, (0, 0, radius, radius), mode="replicate")
    return torch.nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def random_warp(images, strength, generator):
    """Each image resampled through its own smooth random displacement field: offsets drawn
    uniformly in +-strength (the [-1, 1] frame) on a 4 x 4 grid, upsampled bicubically. The
    parts move relative to the outline, so only keypoints can say where they belong."""
    import torch.nn.functional as F

    B, _, H, W = images.shape
    coarse = (torch.rand(B, 2, 4, 4, generator=generator) * 2 - 1) * strength
    flow = F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True)
    base = F.affine_grid(torch.eye(2, 3).expand(B, 2, 3), (B, 3, H, W), align_corners=False)
    return F.grid_sample(images, base + flow.permute(0, 2, 3, 1), padding_mode="border",
                         align_corners=False)


def cmd_oracle(a):
    """Train a fresh decoder (the demo's widths, mask and loss) whose edge map is drawn from a
    fixed keypoint source, and print its reconstruction loss on 64 test faces under one fixed
    mask. Sources: `landmarks` (8 true landmarks, LANDMARKS), `empty` (no edge map), `ring-image`,
    `ring-roll`, `ring-pose` (the hand-placed patterns of `ceiling`), or a run folder /
    checkpoint (its frozen detector's keypoints). A source that does not beat `empty` is not
    worth a fresh decoder's learning to read it within the steps run (`landmarks`: keypoints on
    the parts; `ring-pose` against `ring-roll`: keypoints that see how the head turns); a
    decoder trained beside a detector may still come to read what the detector draws."""
    from kp3d.model.decoder import Decoder, keypoint_maps, random_patch_mask, shuffle_cells
    from kp3d.model.keypoint_model import default_edge_sigma
    from kp3d.model.perceptual import build_reconstruction_loss
    from kp3d_kernels import EdgeMapRenderer

    torch.manual_seed(a.seed)
    detector = None
    ring = a.source[5:] if a.source.startswith("ring-") else None
    if ring is not None and ring not in RING_POSES:
        raise SystemExit(f"oracle: unknown source {a.source!r} (ring-image, ring-roll or ring-pose)")
    if a.source not in ("landmarks", "empty") and ring is None:
        from kp3d.train.trainer import load_model

        detector = load_model(a.source)[0].detector.eval()
    K = detector.num_keypoints if detector is not None else len(RING) if ring else len(LANDMARKS)
    renderer = EdgeMapRenderer(K, SIZE, default_edge_sigma(K, SIZE), learnable=False,
                               initial_weight=1.0)

    @torch.no_grad()
    def edge_map(images, lm_px, ds, index):  # (edge map, keypoint maps or None)
        if a.source == "empty":
            return (torch.zeros(len(images), 1, SIZE, SIZE),
                    torch.zeros(len(images), K, SIZE, SIZE) if a.keypoint_maps else None)
        if detector is not None:
            kp = detector(images)["keypoints"].float()
        elif ring is not None:
            kp = to_frame(torch.tensor(np.stack([ring_keypoints(scene_of(ds, i), ring) for i in index]),
                                       dtype=torch.float32))
        else:
            kp = to_frame(lm_px[:, LANDMARKS])
        return renderer(kp), keypoint_maps(kp, SIZE, a.keypoint_maps) if a.keypoint_maps else None

    decoder = Decoder(a.decoder_widths, K if a.keypoint_maps else 0)
    loss_fn = build_reconstruction_loss(a.loss)
    opt = torch.optim.AdamW(decoder.parameters(), lr=a.lr, weight_decay=1e-3)
    train_set = build_dataset(DATA, "train", SIZE, length=a.steps * 16)
    train = torch.utils.data.DataLoader(train_set, batch_size=16)
    test = build_dataset(DATA, "test", SIZE, length=64)
    test_x = torch.stack([test[i]["image"] for i in range(64)])
    test_edge = edge_map(test_x, torch.stack([test[i]["landmarks_2d"] for i in range(64)]), test,
                         range(64))
    grid = a.mask_grid

    def hide(images, generator):  # what the decoder sees of the image
        if a.blur:
            return gaussian_blur(images, a.blur)
        if a.warp:
            return random_warp(images, a.warp, generator)
        if a.shuffle:
            return shuffle_cells(images, a.shuffle, generator=generator)
        return images * random_patch_mask(len(images), SIZE, grid, a.mask_keep, generator=generator)

    test_seen = hide(test_x, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(a.seed + 1)
    for step, batch in enumerate(train, 1):
        x = batch["image"]
        edge, maps = edge_map(x, batch["landmarks_2d"], train_set, batch["index"].tolist())
        loss = loss_fn(decoder(hide(x, g), edge, maps), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.every == 0 or step == a.steps:
            decoder.eval()
            with torch.no_grad():
                test_loss = float(loss_fn(decoder(test_seen, *test_edge), test_x))
            decoder.train()
            seen = (f"blurred by {a.blur:g} px" if a.blur else
                    f"warped by up to {a.warp:g}" if a.warp else
                    f"{a.shuffle}^2 cells shuffled" if a.shuffle else
                    f"mask keeps {a.mask_keep:g} of {grid}^2 patches")
            seen += f", keypoint maps of width {a.keypoint_maps:g}" if a.keypoint_maps else ""
            print(f"{a.source}, {seen}: step {step} test loss {test_loss:.4f}",
                  flush=True)


def add_template_search_args(parser):
    """The options of the commands that search test faces for true-landmark templates as the
    refinement does (`corners`, `midline`)."""
    parser.add_argument("--size", type=int, default=128, help="image size (pixels)")
    parser.add_argument("--reach", type=float, default=DEMO.refine_reach)
    parser.add_argument("--temperature", type=float, default=ModelConfig().refine_temperature)
    parser.add_argument("--tolerance", type=float, default=4.0, help="pixels at 128 x 128 (scaled with --size)")
    parser.add_argument("--faces", type=int, default=400, help="test faces")
    parser.add_argument("--train-faces", type=int, default=1000, help="faces for the templates")
    return parser


def share(text):
    """argparse type: a number in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive_int(text):
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("noise")
    n.add_argument("--sigmas", type=float, nargs="+", default=[1, 3, 6, 12])
    sub.add_parser("ceiling")
    sub.add_parser("appearance").add_argument("--radius", type=int, default=2)
    sub.add_parser("mirror").add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.15, 0.3])
    sub.add_parser("heatmaps").add_argument("run", help="checkpoint file or run folder")
    sub.add_parser("follow").add_argument("run", help="checkpoint file or run folder")
    sub.add_parser("regions").add_argument("run", help="checkpoint file or run folder")
    pp = sub.add_parser("parts")
    pp.add_argument("run", help="checkpoint file or run folder of a part-map model")
    pp.add_argument("--out", default="parts.png")
    sub.add_parser("edge-use").add_argument("run", help="checkpoint file or run folder")
    sub.add_parser("copies").add_argument("run", help="checkpoint file or run folder")
    pc = sub.add_parser("pictures")
    pc.add_argument("run", help="checkpoint file or run folder")
    pc.add_argument("--out", default="pictures")
    pc.add_argument("--regress", type=int, default=500, help="faces the regression is fit on")
    pc.add_argument("--test", type=int, default=300, help="test faces")
    rg = sub.add_parser("rigid")
    rg.add_argument("run", nargs="?", help="checkpoint file or run folder (none: landmarks only)")
    rg.add_argument("--sigmas", type=float, nargs="*", default=[0, 3, 6])
    rg.add_argument("--pose-noise", type=float, nargs="*", default=[], metavar="DEG",
                    help="with RUN, also r3 of the model's points at the true pose with this much "
                         "Gaussian noise on its yaw and pitch")
    rg.add_argument("--two-modes", action="store_true",
                    help="also two rigid heads, one per side the face is turned to (and for a "
                         "model with refined copies, one per side of the keypoints they sit on)")
    wh = sub.add_parser("where")
    wh.add_argument("run", help="checkpoint file or run folder")
    wh.add_argument("--faces", type=int, default=400, help="test faces")
    dc = sub.add_parser("depth-ceiling")
    dc.add_argument("run", nargs="?", help="checkpoint file or run folder (none: landmarks only)")
    dc.add_argument("--sigmas", type=float, nargs="*", default=[0, 3],
                    help="without RUN: the noise on the 8 true landmarks, pixels at 64 x 64")
    dc.add_argument("--labelled", type=int, nargs="+", default=[1000, 4000],
                    help="training faces whose true depths the MLP learns from")
    dc.add_argument("--steps", type=int, default=6000)
    ds_ = sub.add_parser("depth-share")
    ds_.add_argument("run", nargs="?", help="checkpoint file or run folder (none: landmarks only)")
    ds_.add_argument("--sigmas", type=float, nargs="*", default=[0, 1, 2, 3, 6],
                     help="the noise on the 8 true landmarks, pixels at 64 x 64")
    ds_.add_argument("--regress", type=int, nargs="+", default=[500, 2000],
                     help="faces the regression is fit on")
    ds_.add_argument("--test", type=int, default=300, help="test faces")
    se = sub.add_parser("search")
    se.add_argument("run", nargs="?", help="checkpoint file or run folder with refined keypoints")
    se.add_argument("--faces", type=int, default=300, help="test faces")
    se.add_argument("--train-faces", type=int, default=1500, help="faces for the templates and heads")
    se.add_argument("--reaches", type=float, nargs="+", default=[0.13, 0.1, 0.065, 0.065],
                    help="the active-shape fit's reach in each round (temperature 0.02)")
    co = add_template_search_args(sub.add_parser("corners"))
    co.add_argument("--radius", type=int, default=ModelConfig().refine_radius, help="template patches of 2r + 1 pixels a side")
    ml = add_template_search_args(sub.add_parser("midline"))
    ml.add_argument("--landmarks", type=int, nargs="+", default=list(MIDLINE), help="landmark indices")
    ml.add_argument("--radii", type=int, nargs="+", default=[2, 6, 10, 14], help="patch radii (pixels)")
    cs = sub.add_parser("copy-side")
    cs.add_argument("run", help="checkpoint file or run folder with refined copies")
    cs.add_argument("--faces", type=int, default=1000, help="test faces")
    cs.add_argument("--train-faces", type=int, default=2000, help="faces for the direction and the classifier")
    cs.add_argument("--radii", type=int, nargs="+", default=[3, 5, 7, 10], help="patch radii (pixels)")
    vh = sub.add_parser("view-head")
    vh.add_argument("run", help="checkpoint file or run folder")
    vh.add_argument("--train-faces", type=int, default=16000, help="faces for the teacher and the student")
    vh.add_argument("--regress-faces", type=int, default=2000, help="faces for the evaluation's regression")
    vh.add_argument("--faces", type=int, default=1000, help="test faces")
    vh.add_argument("--steps", type=int, default=4000, help="the student's training steps (batches of 64)")
    vh.add_argument("--pooled", type=int, default=64, help="images kept at this size (pixels)")
    vh.add_argument("--crop", type=int, default=48, help="head crops of this size (pixels)")
    vh.add_argument("--noise", type=float, nargs="+", default=[0, 10, 15, 20, 25], help="degrees")
    vh.add_argument("--threads", type=int, default=2, help="it trains a network: two threads halve the time")
    vh.add_argument("--seed", type=int, default=0)
    vh.add_argument("--teacher", choices=("points", "yaw"), default="points",
                    help="what the student learns: the odd part of the points (no labels) or the true yaw "
                         "(labels: the most this student could learn)")
    vh.add_argument("--keep", type=share, default=1.0,
                    help="the student learns from this share of the training faces, those with the largest |teacher|")
    vh.add_argument("--loss", choices=("mse", "logistic"), default="mse",
                    help="mse: the teacher's value; logistic: its sign alone")
    vh.add_argument("--colour", choices=("rgb", "chromaticity"), default="rgb",
                    help="chromaticity: the student sees colour without brightness, blind to the shading")
    vh.add_argument("--centre", choices=("points", "symmetric"), default="points",
                    help="the head crops follow the points, or the points with the mirror image's put back")
    vh.add_argument("--turn", type=float, default=0.0, help="the student's crops turned in-plane by up to this (degrees)")
    vh.add_argument("--rounds", type=positive_int, default=1,
                    help="rounds of teaching; from the second, the last student's views are the teacher")
    ps = sub.add_parser("pose-search")
    ps.add_argument("--size", type=int, default=SIZE, help="image size (pixels)")
    ps.add_argument("--radius", type=int, default=2, help="template patches of 2r + 1 pixels a side")
    ps.add_argument("--pool", type=int, default=2, help="the response max-pooled over 2p + 1 pixels a side")
    ps.add_argument("--step", type=float, default=7.5, help="the rotation grid's spacing (degrees)")
    ps.add_argument("--faces", type=int, default=300, help="test faces")
    ps.add_argument("--train-faces", type=int, default=1500, help="faces for the templates and the head")
    o = sub.add_parser("oracle")
    o.add_argument("source", help="landmarks, empty, ring-image, ring-roll, ring-pose (the "
                   "patterns of `ceiling`), or a run folder / checkpoint")
    o.add_argument("--steps", type=int, default=1000)
    o.add_argument("--every", type=int, default=250)
    o.add_argument("--mask-keep", type=float, default=DEMO.mask_keep)
    o.add_argument("--mask-grid", type=int, default=ModelConfig().mask_grid,
                   help="patches per side (the demo's: 16, i.e. 4 x 4 pixels at 64)")
    seen = o.add_mutually_exclusive_group()
    seen.add_argument("--warp", type=float, default=0.0,
                      help="show the decoder the whole image under a smooth random warp of up to "
                           "this displacement ([-1, 1] frame) instead of masked patches")
    seen.add_argument("--blur", type=float, default=0.0, metavar="SIGMA",
                      help="show the decoder the whole image blurred by a Gaussian of this width "
                           "in pixels instead of masked patches")
    seen.add_argument("--shuffle", type=int, default=0,
                      help="show the decoder the whole image cut into this many cells per side, "
                           "shuffled, instead of masked patches")
    o.add_argument("--keypoint-maps", type=float, default=0.0, metavar="SIGMA",
                   help="also give the decoder one Gaussian map of this width per keypoint "
                        "(ModelConfig.keypoint_map_sigma; `empty`: zeros)")
    o.add_argument("--loss", default=DEMO.reconstruction)
    o.add_argument("--lr", type=float, default=DEMO.lr)
    o.add_argument("--decoder-widths", type=int, nargs="+", default=list(DEMO.decoder_widths))
    o.add_argument("--seed", type=int, default=0)
    for name in ("gt", "refit"):
        c = sub.add_parser(name)
        if name == "refit":
            c.add_argument("run", help="checkpoint file or run folder")
        c.add_argument("--lr", type=float, default=1e-3)
        c.add_argument("--steps", type=int, default=3000)
    a = p.parse_args()
    torch.set_num_threads(1)
    {"noise": cmd_noise, "gt": cmd_gt, "refit": cmd_refit, "heatmaps": cmd_heatmaps,
     "edge-use": cmd_edge_use, "oracle": cmd_oracle, "ceiling": cmd_ceiling,
     "mirror": cmd_mirror, "appearance": cmd_appearance, "follow": cmd_follow, "regions": cmd_regions,
     "parts": cmd_parts, "copies": cmd_copies, "rigid": cmd_rigid, "depth-ceiling": cmd_depth_ceiling,
     "depth-share": cmd_depth_share, "search": cmd_search, "where": cmd_where,
     "pose-search": cmd_pose_search, "corners": cmd_corners, "copy-side": cmd_copy_side, "midline": cmd_midline, "view-head": cmd_view_head, "pictures": cmd_pictures}[a.cmd](a)


if __name__ == "__main__":
    main()
