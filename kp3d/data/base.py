"""Shared pieces of the data layer: dataset metadata, errors, item packing, image loading."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "val", "regress", "test")
VAL_EVERY = 10


def in_val_slice(position: int) -> bool:
    """Whether the annotated training image at this 0-based position of its list belongs to
    ``val`` rather than ``regress``: every VAL_EVERY-th one (positions 9, 19, ...), so the two
    splits are disjoint and deterministic."""
    return position % VAL_EVERY == VAL_EVERY - 1


class DatasetError(ValueError):
    """A data problem the user can fix (bad spec, missing or unreadable files)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a caller needs to know about a dataset besides its images.

    ``eye_indices`` are the indices of the left and right eye landmarks used for the
    inter-ocular normalisation of the 2D NME (``None`` for categories without eyes, which
    are normalised by the landmark box diagonal instead).
    """

    name: str
    landmark_names: list = field(default_factory=list)
    num_landmarks: int = 0
    has_3d: bool = False
    eye_indices: tuple | None = None
    image_size: int = 64


def check_split(spec: str, split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"dataset {spec!r}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")


def check_image_size(spec: str, image_size) -> int:
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 8:
        raise DatasetError(f"dataset {spec!r}: image_size must be an integer >= 8, got {image_size!r}")
    return int(image_size)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """float (S, S, 3) in [0, 1] -> (3, S, S) float32 in [-1, 1], the items' image format."""
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return img.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)


def pack_item(image: np.ndarray, index: int, num_landmarks: int, lm2d=None, lm3d=None, visible=None,
              yaw_deg: float = float("nan")) -> dict:
    """Build the item dict every dataset returns.

    ``image`` is float (S, S, 3) in [0, 1]; the item's image is (3, S, S) in [-1, 1].
    Missing annotations become NaN-filled arrays of the right shape so that batches collate.
    """
    img = image_tensor(image)
    L = num_landmarks
    if lm2d is None:
        lm2d = np.full((L, 2), np.nan, np.float32)
    if lm3d is None:
        lm3d = np.full((L, 3), np.nan, np.float32)
    if visible is None:
        visible = np.isfinite(np.asarray(lm2d)).all(axis=1)
    return {
        "image": img,
        "landmarks_2d": torch.as_tensor(np.asarray(lm2d, np.float32).reshape(L, 2)),
        "landmarks_3d": torch.as_tensor(np.asarray(lm3d, np.float32).reshape(L, 3)),
        "visible": torch.as_tensor(np.asarray(visible, bool).reshape(L)),
        "yaw_deg": torch.tensor(float(yaw_deg), dtype=torch.float32),
        "index": int(index),
    }


def load_image(path: Path):
    """Decode an image file fully into an RGB PIL image; raise OSError/ValueError if unreadable."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # forces a full decode: truncated files fail here, not later
        return im.convert("RGB")


def resize_image(im, size: int) -> np.ndarray:
    """Resize a PIL image to (size, size) and return float32 (size, size, 3) in [0, 1]."""
    from PIL import Image

    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(im, dtype=np.float32) / 255.0


def rescale_points(points, width: int, height: int, size: int):
    """Map pixel coordinates of a (width x height) image to a (size x size) resize.

    Pixel centres are at integer coordinates, so ``x' = (x + 0.5) * size / width - 0.5``.
    A third (depth) coordinate is scaled by ``sqrt(sx * sy)``.
    """
    p = np.array(points, dtype=np.float64, copy=True)
    sx, sy = size / float(width), size / float(height)
    p[..., 0] = (p[..., 0] + 0.5) * sx - 0.5
    p[..., 1] = (p[..., 1] + 0.5) * sy - 0.5
    if p.shape[-1] == 3:
        p[..., 2] = p[..., 2] * np.sqrt(sx * sy)
    return p


class ImageFileDataset(torch.utils.data.Dataset):
    """Base for datasets backed by image files on disk.

    Policy for unreadable files (documented in docs/data.md):
    - files missing when the dataset is built are skipped with one warning and counted in
      ``self.skipped`` (names in ``self.skipped_files``); if nothing is left, DatasetError;
    - a file that exists but cannot be decoded (truncated, corrupt): on the ``train`` split it is
      replaced by the next readable file with a warning naming it (counted in ``self.bad_images``
      of the process that read it); on ``regress`` / ``test`` it raises DatasetError naming the file,
      because silently changing an evaluation set would change the figures.
    """

    spec: str = ""
    split: str = "train"
    info: DatasetInfo

    def _init_files(self, records: list, root: Path):
        kept, missing = [], []
        for r in records:
            (kept if (root / r["file"]).is_file() else missing).append(r)
        self.skipped = len(missing)
        self.skipped_files = [str(r["file"]) for r in missing]
        self.bad_images = 0
        self._bad = set()
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            warnings.warn(f"dataset {self.spec!r} split {self.split!r}: skipped {len(missing)} missing image file(s): "
                          f"{', '.join(self.skipped_files[:3])}{more}", stacklevel=3)
        if not kept:
            raise DatasetError(f"dataset {self.spec!r}: no readable images for split {self.split!r} under {root}")
        self.records = kept
        self.root = root

    def __len__(self):
        return len(self.records)

    def _load(self, record: dict):
        """Read what an item needs from disk (the decoded image; subclasses may add annotations)."""
        return load_image(self.root / record["file"])

    def _read(self, i: int):
        """Return (index actually used, loaded data) following the unreadable-file policy."""
        n = len(self.records)
        for step in range(n):
            j = (i + step) % n
            path = self.root / self.records[j]["file"]
            try:
                return j, self._load(self.records[j])
            except DatasetError:
                raise
            except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, ...
                if self.split != "train":
                    raise DatasetError(f"dataset {self.spec!r}: cannot read image {path}: {e}") from None
                if j not in self._bad:
                    self._bad.add(j)
                    self.bad_images += 1
                    warnings.warn(f"dataset {self.spec!r}: cannot read image {path} ({e}); using the next image instead")
        raise DatasetError(f"dataset {self.spec!r}: none of the {n} images of split {self.split!r} can be read")

    def __getitem__(self, i):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i %= len(self)
        j, data = self._read(i)
        return self._make_item(i, self.records[j], data)

    def _make_item(self, index, record, data):  # pragma: no cover - abstract
        raise NotImplementedError
