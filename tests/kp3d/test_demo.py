"""`kp3d demo --tiny`: the whole demo end to end (train, evaluate, pictures, report) in seconds."""

import json

from kp3d.cli import main
from kp3d.checkpoint import load_model


def test_demo_tiny_end_to_end(tmp_path):
    """The paper's comparison: kp3d and its AutoLink ablation, side by side on the test split."""
    out = tmp_path / "demo"
    assert main(["demo", "--tiny", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_reflect", "nme_3d_flat_baseline"):
        assert isinstance(m[key], float) and m[key] > 0, key
        assert isinstance(m["autolink"][key], float), key
    assert 0.0 <= m["structure_yaw_corr"] <= 1.0 and "structure_yaw_corr" not in m["autolink"]
    assert m["num_keypoints"] == m["num_points"] == m["autolink"]["num_points"] == m["config"]["model"]["num_keypoints"]
    assert m["split"] == m["autolink"]["split"] == "test"
    assert m["autolink"]["nme_3d"] == m["autolink"]["nme_3d_flat_baseline"]  # no 3D branch
    assert m["setting"] == "tiny" and m["step"] == m["autolink"]["step"] == m["config"]["train"]["steps"]
    for name in ("keypoints.png", "autolink_keypoints.png", "reconstruction.png", "structure.png",
                 "reconstructions_3d.png", "learning_curves.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "mean landmark" in report and "flat z = 0 lift" in report and "AutoLink" in report
    assert "target" not in report.lower()  # figures, not targets
    for name in ("keypoints.png", "autolink_keypoints.png", "structure.png", "learning_curves.png"):
        assert f"]({name})" in report
    for run, has_3d in (("kp3d", True), ("autolink", False)):
        model, _ = load_model(out / run)
        assert model.has_3d == has_3d


def test_demo_bad_input(tmp_path, capsys):
    assert main(["demo", "--tiny", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps" in capsys.readouterr().err


def test_strongest_edges_keeps_every_edge_when_weights_are_equal():
    import numpy as np

    from kp3d.viz import strongest_edges

    assert strongest_edges([0.1, 3.0, 0.5, 2.0], 2).tolist() == [1, 3]
    assert strongest_edges([0.1, 3.0, 0.5, 2.0]).tolist() == [1, 3, 2, 0]
    assert strongest_edges(np.ones(6), 2).tolist() == list(range(6))  # fixed weights: all links
    assert strongest_edges([], 3).tolist() == []
