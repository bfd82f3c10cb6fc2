"""Atomic file output and run provenance.

Every output goes to a temporary file in the destination folder and is renamed into place, so an
interrupted job never leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .errors import AestheticError, OutputError


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


def code_version() -> str:
    """`git describe` of the checkout the code runs from, or the package version outside git."""
    from . import __version__

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"v{__version__}"


def provenance(config: dict | None = None) -> dict:
    """What produced an output: code version, package versions, and the resolved config."""
    from importlib import metadata

    versions = {}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "scipy", "pillow", "snakemake"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "code_version": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "config": config or {},
    }


def write_provenance(path: str | os.PathLike, config: dict | None) -> None:
    """`provenance(config)` as JSON next to an output (results/metrics.provenance.json)."""
    write_json(path, provenance(config))


def provenance_header(prov: dict | None = None) -> str:
    """Lines starting with '# ' that open every rule log: code version, Python, package versions."""
    prov = prov or provenance()
    packages = ", ".join(f"{name} {version}" for name, version in prov["packages"].items())
    return (f"# aesthetic-mtl {prov['code_version']} | python {prov['python']} | {prov['platform']}\n"
            f"# packages: {packages}\n")


@contextlib.contextmanager
def logging_to(path: str | os.PathLike | None) -> Iterator:
    """Send a job's stdout/stderr (progress, warnings, tracebacks) to its log file; one line on the console.

    The log opens with `provenance_header()` (code version and package versions), so every rule's
    log records what produced its outputs. Yields a `log(msg)` function that prints a line and
    flushes, so logs are readable while a job runs. A job that fails writes its traceback to the log and
    one line to the console (`console_line`), then exits with status 1: Snakemake names the log, and
    the console is not buried under chained tracebacks.
    """
    def log(message: str) -> None:
        print(message, flush=True)

    if path is None:
        yield log
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    console = sys.stderr
    try:
        with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            fh.write(provenance_header())
            try:
                yield log
            except BaseException:
                import traceback

                traceback.print_exc()
                raise
    except Exception as err:
        print(console_line(err, path), file=console, flush=True)
        raise SystemExit(1) from None


def console_line(err: Exception, log_path: str | os.PathLike) -> str:
    """What a failed job says on the console: its error's one-line message (the package's errors name the file
    and what to do), or the exception's type and message with the log that holds the traceback (a bug)."""
    if isinstance(err, AestheticError):
        return str(err)
    return f"{type(err).__name__}: {err} (traceback in {log_path})"


CRASH_ENV = "AESTHETIC_MTL_CRASH_AFTER"


def crash_point(step: str, done: int) -> None:
    """Test hook (tests/test_crash_safety.py): simulate `kill -9` part-way through a long step.

    With `AESTHETIC_MTL_CRASH_AFTER=<step>:<K>` in the environment, the process SIGKILLs itself
    right after unit K of `step` (`feature_cache`: batches written; `stage1` / `stage2`: training
    steps). `<step>:<K>:group` kills its whole process group instead: Snakemake too, as a node failure
    or `scancel` would, so nothing gets to clean up. `<step>:<K>:hold=<file>` kills nothing: the job
    creates `<file>.held` and waits there until `<file>` exists (at most 10 minutes), so a test can act
    while a job is mid-write (tests/test_concurrent_runs.py). Unset (always, outside those tests) it
    does nothing.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    count, _, scope = rest.partition(":")
    if name != step or int(count) != done:
        return
    if scope.startswith("hold="):
        _hold(Path(scope[len("hold="):]))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if scope == "group":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _hold(release: Path, limit_s: float = 600.0) -> None:
    """Announce `<release>.held`, then wait until `release` exists (the `hold=` test hook)."""
    import time

    Path(f"{release}.held").touch()
    deadline = time.monotonic() + limit_s
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
