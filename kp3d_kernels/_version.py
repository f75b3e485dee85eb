"""The version of kp3d and kp3d_kernels, written once (pyproject.toml reads it)."""

__version__ = "0.2.0"
