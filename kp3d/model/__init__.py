"""The kp3d model: detector, edge-map decoder, 3D structure, perceptual and training losses."""

from .decoder import Decoder, UNet, random_patch_mask
from .detector import Detector
from .keypoint_model import MODES, KeypointModel, ModelConfig, default_edge_sigma
from .losses import LossWeights, canonicalization_loss, projection_loss, total_loss
from .perceptual import VGG16_LAYERS, VGG16Features, WeightsError, build_reconstruction_loss
from .structure3d import (Canonicalizer, Lifter, ShapeModel, axis_angle_to_matrix,
                          matrix_to_rotation_6d, normalize_shape, random_rotations,
                          rotation_6d_to_matrix)

__all__ = ["Decoder", "UNet", "random_patch_mask", "Detector", "MODES", "KeypointModel",
           "ModelConfig", "default_edge_sigma", "LossWeights",
           "canonicalization_loss", "projection_loss", "total_loss", "VGG16_LAYERS",
           "VGG16Features", "WeightsError", "build_reconstruction_loss", "Canonicalizer", "Lifter",
           "ShapeModel", "axis_angle_to_matrix", "matrix_to_rotation_6d", "normalize_shape",
           "random_rotations", "rotation_6d_to_matrix"]
