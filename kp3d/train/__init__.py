"""Training, checkpoints, logs and pictures for kp3d models.

    from kp3d.train import TrainConfig, train, load_model, evaluate_model
"""

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .trainer import build_model, evaluate_model, load_model, train

__all__ = ["TrainConfig", "train", "load_model", "evaluate_model", "build_model",
           "CheckpointError", "load_checkpoint"]
