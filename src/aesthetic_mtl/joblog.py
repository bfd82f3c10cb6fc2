"""A workflow job's log: its stdout and stderr go to the rule's log file, opened by the provenance header; a
failure is one line on the console and the traceback in the log."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator

from aesthetic_mtl.errors import AestheticError
from aesthetic_mtl.provenance import provenance_header


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
