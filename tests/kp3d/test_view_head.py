"""The view head (kp3d/model/view.py) and its training (kp3d/train/view_head.py)."""

import numpy as np
import pytest
import torch

from kp3d.data import build_dataset
from kp3d.model import KeypointModel, ModelConfig
from kp3d.model.view import (ViewHead, chromaticity, head_crops, odd_layout, odd_layout_direction,
                             planar_depth, symmetric_frame)
from kp3d.train.config import TrainConfig
from kp3d.train.trainer import load_model, save_model_checkpoint, train
from kp3d.train.view_head import ViewHeadSettings, train_view_head

TINY = dict(image_size=32, detector_widths=(8, 16), decoder_widths=(8, 16))


def turned_layouts(yaw_deg, seed=0):
    """(N, 6, 2): six points of a fixed 3D head turned by each yaw, seen from the front."""
    X = np.random.default_rng(seed).normal(size=(6, 3))
    t = np.radians(yaw_deg)[:, None]
    return np.stack([np.cos(t) * X[:, 0] + np.sin(t) * X[:, 2], np.broadcast_to(X[:, 1], (len(t), 6))], -1)


def test_the_odd_layout_follows_the_yaw_and_is_negated_when_image_and_mirror_swap():
    yaw = np.random.default_rng(1).uniform(-60, 60, 200)
    # the mirror image of a head turned by yaw, symmetric about x = 0, is the head turned by -yaw
    # (the layouts are compared without place and size, so the points' order within is all that matters)
    points, mirror = torch.as_tensor(turned_layouts(yaw)), torch.as_tensor(turned_layouts(-yaw))
    direction = odd_layout_direction(points, mirror)
    coordinate = odd_layout(points, mirror) @ direction
    assert abs(np.corrcoef(coordinate.numpy(), yaw)[0, 1]) > 0.98
    assert torch.allclose(odd_layout(mirror, points) @ direction, -coordinate, atol=1e-12)
    assert torch.allclose(odd_layout(points, points), torch.zeros(200, 12, dtype=torch.float64))
    # the layout does not see the head's place and size
    assert torch.allclose(odd_layout(3 * points + 0.5, mirror), odd_layout(points, mirror), atol=1e-12)


def test_the_view_head_gives_the_negative_on_the_mirror_image():
    torch.manual_seed(0)
    for colour in ("chromaticity", "rgb"):
        net = ViewHead(20, colour=colour).double()
        x = torch.rand(3, 3, 20, 20, dtype=torch.float64) * 2 - 1
        g = net.raw(x)
        assert g.shape == (3,) and g.abs().min() > 0
        assert torch.allclose(net.raw(x.flip(-1)), -g, atol=1e-12)


def test_head_crops_centre_the_points_and_commute_with_the_mirror():
    images = torch.zeros(2, 3, 33, 33, dtype=torch.float64)
    images[:, :, 10, 22] = 1.0  # one bright pixel: x = 22 / 32 * 2 - 1 = 0.375, y = -0.375
    points = torch.tensor([[[0.375 - 0.2, -0.375], [0.375 + 0.2, -0.375]]] * 2, dtype=torch.float64)
    crops = head_crops(images, points, 9)  # half side 2 x 0.2: 0.4 across 9 pixels
    assert crops.shape == (2, 3, 9, 9)
    assert crops[0, 0].argmax().item() == 4 * 9 + 4  # the points' mean is the crop's centre
    torch.manual_seed(0)
    images = torch.rand(2, 3, 33, 33, dtype=torch.float64)
    points = torch.rand(2, 5, 2, dtype=torch.float64) - 0.5
    mirrored = points * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(head_crops(images.flip(-1), mirrored, 11), head_crops(images, points, 11).flip(-1), atol=1e-12)


