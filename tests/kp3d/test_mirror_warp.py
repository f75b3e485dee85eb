"""The mirror image warped onto the keypoints (kp3d/model/mirror_warp.py) and the model's
"mirror-warp" decoder input."""

import pytest
import torch

from kp3d.model import KeypointModel, ModelConfig
from kp3d.model.mirror_warp import keypoint_flow, warp_to_keypoints


def test_equal_keypoints_leave_the_image_unchanged():
    x = torch.randn(2, 3, 13, 17)
    kp = torch.rand(2, 5, 2) * 2 - 1
    assert torch.allclose(warp_to_keypoints(x, kp, kp, 0.2), x, atol=1e-5)


def test_a_common_displacement_moves_the_whole_image():
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    kp = torch.rand(2, 4, 2, dtype=torch.float64) * 2 - 1
    shift = torch.tensor([3 * 2 / 16, 2 * 2 / 12], dtype=torch.float64)  # 3 columns, 2 rows
    y = warp_to_keypoints(x, kp, kp + shift, 0.3)
    assert torch.allclose(y[..., :11, :14], x[..., 2:, 3:], atol=1e-5)
    assert torch.all(y[..., :, 14:] == 0)  # fetched from outside the image


def test_each_pixel_follows_its_nearest_keypoint():
    kp_t = torch.tensor([[[-0.5, 0.0], [0.5, 0.0]]])
    kp_s = kp_t + torch.tensor([[[0.1, 0.0], [0.0, -0.2]]])
    flow = keypoint_flow(kp_t, kp_s, (9, 9), 0.05)
    grid = keypoint_flow(kp_t, kp_t, (9, 9), 0.05)[0]  # no displacement: the pixel centres
    assert torch.allclose(grid[4, 2], torch.tensor([-0.5, 0.0]))
    assert torch.allclose(grid[0, 8], torch.tensor([1.0, -1.0]))
    assert torch.allclose(flow[0, 4, 2] - grid[4, 2], torch.tensor([0.1, 0.0]), atol=1e-6)
    assert torch.allclose(flow[0, 4, 6] - grid[4, 6], torch.tensor([0.0, -0.2]), atol=1e-6)
    assert torch.allclose(flow[0, 4, 4] - grid[4, 4], torch.tensor([0.05, -0.1]), atol=1e-6)


def test_flow_gradcheck():
    # the flow is smooth in the keypoints; the bilinear resampling after it is only piecewise
    # linear (kinks at pixel boundaries), so it is left to torch's own tests
    kp_t = (torch.rand(2, 3, 2, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    kp_s = (torch.rand(2, 3, 2, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, s: keypoint_flow(t, s, (5, 6), 0.3), (kp_t, kp_s))


@pytest.mark.parametrize("kp_t, kp_s, sigma, match", [
    (torch.zeros(1, 3, 2), torch.zeros(1, 4, 2), 0.1, "kp_target and kp_source"),
    (torch.zeros(3, 2), torch.zeros(3, 2), 0.1, "kp_target and kp_source"),
    (torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), 0.0, "sigma"),
])
def test_bad_input(kp_t, kp_s, sigma, match):
    with pytest.raises(ValueError, match=match):
        keypoint_flow(kp_t, kp_s, (8, 8), sigma)


def test_mirror_warp_decoder_input():
    cfg = ModelConfig(num_keypoints=4, image_size=32, detector_widths=(8, 16),
                      decoder_widths=(8, 16), mode="autolink", decoder_input="mirror-warp")
    model = KeypointModel(cfg)
    x = torch.randn(2, 3, 32, 32)
    out = model(x, torch.Generator().manual_seed(0))
    kp_mirror = model.detector(torch.cat((x, x.flip(-1))))["keypoints"][2:]
    assert torch.allclose(out["masked"], warp_to_keypoints(x.flip(-1), out["keypoints"], kp_mirror,
                                                           cfg.warp_sigma), atol=1e-5)
    out["reconstruction"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.detector.parameters())
    with pytest.raises(ValueError, match="warp_sigma"):
        ModelConfig(num_keypoints=4, warp_sigma=0.0)
