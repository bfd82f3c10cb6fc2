"""Atomic file output and run provenance.

Every output goes to a temporary file in the destination folder and is renamed into place, so an
interrupted job never leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    `suffix` keeps an extension that writers look at (numpy appends `.npy` otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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


@contextlib.contextmanager
def logging_to(path: str | os.PathLike | None) -> Iterator:
    """Send a job's stdout/stderr (progress bars, warnings, tracebacks) to its log file.

    Yields a `log(msg)` function that prints a line and flushes, so logs are readable while a job runs.
    """
    def log(message: str) -> None:
        print(message, flush=True)

    if path is None:
        yield log
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield log
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
