"""Training kp3d models: the configuration, the loop, and its metrics log.

    from kp3d.train import TrainConfig, train
"""

from .config import TrainConfig
from .trainer import build_model, train

__all__ = ["TrainConfig", "train", "build_model"]
