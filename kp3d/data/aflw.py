"""``300w-lp:<root>`` and ``aflw2000-3d:<root>`` — face images with 3DDFA-style ``.mat`` annotations.

Each ``NAME.jpg`` has a ``NAME.mat`` beside it (searched recursively; 300W-LP's ``landmarks/``
folder is ignored). Read keys: ``pt3d_68`` (3 x 68: x, y in image pixels, z depth, towards the
viewer), ``pt2d`` (2 x 68 in 300W-LP; AFLW2000-3D's 2 x 21 AFLW points are not used), and
``Pose_Para`` (pitch, yaw, roll in radians, then translation and scale). Coordinates are used as
stored. ``.mat`` files are read with scipy.io.loadmat (imported only by these loaders).

Splits (deterministic, by sorted relative path): ``train`` = all images; AFLW2000-3D
``regress`` = even positions, ``test`` = odd positions; 300W-LP ``test`` = every 10th image,
``regress`` = the others. The 2D NME uses the outer eye corners (36, 45) as the inter-ocular
distance (the 300-W convention).

Unreadable files: a missing ``.mat`` excludes its image when the dataset is built (warned and
counted); a corrupt image or ``.mat`` follows ImageFileDataset's policy (train: next image with
a warning; regress/test: DatasetError naming the file).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import DatasetError, DatasetInfo, ImageFileDataset, check_image_size, check_split, load_image, \
    pack_item, rescale_points, resize_image


def _ibug_names():
    groups = [("jaw", 17), ("right_brow", 5), ("left_brow", 5), ("nose_bridge", 4), ("nose_base", 5),
              ("right_eye", 6), ("left_eye", 6), ("outer_lip", 12), ("inner_lip", 8)]
    names = []
    for g, n in groups:
        names += [f"{g}_{i}" for i in range(n)]
    return names


LANDMARK_NAMES = _ibug_names()  # iBUG 68-point order (right = the subject's right, image left)
EYE_INDICES = (36, 45)


def load_mat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover - scipy is a dependency of these loaders only
        raise DatasetError("reading .mat annotations needs scipy (pip install scipy)") from None
    return loadmat(str(path))


def parse_annotation(m: dict):
    """(lm2d (68, 2) or None, lm3d (68, 3) or None, yaw_deg) from a 3DDFA-style .mat dict."""
    lm2, lm3, yaw = None, None, float("nan")
    if "pt3d_68" in m:
        a = np.asarray(m["pt3d_68"], np.float64)
        if a.shape == (3, 68):
            lm3 = a.T.copy()
            lm2 = lm3[:, :2].copy()
    if lm2 is None and "pt2d" in m:
        a = np.asarray(m["pt2d"], np.float64)
        if a.shape == (2, 68):
            lm2 = a.T.copy()
    if "Pose_Para" in m:
        p = np.asarray(m["Pose_Para"], np.float64).reshape(-1)
        if p.size >= 2:
            yaw = float(np.degrees(p[1]))
    return lm2, lm3, yaw


class _MatDataset(ImageFileDataset):
    kind = ""

    def __init__(self, spec: str, root: Path, split: str = "train", image_size: int = 128):
        self.spec, self.split = spec, split
        check_split(spec, split)
        self.image_size = check_image_size(spec, image_size)
        if not root.is_dir():
            raise DatasetError(f"dataset {spec!r}: {root} is not a directory")
        jpgs = sorted(p for p in root.rglob("*.jpg") if "landmarks" not in p.relative_to(root).parts[:-1])
        if not jpgs:
            raise DatasetError(f"dataset {spec!r}: no .jpg images found under {root}")
        no_mat = [p for p in jpgs if not p.with_suffix(".mat").is_file()]
        if no_mat:
            warnings.warn(f"dataset {spec!r}: {len(no_mat)} image(s) have no .mat annotation and are skipped "
                          f"(e.g. {no_mat[0].relative_to(root)})")
        items = [p.relative_to(root).as_posix() for p in jpgs if p.with_suffix(".mat").is_file()]
        items = [f for i, f in enumerate(items) if self._in_split(i, split)]
        self._init_files([{"file": f} for f in items], root)
        self.skipped += len(no_mat)
        self.skipped_files = [str(p.relative_to(root)) for p in no_mat] + self.skipped_files
        # 3D ground truth is announced when the first annotation file carries pt3d_68
        try:
            has3d = parse_annotation(load_mat((self.root / self.records[0]["file"]).with_suffix(".mat")))[1] is not None
        except DatasetError:
            raise
        except Exception:
            has3d = False
        self.info = DatasetInfo(name=spec, landmark_names=list(LANDMARK_NAMES), num_landmarks=68, has_3d=has3d,
                                eye_indices=EYE_INDICES, image_size=self.image_size)

    @staticmethod
    def _in_split(i: int, split: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _load(self, record):
        path = self.root / record["file"]
        im = load_image(path)
        try:
            ann = parse_annotation(load_mat(path.with_suffix(".mat")))
        except DatasetError:
            raise
        except Exception as e:
            raise OSError(f"annotation {path.with_suffix('.mat').name} unreadable: {e}") from None
        return im, ann

    def _make_item(self, index, record, data):
        im, (lm2, lm3, yaw) = data
        S = self.image_size
        W, H = im.size
        lm2 = rescale_points(lm2, W, H, S) if lm2 is not None else None
        lm3 = rescale_points(lm3, W, H, S) if lm3 is not None else None
        if self.split != "train" and lm2 is None:
            raise DatasetError(f"dataset {self.spec!r}: {record['file']} has no 68-point landmarks (pt3d_68 or pt2d)")
        return pack_item(resize_image(im, S), index, 68, lm2, lm3, None, yaw)


class AFLW2000Dataset(_MatDataset):
    @staticmethod
    def _in_split(i, split):  # test: odd positions; val: 8 mod 10; regress: the other even ones
        c = i % 10
        return {"train": True, "test": c % 2 == 1, "val": c == 8}.get(split, c % 2 == 0 and c != 8)


class W300LPDataset(_MatDataset):
    @staticmethod
    def _in_split(i, split):  # test: 9 mod 10; val: 8 mod 10; regress: the others
        c = i % 10
        return {"train": True, "test": c == 9, "val": c == 8}.get(split, c < 8)
