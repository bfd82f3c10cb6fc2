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


class CheckpointError(AestheticError, ValueError):
    """A file given as a checkpoint is not one this version of aesthetic-mtl can load.

    The message is one line, `not an aesthetic-mtl checkpoint: <file>: <why>`; it never suggests
    unpickling the file.
    """

    def __init__(self, path: object, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"not an aesthetic-mtl checkpoint: {path}: {why}")


class OutputError(AestheticError, OSError):
    """An output cannot be written: the disk is full, a quota or a file-size limit is reached.

    Raised by `io.atomic_path` (and the cache writers) naming the output; nothing is left under the
    output's name, so freeing space and running again redoes the job from scratch.
    """
