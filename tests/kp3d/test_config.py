"""One configuration: presets, a file, dotted overrides, validation on creation, and a command
line generated from the dataclasses."""

import argparse
import json
from dataclasses import fields

import pytest

from kp3d.config import PRESETS, SECTIONS, Config, add_arguments, build_config, from_arguments
from kp3d.errors import ConfigError


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = build_config(name)
    assert isinstance(config, Config)
    assert Config.from_dict(config.to_dict()) == config


def test_later_sources_win(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"num_keypoints": 12, "mask_keep": 0.3},
                                "train": {"steps": 7}}))
    config = build_config("cpu", str(path), {"train.steps": 9})
    assert config.model.num_keypoints == 12 and config.model.mask_keep == 0.3  # the file
    assert config.train.steps == 9  # the override
    assert config.model.detector_widths == tuple(PRESETS["cpu"]["model.detector_widths"])  # the preset
    assert build_config().model.num_keypoints == 16  # the dataclass default


@pytest.mark.parametrize("overrides, match", [
    ({"model.num_keypoints": 1}, "keypoints"), ({"train.lr": -1.0}, "lr"),
    ({"data.spec": "faces"}, "KIND:ARG"), ({"model.refine_reach": 0.2}, "model.refine_reach"),
    ({"loss.w": 1}, "loss.w"),
])
def test_bad_values_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_config(overrides=overrides)


def test_command_line_is_generated_from_the_fields():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = {o for action in parser._actions for o in action.option_strings}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            assert f"--{section}.{f.name}" in options
    args = parser.parse_args(["--preset", "tiny", "--keypoints", "5", "--model.detector_widths", "4,8",
                              "--fixed-edge-weights", "--train.amp", "false", "--data", "synthetic:car"])
    config = from_arguments(args)
    assert config.model.num_keypoints == 5 and config.model.detector_widths == (4, 8)
    assert config.model.learn_edge_weights is False and config.train.amp is False
    assert config.data.spec == "synthetic:car" and config.train.steps == PRESETS["tiny"]["train.steps"]
