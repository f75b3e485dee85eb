"""Datasets for kp3d: built-in synthetic categories with exact 2D/3D ground truth, and loaders
for data the user brings (a plain folder format, CelebA in the wild with the MAFL splits,
300W-LP and AFLW2000-3D). See docs/data.md.

    from kp3d.data import build_dataset, DatasetInfo
    ds = build_dataset("synthetic:face", "train", 64, seed=0, length=1000)
    item = ds[0]  # image (3, S, S) in [-1, 1], landmarks_2d (L, 2) px, landmarks_3d (L, 3), visible (L,), yaw_deg, index
"""

from __future__ import annotations

from pathlib import Path

from .base import SPLITS, DatasetError, DatasetInfo

__all__ = ["build_dataset", "DatasetInfo", "DatasetError", "SPLITS", "SYNTHETIC_CATEGORIES", "DATASET_KINDS"]

SYNTHETIC_CATEGORIES = ("face", "face-wide", "car")
DATASET_KINDS = ("synthetic", "folder", "celeba-wild", "300w-lp", "aflw2000-3d")


def build_dataset(spec: str, split: str = "train", image_size: int = 64, *, seed: int = 0, length: int | None = None):
    """Build a dataset from a spec string.

    spec: ``synthetic:<category>`` (face, face-wide, car), ``folder:<path>``, ``celeba-wild:<path>``,
    ``300w-lp:<path>`` or ``aflw2000-3d:<path>``. split: ``train`` (unsupervised training images),
    ``val`` (annotated images to choose settings on), ``regress`` (annotated images to fit the
    evaluation regressor) or ``test`` (for published figures only).
    ``length`` sets the number of images of a synthetic split (defaults 10000 / 1000 / 1000 / 1000) and
    truncates a real dataset's split. Raises DatasetError (a ValueError) with a one-line message
    naming the spec on any bad input.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise DatasetError(f"bad dataset spec {spec!r}: expected KIND:ARG with KIND one of {', '.join(DATASET_KINDS)}")
    kind, arg = spec.split(":", 1)
    kind = kind.strip().lower()
    if kind not in DATASET_KINDS:
        raise DatasetError(f"bad dataset spec {spec!r}: unknown kind {kind!r} (expected one of {', '.join(DATASET_KINDS)})")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
        raise DatasetError(f"dataset {spec!r}: length must be a positive integer or None, got {length!r}")
    if kind == "synthetic":
        from .synthetic import SyntheticDataset

        return SyntheticDataset(spec, arg.strip().lower(), split, image_size, seed=seed, length=length)
    if not arg:
        raise DatasetError(f"bad dataset spec {spec!r}: missing path after {kind!r}")
    root = Path(arg).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset {spec!r}: path {str(root)!r} does not exist")
    if kind == "folder":
        from .folder import FolderDataset as cls
    elif kind == "celeba-wild":
        from .celeba import CelebAWildDataset as cls
    elif kind == "300w-lp":
        from .aflw import W300LPDataset as cls
    else:
        from .aflw import AFLW2000Dataset as cls
    ds = cls(spec, root, split, image_size)
    if length is not None and length < len(ds):
        ds.records = ds.records[:length]
    return ds
