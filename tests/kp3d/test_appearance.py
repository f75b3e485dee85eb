"""Refined keypoints: local patches, learned templates, and each keypoint's best match of its
template near it (`ModelConfig.refine_reach`, kp3d/model/appearance.py)."""

import pytest
import torch

from kp3d.model import KeypointModel, ModelConfig
from kp3d.model.appearance import (local_patches, patch_offsets, refine_keypoints, template_loss,
                                   mirror_overlap, template_overlap, template_response)
from kp3d.model.losses import LossWeights, projection_loss, total_loss
from kp3d.model.perceptual import build_reconstruction_loss
from kp3d.train.config import TrainConfig


def to_frame(col, row, size):
    """Pixel (col, row) -> (x, y) on the align-corners [-1, 1] grid (SPEC section 2)."""
    return torch.tensor([col, row], dtype=torch.float64) / (size - 1) * 2 - 1


def centred(crop):
    """A (C, P, P) crop minus its mean colour, flattened."""
    return (crop - crop.mean((1, 2), keepdim=True)).reshape(-1)


def every_pixel(size):
    """(S*S, 2) the frame positions of every pixel, row-major."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], -1).double() / (size - 1) * 2 - 1


def dot_image(size, col, row):
    """A flat image with one dark, slightly blurred dot."""
    image = torch.full((1, 3, size, size), 0.4)
    image[..., row, col] = -1.0
    return torch.nn.functional.avg_pool2d(image, 3, 1, 1, count_include_pad=False)


def test_patches_at_pixel_centres_are_the_centred_crops():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 13, 13, generator=g, dtype=torch.float64)
    where = [[(4, 6), (8, 3)], [(2, 2), (10, 9)]]  # (col, row) per image and keypoint
    kp = torch.stack([torch.stack([to_frame(c, r, 13) for c, r in pts]) for pts in where])
    got = local_patches(images, kp, radius=2)
    assert got.shape == (2, 2, 3 * 25)
    for b, pts in enumerate(where):
        for k, (c, r) in enumerate(pts):
            crop = images[b, :, r - 2:r + 3, c - 2:c + 3]
            assert torch.allclose(got[b, k], centred(crop), atol=1e-12)


def test_patch_offsets_step_one_pixel_row_major():
    o = patch_offsets(1, 5, torch.float64)
    px = 2.0 / 4
    assert torch.allclose(o[0], torch.tensor([-px, -px], dtype=torch.float64))
    assert torch.allclose(o[1], torch.tensor([0.0, -px], dtype=torch.float64))  # x moves first
    assert torch.allclose(o[-1], torch.tensor([px, px], dtype=torch.float64))


def test_template_loss_is_the_templates_amplitude_per_sample():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(1, 3, 16, 16, generator=g)
    kp = torch.rand(1, 3, 2, generator=g) * 1.2 - 0.6
    patches = local_patches(images, kp, 2)[0]  # (K, 75)
    best = -(patches.norm(dim=-1) / 75 ** 0.5).mean()  # each template is its own patch
    assert torch.isclose(template_loss(images, kp, 5.0 * patches, 2), best, atol=1e-6)
    # a lighter copy scores the same, one with three times the contrast three times as much
    assert torch.isclose(template_loss(images + 0.7, kp, patches, 2), best, atol=1e-6)
    assert torch.isclose(template_loss(3.0 * images, kp, patches, 2), 3.0 * best, atol=1e-5)
    # the opposite pattern scores the opposite; a flat image nothing
    assert torch.isclose(template_loss(images, kp, -patches, 2), -best, atol=1e-6)
    assert template_loss(torch.full_like(images, 0.3), kp, patches, 2).abs().item() < 1e-6


def test_template_loss_gradients_in_float64():
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 11, 11, generator=g, dtype=torch.float64)
    # off the pixel grid, where bilinear sampling is smooth
    kp = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 1.2 - 0.6 + 0.013
    kp.requires_grad_()
    templates = torch.randn(3, 3 * 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, t: template_loss(images, p, t, 1), (kp, templates))


def test_template_loss_moves_a_template_to_the_mean_patch():
    # k-means by gradient: a template learned at fixed points turns towards their mean patch
    g = torch.Generator().manual_seed(5)
    images = torch.randn(6, 3, 12, 12, generator=g) + 2.0 * dot_image(12, 5, 6)
    kp = to_frame(5, 6, 12).float().expand(6, 1, 2)
    mean_patch = local_patches(images, kp, 1).mean(0)  # (1, 27)
    t = torch.randn(1, 27, generator=g, requires_grad=True)
    opt = torch.optim.Adam([t], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        template_loss(images, kp, t, 1).backward()
        opt.step()
    cos = torch.nn.functional.cosine_similarity(t.detach(), mean_patch).item()
    assert cos > 0.99


def test_loss_checks_template_shape_and_square_images():
    images, kp = torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="templates"):
        template_loss(images, kp, torch.zeros(2, 10), 1)
    with pytest.raises(ValueError, match="square"):
        local_patches(torch.zeros(1, 3, 8, 9), kp, 1)


def test_template_response_is_the_amplitude_at_every_pixel():
    g = torch.Generator().manual_seed(3)
    size, r = 12, 2
    images = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    templates = torch.randn(4, 3 * 25, generator=g, dtype=torch.float64)
    response = template_response(images, templates, r)
    assert response.shape == (2, 4, size, size)
    # every pixel, corners included (the border repeated outside the image)
    patches = local_patches(images, every_pixel(size)[None].expand(2, -1, -1), r)  # (B, S*S, D)
    t = torch.nn.functional.normalize(templates, dim=-1)
    expected = (patches @ t.T / 75 ** 0.5).transpose(1, 2).reshape(2, 4, size, size)
    assert torch.allclose(response, expected, atol=1e-10)


def test_refine_is_the_soft_argmax_of_response_and_reach_by_pixel_loops():
    g = torch.Generator().manual_seed(6)
    size, r, reach, tau = 9, 1, 0.3, 0.05
    images = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    templates = torch.randn(3, 27, generator=g, dtype=torch.float64)
    kp = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8
    got = refine_keypoints(images, kp, templates, r, reach, tau, backend="torch")
    pix = every_pixel(size)  # (S*S, 2)
    response = template_response(images, templates, r).flatten(2)  # (B, K, S*S)
    for b in range(2):
        for k in range(3):
            logit = response[b, k] / tau - (pix - kp[b, k]).square().sum(-1) / (2 * reach ** 2)
            assert torch.allclose(got[b, k], torch.softmax(logit, 0) @ pix, atol=1e-10)


def test_refine_finds_the_templates_feature_near_the_keypoint_only():
    size = 33
    image = dot_image(size, 12, 20) + dot_image(size, 26, 6) - 0.4  # two dots far apart
    template = local_patches(image, to_frame(12, 20, size)[None, None].float(), 2)[0]
    near_first = to_frame(14.5, 17.0, size)[None, None].float()  # 3.6 px from the first dot
    got = refine_keypoints(image, near_first, template, 2, reach=0.3, temperature=0.003)
    assert torch.allclose(got[0, 0], to_frame(12, 20, size).float(), atol=0.02)
    near_second = to_frame(24.0, 8.0, size)[None, None].float()
    got = refine_keypoints(image, near_second, template, 2, reach=0.3, temperature=0.003)
    assert torch.allclose(got[0, 0], to_frame(26, 6, size).float(), atol=0.02)
    with pytest.raises(ValueError, match="reach"):
        refine_keypoints(image, near_first, template, 2, reach=0.0, temperature=0.01)


def tiny_config(**kw):
    return ModelConfig(**{"num_keypoints": 4, "image_size": 32, "detector_widths": (8, 16),
                          "decoder_widths": (8, 16), "refine_reach": 0.2, **kw})


def test_model_gives_keypoints_then_their_refined_copies():
    torch.manual_seed(0)
    model = KeypointModel(tiny_config())
    assert model.num_points == 8 and model.templates.shape == (4, 75)
    assert model.shape.mean_shape.shape[0] == 8  # the 3D structure explains all 8 points
    assert model.structure()["num_points"] == 8 and len(model.structure()["mean_shape"]) == 8
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["points_2d"][:, :4], out["keypoints"])
    assert torch.equal(out["points_2d"][:, 4:], out["refined"])
    assert not out["refined"].requires_grad
    expected = refine_keypoints(images, out["keypoints"].detach(), model.templates.detach(), 2, 0.2,
                                0.02)
    assert torch.allclose(out["refined"], expected, atol=1e-6)
    assert out["projected"].shape == (2, 8, 2)
    pred = model.predict(images)
    assert pred["keypoints_2d"].shape == (2, 8, 2) and pred["keypoints_3d"].shape == (2, 8, 3)
    plain = KeypointModel(ModelConfig(**{**tiny_config().to_dict(), "refine_reach": 0.0}))
    assert plain.num_points == 4 and not hasattr(plain, "templates")
    assert "templates" not in plain(images)
    assert plain.predict(images)["keypoints_2d"].shape == (2, 4, 2)


def test_template_term_trains_the_templates_only_and_projection_targets_every_point():
    torch.manual_seed(0)
    model = KeypointModel(tiny_config(mode="autolink"))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(images)
    recon = build_reconstruction_loss("l1")
    total, terms = total_loss(out, images, recon, LossWeights(reconstruction=0.0, repulsion=0.0,
                                                             templates=3.0))
    assert set(terms) == {"reconstruction", "templates"}
    assert torch.isclose(total, 3.0 * out["templates"])
    total.backward()
    assert model.templates.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.detector.parameters())
    assert "templates" not in total_loss(out, images, recon, LossWeights(templates=0.0))[1]
    # with the 3D branch, the projection loss compares the projection with all 8 points
    model3d = KeypointModel(tiny_config())
    out = model3d(images)
    _, terms = total_loss(out, images, recon, LossWeights(projection=1.0, repulsion=0.0))
    expected = projection_loss(out["projected"], out["points_2d"])
    assert terms["projection"] == pytest.approx(float(expected))


def test_template_overlap_is_one_for_shifted_copies_and_small_for_distinct_templates():
    torch.manual_seed(0)
    base = torch.randn(3, 9, 9)
    # two 5 x 5 crops of one pattern, one pixel apart, and a brighter copy of the first
    a, b = base[:, 2:7, 2:7], base[:, 2:7, 3:8]
    same = template_overlap(torch.stack([a, 3.0 * a + 0.5]).reshape(2, -1), 2)
    shifted = template_overlap(torch.stack([a, b]).reshape(2, -1), 2)
    assert torch.isclose(same, torch.tensor(1.0), atol=1e-5)
    # the shifted copy shares 20 of its 25 pixels with the other at the best shift
    assert 0.5 < shifted < 1.0
    distinct = template_overlap(torch.randn(12, 75), 2)
    assert distinct < 0.15
    # it only compares pairs: one template alone has no overlap, and the gradient reaches it
    assert template_overlap(torch.randn(1, 75), 2) == 0
    t = torch.randn(4, 75, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: template_overlap(x, 2), (t,))


def test_mirror_overlap_is_one_for_symmetric_templates_and_low_for_one_sided_ones():
    torch.manual_seed(0)
    half = torch.randn(4, 3, 5, 3)
    symmetric = torch.cat([half, half[..., :2].flip(-1)], -1)  # columns 0 1 2 1 0
    assert torch.allclose(mirror_overlap(2.0 * symmetric.reshape(4, -1) + 0.3, 2), torch.ones(4), atol=1e-5)
    # skin on one side, the eye on the other: its mirror image is the opposite edge (columns
    # -1 -1 0 1 1 against 1 1 0 -1 -1, halved), which matches it only shifted by three columns,
    # where two columns of each overlap: half the norm
    edge = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]).expand(3, 5, 5).reshape(1, -1)
    assert torch.isclose(mirror_overlap(edge, 2), torch.tensor([0.5]), atol=1e-6)
    # the same edge mirrored is as one-sided; a random pattern lies between the two
    assert torch.isclose(mirror_overlap(edge.reshape(3, 5, 5).flip(-1).reshape(1, -1), 2), mirror_overlap(edge, 2))
    assert 0.2 < mirror_overlap(torch.randn(200, 75), 2).mean() < 0.5
    # each template is compared with its own mirror image only
    both = mirror_overlap(torch.cat([symmetric[:1].reshape(1, -1), edge]), 2)
    assert torch.allclose(both, torch.cat([torch.ones(1), mirror_overlap(edge, 2)]), atol=1e-5)


def test_template_diversity_adds_the_overlap_to_the_template_term():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = KeypointModel(tiny_config())
    diverse = KeypointModel(tiny_config(template_diversity=0.5))
    diverse.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    a = plain(images)["templates"]
    torch.manual_seed(1)
    b = diverse(images)["templates"]
    expected = a + 0.5 * template_overlap(plain.templates, plain.config.refine_radius)
    assert torch.isclose(b, expected, atol=1e-6)


def test_configs_check_the_refinement_settings():
    for field, bad in (("refine_radius", 0), ("refine_radius", 1.5), ("refine_radius", True),
                       ("refine_reach", -0.1), ("refine_temperature", 0.0),
                       ("template_diversity", -1.0)):
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: bad})
    with pytest.raises(ValueError, match="w-templates"):
        TrainConfig(w_templates=-1.0).validate()
    assert TrainConfig(w_templates=0.5).loss_weights(8).templates == 0.5


def test_work_scale_runs_the_model_on_the_pooled_image_and_refines_on_the_full_one():
    torch.manual_seed(0)
    model = KeypointModel(tiny_config(image_size=64, work_scale=2))
    assert model.config.work_size == 32 and model.renderer.size == (32, 32)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    out = model(images, generator=torch.Generator().manual_seed(0))
    pooled = torch.nn.functional.avg_pool2d(images, 2)
    assert torch.equal(out["target"], pooled)  # what the decoder reconstructs
    assert out["reconstruction"].shape == out["edge_map"].shape[:1] + (3, 32, 32)
    assert torch.allclose(out["keypoints"], model.detector(pooled)["keypoints"], atol=1e-6)
    # the copies are searched for in the full image, the keypoints' frame being the same [-1, 1]
    expected = refine_keypoints(images, out["keypoints"].detach(), model.templates.detach(), 2, 0.2,
                                0.02)
    assert torch.allclose(out["refined"], expected, atol=1e-6)
    assert not torch.allclose(out["refined"], refine_keypoints(
        pooled, out["keypoints"].detach(), model.templates.detach(), 2, 0.2, 0.02), atol=1e-3)
    pred = model.predict(images)
    assert torch.allclose(pred["keypoints_2d"][:, :4], out["keypoints"], atol=1e-6)
    assert torch.allclose(pred["keypoints_2d"][:, 4:], expected, atol=1e-6)
    # the edge map's default width follows the working size, not the image's
    assert model.config.sigma == tiny_config().sigma
    for bad in (0, 3, 8, 1.5, True):  # 64 / 8 = 8 pixels: under the 16 a side the model needs
        with pytest.raises(ValueError, match="work_scale|working image size"):
            tiny_config(image_size=64, work_scale=bad)
