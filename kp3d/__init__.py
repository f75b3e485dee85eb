"""kp3d: unsupervised 3D keypoints from single images of one category (Wang, Cao, Bernard,
CVPR 2024, on AutoLink), on the fused kernels of kp3d_kernels."""

from kp3d_kernels._version import __version__

__all__ = ["__version__"]
