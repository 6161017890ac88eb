"""User-facing errors: each carries one line that says what is wrong and how to fix it.

The launcher prints the message of these (and nothing else) and exits non-zero.
"""


class UserError(Exception):
    """A problem with what the user asked for, reported as one line."""


class ConfigError(UserError):
    """An invalid configuration value."""


class DatasetNotFoundError(UserError):
    """A data set that is neither prepared in TFDS nor present as a local copy."""


class DataError(UserError):
    """A data file that exists but cannot be read (truncated, damaged, not the format)."""


class CheckpointError(UserError):
    """A checkpoint that could not be written (disk full, permissions, I/O)."""


class NonFiniteLossError(UserError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


def check(condition: bool, message: str) -> None:
    """Raises ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def check_choice(name: str, value, choices) -> None:
    check(value in choices, f"{name}={value!r} is not one of {sorted(choices)}")
