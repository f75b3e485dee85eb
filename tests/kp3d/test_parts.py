"""Keypoints at the centres of parts that tile the image, and the parts' colour loss
(`ModelConfig.part_maps`, kp3d/model/parts.py)."""

import pytest
import torch

from kp3d.model import KeypointModel, ModelConfig
from kp3d.model.detector import Detector
from kp3d.model.losses import LossWeights, total_loss
from kp3d.model.parts import part_colour_loss, part_log_probs
from kp3d.model.perceptual import build_reconstruction_loss
from kp3d.train.config import TrainConfig
from kp3d_kernels.ops.edge_map.naive import pixel_grid


def colour_variance_by_loops(probs, images):
    """The loss written out pixel by pixel, in float64: mean over pixels of
    sum_k p_k(x) |I(x) - c_k|^2 with c_k the p_k-weighted mean colour of the image."""
    p = torch.nn.functional.interpolate(probs.double(), size=images.shape[-2:], mode="bilinear",
                                        align_corners=False)
    x = images.double()
    B, K, H, W = p.shape
    total = 0.0
    for b in range(B):
        for k in range(K):
            c = (p[b, k] * x[b]).sum((1, 2)) / p[b, k].sum()
            total += (p[b, k] * (x[b] - c[:, None, None]).square().sum(0)).sum()
    return total / (B * H * W)


def test_colour_loss_matches_the_loops():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 7, 9, generator=g), 1)
    images = torch.randn(2, 3, 21, 27, generator=g)
    got = part_colour_loss(probs, images)
    assert torch.allclose(got.double(), colour_variance_by_loops(probs, images), rtol=1e-5)


def test_parts_on_the_colour_regions_score_zero_and_others_do_not():
    # two flat colours, left and right halves; two parts that follow them, or cut across them
    images = torch.zeros(1, 3, 16, 16)
    images[..., :8] = torch.tensor([0.9, -0.2, 0.1])[:, None, None]
    images[..., 8:] = torch.tensor([-0.5, 0.4, 0.7])[:, None, None]
    along = torch.zeros(1, 2, 16, 16)
    along[0, 0, :, :8], along[0, 1, :, 8:] = 1, 1
    across = along.transpose(-1, -2).contiguous()
    assert part_colour_loss(along, images).item() < 1e-10
    assert part_colour_loss(across, images).item() > 0.1
    # a single part covering everything: the image's whole colour variance
    whole = torch.ones(1, 1, 16, 16)
    assert torch.isclose(part_colour_loss(whole, images), images.var((2, 3), unbiased=False).sum())


def test_compactness_adds_each_parts_spatial_variance():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(2, 4, 6, 5, generator=g), 1)
    flat = torch.full((2, 3, 18, 15), 0.3)  # one colour: only the places differ
    assert part_colour_loss(probs, flat).item() < 1e-10
    # the positions as two more image channels, by the loops
    xs, ys = pixel_grid(18, 15, torch.float64, "cpu")
    where = torch.stack([xs[None, :].expand(18, 15), ys[:, None].expand(18, 15)])[None].expand(2, -1, -1, -1)
    for c in (0.5, 2.0):
        got = part_colour_loss(probs, flat, compactness=c).double()
        assert torch.allclose(got, c * c * colour_variance_by_loops(probs, where), rtol=1e-5)
    # one part over two far-apart blobs of a colour costs more than two parts, one on each
    two = torch.zeros(1, 3, 16, 16)
    two[..., 4:8, 1:5], two[..., 4:8, 11:15] = 1.0, 1.0
    one_part = torch.zeros(1, 2, 16, 16)
    one_part[0, 0], one_part[0, 1] = (two[0, 0] > 0).float(), (two[0, 0] == 0).float()
    split = torch.zeros(1, 3, 16, 16)
    split[0, 0, :, :8], split[0, 1, :, 8:] = two[0, 0, :, :8], two[0, 0, :, 8:]
    split[0, 2] = (two[0, 0] == 0).float()
    assert torch.isclose(part_colour_loss(one_part, two), part_colour_loss(split, two), atol=1e-6)
    assert part_colour_loss(one_part, two, 1.0) > part_colour_loss(split, two, 1.0)


def test_colour_loss_checks_its_arguments():
    with pytest.raises(ValueError, match="batch size"):
        part_colour_loss(torch.ones(2, 1, 4, 4), torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="compactness"):
        part_colour_loss(torch.ones(1, 1, 4, 4), torch.zeros(1, 3, 8, 8), compactness=-1.0)


class FixedHead(torch.nn.Module):
    """A detector head that gives the same heatmaps whatever it is shown."""

    def __init__(self, maps):
        super().__init__()
        self.maps = maps

    def forward(self, features):
        return self.maps.expand(features.shape[0], -1, -1, -1)


def test_part_keypoints_are_the_centroids_of_the_parts():
    logits = 4 * torch.randn(1, 6, 10, 10, generator=torch.Generator().manual_seed(0))
    det = Detector(6, (8, 16, 32), part_maps=True, backend="torch").eval()
    det.head = FixedHead(logits)
    images = torch.randn(2, 3, 40, 40)
    out = det(images)
    probs = out["heatmaps"].exp()  # (B, K, 10, 10)
    assert torch.allclose(probs.sum(1), torch.ones(2, 10, 10), atol=1e-5)
    xs, ys = pixel_grid(10, 10, probs.dtype, probs.device)
    mass = probs.sum((2, 3))
    cx = (probs * xs[None, None, None, :]).sum((2, 3)) / mass
    cy = (probs * ys[None, None, :, None]).sum((2, 3)) / mass
    assert torch.allclose(out["keypoints"], torch.stack([cx, cy], -1), atol=1e-5)
    det.part_maps = False  # the same heatmaps, each soft-argmaxed on its own: other points
    assert (det(images)["keypoints"] - out["keypoints"]).abs().max() > 0.05


def test_part_log_probs_normalise_across_keypoints():
    logp = part_log_probs(torch.randn(2, 4, 5, 6))
    assert torch.allclose(logp.exp().sum(1), torch.ones(2, 5, 6), atol=1e-6)


def test_model_returns_and_weighs_the_colour_term():
    cfg = ModelConfig(num_keypoints=4, image_size=32, detector_widths=(8, 16),
                      decoder_widths=(8, 16), mode="autolink", part_maps=True)
    torch.manual_seed(0)
    model = KeypointModel(cfg)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(images, generator=torch.Generator().manual_seed(0))
    assert out["part_colour"].ndim == 0 and out["part_colour"] > 0
    recon = build_reconstruction_loss("l1")
    total, terms = total_loss(out, images, recon, LossWeights(reconstruction=0.0, repulsion=0.0,
                                                             part_colour=2.0))
    assert set(terms) == {"reconstruction", "part_colour"}
    assert torch.isclose(total, 2.0 * out["part_colour"])
    total.backward()
    assert model.detector.head.weight.grad.abs().sum() > 0  # the term trains the detector
    assert "part_colour" not in total_loss(out, images, recon, LossWeights(part_colour=0.0))[1]
    plain = KeypointModel(ModelConfig(**{**cfg.to_dict(), "part_maps": False}))
    assert "part_colour" not in plain(images)


def test_train_config_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="w-part-colour"):
        TrainConfig(w_part_colour=-1.0).validate()
    assert TrainConfig(w_part_colour=0.5).loss_weights(8).part_colour == 0.5


def test_model_config_compactness_must_not_be_negative():
    with pytest.raises(ValueError, match="part_compactness"):
        ModelConfig(part_maps=True, part_compactness=-0.5)
