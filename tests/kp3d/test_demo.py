"""`kp3d demo --tiny`: the whole demo end to end (train, evaluate, pictures, report) in seconds."""

import json
import os

from kp3d.cli import main
from kp3d.train.trainer import load_model


def test_demo_tiny_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--tiny", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_reflect",
                "nme_3d_flat_baseline"):
        assert isinstance(m[key], float) and m[key] > 0, key
    assert m["setting"]["name"] == "tiny" and m["step"] == m["setting"]["steps"]
    for name in ("keypoints.png", "reconstruction.png", "structure.png",
                 "reconstructions_3d.png", "learning_curves.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "mean landmark" in report and "flat z = 0 lift" in report
    for name in ("keypoints.png", "structure.png", "learning_curves.png"):
        assert f"]({name})" in report
    assert any(f.endswith(".pt") for f in os.listdir(out / "train"))
    # the view head, trained after the keypoints, gives the 3D keypoints their depth
    assert m["view_head"]["settings"]["rounds"] == m["setting"]["view_rounds"] == 2
    assert 0.0 <= m["view_corr_with_yaw"] <= 1.0 and m["time_view_head_s"] > 0
    assert "then the view head, without labels" in report and "View head check" in report
    model, state = load_model(out / "model.pt")
    assert model.view_head is not None and state["view_head"] == m["view_head"]


def test_demo_bad_input(tmp_path, capsys):
    assert main(["demo", "--tiny", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps" in capsys.readouterr().err


def test_strongest_edges_keeps_every_edge_when_weights_are_equal():
    import numpy as np

    from kp3d.train.visualize import strongest_edges

    assert strongest_edges([0.1, 3.0, 0.5, 2.0], 2).tolist() == [1, 3]
    assert strongest_edges([0.1, 3.0, 0.5, 2.0]).tolist() == [1, 3, 2, 0]
    assert strongest_edges(np.ones(6), 2).tolist() == list(range(6))  # fixed weights: all links
    assert strongest_edges([], 3).tolist() == []
