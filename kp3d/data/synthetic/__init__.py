"""Built-in procedural categories with exact 2D and 3D ground truth (docs/data.md).

- scene.py: the scene kit (mesh parts, landmarks, camera, light, background);
- render.py: meshes, rasteriser, shading, backgrounds, camera effects, `render_scene`;
- face.py, car.py: the categories;
- dataset.py: `SyntheticDataset`, the splits' deterministic streams.
"""

from .dataset import CATEGORIES, SyntheticDataset

__all__ = ["CATEGORIES", "SyntheticDataset"]
