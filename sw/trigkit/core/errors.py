"""Errors that trigkit reports to users as one clear line."""


class TrigkitError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it."""


class ConfigError(TrigkitError):
    """A configuration value or key is invalid."""
