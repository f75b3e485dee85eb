"""``celeba-wild:<root>`` — CelebA "in the wild" images with the MAFL splits (AutoLink's protocol).

Expected files (each looked up in ROOT, then ROOT/Anno, ROOT/Img, ROOT/Eval, ROOT/MAFL):
``img_celeba/`` (the raw, unaligned JPEGs), ``list_landmarks_celeba.txt`` (5 landmarks of the
raw images), ``list_bbox_celeba.txt`` (face boxes x_1 y_1 width height), and the MAFL lists
``celebA_training.txt`` (unsupervised training), ``training.txt`` (regressor fit) and
``testing.txt`` (test). ``val`` is every tenth image of ``training.txt`` (the 10th, 20th, ...),
``regress`` the others (base.in_val_slice), so the two are disjoint.

Protocol: every image is resized to S x S (AutoLink: 128); an image is kept only when its face
box covers at least 30 % of the image area (box w * h >= 0.3 * W * H, with the image size read
as PIL's (width, height) — the public AutoLink code reads it as (h, w), which swaps the axes of
the landmark scaling for non-square images). Landmarks are rescaled with the pixel-centre rule
of base.rescale_points. The image sizes come from the file headers (or from an optional
``image_sizes.txt``: ``name width height`` per line); a file that is missing or whose header
cannot be read is skipped with a warning and counted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import DatasetError, DatasetInfo, ImageFileDataset, check_image_size, check_split, in_val_slice, \
    pack_item, rescale_points, resize_image

LANDMARK_NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
SPLIT_FILES = {"train": "celebA_training.txt", "regress": "training.txt", "val": "training.txt",
               "test": "testing.txt"}
MIN_BOX_FRACTION = 0.3


def _find(root: Path, name: str, spec: str, is_dir: bool = False) -> Path:
    for sub in ("", "Anno", "Img", "Eval", "MAFL"):
        p = root / sub / name if sub else root / name
        if (p.is_dir() if is_dir else p.is_file()):
            return p
    raise DatasetError(f"dataset {spec!r}: {name} not found under {root} (also looked in Anno/, Img/, Eval/, MAFL/)")


def _read_table(path: Path, ncols: int, spec: str) -> dict:
    """name -> integer columns, for CelebA's list files (a count line and a header line are skipped)."""
    out = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"dataset {spec!r}: cannot read {path}: {e}") from None
    for line in lines:
        f = line.split()
        if len(f) != ncols + 1:
            continue
        try:
            out[f[0]] = [float(v) for v in f[1:]]
        except ValueError:
            continue  # header line
    if not out:
        raise DatasetError(f"dataset {spec!r}: no entries with {ncols} values found in {path}")
    return out


def _read_list(path: Path, spec: str) -> list:
    try:
        return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"dataset {spec!r}: cannot read {path}: {e}") from None


class CelebAWildDataset(ImageFileDataset):
    def __init__(self, spec: str, root: Path, split: str = "train", image_size: int = 128):
        from PIL import Image

        self.spec, self.split = spec, split
        check_split(spec, split)
        self.image_size = check_image_size(spec, image_size)
        img_dir = _find(root, "img_celeba", spec, is_dir=True)
        lms = _read_table(_find(root, "list_landmarks_celeba.txt", spec), 10, spec)
        boxes = _read_table(_find(root, "list_bbox_celeba.txt", spec), 4, spec)
        names = _read_list(_find(root, SPLIT_FILES[split], spec), spec)
        if split in ("regress", "val"):
            names = [n for j, n in enumerate(names) if in_val_slice(j) == (split == "val")]
        sizes = {}
        try:
            sizes = {k: v for k, v in _read_table(_find(root, "image_sizes.txt", spec), 2, spec).items()}
        except DatasetError:
            pass
        records, unreadable, small, unannotated = [], [], 0, 0
        for name in names:
            if name not in lms or name not in boxes:
                unannotated += 1
                continue
            if name in sizes:
                W, H = sizes[name]
            else:
                try:
                    with Image.open(img_dir / name) as im:
                        W, H = im.size  # PIL reports (width, height)
                except Exception:
                    unreadable.append(name)
                    continue
            bw, bh = boxes[name][2], boxes[name][3]
            if bw * bh < MIN_BOX_FRACTION * W * H:
                small += 1
                continue
            records.append({"file": name, "size": (int(W), int(H)),
                            "lm2d": np.asarray(lms[name], np.float64).reshape(5, 2)})
        if unannotated:
            warnings.warn(f"dataset {spec!r} split {split!r}: {unannotated} listed image(s) have no landmarks or box; skipped")
        if unreadable:
            more = f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
            warnings.warn(f"dataset {spec!r} split {split!r}: skipped {len(unreadable)} missing or unreadable image(s): "
                          f"{', '.join(unreadable[:3])}{more}")
        self.filtered_small_box = small
        if not records:
            raise DatasetError(f"dataset {spec!r}: no usable images for split {split!r} "
                               f"({len(names)} listed, {small} with a face box under 30 % of the image)")
        self._init_files(records, img_dir)
        self.skipped += len(unreadable)
        self.skipped_files = unreadable + self.skipped_files
        self.info = DatasetInfo(name=spec, landmark_names=list(LANDMARK_NAMES), num_landmarks=5, has_3d=False,
                                eye_indices=(0, 1), image_size=self.image_size)

    def _make_item(self, index, record, im):
        S = self.image_size
        W, H = im.size
        lm2 = rescale_points(record["lm2d"], W, H, S)
        return pack_item(resize_image(im, S), index, 5, lm2, None, None)
