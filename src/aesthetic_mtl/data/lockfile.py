"""The release files of a dataset, and the sha256 lock that pins them across runs.

`obtain_files` makes sure each file is in the archives folder (placed by hand on an offline cluster, or
downloaded with `download.download`), is the file and not a stand-in (`download.what_arrived`: a Git LFS
pointer, an HTML page), and matches its digest: the config's, else the one recorded in the lock file at
first use. A digest is recorded only for a file that passed those checks, with the time it was recorded,
so a mismatch can say where the expected digest came from and how to reset it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from aesthetic_mtl.data.download import Log, check_placed, download, sha256_file
from aesthetic_mtl.errors import DataError, DownloadError
from aesthetic_mtl.files import write_json


def obtain_files(files: dict[str, dict], names: list[str], archives_dir: Path, lock_path: Path, *,
                 log: Log = print, **download_kwargs) -> dict[str, str]:
    """Make sure each of `names` is in `archives_dir` and matches its digest; return {name: sha256}.

    A file already there (placed by hand on an offline cluster, or downloaded earlier) is verified,
    not downloaded. The digest comes from the config, else from the lock file; with neither it is
    recorded at first use (with the time, `{name: {"sha256", "recorded"}}`), so every later use detects a
    changed or corrupted archive. Only a file that is the file (`what_arrived`) is ever recorded, so a
    bad first download cannot make every later good one a mismatch.
    """
    archives_dir, lock_path = Path(archives_dir), Path(lock_path)
    lock = _read_lock(lock_path)
    digests: dict[str, str] = {}
    for name in names:
        entry = _file_entry(files, name)
        digest = _obtain_one(name, entry, archives_dir / name, lock, lock_path, log,
                             download_kwargs)
        if lock.get(name, {}).get("sha256") != digest:
            lock[name] = {"sha256": digest, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            write_json(lock_path, lock)
        digests[name] = digest
    return digests


def _file_entry(files: dict[str, dict], name: str) -> dict:
    """The config entry of `name`; a missing one is a configuration mistake, named as such."""
    entry = files.get(name)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(files)) or "none"
        raise DownloadError(f"config error: file {name!r} is needed but not listed under the "
                            f"dataset's `files:` (listed: {known})")
    return entry


def _obtain_one(name: str, entry: dict, path: Path, lock: dict[str, dict], lock_path: Path,
                log: Log, download_kwargs: dict) -> str:
    """Verify or download one file; return its digest (logging when it is recorded first).

    A config digest is checked by `download` (a mismatching download is deleted); a lock digest after it, so
    that a good file that meets a lock recorded from a bad one stays for the user to keep (see `_mismatch`).
    """
    config_digest = (entry.get("sha256") or "").strip().lower() or None
    recorded = lock.get(name, {})
    expected = config_digest or recorded.get("sha256")
    if path.exists():
        log(f"{name}: using existing {path}")
        check_placed(path, entry.get("url"))
        actual = sha256_file(path)
    else:
        url = entry.get("url")
        if not url:
            raise DownloadError(f"{path} is missing and the config gives no url for {name!r}: "
                                f"place the file there by hand")
        download(url, path, sha256=config_digest, sha256_from=f"given in the config, files: {name}: sha256",
                 log=log, **download_kwargs)                 # checked what arrived, and the config's digest
        actual = config_digest or sha256_file(path)
    if expected and actual != expected:
        raise DownloadError(_mismatch(path, name, actual, expected, config_digest, recorded, lock_path))
    if not expected:
        log(f"{name}: no sha256 in the config or {lock_path}; recorded {actual} at first use in "
            f"{lock_path} - every later use verifies the file against it")
    elif config_digest and recorded.get("sha256") not in (None, config_digest):
        log(f"{name}: the lock file had {recorded['sha256']}; updating it to the config's sha256")
    else:
        log(f"{name}: sha256 verified")
    return actual


def _mismatch(path: Path, name: str, actual: str, expected: str, config_digest: str | None, recorded: dict,
              lock_path: Path) -> str:
    """One line: the digests, where the expected one came from (config, or lock and when), how to reset."""
    if config_digest:
        return (f"{path}: sha256 {actual} does not match {expected} given in the config (files: {name}: "
                f"sha256); the file was left in place (placed by hand or downloaded earlier): replace or "
                f"delete it, or correct the config")
    when = f"on {recorded['recorded']} at its first use" if recorded.get("recorded") else \
        "at its first use (date not recorded)"
    return (f"{path}: sha256 {actual} does not match {expected}, recorded in the lock file {lock_path} {when}; "
            f"the file was left in place. If it is right and the recording was wrong (an earlier bad download), "
            f"remove the entry '{name}' from {lock_path} (or delete that file) and run again; else delete the "
            f"file to download it again")


def _read_lock(lock_path: Path) -> dict[str, dict]:
    """The lock file as {name: {"sha256", "recorded"}}; absent means empty, malformed is a DataError.

    Older lock files map a name to its sha256 alone: read as an entry without a recorded time.
    """
    if not lock_path.exists():
        return {}
    try:
        lock = json.loads(lock_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{lock_path}: not valid JSON ({err}); fix or delete it") from err
    entries = {k: {"sha256": v} if isinstance(v, str) else v for k, v in lock.items()} \
        if isinstance(lock, dict) else None
    if entries is None or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str)
                                  for e in entries.values()):
        raise DataError(f"{lock_path}: expected a JSON object of file name -> {{\"sha256\": ..., "
                        f"\"recorded\": ...}}; fix or delete it")
    return {k: {**e, "sha256": e["sha256"].strip().lower()} for k, e in entries.items()}
