"""Getting the release files: resumable HTTP / Google Drive download, sha256 lock.

Why this is more than `urlretrieve`:

* The archives are tens of GB behind flaky links (Google Drive, Git LFS). A download that dies at
  90 % must resume (`Range`), a stalled server must time out instead of hanging a cluster job, and
  transient 5xx / 429 answers must be retried with backoff.
* Google Drive answers large files with an HTML "virus scan warning" page instead of the bytes, and a
  quota or sign-in page when it refuses. Saving either as `X.zip` would only fail much later, at
  extraction, with a confusing message, so HTML where a binary was expected is an error here.
* The releases publish no checksums. The first use records one in a lock file and every later use
  verifies it, so a silently changed or corrupted archive cannot change results unnoticed.

Unpacking what was obtained (safe extraction, split archives) is `archives`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .errors import DataError, DownloadError
from .io import write_json

Log = Callable[[str], object]

CHUNK = 1 << 20
USER_AGENT = "aesthetic-mtl-downloader/0.1 (+urllib)"
DRIVE_HOSTS = {"drive.google.com", "docs.google.com"}
DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download"
MAX_HTML_BYTES = 2 << 20     # an interstitial page is a few kB; never buffer a mislabelled archive
MAX_FORM_HOPS = 3            # interstitial -> file; more means Drive keeps refusing
MAX_BACKOFF_S = 120.0


class _Transient(Exception):
    """An attempt failed in a way the next attempt may fix (truncated body, bad Range answer)."""


# Network failures worth another attempt. Plain OSError (disk full, permission denied) is not here:
# retrying cannot fix it. DownloadError is an OSError too and is always re-raised first.
_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
              socket.timeout, ssl.SSLError, _Transient)


# --------------------------------------------------------------------------------------- checksums

def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB archives do not need memory."""
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file with any hashlib algorithm (md5: the digest Keras publishes for its weights)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_published_digest(path: Path, algorithm: str, expected: str, url: str, *, delete: bool = True) -> str:
    """Check a file against its published digest; a mismatching download is deleted (`delete`; a file
    placed by hand stays for its owner to inspect). Returns the digest.

    `algorithm`: `sha256` or `md5` (full digest), or `sha256-prefix` (torchvision: the file name carries
    the first hex digits of the sha256).
    """
    expected = expected.strip().lower()
    if algorithm == "sha256-prefix":
        actual = sha256_file(path)
        if not actual.startswith(expected):
            _drop(path, delete)
            raise DownloadError(f"{url}: sha256 {actual[:12]}... does not start with the published {expected}")
        return actual
    actual = file_digest(path, algorithm)
    if actual != expected:
        _drop(path, delete)
        raise DownloadError(f"{path}: {algorithm} {actual} does not match the published {expected} of {url}; "
                            + ("the file was deleted" if delete else "replace or delete it"))
    return actual


def _drop(path: Path, delete: bool) -> None:
    if delete:
        Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ Google Drive

def drive_download_url(url: str) -> str:
    """Rewrite a Google Drive share / `uc` link to the direct-download endpoint; others unchanged.

    The old `drive.google.com/uc?export=download` endpoint now redirects through an interstitial;
    `drive.usercontent.google.com/download?...&confirm=t` skips it for most files. `resourcekey`
    is kept because older shared files cannot be fetched without it.
    """
    parts = urllib.parse.urlsplit(url)
    if (parts.hostname or "").lower() not in DRIVE_HOSTS:
        return url
    query = urllib.parse.parse_qs(parts.query)
    file_id = (query.get("id") or [None])[0]
    match = re.search(r"/file/d/([^/?#]+)", parts.path)
    if match:
        file_id = match.group(1)
    if not file_id:
        return url
    params = [("id", file_id), ("export", "download"), ("confirm", "t")]
    resource_key = (query.get("resourcekey") or [None])[0]
    if resource_key:
        params.append(("resourcekey", resource_key))
    return f"{DRIVE_DOWNLOAD}?{urllib.parse.urlencode(params)}"