def test_chromaticity_drops_the_brightness_and_keeps_the_colour():
    torch.manual_seed(0)
    colour = torch.rand(2, 3, 5, 7, dtype=torch.float64) * 0.6 + 0.3  # [0, 1] pixels away from black and white
    chroma = chromaticity(2 * colour - 1)
    assert torch.allclose(chroma.sum(1), torch.zeros(2, 5, 7, dtype=torch.float64), atol=1e-12)
    grey = torch.full((1, 3, 2, 2), 0.3, dtype=torch.float64)
    assert torch.allclose(chromaticity(grey), torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    # the same colours half as bright (shading) move the chromaticity far less than the pixels
    darker = chromaticity(2 * (0.5 * colour) - 1)
    assert (darker - chroma).abs().max() < 0.1 * ((0.5 * colour) - colour).abs().max()
    assert (chromaticity(2 * colour.flip(1) - 1) - chroma).abs().max() > 0.1  # other colours differ


def test_the_symmetric_frame_does_not_follow_an_odd_shift_of_the_points():
    rng = np.random.default_rng(0)
    head = rng.normal(size=(3, 6, 2)) * 0.2
    mirror_of_head = head * [-1.0, 1.0]  # a mirror-symmetric scene: the mirror image's points
    shift = np.array([0.1, 0.0])  # the lighting moves the points one way, in the mirror image the other
    frame = symmetric_frame(head + shift, mirror_of_head + shift)
    assert frame.shape == (3, 12, 2) and np.allclose(frame.mean(1), head.mean(1))
    swapped = symmetric_frame(mirror_of_head + shift, head + shift)  # image and mirror swapped
    assert np.allclose(swapped.mean(1), frame.mean(1) * [-1.0, 1.0])
    as_tensor = symmetric_frame(torch.as_tensor(head + shift), torch.as_tensor(mirror_of_head + shift))
    assert torch.is_tensor(as_tensor) and np.allclose(as_tensor.numpy(), frame)


def test_planar_depth_turns_the_points_about_their_mean():
    points = torch.tensor([[[-0.5, 0.1], [0.1, 0.0], [0.4, -0.2]]] * 2, dtype=torch.float64)
    depth = planar_depth(points, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(depth[0], torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(depth[1], np.tanh(1.0) * torch.tensor([-0.5, 0.1, 0.4], dtype=torch.float64))


@pytest.fixture(scope="module")
def model_with_view_head():
    torch.manual_seed(0)
    model = KeypointModel(ModelConfig(num_keypoints=4, refine_reach=0.19, **TINY)).eval()
    ds = build_dataset("synthetic:face", "train", 32, length=24)
    head, info = train_view_head(model, ds, ViewHeadSettings(faces=24, steps=3, crop=16, batch=8),
                                 log=lambda m: None)
    return model.attach_view_head(head), info


def test_train_view_head_reports_and_scales_the_views(model_with_view_head):
    model, info = model_with_view_head
    assert model.config.view_crop == 16 and info["settings"]["faces"] == 24
    assert info["scale"] > 0 and float(model.view_head.scale) == pytest.approx(info["scale"])
    assert 0.0 <= info["agreement_with_odd_layout"] <= 1.0


def test_a_view_head_gives_the_depth_and_turns_the_other_way_in_the_mirror(model_with_view_head):
    model, _ = model_with_view_head
    images = torch.stack([build_dataset("synthetic:face", "test", 32, length=3)[i]["image"] for i in range(3)])
    pred = model.predict(images)
    points, view = pred["keypoints_2d"], pred["view"]
    assert view.shape == (3,) and pred["keypoints_3d"].shape == (3, 8, 3)
    assert torch.equal(pred["keypoints_3d"][..., :2], points)
    assert torch.allclose(pred["keypoints_3d"][..., 2], planar_depth(points, view))
    # the mirror image: its points are the model's on the mirror, its crops mirrored, g odd
    assert torch.allclose(model.predict(images.flip(-1))["view"], -view, atol=1e-4 * view.abs().max())


def test_a_model_with_a_view_head_round_trips_through_its_checkpoint(model_with_view_head, tmp_path):
    model, info = model_with_view_head
    path = save_model_checkpoint(str(tmp_path / "model.pt"), model, 7, view_head=info)
    loaded, state = load_model(path)
    assert loaded.config.view_crop == 16 and state["step"] == 7 and state["view_head"] == info
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = model.predict(images), loaded.predict(images)
    assert torch.equal(a["view"], b["view"]) and torch.equal(a["keypoints_3d"], b["keypoints_3d"])


def test_bad_view_head_settings_name_the_argument(tmp_path):
    for kwargs, name in ((dict(faces=1), "faces"), (dict(steps=0), "steps"), (dict(keep=0.0), "keep"),
                         (dict(turn=-1.0), "turn"), (dict(loss="l1"), "loss"), (dict(rounds=True), "rounds")):
        with pytest.raises(ValueError, match=name):
            ViewHeadSettings(**kwargs).validate()
    for crop in (3, True, 8.0):
        with pytest.raises(ValueError, match="view_crop"):
            ModelConfig(num_keypoints=4, view_crop=crop, **TINY)
    with pytest.raises(ValueError, match="crop"):
        ViewHead(4)
    with pytest.raises(ValueError, match="colour"):
        ViewHead(16, colour="grey")
    model = KeypointModel(ModelConfig(num_keypoints=4, **TINY))
    with pytest.raises(ValueError, match="chromaticity"):
        model.attach_view_head(ViewHead(16, colour="rgb"))
    ds = build_dataset("synthetic:face", "train", 32, length=4)
    with pytest.raises(ValueError, match="faces"):
        train_view_head(model, ds, ViewHeadSettings(faces=5))
    with pytest.raises(ValueError, match="view_crop"):
        train(TrainConfig(data="synthetic:face", out=str(tmp_path / "run"), steps=1),
              ModelConfig(num_keypoints=4, view_crop=16, **TINY))


def test_infer_writes_the_view_and_says_where_the_depth_comes_from(model_with_view_head, tmp_path):
    import json

    from PIL import Image

    from kp3d.cli import main

    model, info = model_with_view_head
    path = save_model_checkpoint(str(tmp_path / "model.pt"), model, 1, view_head=info)
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "face.png")
    assert main(["infer", "--checkpoint", path, "--out", str(tmp_path / "out"), str(tmp_path / "face.png")]) == 0
    rec = json.loads((tmp_path / "out" / "face.json").read_text())
    assert isinstance(rec["view"], float) and "view head" in rec["depth_note"]
    assert len(rec["keypoints_3d"]) == len(rec["fitted_3d"]) == model.num_points


def test_train_view_head_shows_progress_bars(capsys):
    model = KeypointModel(ModelConfig(num_keypoints=3, **TINY)).eval()
    ds = build_dataset("synthetic:face", "train", 32, length=6)
    head, _ = train_view_head(model, ds, ViewHeadSettings(faces=6, steps=2, rounds=1, crop=8, batch=2),
                              log=lambda m: None, progress=True)
    err = capsys.readouterr().err
    assert "view head: points on the images" in err and "view head, round 1" in err
    assert head.crop == 8
