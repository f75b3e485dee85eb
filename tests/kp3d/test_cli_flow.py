"""train -> eval -> infer -> export through the command line, on tiny synthetic images."""

import json

import pytest
import torch

from kp3d.cli import main

TINY = ["--image-size", "32", "--detector-widths", "8,16", "--decoder-widths", "8,16",
        "--batch-size", "4", "--train-images", "8", "--no-progress", "--reconstruction", "pyramid"]



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", "synthetic:face", "--keypoints", "5", "--steps", "3",
                 "--out", str(out), "--checkpoint-every", "2", "--image-every", "3"] + TINY) == 0
    torch.set_num_threads(n)
    return out


def test_train_writes_checkpoints_logs_pictures(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"ckpt-00000002.pt", "ckpt-00000003.pt", "metrics.csv", "images"} <= names
    assert (run_dir / "images" / "keypoints_00000003.png").exists()


def test_resume_through_cli(run_dir, capsys):
    assert main(["train", "--data", "synthetic:face", "--keypoints", "5", "--steps", "4",
                 "--out", str(run_dir), "--resume", "--checkpoint-every", "2"] + TINY) == 0
    assert "resumed" in capsys.readouterr().err
    assert (run_dir / "ckpt-00000004.pt").exists()
    # a different K cannot resume this run
    code = main(["train", "--data", "synthetic:face", "--keypoints", "6", "--steps", "5",
                 "--out", str(run_dir), "--resume"] + TINY)
    assert code != 0 and "num_keypoints" in capsys.readouterr().err


def test_eval_writes_metrics(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run_dir), "--data", "synthetic:face", "--out", str(out),
                 "--regress-images", "12", "--test-images", "6"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_reflect", "nme_3d_flat_baseline"):
        assert isinstance(m[key], float) and m[key] >= 0, key
    assert m["structure_3d"] is True and m["num_test"] == 6
    assert "2D NME" in capsys.readouterr().out


def test_infer_writes_json_and_overlay(run_dir, tmp_path):
    from PIL import Image

    img = tmp_path / "face.png"
    Image.new("RGB", (50, 40), (120, 80, 60)).save(img)
    out = tmp_path / "infer"
    assert main(["infer", "--checkpoint", str(run_dir), str(img), "--out", str(out)]) == 0
    rec = json.loads((out / "face.json").read_text())
    assert len(rec["keypoints_2d"]) == 5 and len(rec["keypoints_3d"][0]) == 3
    for x, y in rec["keypoints_2d"]:
        assert -0.5 <= x <= 49.5 and -0.5 <= y <= 39.5
    assert (out / "face_keypoints.png").exists()


def test_export_structure(run_dir, tmp_path):
    path = tmp_path / "s" / "structure.json"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(path)]) == 0
    s = json.loads(path.read_text())
    assert len(s["mean_shape"]) == 5 and len(s["mean_shape"][0]) == 3
    assert len(s["basis"]) == 2 and len(s["edges"]) == len(s["edge_weights"]) == 10
    assert len(s["projection_scales"]) == 2


def test_autolink_mode_eval(tmp_path):
    out = tmp_path / "al"
    assert main(["train", "--data", "synthetic:face", "--keypoints", "4", "--steps", "1",
                 "--out", str(out), "--mode", "autolink", "--eval", "--regress-images", "12",
                 "--test-images", "6"] + TINY) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["structure_3d"] is False
    assert m["nme_3d"] == pytest.approx(m["nme_3d_flat_baseline"])


def test_eval_on_the_validation_split(tmp_path):
    out = tmp_path / "val"
    assert main(["train", "--data", "synthetic:face", "--keypoints", "4", "--steps", "2",
                 "--out", str(out), "--eval", "--regress-images", "12", "--test-images", "6"]
                + TINY) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"] == "val" and m["num_test"] == 6 and m["num_keypoints"] == m["num_points"] == 4
    assert main(["eval", "--checkpoint", str(out), "--data", "synthetic:face", "--out",
                 str(tmp_path / "test"), "--regress-images", "12", "--test-images", "6"]) == 0
    t = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert t["split"] == "test" and t["nme_2d"] != m["nme_2d"]  # other faces


def test_demo_tiny(tmp_path, capsys):
    assert main(["demo", "--tiny", "--no-progress", "--out", str(tmp_path / "demo")]) == 0
    assert "report:" in capsys.readouterr().out
