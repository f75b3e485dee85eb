"""kp3d_kernels: fused kernels for keypoint models.

The all-pairs segment edge map (AutoLink's renderer) with its backward pass, the spatial
soft-argmax, and the nearest-neighbour search with the repulsion loss; each op has a pure-PyTorch
reference (`backend="torch"`), fused C++ CPU kernels (`"cpu"`), CUDA kernels (`"cuda"`) and
Triton kernels (`"triton"`). See docs/kernels.md for the exact semantics.
"""

from ._backend import available_backends
from ._version import __version__
from .grid import pixel_grid
from .modules import EdgeMapRenderer, RepulsionLoss, SoftArgmax2d
from .ops.edge_map import all_pairs, edge_map
from .ops.nearest_neighbor import nearest_neighbor, repulsion_loss
from .ops.soft_argmax import soft_argmax

__all__ = ["available_backends", "edge_map", "soft_argmax", "nearest_neighbor",
           "repulsion_loss", "all_pairs", "EdgeMapRenderer", "SoftArgmax2d", "RepulsionLoss",
           "pixel_grid", "__version__"]
