"""One configuration for a run: the model, its training and its data, with named presets.

    from kp3d.config import build_config
    config = build_config("cpu", overrides={"model.num_keypoints": 16, "train.steps": 500})

On the command line (`kp3d train`) every field is an option, `--model.num_keypoints 16`, built
from the dataclasses by `add_arguments`; a field's help and short aliases (`--keypoints`) live
beside it (`kp3d.options.option`). Later sources win: the dataclass defaults, then `--preset`,
then `--config FILE` (JSON, nested like `Config.to_dict()`), then the options given. The result
is validated on creation; a bad value raises ConfigError naming the field.
"""

import argparse
import json
import os
import typing
from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .model.keypoint_model import ModelConfig
from .options import option
from .train.config import TrainConfig


@dataclass
class DataConfig:
    """Where the training images come from (docs/data.md)."""

    spec: str = option("synthetic:face", "dataset: synthetic:face, synthetic:face-wide, "
                       "synthetic:car, folder:PATH, celeba-wild:PATH, 300w-lp:PATH, "
                       "aflw2000-3d:PATH", "--data")
    seed: int = option(0, "seed of the synthetic images and of the data order", "--data-seed")
    train_images: int = option(0, "training images (0 = the dataset's)", "--train-images")
    num_workers: int = option(0, "data loader processes", "--num-workers")

    def __post_init__(self):
        if not isinstance(self.spec, str) or ":" not in self.spec:
            raise ConfigError(f"data spec must be KIND:ARG, e.g. synthetic:face, got {self.spec!r}")
        for name in ("seed", "train_images", "num_workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")


@dataclass
class Config:
    """A whole run: model, train and data sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(),
                "data": {f.name: getattr(self.data, f.name) for f in fields(DataConfig)}}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config sections: {', '.join(sorted(unknown))} "
                              f"(expected {', '.join(SECTIONS)})")
        data = dict(d.get("data", {}))
        unknown = set(data) - {f.name for f in fields(DataConfig)}
        if unknown:
            raise ConfigError(f"unknown data config keys: {', '.join(sorted(unknown))}")
        return cls(model=ModelConfig.from_dict(dict(d.get("model", {}))),
                   train=TrainConfig.from_dict(dict(d.get("train", {}))), data=DataConfig(**data))


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}

_CPU_WIDTHS = {"model.detector_widths": (16, 32, 64), "model.decoder_widths": (16, 32, 64, 128)}
PRESETS = {
    # the CPU demo, both of its runs within 15 minutes on two cores; chosen on the validation
    # split (docs/experiments.md)
    "cpu": {"model.num_keypoints": 8, "model.image_size": 64, **_CPU_WIDTHS,
            "model.learn_edge_weights": False, "model.edge_weight_init": 1.0,
            "train.steps": 600, "train.batch_size": 16, "train.lr": 1e-3, "train.w_repulsion": 0.01},
    # one GPU, a few minutes
    "gpu": {"model.num_keypoints": 16, "model.image_size": 64,
            "model.detector_widths": (32, 64, 128), "model.decoder_widths": (32, 64, 128, 256),
            "model.learn_edge_weights": False, "model.edge_weight_init": 1.0,
            "train.steps": 4000, "train.batch_size": 64, "train.lr": 5e-4, "train.device": "cuda",
            "train.image_every": 1000,
            "data.num_workers": min(8, max(0, (os.cpu_count() or 1) - 1))},
    # seconds: the CI's end-to-end check
    "tiny": {"model.num_keypoints": 6, "model.image_size": 32, "model.detector_widths": (8, 16),
             "model.decoder_widths": (8, 16, 32), "model.lifter_hidden": 32,
             "train.steps": 4, "train.batch_size": 4, "train.image_every": 1000},
    # AutoLink's training at 128 x 128 on a GPU (their K = 16 CelebA setting)
    "paper": {"model.num_keypoints": 16, "model.image_size": 128,
              "model.detector_widths": (64, 128, 256, 512),
              "model.decoder_widths": (64, 128, 256, 512, 512),
              "train.steps": 20000, "train.batch_size": 64, "train.lr": 1e-4,
              "train.weight_decay": 1e-3, "train.hflip": True, "train.device": "cuda",
              "data.num_workers": min(8, max(0, (os.cpu_count() or 1) - 1))},
}


def _set(d: dict, key: str, value):
    section, _, name = key.partition(".")
    if section not in SECTIONS or name not in {f.name for f in fields(SECTIONS[section])}:
        raise ConfigError(f"unknown config field {key!r}")
    d[section][name] = list(value) if isinstance(value, tuple) else value


def build_config(preset: str | None = None, file: str | None = None,
                 overrides: dict | None = None) -> Config:
    """The defaults, then the preset (a name in PRESETS), then the JSON file, then the dotted
    overrides ({"model.num_keypoints": 8}); validated."""
    d = Config().to_dict()
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
        for key, value in PRESETS[preset].items():
            _set(d, key, value)
    if file:
        try:
            with open(file) as f:
                given = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
            raise ConfigError(f"config file {file} must hold an object of sections "
                              f"({', '.join(SECTIONS)}), each an object of fields")
        for section, values in given.items():
            for name, value in values.items():
                _set(d, f"{section}.{name}", value)
    for key, value in (overrides or {}).items():
        _set(d, key, value)
    return Config.from_dict(d)


# ----------------------------------------------------------------------------- command line

def _parser_of(kind):
    if kind is bool:
        def parse(text):
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return parse, "BOOL"
    if kind is tuple:
        def parse(text):
            try:
                values = tuple(int(v) for v in text.split(","))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated integers (widths), got {text!r}") from None
            return values
        return parse, "N,N,..."
    return kind, {int: "N", float: "X", str: "TEXT"}[kind]


def add_arguments(parser: argparse.ArgumentParser):
    """Add --preset, --config and one option per config field (with the field's aliases)."""
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="start from a named setting: " + ", ".join(PRESETS))
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="a JSON file of sections and fields, e.g. {\"model\": {\"num_keypoints\": 8}}")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            dest = f"{section}.{f.name}"
            convert, metavar = _parser_of(hints[f.name])
            meta = f.metadata
            group.add_argument(f"--{dest}", *meta.get("aliases", ()), dest=dest, type=convert,
                               metavar=metavar, default=argparse.SUPPRESS, help=meta.get("help") or None)
            for flag, value in meta.get("flags", {}).items():
                group.add_argument(flag, dest=dest, action="store_const", const=value,
                                   default=argparse.SUPPRESS, help=f"{dest} = {value}")


def from_arguments(args: argparse.Namespace) -> Config:
    """The Config that the parsed options of `add_arguments` describe."""
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    return build_config(args.preset, args.config, overrides)


__all__ = ["Config", "DataConfig", "PRESETS", "SECTIONS", "build_config", "add_arguments",
           "from_arguments"]
