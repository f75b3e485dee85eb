"""The kp3d model: detector, 3D structure, edge-map decoder, perceptual and training losses."""

from .decoder import Decoder, UNet, random_patch_mask, shuffle_cells
from .detector import Detector
from .keypoint_model import MODES, KeypointModel, ModelConfig, default_edge_sigma, predict_dataset
from .losses import LossWeights, canonicalization_loss, projection_loss, repulsion, total_loss
from .perceptual import (FALLBACKS, VGG16_LAYERS, VGG16Features, WeightsError,
                         build_reconstruction_loss)
from .structure3d import (Canonicalizer, Lifter, ShapeModel, axis_angle_to_matrix,
                          matrix_to_rotation_6d, normalize_shape, random_rotations,
                          rotation_6d_to_matrix)

__all__ = ["Decoder", "UNet", "random_patch_mask", "shuffle_cells", "Detector", "MODES", "KeypointModel",
           "ModelConfig", "default_edge_sigma", "predict_dataset", "LossWeights",
           "canonicalization_loss", "projection_loss", "repulsion", "total_loss", "FALLBACKS",
           "VGG16_LAYERS", "VGG16Features", "WeightsError", "build_reconstruction_loss",
           "Canonicalizer", "Lifter", "ShapeModel", "axis_angle_to_matrix",
           "matrix_to_rotation_6d", "normalize_shape", "random_rotations",
           "rotation_6d_to_matrix"]
