"""Errors that trigkit reports to users as one clear line."""


class TrigkitError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it."""


class ConfigError(TrigkitError):
    """A configuration value or key is invalid."""


def one_line(err: BaseException | str, limit: int = 200) -> str:
    """A library's error message folded into one short line (for messages about a user's
    file, which must stay one line)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