class _FormParser(HTMLParser):
    """Collect forms (action, method, inputs) and the legacy `uc-download-link` anchor of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.link: str | None = None
        self._form: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                          "id": a.get("id", ""), "inputs": {}}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            if a.get("type", "text").lower() == "hidden":
                self._form["inputs"][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("id") == "uc-download-link" and a.get("href"):
            self.link = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def drive_confirm_url(page: str, page_url: str) -> str | None:
    """The URL behind a Drive "virus scan warning" download form in `page`, or None if none.

    Drive's form carries hidden `id`, `export`, `confirm`, `uuid` inputs; submitting it (a GET)
    returns the file. Older pages had an anchor `uc-download-link` with the confirm token instead.
    """
    parser = _FormParser()
    parser.feed(page)
    for form in parser.forms:
        inputs = form["inputs"]
        is_download = (form["id"] == "download-form" or "confirm" in inputs
                       or ("id" in inputs and "download" in form["action"]))
        if is_download and form["method"] == "get":
            action = urllib.parse.urljoin(page_url, form["action"] or page_url)
            base = action.split("?", 1)[0]
            return f"{base}?{urllib.parse.urlencode(list(inputs.items()))}"
    if parser.link:
        return urllib.parse.urljoin(page_url, parser.link)
    return None


# ---------------------------------------------------------------------------------------- download

def download(url: str, dest: Path, *, sha256: str | None = None, retries: int = 5,
             timeout: float = 30, backoff: float = 1.0, log: Log = print) -> Path:
    """Download `url` to `dest`, resuming, retrying, and verifying `sha256` when given.

    Bytes go to `dest.name + ".part"`, which survives failures so the next attempt (or the next
    run) resumes with `Range`; only a complete file is renamed onto `dest` (atomic `os.replace`).
    `retries` is the number of extra attempts after the first; attempt k waits `backoff * 2**k` s.
    `timeout` bounds connecting and every single read, so a stalled server cannot hang the job.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    direct = drive_download_url(url)
    if direct != url:
        log(f"Google Drive link {url} -> {direct}")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    _fetch_with_retries(opener, direct, part, retries=retries, timeout=timeout, backoff=backoff,
                        log=log)
    if sha256:
        _verify_or_delete(part, dest, sha256, direct)
    os.replace(part, dest)
    log(f"downloaded {dest.name} ({dest.stat().st_size} bytes)")
    return dest


def _fetch_with_retries(opener: urllib.request.OpenerDirector, url: str, part: Path, *,
                        retries: int, timeout: float, backoff: float, log: Log) -> None:
    """Run attempts until one completes `part`; raise DownloadError naming URL and last failure."""
    attempts = max(1, retries + 1)
    for attempt in range(attempts):
        try:
            _attempt(opener, url, part, timeout=timeout, log=log)
            return
        except DownloadError:
            raise
        except _RETRYABLE as err:
            reason = _describe(err)
            if attempt + 1 == attempts:
                raise DownloadError(f"could not download {url}: {reason} "
                                    f"(gave up after {attempts} attempts)") from err
            wait = min(MAX_BACKOFF_S, backoff * 2 ** attempt)
            log(f"download {url}: attempt {attempt + 1}/{attempts} failed ({reason}); "
                f"retrying in {wait:.2f} s")
            time.sleep(wait)


def _describe(err: BaseException) -> str:
    """A one-line reason; HTTP errors show their status so the final message names it."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"connection failed: {err.reason}"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "timed out waiting for the server"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _attempt(opener: urllib.request.OpenerDirector, url: str, part: Path, *, timeout: float,
             log: Log) -> None:
    """One attempt: request (following Drive forms), then append the body to `part`."""
    offset = part.stat().st_size if part.exists() else 0
    for _ in range(MAX_FORM_HOPS + 1):
        resp = _open(opener, url, offset, timeout, part, log)
        if resp is None:                       # 416 on a part that is already complete
            return
        with resp:
            if not _is_html(resp):
                _write_body(resp, part, offset, log)
                return
            next_url = _follow_html(resp, url, log)
        url = next_url
    raise DownloadError(f"got an HTML page instead of the file (Drive kept asking for "
                        f"confirmation after {MAX_FORM_HOPS} forms): {url}")


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float,
          part: Path, log: Log) -> http.client.HTTPResponse | None:
    """Send the GET with `Range` when resuming; settle 416 (complete part, or restart from 0)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            err.close()
            raise
        total = _total_from_content_range(err.headers.get("Content-Range", ""))
        err.close()
        if total == offset:
            log(f"{part.name}: already complete ({offset} bytes)")
            return None
        log(f"{part.name}: server refused to resume at byte {offset} (HTTP 416); restarting")
        part.unlink(missing_ok=True)
        raise _Transient(f"HTTP 416 for a resume at byte {offset}") from None


def _is_html(resp: http.client.HTTPResponse) -> bool:
    """Whether the answer is a web page rather than the file we asked for."""
    return resp.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _follow_html(resp: http.client.HTTPResponse, url: str, log: Log) -> str:
    """Return the confirm URL of a Drive interstitial; any other page is a DownloadError."""
    charset = resp.headers.get_content_charset() or "utf-8"
    page = resp.read(MAX_HTML_BYTES).decode(charset, errors="replace")
    page_url = resp.geturl() or url
    confirm = drive_confirm_url(page, page_url)
    if confirm is None:
        title = re.search(r"<title[^>]*>(.*?)</title>", page, re.I | re.S)
        hint = f" (page title: {title.group(1).strip()!r})" if title else ""
        raise DownloadError(f"got an HTML page instead of the file: {page_url}{hint}; "
                            f"a quota, sign-in or error page - download it in a browser and place "
                            f"it in the archives folder")
    log(f"following the Google Drive download confirmation form -> {confirm}")
    return confirm


