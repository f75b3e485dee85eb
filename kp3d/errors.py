"""Errors a user can fix. The command line prints them as one line; any other exception is a
bug and keeps its traceback."""


class UsageError(ValueError):
    """Bad command-line input."""


class ConfigError(UsageError):
    """A configuration value that is out of range or of the wrong kind; names the field."""


__all__ = ["UsageError", "ConfigError"]
