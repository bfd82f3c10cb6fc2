"""Faults on request, for the tests of crash safety (tests/test_crash_safety.py, test_concurrent_runs.py,
test_slurm.py): a job killed or held part-way through a long step.

Only the workflow's job scripts wire this in (`on_step()` is the callback the training stages and the feature
cache accept); the package's loops know nothing of it, and without AESTHETIC_MTL_CRASH_AFTER in the environment
`on_step()` is None.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

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
    Path(f"{release}.held").touch()
    deadline = time.monotonic() + limit_s
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def on_step() -> Callable[[str, int], None] | None:
    """The `on_step(step, k)` callback for the loops of a job (`crash_point`), or None when no fault is asked
    for: the normal case, where the loops then call nothing."""
    return crash_point if os.environ.get(CRASH_ENV) else None
