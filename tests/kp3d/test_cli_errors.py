"""Bad command-line input ends with one line on stderr and a non-zero exit, no traceback."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from kp3d.cli import main

# a valid train command, to which each case adds one bad option
TRAIN = ["train", "--data", "synthetic:face", "--keypoints", "4", "--steps", "1"]
TINY = ["--image-size", "32", "--detector-widths", "8,16", "--decoder-widths", "8,16",
        "--batch-size", "2", "--train-images", "4", "--no-progress"]


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _assert_one_line(code, err, *words):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("kp3d")
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


@pytest.fixture
def corrupt_ckpt(tmp_path):
    p = tmp_path / "corrupt.pt"
    p.write_bytes(b"PK\x03\x04 broken zip")
    return str(p)


@pytest.fixture
def foreign_ckpt(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    return str(p)


@pytest.mark.parametrize("argv, words", [
    (["train", "--data", "synthetic:face", "--keypoints", "1", "--steps", "1"], ["keypoints"]),
    (["train", "--data", "synthetic:dragon", "--keypoints", "4", "--steps", "1"], ["dragon"]),
    (["train", "--data", "folder:/no/such/dir", "--keypoints", "4", "--steps", "1"], ["not exist"]),
    (["train", "--data", "nonsense", "--keypoints", "4", "--steps", "1"], ["spec"]),
    (["train", "--data", "synthetic:face", "--keypoints", "4", "--steps", "0"], ["steps"]),
    (TRAIN + ["--device", "tpu"], ["device"]),
    (["train", "--data", "synthetic:face", "--keypoints", "x", "--steps", "1"], ["keypoints"]),
    (TRAIN + ["--vgg-weights", "/no/vgg16.pth"], ["vgg"]),
    (TRAIN + ["--reconstruction", "vgg"], ["vgg-weights"]),
    (TRAIN + ["--detector-widths", "8,x"], ["widths"]),
    (TRAIN + ["--edge-weight-init", "0"], ["edge_weight_init"]),
    (TRAIN + ["--temperature", "-1"], ["temperature"]),
    (TRAIN + ["--mask-grid", "0"], ["mask_grid"]),
    (TRAIN + ["--mask-grid", "5"], ["mask grid"]),
    (TRAIN + ["--lr-decay", "linear"], ["lr_decay"]),
    (TRAIN + ["--preset", "huge"], ["--preset", "huge"]),
    (TRAIN + ["--config", "/no/such.json"], ["config file not found"]),
    (TRAIN + ["--model.learn_edge_weights", "maybe"], ["true or false"]),
    (TRAIN + ["--refine-reach", "0.2"], ["unrecognized", "--refine-reach"]),
    (TRAIN + ["--eval-split", "test2"], ["--eval-split"]),
])
def test_train_bad_input(capsys, tmp_path, argv, words):
    code, err = _run(capsys, argv + ["--out", str(tmp_path / "run")] + TINY)
    _assert_one_line(code, err, *words)


def test_train_bad_config_file(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"model": {"num_keypoints": 4, "refine_reach": 0.2}}')
    code, err = _run(capsys, TRAIN + ["--config", str(path)])
    _assert_one_line(code, err, "unknown", "refine_reach")
    path.write_text("[1, 2]")
    code, err = _run(capsys, TRAIN + ["--config", str(path)])
    _assert_one_line(code, err, "sections")


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the errors a user can fix become one line; a plain ValueError from inside is a bug."""
    import kp3d.train.trainer

    def broken(*args, **kwargs):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(kp3d.train.trainer, "train", broken)
    with pytest.raises(ValueError, match="internal"):
        main(TRAIN + ["--no-progress"])


def test_no_command(capsys):
    code, err = _run(capsys, [])
    _assert_one_line(code, err)


def test_unknown_command(capsys):
    code, err = _run(capsys, ["fly"])
    _assert_one_line(code, err, "fly")


@pytest.mark.parametrize("which", ["missing", "corrupt", "foreign", "folder"])
@pytest.mark.parametrize("command", ["eval", "infer", "export"])
def test_bad_checkpoints(capsys, tmp_path, corrupt_ckpt, foreign_ckpt, which, command):
    path = {"missing": str(tmp_path / "nope.pt"), "corrupt": corrupt_ckpt,
            "foreign": foreign_ckpt, "folder": str(tmp_path / "empty")}[which]
    os.makedirs(tmp_path / "empty", exist_ok=True)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    argv = {"eval": ["eval", "--checkpoint", path, "--data", "synthetic:face", "--out", str(tmp_path / "e")],
            "infer": ["infer", "--checkpoint", path, str(image), "--out", str(tmp_path / "i")],
            "export": ["export", "--checkpoint", path, "--out", str(tmp_path / "s.json")]}[command]
    code, err = _run(capsys, argv)
    word = {"missing": "not found", "corrupt": "corrupt", "foreign": "not a kp3d checkpoint",
            "folder": "no checkpoint"}[which]
    _assert_one_line(code, err, word)


def test_infer_missing_and_unreadable_images(capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "1", "--batch-size", "2", "--train-images",
                 "2", "--no-progress", "--reconstruction", "l1", "--keypoints", "4",
                 "--image-size", "32", "--detector-widths", "8,16", "--decoder-widths", "8,16",
                 "--model.lifter_hidden", "16", "--model.lifter_depth", "1"]) == 0
    code, err = _run(capsys, ["infer", "--checkpoint", str(run), str(tmp_path / "no.png"),
                              "--out", str(tmp_path / "i")])
    _assert_one_line(code, err, "not found")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code, err = _run(capsys, ["infer", "--checkpoint", str(run), str(bad), "--out", str(tmp_path / "i")])
    _assert_one_line(code, err, "cannot read image")
    code, err = _run(capsys, ["eval", "--checkpoint", str(run), "--data", "synthetic:dragon",
                              "--out", str(tmp_path / "e")])
    _assert_one_line(code, err, "dragon")


def test_help_for_every_command(capsys):
    for command in ([], ["train"], ["eval"], ["infer"], ["export"], ["demo"]):
        assert main(command + ["--help"]) == 0
        assert "usage" in capsys.readouterr().out


def test_entry_point_subprocess(tmp_path):
    exe = shutil.which("kp3d")
    cmd = [exe] if exe else [sys.executable, "-m", "kp3d.cli"]
    proc = subprocess.run(cmd + ["train", "--data", "synthetic:unicorn", "--keypoints", "4",
                                 "--steps", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unicorn" in proc.stderr
