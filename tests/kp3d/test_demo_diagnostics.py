"""`scripts/demo_diagnostics.py`: a few steps of each built-in keypoint source of `oracle` run and
report a finite test loss; `ceiling` orders its keypoint patterns as the pose they see says;
the region centroids behind its last rows follow the yaw (the measurements are in
docs/training.md)."""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_diagnostics.py"


def load_script():
    spec = importlib.util.spec_from_file_location("demo_diagnostics", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny(folder, runs, image_size=32):
    """Train a one-step tiny model under folder/NAME for each {NAME: extra `kp3d train` args}."""
    from kp3d.cli import main as kp3d_main

    tiny = ["--data", "synthetic:face", "--keypoints", "4", "--steps", "1", "--image-size",
            str(image_size), "--detector-widths", "8,16", "--decoder-widths", "8,16",
            "--batch-size", "2", "--train-images", "4", "--no-progress", "--reconstruction", "l1"]
    for name, extra in runs.items():
        assert kp3d_main(["train", "--out", str(folder / name)] + tiny + extra) == 0


@pytest.mark.parametrize("source,seen", [
    ("landmarks", []), ("empty", []), ("landmarks", ["--mask-grid", "4", "--mask-keep", "0.25"]),
    ("landmarks", ["--warp", "0.2"]), ("empty", ["--shuffle", "4"]), ("landmarks", ["--blur", "3"]),
    ("landmarks", ["--shuffle", "4", "--keypoint-maps", "0.1"]),
    ("empty", ["--shuffle", "4", "--keypoint-maps", "0.1"])])
def test_oracle_runs(source, seen):
    res = subprocess.run([sys.executable, str(SCRIPT), "oracle", source, "--steps", "2",
                          "--every", "1", "--decoder-widths", "4", "8", *seen],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    losses = [float(v) for v in re.findall(r"step \d+ test loss ([0-9.]+)", res.stdout)]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses), res.stdout


def test_ceiling_orders_the_patterns():
    res = subprocess.run([sys.executable, str(SCRIPT), "ceiling"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    r2 = [float(v) for v in re.findall(r" r2 ([0-9.]+)", res.stdout)]
    assert len(r2) == 6, res.stdout
    image, roll, pose, true, ring_and_regions, regions = r2
    # seeing more of the pose can only help; the outline alone stays above the demo's 0.5 target
    assert image > roll > 0.5 > pose > true, res.stdout
    # the centres of the skin and the hair see the yaw and pitch the outline does not
    assert 0.5 > ring_and_regions > pose and 0.5 > regions > pose, res.stdout


def test_appearance_scores_the_eyes_above_the_ring_and_searches_worse():
    res = subprocess.run([sys.executable, str(SCRIPT), "appearance"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^(\S.*?) +([0-9.]+)  \(per point", res.stdout, re.M)
    score = {name.strip(): float(value) for name, value in rows}
    eyes, ring, rand = (score["landmarks: eyes"], score["ring in the image (centre and size)"],
                        score["random in the image"])
    assert eyes > 3 * ring > 3 * rand, res.stdout
    # but a search of the whole image for the eye's own template often ends elsewhere
    hits = [int(v) for v in re.findall(r"kind in (\d+)% of the faces", res.stdout)]
    assert len(hits) == 4 and 30 < hits[0] < 80, res.stdout


def test_gaussian_blur_keeps_flat_images_and_mass():
    blur = load_script().gaussian_blur
    flat = torch.full((1, 3, 12, 12), 0.7)
    assert torch.allclose(blur(flat, 2.0), flat, atol=1e-6)
    dot = torch.zeros(1, 1, 25, 25, dtype=torch.float64)
    dot[..., 12, 12] = 1.0
    out = blur(dot, 1.5)
    assert torch.isclose(out.sum(), torch.tensor(1.0, dtype=torch.float64))
    r = torch.arange(-12.0, 13.0, dtype=torch.float64)
    g = torch.exp(-r * r / (2 * 1.5 ** 2)) * (r.abs() <= 5)
    expected = torch.outer(g, g) / g.sum() ** 2  # truncated at ceil(3 sigma) = 5 pixels
    assert torch.allclose(out[0, 0], expected, atol=1e-12)


def test_random_warp_moves_pixels_a_bounded_amount():
    random_warp = load_script().random_warp
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(random_warp(x, 0.0, torch.Generator()), x, atol=1e-5)
    # x at the pixel centres (the grid_sample frame): sampling it returns the displacement
    ramp = ((2 * torch.arange(16.0) + 1) / 16 - 1).expand(1, 3, 16, 16)
    moved = random_warp(ramp, 0.1, torch.Generator().manual_seed(0)) - ramp
    # bicubic upsampling of offsets within +-0.1 stays within 1.375^2 x 0.1 (the sum of the
    # absolute cubic weights, 1.375 per axis, at a half-cell position)
    assert 0 < moved.abs().max() <= 0.1 * 1.375 ** 2


def test_mirror_rows():
    res = subprocess.run([sys.executable, str(SCRIPT), "mirror", "--sigmas", "0.15"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    as_is = float(re.search(r"as it is\s+loss ([0-9.]+)", res.stdout).group(1))
    warped = [float(v) for v in re.findall(r"sigma 0.15: ([0-9.]+)", res.stdout)]
    assert len(warped) == 3 and all(math.isfinite(v) for v in warped), res.stdout
    # moving the mirrored head onto the head must beat the mirror image as it is (a sign error
    # in the warp would move it the other way)
    assert warped[0] < as_is, res.stdout


def test_follow_fraction_tells_following_keypoints_from_fixed_ones():
    follow_fraction = load_script().follow_fraction
    xs = torch.linspace(-1, 1, 33, dtype=torch.float64)
    centres = torch.tensor([[-0.3, 0.1], [0.2, -0.2]], dtype=torch.float64)
    d2 = (xs[None, None, :] - centres[:, 0, None, None]) ** 2 + (xs[None, :, None] - centres[:, 1, None, None]) ** 2
    images = torch.exp(-d2 / 0.01)[:, None].expand(-1, 3, -1, -1)

    def centroid(x):
        w = x[:, 0] / x[:, 0].sum((-1, -2), keepdim=True)
        return {"keypoints": torch.stack([(w * xs).sum((-1, -2)), (w * xs[:, None]).sum((-1, -2))], -1)[:, None]}

    def fixed(x):
        return {"keypoints": torch.zeros(len(x), 1, 2, dtype=x.dtype)}

    assert follow_fraction(centroid, images).item() == pytest.approx(1.0, abs=0.02)
    assert follow_fraction(fixed, images).item() == 0.0


def test_region_centroids_move_with_the_yaw_and_leave_the_data_alone():
    import numpy as np

    from kp3d.data import build_dataset

    script = load_script()
    ds = build_dataset("synthetic:face", "test", 64, length=40)
    before = ds[3]["image"].clone()
    offsets, yaws = [], []
    for i in range(len(ds)):
        scene = script.scene_of(ds, i)
        c = script.region_centroids(ds, i)
        centre = scene.to_pixels(scene.object_centre[None])[0]
        assert all(np.all((v >= 0) & (v <= 63)) for v in c.values())
        assert np.linalg.norm(c["skin"] - c["hair"]) > 1.0  # two different regions
        offsets.append(c["skin"][0] - centre[0])
        yaws.append(scene.yaw_deg)
    # the face's skin shifts towards the side the head turns to
    assert np.corrcoef(offsets, yaws)[0, 1] > 0.4
    # the colours swapped for the label rendering are put back: the data are unchanged
    assert torch.equal(ds[3]["image"], before)


def test_parts_draws_a_part_map_model_and_refuses_others(tmp_path):
    train_tiny(tmp_path, {"parts": ["--part-maps"], "plain": []})
    out = tmp_path / "parts.png"
    res = subprocess.run([sys.executable, str(SCRIPT), "parts", str(tmp_path / "parts"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    from PIL import Image
    assert Image.open(out).size == (8 * 64, 2 * 64)  # 8 faces, image over parts, 2x scale
    res = subprocess.run([sys.executable, str(SCRIPT), "parts", str(tmp_path / "plain"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "not a part-map model" in res.stderr


def test_copies_scores_all_points_and_each_half_and_refuses_plain_models(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"], "plain": []})
    res = subprocess.run([sys.executable, str(SCRIPT), "copies", str(tmp_path / "refined")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = dict(re.findall(r"^(.*?) +r2 ([0-9.]+)$", res.stdout, re.M))
    assert set(rows) == {"keypoints and copies", "keypoints alone", "copies alone"}, res.stdout
    assert all(0 < float(v) < 5 for v in rows.values()), res.stdout  # a finite figure for each
    res = subprocess.run([sys.executable, str(SCRIPT), "copies", str(tmp_path / "plain")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "no refined keypoints" in res.stderr


def test_rigid_head_fit_recovers_points_fixed_on_the_head_and_their_depth():
    from kp3d.data import build_dataset

    dd = load_script()
    ds = build_dataset("synthetic:face", "test", 64, length=30)
    scenes = [dd.scene_of(ds, i) for i in range(len(ds))]
    X = np.random.default_rng(0).normal(0, 0.5, (5, 3))  # head frame
    # the generator's own projection of points fixed on the posed head
    points = np.stack([sc.to_pixels(sc.object_centre + X @ dd.head_rotation(sc).T) for sc in scenes])
    A, base = dd.head_cameras(scenes)
    np.testing.assert_allclose(np.einsum("nij,kj->nki", A, X) + base[:, None], points, atol=1e-9)
    np.testing.assert_allclose(dd.rigid_head_fit(points, scenes), X, atol=1e-9)
    true_depth = np.stack([sc.scale * X @ dd.head_rotation(sc)[2] for sc in scenes])
    np.testing.assert_allclose(dd.fitted_head_depth(points, X), true_depth, atol=1e-6)
    true_rotations = np.stack([dd.head_rotation(sc) for sc in scenes])
    R, scale = dd.fitted_head_rotations(points, X)
    np.testing.assert_allclose(dd.rotation_angle_deg(R, true_rotations), 0.0, atol=1e-4)
    np.testing.assert_allclose(scale, [sc.scale for sc in scenes], rtol=1e-9)


def test_head_rotation_off_perturbs_yaw_and_pitch_by_the_asked_amount():
    from kp3d.data import build_dataset

    dd = load_script()
    ds = build_dataset("synthetic:face", "test", 64, length=200)
    scenes = [dd.scene_of(ds, i) for i in range(len(ds))]
    true = np.stack([dd.head_rotation(sc) for sc in scenes])
    rng = np.random.default_rng(0)
    exact = np.stack([dd.head_rotation_off(sc, rng, 0.0) for sc in scenes])
    np.testing.assert_allclose(exact, true, atol=1e-12)
    for sigma in (5.0, 20.0):
        off = np.stack([dd.head_rotation_off(sc, rng, sigma) for sc in scenes])
        angle = dd.rotation_angle_deg(off, true)
        # two independent Gaussian angles: the median geodesic angle is sigma sqrt(2 ln 2) = 1.18 sigma
        assert 1.0 * sigma < np.median(angle) < 1.4 * sigma, np.median(angle)


def test_search_moves_true_landmarks_less_the_shorter_its_reach():
    res = subprocess.run([sys.executable, str(SCRIPT), "search", "--faces", "40", "--train-faces", "60"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"reach ([0-9.]+) \(\d+ px\), temperature ([0-9.]+): moved eyes ([0-9.]+) px, "
                      r"all 8 ([0-9.]+) px", res.stdout)
    moved = {(float(r), float(t)): float(all8) for r, t, _, all8 in rows}
    assert len(moved) == 5, res.stdout
    # at one temperature, a longer reach lets stronger matches further away win
    assert moved[(0.065, 0.02)] < moved[(0.1, 0.02)] < moved[(0.13, 0.02)] < moved[(0.19, 0.02)], res.stdout
    # a sharper temperature leaves the same reach's prior weaker against the amplitude
    assert moved[(0.19, 0.005)] > moved[(0.19, 0.02)], res.stdout
    disc = [float(v) for v in re.findall(r"best match within \d px: moved eyes [0-9.]+ px, all 8 ([0-9.]+) px",
                                         res.stdout)]
    assert len(disc) == 3 and disc[0] <= 2.0 and disc == sorted(disc), res.stdout


def test_rigid_lifts_exact_landmarks_and_loses_depth_to_noise():
    res = subprocess.run([sys.executable, str(SCRIPT), "rigid", "--sigmas", "0", "6", "--two-modes"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"noise ([0-9.]+) px: ([0-9.]+) px from a rigid head .*?r3 with its depth at "
                      r"the true pose ([0-9.]+), at the pose fitted to the points ([0-9.]+)", res.stdout)
    assert len(rows) == 2, res.stdout
    (_, d0, true0, fit0), (_, d6, _, fit6) = [[float(v) for v in row] for row in rows]
    # true landmarks sit on a rigid head up to the faces' shape variation; noise moves them off it
    assert d0 < 1.5 < 6 < d6, res.stdout
    # exact points give a pose as good as the true one, nearly; noisy ones lose the depth's gain
    assert true0 < fit0 < 0.6 < 0.9 < fit6, res.stdout
    # landmarks do not change with the side: two heads hold them no better than one
    two = re.findall(r"two rigid heads, .*?: ([0-9.]+) px from the head of the true side; r3 .*? true side "
                     r"([0-9.]+), with the head that fits them better ([0-9.]+)", res.stdout)
    assert len(two) == 2 and abs(float(two[0][0]) - d0) < 0.2 and abs(float(two[0][1]) - fit0) < 0.02, res.stdout


def test_search_fits_a_refined_model_and_refuses_others(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"], "plain": []}, image_size=64)
    small = ["--faces", "20", "--train-faces", "40", "--reaches", "0.1", "0.065"]
    res = subprocess.run([sys.executable, str(SCRIPT), "search", str(tmp_path / "refined"), *small],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"copies sit [0-9.]+ px from their keypoints", res.stdout), res.stdout
    rounds = re.findall(r"round (\d): start eyes [0-9.]+ px, all 8 ([0-9.]+) px off; search, reach "
                        r"([0-9.]+): eyes [0-9.]+ px, all 8 ([0-9.]+) px", res.stdout)
    assert [(r, float(reach)) for r, _, reach, _ in rounds] == [("1", 0.1), ("2", 0.065)], res.stdout
    res = subprocess.run([sys.executable, str(SCRIPT), "search", str(tmp_path / "plain"), *small],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "refined keypoints" in res.stderr


def test_pictures_draws_the_demos_pictures_of_a_run(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"]})
    out = tmp_path / "pics"
    res = subprocess.run([sys.executable, str(SCRIPT), "pictures", str(tmp_path / "refined"),
                          "--out", str(out), "--regress", "12", "--test", "8"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"r2 [0-9.]+, r3 [0-9.]+; wrote", res.stdout), res.stdout
    assert {"keypoints.png", "reconstruction.png", "structure.png"} <= {p.name for p in out.iterdir()}


DEPTH_CEILING_ROW = (r"^(.*?): r3 with depth regressed from the points by an MLP trained on true depths "
                     r"([0-9.]+) \((\d+) faces\); with the true depths ([0-9.]+)$")
DEPTH_CEILING_CONTROL = (r"^(.*?): r3 with the outputs of the same MLP untrained \(no depth at all\) in "
                         r"place of depths, seeds 0 to 4: ([0-9. ]+)$")


def test_depth_ceiling_reads_depth_off_exact_landmarks_better_than_off_noisy_ones():
    res = subprocess.run([sys.executable, str(SCRIPT), "depth-ceiling", "--sigmas", "0", "3",
                          "--labelled", "400", "--steps", "400"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(DEPTH_CEILING_ROW, res.stdout, re.M)
    assert [(name, int(n)) for name, _, n, _ in rows] == [
        ("8 true landmarks, noise 0 px", 400), ("8 true landmarks, noise 3 px", 400)], res.stdout
    (mlp0, true0), (mlp3, true3) = [(float(mlp), float(true)) for _, mlp, _, true in rows]
    # exact depth on exact points is far better than their flat lift; a learned depth is worse
    # than the exact one, and worse again on noisy points
    assert true0 < 0.3 and true0 < mlp0 < 0.8 and true3 < mlp3 and mlp0 < mlp3, res.stdout
    # the control, one figure per seed: outputs that are no depth still lower the figure (the
    # regression can use any nonlinear function of the points), but less than exact depth
    controls = re.findall(DEPTH_CEILING_CONTROL, res.stdout, re.M)
    assert [name for name, _ in controls] == ["8 true landmarks, noise 0 px", "8 true landmarks, noise 3 px"]
    control0 = [float(v) for v in controls[0][1].split()]
    assert len(control0) == 5 and all(true0 < v < 1 for v in control0), res.stdout


def test_depth_ceiling_of_a_run(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"]})
    res = subprocess.run([sys.executable, str(SCRIPT), "depth-ceiling", str(tmp_path / "refined"),
                          "--labelled", "16", "32", "--steps", "5"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^the model's points: r3 with depth regressed from the points by an MLP trained on "
                      r"true depths ([0-9.]+) \(16 faces\), ([0-9.]+) \(32 faces\); with the true depths ([0-9.]+)$",
                      res.stdout, re.M)
    assert len(rows) == 1 and all(0 < float(v) < 10 for v in rows[0]), res.stdout
    controls = re.findall(DEPTH_CEILING_CONTROL, res.stdout, re.M)
    assert len(controls) == 1 and len(controls[0][1].split()) == 5, res.stdout


def test_appearance_pose_search_finds_the_rotation_whose_projection_shows_the_templates():
    from kp3d.data import build_dataset

    dd = load_script()
    ds = build_dataset("synthetic:face", "test", 64, length=4)
    scenes = [dd.scene_of(ds, i) for i in range(len(ds))]
    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-0.5, 0.5, (6, 2)), np.ones(6)]  # head frame, the landmarks facing forward
    true = np.stack([dd.head_rotation(sc) for sc in scenes])
    rotations = np.concatenate([dd.rotation_grid(15.0)[0], true])  # each face's true pose among them
    # faint noise everywhere, a unit amplitude where the generator itself projects each landmark
    response = rng.uniform(0, 0.01, (len(scenes), len(X), 64, 64))
    for i, sc in enumerate(scenes):
        px = np.rint(sc.to_pixels(sc.object_centre + X @ true[i].T)).astype(int)
        response[i, np.arange(len(X)), px[:, 1], px[:, 0]] = 1.0
    cameras = (np.array([sc.scale for sc in scenes]), dd.head_cameras(scenes)[1])
    found = dd.appearance_pose_search(response, X, cameras, rotations)
    assert list(found) == list(range(len(rotations) - len(scenes), len(rotations)))


def test_pose_search_reports_the_found_rotation_and_its_depth():
    res = subprocess.run([sys.executable, str(SCRIPT), "pose-search", "--faces", "40", "--train-faces", "60",
                          "--step", "15"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    row = re.search(r"the nearest ([0-9.]+) deg from the true one, median\): the found rotation is off by "
                    r"([0-9.]+) deg .*? r3 of the true landmarks with the head's depth at the found pose "
                    r"([0-9.]+), at the true pose ([0-9.]+), at the pose fitted to them ([0-9.]+)$",
                    res.stdout, re.M)
    assert row, res.stdout
    nearest, off, found, true, fitted = map(float, row.groups())
    # a 15-degree grid has a rotation within 13 degrees of any pose; the search finds one near
    # the true pose for most faces; exact depth is far better than the flat lift
    assert nearest < 13 and off < 60 and true < 0.6 and true < fitted, res.stdout
    assert 0 < found < 2, res.stdout


DEPTH_SHARE_ROW = (r"^(.+?), regression on (\d+): flat lift 3D ([0-9.]+) \(image plane ([0-9.]+), depth "
                   r"([0-9.]+)\); exact depth ([0-9.]+) \(([0-9.]+) x\)(.*)$")


def test_nme_3d_parts_split_the_error_into_image_plane_and_depth():
    """Points that give the landmarks exactly score 0; the flat lift of exact landmarks misses
    only their depth; wrong depth alone leaves the image-plane part at 0."""
    dd = load_script()
    rng = np.random.default_rng(0)
    gt = {s: rng.normal(0, 20, (n, 5, 3)) + 32 for s, n in (("regress", 40), ("test", 30))}
    for g in gt.values():
        g[..., 2] -= g[..., 2].mean(1, keepdims=True)  # the evaluation centres depth per image
    frame = {s: dd.to_frame(g) for s, g in gt.items()}  # the regression undoes the scaling
    assert np.allclose(dd.nme_3d_parts(frame, gt), 0, atol=1e-9)
    flat = {s: np.concatenate([f[..., :2], np.zeros_like(f[..., :1])], -1) for s, f in frame.items()}
    e3, xy, z = dd.nme_3d_parts(flat, gt)
    assert xy < 1e-9 and z > 0.1 and np.isclose(e3, z)


def test_depth_share_of_landmarks_and_of_a_run(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"]})
    res = subprocess.run([sys.executable, str(SCRIPT), "depth-share", str(tmp_path / "refined"),
                          "--sigmas", "0", "6", "--regress", "30", "60", "--test", "40"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(DEPTH_SHARE_ROW, res.stdout, re.M)
    assert [(name, int(n)) for name, n, *_ in rows] == [
        ("the model's points", 30), ("the model's points", 60), ("8 true landmarks, noise 0 px", 30),
        ("8 true landmarks, noise 0 px", 60), ("8 true landmarks, noise 6 px", 30),
        ("8 true landmarks, noise 6 px", 60)], res.stdout
    for name, n, e3, xy, z, exact, ratio, rest in rows:
        e3, xy, z, exact = float(e3), float(xy), float(z), float(exact)
        # the mean of per-landmark sqrt(xy^2 + z^2) lies between the larger mean and their sum
        assert exact == xy and max(xy, z) - 1e-4 <= e3 <= xy + z + 1e-4
        assert np.isclose(float(ratio), xy / e3, atol=2e-3)
        assert ("3D keypoints" in rest and "fitted structure" in rest) == (name == "the model's points")
        # the control, the points at an untrained MLP's depths: one figure per seed, no better
        # than exact depth (within the regression's fit noise on a few faces)
        control = re.findall(r"; untrained-MLP depth, seed (\d) [0-9.]+ \(image plane [0-9.]+, depth [0-9.]+; "
                             r"([0-9.]+) x\)", rest)
        assert [int(seed) for seed, _ in control] == [0, 1, 2, 3, 4], rest
        if name == "8 true landmarks, noise 0 px" and n == "60":
            assert all(float(ratio) + 0.05 < float(v) < 1 for _, v in control), rest
    # exact depth removes most of the flat lift's error on exact landmarks, little on noisy ones
    share = {name: float(ratio) for name, n, *_, ratio, _ in rows if n == "60"}
    assert share["8 true landmarks, noise 0 px"] < 0.5 < share["8 true landmarks, noise 6 px"], res.stdout


def test_where_lists_every_point_of_a_run(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"]})
    res = subprocess.run([sys.executable, str(SCRIPT), "where", str(tmp_path / "refined"), "--faces", "12"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^the templates' mutual overlap [0-9.]+ ", res.stdout, re.M), res.stdout
    kinds = re.findall(r"^(keypoint|copy) +(\d+): +[0-9.]+ px from the nearest landmark", res.stdout, re.M)
    assert kinds == [("keypoint", str(k)) for k in range(4)] + [("copy", str(k)) for k in range(4)], res.stdout


def test_where_report_names_the_nearest_landmark_on_each_side(capsys):
    """A point on landmark 3 is reported there on every face; a point that sits on landmark 0
    when the face is turned one way and on landmark 1 when turned the other is reported on each
    side's own landmark, and half of the faces on each overall."""
    dd = load_script()
    rng = np.random.default_rng(0)
    yaw = np.repeat([-40.0, 40.0], 10)
    lm = rng.uniform(0, 60, (20, 5, 2))
    swap = np.where((yaw > 0)[:, None], lm[:, 1], lm[:, 0])
    points = np.stack([lm[:, 3] + 0.5, swap], 1)
    dd.where_report(points, lm, yaw, ["a", "b", "c", "d", "e"], num_keypoints=1)
    fixed, swapping = capsys.readouterr().out.strip().splitlines()
    assert fixed.startswith("keypoint  0:  0.7 px from the nearest landmark") and "nearest to d 100%" in fixed
    assert "yaw < -20: d 100%; yaw > 20: d 100%" in fixed
    assert swapping.startswith("copy  0:  0.0 px") and "nearest to a 50%, b 50%" in swapping
    assert "yaw < -20: a 100%; yaw > 20: b 100%" in swapping


def test_two_mode_report_finds_points_that_change_with_the_side(capsys):
    """Points fixed on the head, and one that moves to another place on the head when the face
    turns the other way: one rigid head cannot hold them, two heads (one per side) can, and the
    better-fitting head tells the side."""
    from kp3d.data import build_dataset

    dd = load_script()
    n = {"train": 80, "regress": 60, "test": 40}
    rng = np.random.default_rng(1)
    X = rng.normal(0, 0.5, (5, 3))
    other = X[4] + [1.0, 0.5, 0.0]  # a head unit is about 20 pixels at 64 x 64
    scenes, points = {}, {}
    for s, k in n.items():
        ds = build_dataset("synthetic:face", s, 64, length=k)
        scenes[s] = [dd.scene_of(ds, i) for i in range(k)]
        pts = []
        for sc in scenes[s]:
            head = X.copy()
            if sc.yaw_deg < 0:
                head[4] = other
            pts.append(sc.to_pixels(sc.object_centre + head @ dd.head_rotation(sc).T))
        points[s] = np.stack(pts)
    gt = {s: dd.landmarks(s, n[s])[:2] for s in ("regress", "test")}
    one = dd.rigid_head_fit(points["train"], scenes["train"])
    one_dist = dd.distance_from_head(points["test"], scenes["test"], one).mean()
    dd.two_mode_report(points, scenes, gt)
    out = capsys.readouterr().out
    found = re.search(r"([0-9.]+) px from the head of the true side; r3 .*? true side ([0-9.]+), .*? "
                      r"better ([0-9.]+) \(the true side on (\d+)% of the test faces\)", out)
    assert found, out
    dist, r3_true, r3_best, right = (float(v) for v in found.groups())
    assert dist < 0.05 < 1.0 < one_dist, (dist, one_dist)
    assert right == 100 and r3_true == r3_best, out
    # with copies (here the last two points), also the heads split by the copies' side
    dd.two_mode_report(points, scenes, gt, num_keypoints=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and re.search(r"one per side of the keypoints the copies sit on: [0-9.]+ px .*? "
                                         r"with it [0-9.]+ \(that side is the true one on \d+% ", lines[1]), lines


def test_corners_shows_the_far_corner_hidden_and_the_templates_sidedness():
    res = subprocess.run([sys.executable, str(SCRIPT), "corners", "--size", "48", "--faces", "60",
                          "--train-faces", "60"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    shown = {side: [int(v) for v in re.findall(r"(\d+)%", line)]
             for side, line in re.findall(r"^the (left|right) eye's outer corner is visible on (.*)$", res.stdout, re.M)}
    # bands: yaw < -20, frontal, yaw > 20; the corner of the eye turned away is the one hidden
    assert shown["left"][0] < 60 and shown["left"][2] == 100, res.stdout
    assert shown["right"][2] < 60 and shown["right"][0] == 100, res.stdout
    overlaps = [float(v) for v in re.findall(r"template \(mirror overlap ([0-9.]+)\):$", res.stdout, re.M)]
    assert len(overlaps) == 3 and max(overlaps[:2]) < 0.95 and overlaps[2] == 1.0, res.stdout
    hits = re.findall(r"^  (best match in the image|search from the head's centre, reach 0.19): "
                      r"yaw < -20: L \d+% R \d+%; \|yaw\| <= 20: L \d+% R \d+%; yaw > 20: L \d+% R \d+%$",
                      res.stdout, re.M)
    assert len(hits) == 6, res.stdout


def test_antisymmetric_patches_vanish_on_a_mirror_symmetric_face_and_flip_with_the_mirror_image():
    dd = load_script()
    torch.manual_seed(0)
    images = torch.rand(3, 3, 21, 21, dtype=torch.float64)
    points = torch.rand(3, 4, 2, dtype=torch.float64) * 1.2 - 0.6
    mirrored = points * torch.tensor([-1.0, 1.0], dtype=torch.float64)  # x -> -x in the [-1, 1] frame
    A = dd.antisymmetric_patches(images, points, 2)
    assert A.shape == (3, 3 * 25) and np.abs(A).max() > 0.1
    assert np.allclose(dd.antisymmetric_patches(images.flip(-1), mirrored, 2), -A, atol=1e-12)
    symmetric = images + images.flip(-1)
    on_axis = points * torch.tensor([0.0, 1.0], dtype=torch.float64)  # on the image's middle column
    assert np.abs(dd.antisymmetric_patches(symmetric, on_axis, 2)).max() < 1e-6


def test_side_accuracy_takes_the_better_naming_of_the_signs():
    dd = load_script()
    side = np.array([1.0, 1.0, -1.0, -1.0])
    assert dd.side_accuracy(np.array([2.0, 1.0, -1.0, 3.0]), side) == 0.75
    assert dd.side_accuracy(np.array([-2.0, -1.0, 1.0, -3.0]), side) == 0.75


def test_copy_side_reports_each_patch_size_and_refuses_a_model_without_copies(tmp_path):
    train_tiny(tmp_path, {"refined": ["--refine-reach", "0.2"], "plain": []})
    res = subprocess.run([sys.executable, str(SCRIPT), "copy-side", str(tmp_path / "refined"), "--faces", "10",
                          "--train-faces", "12", "--radii", "1", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^the copies sit on the outer corner of the eye nearer the camera on \d+% of 10 test faces", res.stdout, re.M)
    rows = re.findall(r"^  (\d+) x \d+ patches: principal direction (\d+)% / (\d+|nan)% ?.*; linear classifier "
                      r"trained on the true eye (\d+)% / ", res.stdout, re.M)
    assert [r[0] for r in rows] == ["3", "5"] and all(50 <= int(r[1]) <= 100 for r in rows), res.stdout
    res = subprocess.run([sys.executable, str(SCRIPT), "copy-side", str(tmp_path / "plain"), "--faces", "4",
                          "--train-faces", "4"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "no refined copies" in res.stderr, res.stderr


def test_midline_searches_each_landmarks_template_and_finds_an_eye_corner_where_it_faces_the_camera():
    res = subprocess.run([sys.executable, str(SCRIPT), "midline", "--size", "48", "--faces", "60",
                          "--train-faces", "60", "--landmarks", "13", "5", "--radii", "1", "3"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^  (\w+), (\d+) x \d+ patches: median [0-9.]+ px; yaw < -20 (\d+)%; \|yaw\| <= 20 \d+%; "
                      r"yaw > 20 (\d+)%$", res.stdout, re.M)
    assert [(name, side) for name, side, *_ in rows] == [("nose_bridge", "3"), ("nose_bridge", "7"),
                                                         ("left_eye_outer", "3"), ("left_eye_outer", "7")], res.stdout
    # the left eye's outer corner faces the camera when yaw > 20 and is mostly hidden when yaw < -20
    small = rows[2]
    assert int(small[3]) > int(small[2]), res.stdout


def turned_layouts(yaw_deg, seed=0):
    """(N, 6, 2): six random head-frame points seen under each yaw (orthographic, no noise): what a
    detector that follows the head would give."""
    X = np.random.default_rng(seed).normal(size=(6, 3))
    t = np.radians(yaw_deg)[:, None]
    return np.stack([np.cos(t) * X[:, 0] + np.sin(t) * X[:, 2], np.broadcast_to(X[:, 1], (len(t), 6))], -1)


def test_the_odd_layout_coordinate_and_the_crop_frames():
    """The package's view functions are tested in tests/kp3d/test_view_head.py; here the
    diagnostic's numpy wrappers and its crop frame option."""
    dd = load_script()
    yaw = np.random.default_rng(1).uniform(-60, 60, 200)
    points, mirror = turned_layouts(yaw), turned_layouts(-yaw)
    coordinate, direction = dd.odd_layout_coordinate(points, mirror)
    assert abs(np.corrcoef(coordinate, yaw)[0, 1]) > 0.98
    assert np.allclose(dd.odd_layout_coordinate(mirror, points, direction)[0], -coordinate, atol=1e-12)
    shift = np.array([0.1, 0.0])
    faces = {"points": points + shift, "mirror_points": mirror + shift}
    assert np.allclose(dd.crop_frame(faces, "points"), points + shift)
    unshifted = dd.crop_frame({"points": points, "mirror_points": mirror}, "symmetric")
    assert np.allclose(dd.crop_frame(faces, "symmetric").mean(1), unshifted.mean(1), atol=1e-12)
    assert np.allclose(dd.planar_depth(points, np.zeros(200)), 0.0)


def test_view_head_reports_the_teacher_the_student_and_the_noisy_yaw_bar(tmp_path):
    train_tiny(tmp_path, {"plain": []})
    res = subprocess.run([sys.executable, str(SCRIPT), "view-head", str(tmp_path / "plain"), "--train-faces", "40",
                          "--regress-faces", "30", "--faces", "20", "--steps", "3", "--pooled", "32", "--crop", "24",
                          "--noise", "0", "20", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^  (teacher|student) \(.*\): correlation ([0-9.]+); told ((?:\d+%|-)(?: / (?:\d+%|-)){4})$", res.stdout, re.M)
    assert [r[0] for r in rows] == ["teacher", "student"], res.stdout
    assert re.search(r"^  teacher [0-9.]+; student [0-9.]+; a view that is none \(.*\) [0-9.]+$", res.stdout, re.M), res.stdout
    bar = re.findall(r"(\d+) deg \(correlation ([0-9.]+)\) ([0-9.]+)", res.stdout)
    assert [b[0] for b in bar] == ["0", "20"] and float(bar[0][1]) == 1.0, res.stdout


def test_view_head_refuses_a_share_or_a_number_of_rounds_out_of_range():
    for flag, value in (("--keep", "0"), ("--keep", "1.5"), ("--rounds", "0")):
        res = subprocess.run([sys.executable, str(SCRIPT), "view-head", "run", flag, value], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and f"argument {flag}" in res.stderr, res.stderr


def test_view_head_with_the_teacher_s_nuisances_taken_away_and_with_the_true_yaw(tmp_path):
    train_tiny(tmp_path, {"plain": []})
    common = [sys.executable, str(SCRIPT), "view-head", str(tmp_path / "plain"), "--train-faces", "40",
              "--regress-faces", "30", "--faces", "20", "--steps", "3", "--pooled", "32", "--crop", "24",
              "--noise", "0", "--threads", "1"]
    res = subprocess.run(common + ["--keep", "0.5", "--loss", "logistic", "--colour", "chromaticity", "--centre",
                                   "symmetric", "--turn", "30", "--rounds", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "student on the 50% of them it calls most turned, chromaticity, crops on the symmetric frame turned up to 30 degrees, logistic loss, 3 steps, 2 round(s)" in res.stdout, res.stdout
    assert re.search(r"^  student \(the image network\): correlation [0-9.]+; told", res.stdout, re.M), res.stdout
    nuisances = re.findall(r"^  (teacher|student) \(.*\): light's side ([+-][0-9.]+|nan), roll ([+-][0-9.]+|nan)$", res.stdout, re.M)
    assert [n[0] for n in nuisances] == ["teacher", "student"], res.stdout
    res = subprocess.run(common + ["--teacher", "yaw"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^  teacher \(the true yaw: labels\): correlation 1.000; told 100% / 100% / 100% / 100% / 100%$", res.stdout, re.M), res.stdout
