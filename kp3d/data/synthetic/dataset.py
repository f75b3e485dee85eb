"""The on-the-fly synthetic dataset: item ``i`` of a split is a pure function of
(seed, split, i). Each category module (face.py, car.py) provides ``LANDMARK_NAMES``,
``EYE_INDICES`` and ``sample_scene(rng, size, pose=None, ...) -> Scene`` (scene.py); rendering,
landmark projection and visibility are render.py's."""

from __future__ import annotations

import numpy as np
import torch

from ..base import DatasetError, DatasetInfo, check_image_size, check_split, pack_item
from . import car, face
from .render import finish_image, render_scene

SPLIT_CODES = {"train": 0, "regress": 1, "test": 2, "val": 3}  # each split its own seed stream
DEFAULT_LENGTHS = {"train": 10000, "val": 1000, "regress": 1000, "test": 1000}


# category name -> (module, keyword arguments of its sample_scene)
CATEGORIES = {"face": (face, {"profile": "celeba"}), "face-wide": (face, {"profile": "wide"}),
              "car": (car, {})}


class SyntheticDataset(torch.utils.data.Dataset):
    """On-the-fly procedural dataset; item ``i`` of a split is a pure function of (seed, split, i),
    and each split draws from its own seed stream, so the splits share no scene."""

    def __init__(self, spec: str, category: str, split: str = "train", image_size: int = 64, *, seed: int = 0,
                 length: int | None = None):
        if category not in CATEGORIES:
            raise DatasetError(f"dataset {spec!r}: unknown synthetic category {category!r} "
                               f"(available: {', '.join(sorted(CATEGORIES))})")
        check_split(spec, split)
        self.spec = spec
        self.category = category
        self.split = split
        self.image_size = check_image_size(spec, image_size)
        self.seed = int(seed)
        if length is None:
            length = DEFAULT_LENGTHS[split]
        if int(length) < 1:
            raise DatasetError(f"dataset {spec!r}: length must be >= 1, got {length!r}")
        self.length = int(length)
        names = list(self.module.LANDMARK_NAMES)
        self.info = DatasetInfo(name=spec, landmark_names=names, num_landmarks=len(names), has_3d=True,
                                eye_indices=self.module.EYE_INDICES, image_size=self.image_size)

    @property
    def module(self):  # looked up, not stored: the dataset must pickle (DataLoader workers, spawn)
        return CATEGORIES[self.category][0]

    def __len__(self):
        return self.length

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, SPLIT_CODES[self.split], int(i), 0x6B703364])

    def render(self, i: int, pose=None):
        """Return (image (S, S, 3) float in [0, 1], lm2d, lm3d, visible, yaw_deg) for item i;
        pose: (yaw, pitch, roll) in degrees in place of the item's own."""
        rng = self.rng(i)
        scene = self.module.sample_scene(rng, self.image_size, pose=pose,
                                         **CATEGORIES[self.category][1])
        img, lm2d, lm3d, vis = render_scene(scene, self.image_size)
        img = finish_image(rng, img, self.image_size)
        return img, lm2d, lm3d, vis, scene.yaw_deg

    def __getitem__(self, i):
        i = int(i)
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of {self.length} images")
        i %= self.length
        img, lm2d, lm3d, vis, yaw = self.render(i)
        return pack_item(img, i, self.info.num_landmarks, lm2d, lm3d, vis, yaw)
