"""The equivariance loss (kp3d/model/equivariance.py) and the coloured keypoint maps
(`ModelConfig.keypoint_appearance`, kp3d.model.decoder.part_colours)."""

import math

import pytest
import torch

from kp3d.model import KeypointModel, ModelConfig
from kp3d.model.decoder import part_colours
from kp3d.model.equivariance import (MAX_ANGLE_DEG, MAX_SCALE_CHANGE, equivariance_loss,
                                     random_similarity, transform_points, warp_similarity)
from kp3d.model.losses import LossWeights, total_loss
from kp3d.model.perceptual import build_reconstruction_loss
from kp3d_kernels.ops.edge_map.naive import pixel_grid

SIZE = 41


def blob_images(centres, size=SIZE, width=0.08):
    """(B, 3, size, size): one Gaussian blob per image at centres (B, 2), (x, y) in [-1, 1]."""
    xs, ys = pixel_grid(size, size, torch.float64, "cpu")
    d2 = (xs[None, None, :] - centres[:, 0, None, None]) ** 2 + (ys[None, :, None] - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * width ** 2))[:, None].expand(-1, 3, -1, -1).contiguous()


def centroid_detector(images):
    """A detector that is exactly where its blob is: the intensity centroid, one keypoint."""
    w = images[:, 0]
    xs, ys = pixel_grid(w.shape[-2], w.shape[-1], w.dtype, w.device)
    total = w.sum((-1, -2))
    x = (w * xs[None, None, :]).sum((-1, -2)) / total
    y = (w * ys[None, :, None]).sum((-1, -2)) / total
    return {"keypoints": torch.stack([x, y], -1)[:, None]}


def test_random_similarity_ranges_and_reproducibility():
    A, t = random_similarity(500, 0.2, generator=torch.Generator().manual_seed(3))
    A2, t2 = random_similarity(500, 0.2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(A, A2) and torch.equal(t, t2)
    scale = torch.linalg.det(A).sqrt()
    angle = torch.atan2(A[:, 1, 0], A[:, 0, 0])
    assert torch.allclose(A[:, 0, 0], A[:, 1, 1]) and torch.allclose(A[:, 0, 1], -A[:, 1, 0])
    assert scale.min() >= 1 - MAX_SCALE_CHANGE - 1e-6 and scale.max() <= 1 + MAX_SCALE_CHANGE + 1e-6
    assert angle.abs().max() <= math.radians(MAX_ANGLE_DEG) + 1e-6
    assert t.abs().max() <= 0.2 and t.abs().max() > 0.15  # uses the range, not a sliver of it


def test_identity_warp_keeps_the_image():
    x = torch.randn(2, 3, 13, 17)
    A, t = torch.eye(2).expand(2, 2, 2), torch.zeros(2, 2)
    assert torch.allclose(warp_similarity(x, A, t), x, atol=1e-5)


def test_blobs_land_where_transform_points_says():
    g = torch.Generator().manual_seed(0)
    centres = (torch.rand(6, 2, generator=g, dtype=torch.float64) - 0.5) * 0.6
    A, t = random_similarity(6, 0.2, generator=g)
    A, t = A.double(), t.double()
    found = centroid_detector(warp_similarity(blob_images(centres), A, t))["keypoints"][:, 0]
    expected = transform_points(centres[:, None], A, t)[:, 0]
    assert (found - expected).norm(dim=-1).max() < 0.01  # a pixel is 0.05


def test_equivariance_loss_tells_following_keypoints_from_fixed_ones():
    g = torch.Generator().manual_seed(1)
    centres = (torch.rand(8, 2, generator=g, dtype=torch.float64) - 0.5) * 0.6
    x = blob_images(centres)
    follows = equivariance_loss(centroid_detector, x, centroid_detector(x)["keypoints"], 0.2,
                                generator=torch.Generator().manual_seed(2))

    def fixed(images):
        return {"keypoints": torch.zeros(images.shape[0], 1, 2, dtype=images.dtype)}

    stays = equivariance_loss(fixed, x, fixed(x)["keypoints"], 0.2,
                              generator=torch.Generator().manual_seed(2))
    assert follows < 1e-4 and stays > 1e-2


def test_model_equivariance_term_trains_the_detector():
    cfg = ModelConfig(num_keypoints=4, image_size=32, detector_widths=(8, 16),
                      decoder_widths=(8, 16), mode="autolink", equivariance_shift=0.15)
    model = KeypointModel(cfg)
    out = model(torch.randn(2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert out["equivariance"].ndim == 0 and out["equivariance"] > 0
    weights = LossWeights(reconstruction=0.0, repulsion=0.0, equivariance=1.0)
    total, terms = total_loss(out, torch.zeros(2, 3, 32, 32), build_reconstruction_loss("l1"), weights)
    assert set(terms) == {"reconstruction", "equivariance"}
    total.backward()
    assert model.detector.head.weight.grad.abs().sum() > 0
    off = LossWeights(equivariance=0.0)
    assert "equivariance" not in total_loss(out, torch.zeros(2, 3, 32, 32),
                                            build_reconstruction_loss("l1"), off)[1]
    plain = KeypointModel(ModelConfig(**{**cfg.to_dict(), "equivariance_shift": 0.0}))
    assert "equivariance" not in plain(torch.randn(2, 3, 32, 32))


def test_part_colours_average_the_image_under_each_heatmap():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=g)
    heatmaps = torch.zeros(2, 3, 4, 4)
    heatmaps[:, 0, 1, 2] = 1e4  # all the weight on one cell of 4 x 4 pixels
    colours = part_colours(heatmaps, images)
    assert torch.allclose(colours[:, 0], images[..., 4:8, 8:12].mean((-1, -2)), atol=1e-5)
    assert torch.allclose(colours[:, 1], images.mean((-1, -2)), atol=1e-5)  # a flat heatmap


def test_decoder_gets_coloured_maps():
    cfg = ModelConfig(num_keypoints=5, image_size=32, detector_widths=(8, 16),
                      decoder_widths=(8, 16), mode="autolink", keypoint_map_sigma=0.2,
                      keypoint_appearance=True, mask_keep=0.0)
    model = KeypointModel(cfg)
    assert model.decoder.unet.enc[0][0].in_channels == 4 + 5 * 4
    out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert torch.all(out["masked"] == 0)  # the decoder sees nothing of the image itself
    out["reconstruction"].sum().backward()
    assert model.detector.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (dict(keypoint_appearance=True), "keypoint_map_sigma"),
    (dict(equivariance_shift=-0.1), "equivariance_shift"),
])
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(num_keypoints=4, image_size=32, detector_widths=(8, 16), decoder_widths=(8, 16),
                    **bad)
