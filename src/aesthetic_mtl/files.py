"""Files written atomically, read back as written.

Every output goes to a temporary file in the destination folder and is renamed into place, so an
interrupted job never leaves a half-written file that a rerun would trust; a full disk is an `OutputError`
naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from aesthetic_mtl.errors import OutputError

_UMASK = os.umask(0o022)
os.umask(_UMASK)   # read once at import (os.umask can only be read by setting it)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    `suffix` keeps an extension that writers look at (numpy appends `.npy` otherwise).
    A full disk (or quota, or file-size limit) while the block writes raises `OutputError` naming
    `path`; the temporary file is removed, so nothing is left under either name.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path, suffix or ".tmp")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as e:
        raise no_space(path, e) if e.errno in NO_SPACE else e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_UMASK)   # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise no_space(path, e) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Errors that mean "the output does not fit": disk full, quota exceeded, file-size limit."""


def no_space(path: Path, err: OSError) -> OutputError:
    """The one-line error for an output that does not fit (see `NO_SPACE`)."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    return OutputError(f"{path}: not written: {reason.lower()} in {Path(path).parent}; nothing was "
                       f"left under this name: free space there and run again")


def open_output_memmap(tmp: Path, output: Path, dtype: str | np.dtype,
                       shape: tuple[int, ...]) -> np.memmap:
    """A writable `.npy` memmap at `tmp` whose disk blocks are reserved before anything is written.

    numpy creates the file sparse, and a write through a memory map into a full disk does not raise:
    the kernel kills the process with SIGBUS. Reserving the blocks first (`posix_fallocate`) turns a
    full disk into an `OutputError` naming `output` before the first batch, never a dead job.
    """
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        size = Path(tmp).stat().st_size
        if hasattr(os, "posix_fallocate") and size:
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                if e.errno in NO_SPACE:
                    raise
                # EOPNOTSUPP / EINVAL: a file system without fallocate; write on, as numpy does
            finally:
                os.close(fd)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise no_space(output, e) from None
        raise
    return array


def _remove_stale_temps(path: Path, suffix: str) -> None:
    """Delete temporary files a killed writer of `path` left behind (`kill -9` skips `finally`).

    Only names `atomic_path` itself makes for this very target match (`.<name>.<8 random
    characters><suffix>`, as `tempfile.mkstemp` draws them); each output has one writer at a time in
    a workflow, so nothing alive owns them. Without this, every crash of the feature cache would leave
    a multi-GB hidden file next to the cache.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    with os.scandir(path.parent) as entries:
        stale = [e.path for e in entries if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    for old in stale:
        Path(old).unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (sorted keys, so reruns give identical bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_tsv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a tab-separated table atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by `write_tsv` (image ids stay strings, empty split stays '')."""
    return pd.read_csv(path, sep="\t", dtype={"image": str, "split": str, "path": str},
                       keep_default_na=False, na_values=["nan", "NaN"])
