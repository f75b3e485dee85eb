"""Each loss, its value and its gradient; the perceptual networks and their weights file."""

import pytest
import torch

from kp3d.model import losses
from kp3d.model.perceptual import (FALLBACKS, VGG16_LAYERS, VGG16Features, WeightsError,
                                   build_reconstruction_loss, ssim)


def test_projection_loss_kinds():
    p = torch.zeros(2, 3, 2)
    q = torch.zeros(2, 3, 2)
    q[..., 0] = 0.3  # distance 0.3 everywhere
    assert losses.projection_loss(p, q, "l2").item() == pytest.approx(0.09)
    assert losses.projection_loss(p, q, "l1").item() == pytest.approx(0.3, abs=1e-5)
    hub = losses.projection_loss(p, q, "huber", delta=0.02).item()
    assert hub == pytest.approx(0.02 * ((1 + (0.3 / 0.02) ** 2) ** 0.5 - 1), rel=1e-5)
    # robust: linear for large errors, quadratic for small ones
    assert losses.projection_loss(p, q * 10, "huber", 0.02).item() == pytest.approx(3.0 - 0.02, abs=2e-4)
    small = losses.projection_loss(p, q * 1e-3, "huber", 0.02).item()
    assert small == pytest.approx(0.5 * (3e-4) ** 2 / 0.02, rel=1e-3)
    assert losses.projection_loss(p, p, "l1").item() == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="projection loss"):
        losses.projection_loss(p, q, "l3")


@pytest.mark.parametrize("kind", ["l2", "l1", "huber"])
def test_projection_loss_gradient(kind):
    p = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    q = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: losses.projection_loss(a, b, kind, 0.1), (p, q))
    z = torch.zeros(1, 2, 2, requires_grad=True)
    losses.projection_loss(z, z.detach(), kind).backward()
    assert torch.isfinite(z.grad).all()  # safe at zero distance


def test_repulsion_pushes_points_apart():
    pts = torch.tensor([[[0.0, 0.0], [0.01, 0.0], [0.5, 0.5]]], requires_grad=True)
    out = {"keypoints": pts, "reconstruction": torch.zeros(1, 3, 4, 4), "target": torch.zeros(1, 3, 4, 4)}
    w = losses.LossWeights(reconstruction=0.0, repulsion=1.0, repulsion_bandwidth=0.1)
    loss, _ = losses.total_loss(out, build_reconstruction_loss("l1"), w)
    assert loss.item() < 0
    loss.backward()
    # gradient descent moves the close pair apart along x
    assert pts.grad[0, 0, 0] > 0 and pts.grad[0, 1, 0] < 0
    ref = -sum(d * torch.exp(-d / 0.1) for d in [torch.tensor(0.01), torch.tensor(0.01),
                                                   torch.tensor((0.49 ** 2 + 0.5 ** 2) ** 0.5)])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_canonicalization_loss_and_gradient():
    a = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    assert losses.canonicalization_loss(a, a).item() == 0
    assert torch.autograd.gradcheck(losses.canonicalization_loss, (a, b))


def test_total_loss_combines_terms():
    K = 4
    out = {"keypoints": torch.rand(2, K, 2, requires_grad=True) * 2 - 1,
           "reconstruction": torch.zeros(2, 3, 8, 8, requires_grad=True),
           "projected": torch.zeros(2, K, 2, requires_grad=True),
           "canonical": torch.ones(2, K, 3), "canonical_recovered": torch.zeros(2, K, 3),
           "target": torch.ones(2, 3, 8, 8)}
    w = losses.LossWeights(reconstruction=2.0, projection=0.5, repulsion=0.1, canonicalization=3.0)
    total, terms = losses.total_loss(out, build_reconstruction_loss("l1"), w)
    assert set(terms) == {"reconstruction", "projection", "repulsion", "canonicalization"}
    expect = (2 * terms["reconstruction"] + 0.5 * terms["projection"] + 0.1 * terms["repulsion"]
              + 3 * terms["canonicalization"])
    assert total.item() == pytest.approx(expect, rel=1e-5)
    total.backward()
    assert out["reconstruction"].grad is not None and out["projected"].grad is not None
    # a detached projection target keeps the projection loss off the keypoints
    kp = out["keypoints"].detach().requires_grad_()
    out2 = {**out, "keypoints": kp}
    w2 = losses.LossWeights(reconstruction=0.0, projection=1.0, repulsion=0.0, canonicalization=0.0)
    total2, _ = losses.total_loss(out2, build_reconstruction_loss("l1"), w2,
                                  detach_projection_target=True)
    total2.backward()
    assert kp.grad is None
    total3, _ = losses.total_loss(out2, build_reconstruction_loss("l1"), w2)
    total3.backward()
    assert kp.grad is not None and kp.grad.abs().sum() > 0


