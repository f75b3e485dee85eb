"""``folder:<root>`` — the plain folder format for any category (docs/data.md).

``ROOT/annotations.json``::

    {"landmark_names": ["a", "b", ...],
     "eye_indices": [0, 1],                       (optional: left/right eye for inter-ocular NME)
     "images": [{"file": "images/0001.png", "split": "train" | "test",
                 "landmarks_2d": [[x, y], ...],   (optional; pixels, (0, 0) = centre of the top-left pixel)
                 "landmarks_3d": [[x, y, z], ...],(optional; z towards the viewer, same units)
                 "yaw_deg": 12.5}, ...]}          (optional)

Splits: ``train`` = every image marked "train" (annotated or not); ``val`` = every tenth
annotated "train" image, ``regress`` = the other annotated "train" images; ``test`` = the
annotated "test" images. Images of any size are resized to
S x S (landmarks follow; see base.rescale_points).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import DatasetError, DatasetInfo, ImageFileDataset, check_image_size, check_split, in_val_slice, pack_item, \
    rescale_points, resize_image


def _points(spec, i, entry, key, L, D):
    v = entry.get(key)
    if v is None:
        return None
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"dataset {spec!r}: images[{i}].{key} is not a list of numbers") from None
    if a.shape != (L, D):
        raise DatasetError(f"dataset {spec!r}: images[{i}].{key} has shape {a.shape}, expected ({L}, {D})")
    return a


class FolderDataset(ImageFileDataset):
    def __init__(self, spec: str, root: Path, split: str = "train", image_size: int = 64):
        self.spec, self.split = spec, split
        check_split(spec, split)
        self.image_size = check_image_size(spec, image_size)
        ann_path = root / "annotations.json"
        if not ann_path.is_file():
            raise DatasetError(f"dataset {spec!r}: {ann_path} not found")
        try:
            ann = json.loads(ann_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"dataset {spec!r}: cannot parse {ann_path}: {e}") from None
        if not isinstance(ann, dict) or not isinstance(ann.get("images"), list):
            raise DatasetError(f"dataset {spec!r}: {ann_path} must be an object with an 'images' list")
        names = ann.get("landmark_names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"dataset {spec!r}: 'landmark_names' must be a list of strings")
        L = len(names)
        eyes = ann.get("eye_indices")
        if eyes is not None:
            if not (isinstance(eyes, list) and len(eyes) == 2 and all(isinstance(e, int) and 0 <= e < L for e in eyes)):
                raise DatasetError(f"dataset {spec!r}: 'eye_indices' must be two landmark indices in [0, {L})")
            eyes = tuple(eyes)
        records, has3d, annotated_train = [], False, 0
        for i, e in enumerate(ann["images"]):
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise DatasetError(f"dataset {spec!r}: images[{i}] needs a 'file' string")
            sp = e.get("split", "train")
            if sp not in ("train", "test"):
                raise DatasetError(f"dataset {spec!r}: images[{i}].split is {sp!r}, expected 'train' or 'test'")
            lm2 = _points(spec, i, e, "landmarks_2d", L, 2)
            lm3 = _points(spec, i, e, "landmarks_3d", L, 3)
            if lm2 is None and lm3 is not None:
                lm2 = lm3[:, :2]
            has3d |= lm3 is not None
            annotated = lm2 is not None and L > 0
            # val: every tenth annotated training image; regress: the other annotated ones
            val = sp == "train" and annotated and in_val_slice(annotated_train)
            annotated_train += sp == "train" and annotated
            keep = (split == "train" and sp == "train") or (split == "test" and sp == "test" and annotated) or \
                   (split in ("regress", "val") and sp == "train" and annotated and val == (split == "val"))
            if keep:
                records.append({"file": e["file"], "lm2d": lm2, "lm3d": lm3, "yaw": float(e.get("yaw_deg", np.nan))})
        if not records:
            raise DatasetError(f"dataset {spec!r}: no images for split {split!r} in {ann_path}")
        self._init_files(records, root)
        self.info = DatasetInfo(name=spec, landmark_names=list(names), num_landmarks=L, has_3d=has3d,
                                eye_indices=eyes, image_size=self.image_size)

    def _make_item(self, index, record, im):
        S = self.image_size
        W, H = im.size
        img = resize_image(im, S)
        lm2 = rescale_points(record["lm2d"], W, H, S) if record["lm2d"] is not None else None
        lm3 = rescale_points(record["lm3d"], W, H, S) if record["lm3d"] is not None else None
        vis = None if lm2 is None else np.isfinite(lm2).all(1)
        return pack_item(img, index, self.info.num_landmarks, lm2, lm3, vis, record["yaw"])
