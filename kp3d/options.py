"""`option`: a dataclass field that carries its command-line help and aliases, so that
kp3d.config builds the command line from the configuration dataclasses."""

from dataclasses import field


def option(default=None, help="", *aliases, factory=None, flags=None):
    """A config field. aliases: extra option names (e.g. "--keypoints"); flags: {flag: the value
    it sets}, e.g. {"--hflip": True}; factory: a default_factory in place of default."""
    meta = {"help": help, "aliases": aliases, "flags": flags or {}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


__all__ = ["option"]
