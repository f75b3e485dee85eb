"""Loaders for user-supplied data, on small fixture files written by the tests."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kp3d.data import DatasetError, build_dataset


def _img(path, w, h, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# ----------------------------------------------------------------------------- folder

@pytest.fixture
def folder(tmp_path):
    _img(tmp_path / "images/a.png", 20, 10, 1)
    _img(tmp_path / "images/b.png", 16, 16, 2)
    _img(tmp_path / "images/c.png", 16, 16, 3)
    _img(tmp_path / "images/d.png", 10, 20, 4)
    ann = {"landmark_names": ["p", "q"], "images": [
        {"file": "images/a.png", "split": "train", "landmarks_2d": [[9.5, 4.5], [0, 0]],
         "landmarks_3d": [[9.5, 4.5, 2.0], [0, 0, -1.0]]},
        {"file": "images/b.png", "split": "train"},
        {"file": "images/c.png", "split": "test", "landmarks_2d": [[1, 2], [3, 4]], "yaw_deg": -40},
        {"file": "images/d.png", "split": "test"},
    ]}
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    return tmp_path


def test_folder_splits_and_rescaling(folder):
    tr = build_dataset(f"folder:{folder}", "train", 8)
    rg = build_dataset(f"folder:{folder}", "regress", 8)
    te = build_dataset(f"folder:{folder}", "test", 8)
    assert (len(tr), len(rg), len(te)) == (2, 1, 1)
    assert tr.info.landmark_names == ["p", "q"] and tr.info.has_3d and tr.info.eye_indices is None
    it = rg[0]
    assert it["image"].shape == (3, 8, 8)
    # 20 x 10 image -> 8 x 8: x' = (x + .5) * 8/20 - .5, y' = (y + .5) * 8/10 - .5, z * sqrt(sx sy)
    np.testing.assert_allclose(it["landmarks_2d"].numpy(), [[3.5, 3.5], [-0.3, -0.1]], atol=1e-6)
    np.testing.assert_allclose(it["landmarks_3d"][:, 2].numpy(), [2 * np.sqrt(0.32), -np.sqrt(0.32)], atol=1e-6)
    un = tr[1]  # unannotated training image: NaN landmarks, nothing visible
    assert torch.isnan(un["landmarks_2d"]).all() and not un["visible"].any()
    assert float(te[0]["yaw_deg"]) == -40
    assert len(build_dataset(f"folder:{folder}", "train", 8, length=1)) == 1


def test_folder_missing_and_corrupt_files(folder):
    (folder / "images/b.png").unlink()
    with pytest.warns(UserWarning, match="skipped 1 missing"):
        tr = build_dataset(f"folder:{folder}", "train", 8)
    assert len(tr) == 1 and tr.skipped == 1
    _truncate(folder / "images/c.png")
    te = build_dataset(f"folder:{folder}", "test", 8)
    with pytest.raises(DatasetError, match="c.png"):
        te[0]
    # on the training split a corrupt image is replaced by the next one, with a warning, and counted
    _img(folder / "images/b.png", 16, 16, 2)
    _truncate(folder / "images/a.png")
    tr = build_dataset(f"folder:{folder}", "train", 8)
    with pytest.warns(UserWarning, match="a.png"):
        it = tr[0]
    assert it["index"] == 0 and tr.bad_images == 1
    assert torch.isnan(it["landmarks_2d"]).all()  # it is b.png's (unannotated) item


def test_folder_bad_annotations(tmp_path):
    with pytest.raises(ValueError, match="annotations.json"):
        build_dataset(f"folder:{tmp_path}")
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse"):
        build_dataset(f"folder:{tmp_path}")
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"landmark_names": ["p"], "images": [{"file": "x.png", "landmarks_2d": [[1, 2], [3, 4]]}]}))
    with pytest.raises(ValueError, match="shape"):
        build_dataset(f"folder:{tmp_path}")


# ----------------------------------------------------------------------------- CelebA in the wild

@pytest.fixture
def celeba(tmp_path):
    names = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    for i, n in enumerate(names):
        _img(tmp_path / "img_celeba" / n, 40, 30, i)  # width 40, height 30
    lms = ["4", "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"]
    boxes = ["4", "image_id x_1 y_1 width height"]
    for i, n in enumerate(names):
        lms.append(f"{n} 10 12 30 12 20 18 12 24 28 24")
        boxes.append(f"{n} 2 2 {36 if i != 2 else 10} 26")  # image 3's box covers < 30 % of the image
    (tmp_path / "list_landmarks_celeba.txt").write_text("\n".join(lms) + "\n")
    (tmp_path / "list_bbox_celeba.txt").write_text("\n".join(boxes) + "\n")
    (tmp_path / "MAFL").mkdir()
    (tmp_path / "MAFL/celebA_training.txt").write_text("000001.jpg\n000002.jpg\n000003.jpg\n")
    (tmp_path / "MAFL/training.txt").write_text("000002.jpg\n")
    (tmp_path / "MAFL/testing.txt").write_text("000003.jpg\n000004.jpg\n")
    return tmp_path


def test_celeba_protocol(celeba):
    tr = build_dataset(f"celeba-wild:{celeba}", "train", 16)
    rg = build_dataset(f"celeba-wild:{celeba}", "regress", 16)
    te = build_dataset(f"celeba-wild:{celeba}", "test", 16)
    assert (len(tr), len(rg), len(te)) == (2, 1, 1)  # the small-box image is filtered out
    assert tr.filtered_small_box == 1 and te.filtered_small_box == 1
    assert rg.info.eye_indices == (0, 1) and rg.info.num_landmarks == 5
    lm = rg[0]["landmarks_2d"].numpy()
    # (width, height) = (40, 30): x' = (x + .5) * 16/40 - .5, y' = (y + .5) * 16/30 - .5
    np.testing.assert_allclose(lm[0], [(10.5) * 0.4 - 0.5, 12.5 * 16 / 30 - 0.5], atol=1e-5)
    np.testing.assert_allclose(lm[4], [28.5 * 0.4 - 0.5, 24.5 * 16 / 30 - 0.5], atol=1e-5)


def test_celeba_missing_pieces(celeba):
    (celeba / "img_celeba/000001.jpg").unlink()
    with pytest.warns(UserWarning, match="000001.jpg"):
        tr = build_dataset(f"celeba-wild:{celeba}", "train", 16)
    assert len(tr) == 1 and tr.skipped == 1
    (celeba / "list_bbox_celeba.txt").unlink()
    with pytest.raises(ValueError, match="list_bbox_celeba.txt"):
        build_dataset(f"celeba-wild:{celeba}", "train", 16)


# ----------------------------------------------------------------------------- AFLW2000-3D / 300W-LP

def _mat(path, pt3d=True, yaw_deg=10.0, seed=0):
    savemat = pytest.importorskip("scipy.io").savemat  # the .mat loaders need scipy

    rng = np.random.default_rng(seed)
    d = {"Pose_Para": np.array([[0.1, np.radians(yaw_deg), -0.05, 0, 0, 0, 1.0]])}
    xy = rng.uniform(5, 40, (2, 68))
    if pt3d:
        d["pt3d_68"] = np.concatenate([xy, rng.uniform(-5, 5, (1, 68))])
        d["pt2d"] = rng.uniform(0, 40, (2, 21))  # AFLW's 21 points: ignored
    else:
        d["pt2d"] = xy
    savemat(str(path), d)
    return d


@pytest.fixture
def aflw(tmp_path):
    for i in range(5):
        _img(tmp_path / f"image{i:05d}.jpg", 45, 45, i)
        _mat(tmp_path / f"image{i:05d}.mat", yaw_deg=20.0 * i, seed=i)
    return tmp_path


def test_aflw2000(aflw):
    tr = build_dataset(f"aflw2000-3d:{aflw}", "train", 15)
    rg = build_dataset(f"aflw2000-3d:{aflw}", "regress", 15)
    te = build_dataset(f"aflw2000-3d:{aflw}", "test", 15)
    assert (len(tr), len(rg), len(te)) == (5, 3, 2)
    assert te.info.has_3d and te.info.num_landmarks == 68 and te.info.eye_indices == (36, 45)
    it = te[1]  # image00003
    m = pytest.importorskip("scipy.io").loadmat(str(aflw / "image00003.mat"))
    pt = m["pt3d_68"].T
    exp = np.concatenate([(pt[:, :2] + 0.5) / 3 - 0.5, pt[:, 2:] / 3], 1)
    np.testing.assert_allclose(it["landmarks_3d"].numpy(), exp, atol=1e-4)
    np.testing.assert_allclose(it["landmarks_2d"].numpy(), exp[:, :2], atol=1e-4)
    assert abs(float(it["yaw_deg"]) - 60.0) < 1e-3


def test_aflw2000_corrupt_annotation(aflw):
    (aflw / "image00001.mat").write_bytes(b"garbage")
    te = build_dataset(f"aflw2000-3d:{aflw}", "test", 15)
    with pytest.raises(DatasetError, match="image00001"):
        te[0]
    (aflw / "image00004.mat").unlink()
    with pytest.warns(UserWarning, match="no .mat"):
        tr = build_dataset(f"aflw2000-3d:{aflw}", "train", 15)
    assert len(tr) == 4 and tr.skipped == 1


def test_300w_lp(tmp_path):
    for sub in ("AFW", "HELEN_Flip"):
        for i in range(6):
            _img(tmp_path / sub / f"{sub}_{i}.jpg", 30, 30, i)
            _mat(tmp_path / sub / f"{sub}_{i}.mat", pt3d=False, seed=i)
    _img(tmp_path / "landmarks/AFW/x.jpg", 30, 30)  # the landmarks folder is not an image source
    _mat(tmp_path / "landmarks/AFW/x.mat")
    tr = build_dataset(f"300w-lp:{tmp_path}", "train", 10)
    rg = build_dataset(f"300w-lp:{tmp_path}", "regress", 10)
    te = build_dataset(f"300w-lp:{tmp_path}", "test", 10)
    va = build_dataset(f"300w-lp:{tmp_path}", "val", 10)
    assert (len(tr), len(rg), len(va), len(te)) == (12, 10, 1, 1)
    files = [{r["file"] for r in ds.records} for ds in (rg, va, te)]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert not tr.info.has_3d
    it = rg[0]
    assert torch.isfinite(it["landmarks_2d"]).all() and torch.isnan(it["landmarks_3d"]).all()


def test_folder_val_is_every_tenth_annotated_training_image(tmp_path):
    images = []
    for i in range(12):
        _img(tmp_path / f"images/{i}.png", 8, 8, i)
        images.append({"file": f"images/{i}.png", "split": "train", "landmarks_2d": [[1, 1], [2, i % 8]]})
    images.insert(3, {"file": "images/0.png", "split": "train"})  # unannotated: not counted
    (tmp_path / "annotations.json").write_text(json.dumps({"landmark_names": ["p", "q"], "images": images}))
    rg = build_dataset(f"folder:{tmp_path}", "regress", 8)
    va = build_dataset(f"folder:{tmp_path}", "val", 8)
    assert [r["file"] for r in va.records] == ["images/9.png"]
    assert len(rg) == 11 and "images/9.png" not in {r["file"] for r in rg.records}
