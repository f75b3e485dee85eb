"""Synthetic categories: interface, determinism, geometry of the ground truth, visibility."""

import numpy as np
import pytest
import torch

from kp3d.data import DatasetInfo, build_dataset
from kp3d.data.synthetic import car as synthetic_car
from kp3d.data.synthetic import face as synthetic_face
from kp3d.data.synthetic import render
from kp3d.data.synthetic import scene as scene_kit

CATS = ["face", "car"]


@pytest.mark.parametrize("cat", CATS)
def test_item_contract(cat):
    ds = build_dataset(f"synthetic:{cat}", "train", 32, seed=3, length=4)
    assert len(ds) == 4
    info = ds.info
    assert isinstance(info, DatasetInfo) and info.has_3d and info.image_size == 32
    assert info.num_landmarks == len(info.landmark_names) >= (20 if cat == "face" else 12)
    it = ds[1]
    L = info.num_landmarks
    assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.float32
    assert it["image"].min() >= -1 and it["image"].max() <= 1 and it["image"].std() > 0.05
    assert it["landmarks_2d"].shape == (L, 2) and it["landmarks_3d"].shape == (L, 3)
    assert it["visible"].shape == (L,) and it["visible"].dtype == torch.bool
    assert it["index"] == 1
    assert torch.isfinite(it["landmarks_3d"]).all()
    # the 3D landmarks are in the camera frame of the 2D ones (orthographic camera)
    torch.testing.assert_close(it["landmarks_3d"][:, :2], it["landmarks_2d"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["landmarks_2d"].shape == (4, L, 2)


def test_face_landmarks_and_eyes():
    ds = build_dataset("synthetic:face", "test", 32, length=2)
    names = ds.info.landmark_names
    assert names[:5] == ["left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"]
    assert ds.info.eye_indices == (0, 1)
    assert build_dataset("synthetic:car", length=1).info.eye_indices is None


def test_deterministic_and_disjoint_splits():
    a = build_dataset("synthetic:face", "train", 24, seed=7, length=3)
    b = build_dataset("synthetic:face", "train", 24, seed=7, length=3)
    for i in (0, 2):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["landmarks_3d"], y["landmarks_3d"])
    # item i does not depend on the order of access
    assert torch.equal(a[2]["image"], build_dataset("synthetic:face", "train", 24, seed=7, length=5)[2]["image"])
    imgs = [build_dataset("synthetic:face", s, 24, seed=7, length=1)[0]["image"] for s in ("train", "regress", "test")]
    imgs.append(build_dataset("synthetic:face", "train", 24, seed=8, length=1)[0]["image"])
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert not torch.equal(imgs[i], imgs[j])


def test_default_lengths_and_index_errors():
    assert [len(build_dataset("synthetic:car", s)) for s in ("train", "regress", "test")] == [10000, 1000, 1000]
    ds = build_dataset("synthetic:car", "test", 16, length=2)
    with pytest.raises(IndexError):
        ds[2]


@pytest.mark.parametrize("spec,split,kw,needle", [
    ("synthetic:dragon", "train", {}, "synthetic:dragon"),
    ("synthetic:face", "validation", {}, "split"),
    ("nonsense", "train", {}, "nonsense"),
    ("imagenet:/x", "train", {}, "imagenet"),
    ("folder:/definitely/not/here", "train", {}, "does not exist"),
    ("synthetic:face", "train", {"length": 0}, "length"),
    ("synthetic:face", "train", {"image_size": 3}, "image_size"),
])
def test_bad_specs(spec, split, kw, needle):
    with pytest.raises(ValueError, match=needle):
        build_dataset(spec, split, **kw)


@pytest.mark.parametrize("mod,kw,limits", [(synthetic_face, {}, (30, 20, 15)),
                                           (synthetic_face, {"profile": "wide"}, (75, 30, 20)),
                                           (synthetic_car, {}, (180, 30, 4))])
def test_pose_ranges(mod, kw, limits):
    yaws = np.array([mod.sample_scene(np.random.default_rng(i), 16, **kw).yaw_deg for i in range(60)])
    assert np.abs(yaws).max() <= limits[0] + 1e-9
    assert np.abs(yaws).max() > 0.6 * limits[0]  # the range is really used


def test_face_scene_records_its_whole_pose():
    scenes = [synthetic_face.sample_scene(np.random.default_rng(i), 16) for i in range(60)]
    for name, limit in (("pitch", 20), ("roll", 15)):
        angles = np.array([getattr(sc, f"{name}_deg") for sc in scenes])
        assert np.abs(angles).max() <= limit + 1e-9 and np.abs(angles).max() > 0.6 * limit
    # the posed head centre lies between the posed ear lobes (about 0.3 below and behind it)
    for sc in scenes:
        ears = sc.landmarks[[21, 22]].mean(0)
        assert np.linalg.norm(ears - sc.object_centre) < 0.45


def test_shape_varies_between_images():
    ds = build_dataset("synthetic:face", "train", 32, length=6)
    # pose-free comparison: distance eye-to-eye relative to eye-to-mouth varies across images
    r = []
    for i in range(6):
        p = ds[i]["landmarks_3d"].numpy()
        r.append(np.linalg.norm(p[0] - p[1]) / np.linalg.norm((p[0] + p[1]) / 2 - (p[3] + p[4]) / 2))
    assert np.std(r) > 0.01


def test_rasterizer_zbuffer_and_coverage():
    # two overlapping triangles: the nearer (larger z) one wins
    xy = np.array([[0, 0], [9, 0], [0, 9], [0, 0], [9, 0], [0, 9]], float)
    z = np.array([1, 1, 1, 2, 2, 2], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    pid, tri, bary, zbuf = render.rasterize(xy, z, faces, 10)
    # pixel centres with x + y <= 9 are covered: 55 of them
    assert len(pid) == 55 and (tri == 1).all()
    np.testing.assert_allclose(bary.sum(1), 1.0)
    np.testing.assert_allclose(zbuf[pid], 2.0)
    assert np.isinf(zbuf[99])


def _sphere_scene(landmarks, size=32):
    lat, lon, f = render.uv_sphere(16, 24)
    p = render.sphere_points(lat, lon)
    part = scene_kit.make_part(p, f, np.array([0.8, 0.6, 0.5]), 0.1)
    return scene_kit.Scene(parts=[part], landmarks=np.asarray(landmarks, float), centre=(15.5, 15.5), scale=10.0,
                           light_dir=np.array([0, 0, 1.0]), ambient=0.3, diffuse=0.7,
                           light_colour=np.ones(3), background=np.zeros((size, size, 3)))


def test_visibility_from_zbuffer():
    lm = [[0, 0, 1], [0, 0, -1], [0.6, 0.0, 0.8], [0.6, 0.0, -0.8], [5, 5, 0]]
    img, lm2d, lm3d, vis = render.render_scene(_sphere_scene(lm), 32)
    assert vis.tolist() == [True, False, True, False, False]  # front, back, front, back, outside the image
    np.testing.assert_allclose(lm2d[0], [15.5, 15.5])
    np.testing.assert_allclose(lm2d[2], [21.5, 15.5])  # x right
    np.testing.assert_allclose(lm3d[:, 2], [10, -10, 8, -8, 0])
    assert img[15, 15].sum() > 0.5 and img[0, 0].sum() == 0  # sphere drawn, background kept


def test_visible_landmarks_lie_on_the_rendered_surface():
    ds = build_dataset("synthetic:face", "train", 64, seed=1, length=8)
    frac = []
    for i in range(8):
        rng = ds.rng(i)
        scene = synthetic_face.sample_scene(rng, 64)
        _, lm2d, lm3d, vis = render.render_scene(scene, 64)
        frac.append(vis.mean())
    # the face is seen from the front half-space: most landmarks are visible, not all
    assert 0.4 < np.mean(frac) < 1.0


def test_render_size_and_speed_sanity():
    ds = build_dataset("synthetic:car", "train", 96, length=1)
    assert ds[0]["image"].shape == (3, 96, 96)


def test_row_and_box_rasterisers_agree():
    scene = synthetic_face.sample_scene(np.random.default_rng(4), 96)
    V = np.concatenate([p.verts for p in scene.parts])
    off = np.cumsum([0] + [len(p.verts) for p in scene.parts])
    F = np.concatenate([p.faces + o for p, o in zip(scene.parts, off)])
    xy = scene.to_pixels(V)
    z = scene.scale * V[:, 2]
    a = render._rasterize_boxes(xy, z, F, 96)
    b = render._rasterize_rows(xy, z, F, 96)
    np.testing.assert_array_equal(np.sort(a[0]), np.sort(b[0]))
    np.testing.assert_array_equal(a[3], b[3])


def test_dataset_pickles_for_worker_processes():
    import pickle

    ds = build_dataset("synthetic:car", "regress", 16, seed=2, length=3)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert torch.equal(ds[1]["image"], ds2[1]["image"])


def test_face_visibility_follows_yaw():
    vis, yaw = [], []
    for i in range(80):
        scene = synthetic_face.sample_scene(np.random.default_rng(i), 32, profile="wide")
        vis.append(render.render_scene(scene, 32)[3])
        yaw.append(scene.yaw_deg)
    vis, yaw = np.array(vis), np.array(yaw)
    frontal = np.abs(yaw) < 25
    # every landmark can be seen on near-frontal faces
    assert vis[frontal].mean(0).min() > 0.3
    # turning towards image right (positive yaw) hides the right eye's outer corner, and vice versa
    names = synthetic_face.LANDMARK_NAMES
    ro, lo = names.index("right_eye_outer"), names.index("left_eye_outer")
    assert vis[yaw > 50, ro].mean() < 0.5 < vis[yaw > 50, lo].mean()
    assert vis[yaw < -50, lo].mean() < 0.5 < vis[yaw < -50, ro].mean()


@pytest.mark.parametrize("mod", [synthetic_face, synthetic_car])
def test_pose_override_changes_only_the_pose(mod, monkeypatch):
    """The drawn pose given back as an override renders the same scene (the override leaves
    every other draw in place); another pose moves the object over the same background."""
    drawn = []
    real = mod.sample_pose
    monkeypatch.setattr(mod, "sample_pose", lambda rng, *a: drawn.append(real(rng, *a)) or drawn[-1])
    S = 32

    def render_with(pose):
        return render.render_scene(mod.sample_scene(np.random.default_rng(3), S, pose=pose), S)[:2]

    img, lm = render_with(None)
    same, lm_same = render_with(drawn[0])
    assert np.array_equal(img, same) and np.array_equal(lm, lm_same)
    yaw, pitch, roll = drawn[0]
    moved, lm_moved = render_with((yaw + 40, pitch, roll))
    changed = np.abs(moved - img).max(-1) > 1e-6
    assert 0.02 < changed.mean() < 0.6, changed.mean()
    assert np.abs(lm_moved - lm).max() > 1.0


def test_splits_are_disjoint_seed_streams():
    """train, val, regress and test each draw from their own stream: no scene is shared."""
    images = {split: build_dataset("synthetic:face", split, 16, length=20) for split in
              ("train", "val", "regress", "test")}
    seen = {}
    for split, ds in images.items():
        for i in range(len(ds)):
            key = ds[i]["landmarks_2d"].numpy().round(4).tobytes()
            assert key not in seen, (split, seen.get(key))
            seen[key] = split


def test_face_profiles_frame_the_head_as_the_paper_does():
    """synthetic:face follows AutoLink's CelebA protocol (the face box covers a good part of
    the frame, yaw within +-30 deg); synthetic:face-wide turns up to +-75 deg, same framing."""
    face = build_dataset("synthetic:face", "test", 64, length=40)
    wide = build_dataset("synthetic:face-wide", "test", 64, length=40)
    yaw = lambda ds: np.array([float(ds[i]["yaw_deg"]) for i in range(len(ds))])  # noqa: E731
    assert np.abs(yaw(face)).max() <= 30 and np.abs(yaw(wide)).max() > 45
    lm = np.stack([face[i]["landmarks_2d"].numpy() for i in range(len(face))])
    box = np.ptp(lm[..., 0], 1) * np.ptp(lm[..., 1], 1) / 64 ** 2
    assert np.median(box) > 0.3
