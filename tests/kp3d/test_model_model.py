"""The whole model: shapes, masking, modes, configuration checks, dataset prediction."""

import pytest
import torch

from kp3d.eval.evaluate import predict_dataset
from kp3d.model import KeypointModel, ModelConfig, random_patch_mask
from kp3d.model.detector import Detector
from kp3d.model.keypoint_model import default_edge_sigma

TINY = dict(image_size=32, detector_widths=(8, 16), decoder_widths=(8, 16), lifter_hidden=16,
            lifter_depth=1)


def test_forward_shapes_3d():
    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(num_keypoints=5, **TINY))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = model(x, torch.Generator().manual_seed(0))
    assert out["keypoints"].shape == (3, 5, 2)
    assert out["heatmaps"].shape == (3, 5, 8, 8)
    assert out["edge_map"].shape == (3, 1, 32, 32)
    assert out["reconstruction"].shape == (3, 3, 32, 32)
    assert out["keypoints_3d"].shape == (3, 5, 3)
    assert out["projected"].shape == (3, 5, 2)
    assert out["canonical_recovered"].shape == (3, 5, 3)
    assert out["keypoints"].abs().max() <= 1
    pred = model.predict(x)
    assert set(pred) >= {"keypoints_2d", "keypoints_3d", "rotation", "alpha"}


def test_3d_keypoints_are_the_2d_points_at_the_fitted_depth():
    """keypoints_3d keeps each 2D keypoint and takes the depth of the structure fitted to it;
    fitted_3d is that structure, its x, y the projection. A structure whose projection differs
    from the points (as it does at initialisation) tells them apart."""
    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(num_keypoints=5, **TINY))
    pred = model.predict(torch.rand(3, 3, 32, 32) * 2 - 1)
    k2, k3, fit = pred["keypoints_2d"], pred["keypoints_3d"], pred["fitted_3d"]
    assert k2.shape == (3, 5, 2) and k3.shape == fit.shape == (3, 5, 3)
    assert torch.equal(k3[..., :2], k2)
    assert torch.equal(k3[..., 2], fit[..., 2])
    assert torch.equal(fit[..., :2], pred["projected"])
    assert (fit[..., :2] - k2).abs().max() > 1e-3
    assert fit[..., 2].abs().max() > 1e-3  # a non-planar structure: the depth is not all zero


def test_autolink_mode_has_no_3d_branch():
    model = KeypointModel(ModelConfig(num_keypoints=4, mode="autolink", **TINY))
    assert not hasattr(model, "shape")
    out = model(torch.zeros(2, 3, 32, 32), torch.Generator().manual_seed(0))
    assert "projected" not in out and "keypoints_3d" not in out
    assert "keypoints_3d" not in model.predict(torch.zeros(1, 3, 32, 32))
    assert "mean_shape" not in model.structure()


def test_same_generator_same_output():
    model = KeypointModel(ModelConfig(num_keypoints=4, **TINY)).eval()
    x = torch.rand(2, 3, 32, 32)
    a = model(x, torch.Generator().manual_seed(5))
    b = model(x, torch.Generator().manual_seed(5))
    assert torch.equal(a["masked"], b["masked"])
    assert torch.equal(a["canonical_recovered"], b["canonical_recovered"])


def test_gradients_reach_every_parameter():
    from kp3d.model import LossWeights, build_reconstruction_loss, total_loss

    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(num_keypoints=4, **TINY))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(x, torch.Generator().manual_seed(0))
    loss, _ = total_loss(out, build_reconstruction_loss("l1"), LossWeights())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_patch_mask():
    g = torch.Generator().manual_seed(0)
    m = random_patch_mask(64, 64, grid=16, keep_prob=0.2, generator=g)
    assert m.shape == (64, 1, 64, 64)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - 0.2) < 0.02
    cells = m[:, :, ::4, ::4]  # constant inside each 4 x 4 cell
    assert torch.equal(cells.repeat_interleave(4, 2).repeat_interleave(4, 3), m)
    with pytest.raises(ValueError, match="divisible"):
        random_patch_mask(1, 30, grid=16)


def test_forward_reads_as_the_pipeline():
    """The decoder is shown the masked image and the edge map drawn from the keypoints, and the
    structure is fitted to the keypoints: nothing else enters."""
    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(num_keypoints=4, mask_keep=0.5, mask_grid=4, **TINY))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(x, torch.Generator().manual_seed(0))
    kept = out["masked"] != 0
    assert 0 < kept.float().mean() < 1 and torch.equal(out["masked"][kept], x[kept])
    assert torch.allclose(out["edge_map"], model.renderer(out["keypoints"]))
    assert torch.allclose(out["reconstruction"], model.decoder(out["masked"], out["edge_map"]))
    assert torch.equal(out["keypoints_3d"][..., :2], out["keypoints"].detach())


@pytest.mark.parametrize("bad, match", [
    (dict(num_keypoints=1), "keypoints"),
    (dict(num_keypoints=4, image_size=30), "divisible"),
    (dict(num_keypoints=4, mode="2d"), "mode"),
    (dict(num_keypoints=4, mask_keep=1.5), "mask_keep"),
    (dict(num_keypoints=4, mask_grid=0), "mask_grid"),
    (dict(num_keypoints=4, temperature=0.0), "temperature"),
    (dict(num_keypoints=4, num_basis=-1), "num_basis"),
    (dict(num_keypoints=4, edge_sigma=-1.0), "edge_sigma"),
    (dict(num_keypoints=4, edge_weight_init=-0.1), "edge_weight_init"),
])
def test_config_validation(bad, match):
    kw = {**TINY, **bad}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


def test_config_roundtrip():
    cfg = ModelConfig(num_keypoints=6, **TINY)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="refine_reach"):  # an option of older versions
        ModelConfig.from_dict({**cfg.to_dict(), "refine_reach": 0.19})


def test_default_edge_sigma():
    assert default_edge_sigma(8, 128) == pytest.approx(2.5e-3)
    assert default_edge_sigma(32, 128) == pytest.approx(7.5e-4)
    assert default_edge_sigma(16, 64) == pytest.approx(4e-3)
    assert 1e-3 < default_edge_sigma(12, 128) < 2.5e-3


def test_detector_autolink_widths_give_quarter_resolution():
    det = Detector(3, (8, 8, 8, 8))
    keypoints, heatmaps = det(torch.zeros(1, 3, 64, 64))
    assert heatmaps.shape == (1, 3, 16, 16) and keypoints.shape == (1, 3, 2)


def test_predict_dataset():
    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": torch.zeros(3, 32, 32), "landmarks_2d": torch.zeros(2, 2),
                    "landmarks_3d": torch.zeros(2, 3), "visible": torch.ones(2, dtype=torch.bool),
                    "yaw_deg": torch.tensor(0.0), "index": i}

    model = KeypointModel(ModelConfig(num_keypoints=4, **TINY))
    model.train()
    res = predict_dataset(model, Tiny(), batch_size=2)
    assert res["keypoints_2d"].shape == (5, 4, 2)
    assert res["keypoints_3d"].shape == (5, 4, 3)
    assert res["landmarks_2d"].shape == (5, 2, 2)
    assert list(res["index"]) == [0, 1, 2, 3, 4]
    assert model.training  # restored