def test_autolink_mode_trains_on_the_perceptual_loss_alone():
    """AutoLink's only loss is the perceptual one: mode "autolink" has no repulsion term (and no
    3D terms), whatever the weights; the full method keeps them."""
    from kp3d.train.config import TrainConfig

    cfg = TrainConfig(w_repulsion=0.3, w_projection=1.0, w_canonicalization=1.0)
    a, full = cfg.loss_weights(8, "autolink"), cfg.loss_weights(8, "3d")
    assert (a.repulsion, a.projection, a.canonicalization) == (0.0, 0.0, 0.0)
    assert (full.repulsion, full.projection, full.canonicalization) == (0.3, 1.0, 1.0)
    out = {"keypoints": torch.rand(2, 4, 2) * 2 - 1, "reconstruction": torch.zeros(2, 3, 8, 8),
           "target": torch.ones(2, 3, 8, 8)}
    _, terms = losses.total_loss(out, build_reconstruction_loss("l1"), a)
    assert set(terms) == {"reconstruction"}


@pytest.mark.parametrize("kind", FALLBACKS)
def test_fallback_losses(kind):
    loss_fn = build_reconstruction_loss(kind)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    pred = torch.zeros(2, 3, 32, 32, requires_grad=True)
    value = loss_fn(pred, target)
    assert value.item() > 0
    value.backward()
    assert pred.grad.abs().sum() > 0
    assert loss_fn(target, target).item() == pytest.approx(0, abs=1e-6)
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_random_fallback_is_fixed():
    a = build_reconstruction_loss("random")
    b = build_reconstruction_loss("random")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_ssim_identity():
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)


def _fake_vgg16_state(tmp_path, drop=None, bad_shape=None):
    net = VGG16Features()
    state = {"features." + k: torch.randn_like(v) * 0.01 for k, v in net.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    if drop:
        del state[drop]
    if bad_shape:
        state[bad_shape] = torch.zeros(3, 3)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_vgg16_loads_torchvision_names(tmp_path):
    path, state = _fake_vgg16_state(tmp_path)
    net = VGG16Features.from_state_dict_file(path)
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    assert torch.equal(net.features[21].bias, state["features.21.bias"])
    feats = net(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert len(VGG16_LAYERS) == 4
    loss = build_reconstruction_loss("auto", vgg_weights=str(path))
    pred = torch.zeros(1, 3, 32, 32, requires_grad=True)
    loss(pred, torch.ones(1, 3, 32, 32)).backward()
    assert pred.grad is not None


def test_vgg16_weight_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        VGG16Features.from_state_dict_file(tmp_path / "nope.pth")
    path, _ = _fake_vgg16_state(tmp_path, drop="features.10.weight")
    with pytest.raises(WeightsError, match="features.10.weight"):
        VGG16Features.from_state_dict_file(path)
    path, _ = _fake_vgg16_state(tmp_path, bad_shape="features.0.weight")
    with pytest.raises(WeightsError, match="shape"):
        VGG16Features.from_state_dict_file(path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot read"):
        VGG16Features.from_state_dict_file(junk)
    with pytest.raises(WeightsError, match="vgg-weights"):
        build_reconstruction_loss("vgg")
    with pytest.raises(ValueError, match="unknown reconstruction"):
        build_reconstruction_loss("lpips")
