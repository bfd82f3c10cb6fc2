"""Exceptions with messages a user can act on: each names the file and the problem."""


class AestheticError(Exception):
    """Base class of the package's user-facing errors."""


class DataError(AestheticError, ValueError):
    """A data file (labels, votes, image) is missing or malformed."""


class DownloadError(AestheticError, OSError):
    """A download failed, or a file does not match its checksum."""


class ConfigError(AestheticError, ValueError):
    """The configuration is invalid; the message names the key."""


class TrainingError(AestheticError, RuntimeError):
    """Training cannot go on (for example a NaN loss)."""