def _total_from_content_range(value: str) -> int | None:
    """Total size from `Content-Range: bytes a-b/N` or `bytes */N`; None if unknown."""
    match = re.match(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)", value)
    return int(match.group(1)) if match else None


def _start_from_content_range(value: str) -> int | None:
    """First byte of a 206 answer, from `Content-Range: bytes a-b/N`."""
    match = re.match(r"\s*bytes\s+(\d+)-", value)
    return int(match.group(1)) if match else None


def _write_body(resp: http.client.HTTPResponse, part: Path, offset: int, log: Log) -> None:
    """Append (206) or rewrite (200) `part` from `resp`; a short body raises _Transient."""
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if resp.status == 206:
        start = _start_from_content_range(resp.headers.get("Content-Range", ""))
        if start != offset:
            part.unlink(missing_ok=True)
            raise _Transient(f"server resumed at byte {start}, asked for {offset}; restarting")
        total = _total_from_content_range(resp.headers.get("Content-Range", ""))
        if total is None and length is not None:
            total = offset + length
    else:
        if offset:
            log(f"{part.name}: server ignored the Range request; restarting from byte 0")
        offset = 0
        total = length
    written = _copy(resp, part, offset, total)
    if total is not None and written < total:
        raise _Transient(f"connection closed after {written} of {total} bytes; will resume")


def _copy(resp: http.client.HTTPResponse, part: Path, offset: int, total: int | None) -> int:
    """Stream the body into `part` from `offset` with a progress bar; return bytes now in `part`."""
    written = offset
    with open(part, "ab" if offset else "wb") as out, \
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=part.name[:-len(".part")], disable=None, leave=False, file=sys.stderr) as bar:
        while True:
            block = resp.read(CHUNK)
            if not block:
                break
            out.write(block)
            written += len(block)
            bar.update(len(block))
    return written


def _verify_or_delete(part: Path, dest: Path, expected: str, url: str) -> None:
    """Check the finished download; a mismatching file is deleted so nothing trusts it later."""
    actual = sha256_file(part)
    if actual != expected.strip().lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest}: sha256 mismatch after downloading {url}: expected "
                            f"{expected}, got {actual}; the file was deleted")


# ----------------------------------------------------------------------------- archives + lock file

def obtain_files(files: dict[str, dict], names: list[str], archives_dir: Path, lock_path: Path, *,
                 log: Log = print, **download_kwargs) -> dict[str, str]:
    """Make sure each of `names` is in `archives_dir` and matches its digest; return {name: sha256}.

    A file already there (placed by hand on an offline cluster, or downloaded earlier) is verified,
    not downloaded. The digest comes from the config, else from the lock file; with neither it is
    recorded at first use, so every later use detects a changed or corrupted archive.
    """
    archives_dir, lock_path = Path(archives_dir), Path(lock_path)
    lock = _read_lock(lock_path)
    digests: dict[str, str] = {}
    for name in names:
        entry = _file_entry(files, name)
        digest = _obtain_one(name, entry, archives_dir / name, lock, lock_path, log,
                             download_kwargs)
        if lock.get(name) != digest:
            lock[name] = digest
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


def _obtain_one(name: str, entry: dict, path: Path, lock: dict[str, str], lock_path: Path,
                log: Log, download_kwargs: dict) -> str:
    """Verify or download one file; return its digest (logging when it is recorded first)."""
    config_digest = (entry.get("sha256") or "").strip().lower() or None
    expected = config_digest or lock.get(name)
    source = "the config" if config_digest else f"the lock file {lock_path}"
    if path.exists():
        actual = sha256_file(path)
        if expected and actual != expected:
            raise DownloadError(f"{path} does not match the sha256 in {source}: expected "
                                f"{expected}, got {actual}. The file was left in place (it was "
                                f"placed by hand or downloaded earlier): replace or delete it")
        log(f"{name}: using existing {path}" + (" (sha256 verified)" if expected else ""))
    else:
        url = entry.get("url")
        if not url:
            raise DownloadError(f"{path} is missing and the config gives no url for {name!r}: "
                                f"place the file there by hand")
        download(url, path, sha256=expected, log=log, **download_kwargs)
        actual = expected or sha256_file(path)
    if not expected:
        log(f"{name}: no sha256 in the config or {lock_path}; recorded {actual} at first use in "
            f"{lock_path} - every later use verifies the file against it")
    elif config_digest and lock.get(name) not in (None, config_digest):
        log(f"{name}: the lock file had {lock[name]}; updating it to the config's sha256")
    return actual


def _read_lock(lock_path: Path) -> dict[str, str]:
    """The lock file as {name: sha256}; absent means empty, malformed is a DataError."""
    if not lock_path.exists():
        return {}
    try:
        lock = json.loads(lock_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{lock_path}: not valid JSON ({err}); fix or delete it") from err
    if not isinstance(lock, dict) or not all(isinstance(v, str) for v in lock.values()):
        raise DataError(f"{lock_path}: expected a JSON object of file name -> sha256")
    return {k: v.strip().lower() for k, v in lock.items()}
