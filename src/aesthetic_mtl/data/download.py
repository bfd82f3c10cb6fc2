"""Getting a file: resumable HTTP / Google Drive download, checked to be the file, with a rate and a deadline.

Why this is more than `urlretrieve`:

* The archives are tens of GB behind flaky links (Google Drive, Git LFS). A download that dies at
  90 % must resume (`Range`), a stalled server must time out instead of hanging a cluster job, and
  transient 5xx / 429 answers must be retried with backoff.
* Google Drive answers large files with an HTML "virus scan warning" page instead of the bytes, and a
  quota or sign-in page when it refuses. Saving either as `X.zip` would only fail much later, at
  extraction, with a confusing message, so HTML where a binary was expected is an error here.
* A server may answer with something else than the file and a success status: a Git LFS pointer
  (a repository served without LFS), a sign-in page sent as binary. What arrived is checked
  (`what_arrived`) on every download and every file found in place, before its digest is trusted.
* A server that trickles (a byte every few seconds) never trips a read timeout: a download slower than
  a minimum rate for a while is cut and resumed, and every download has a deadline (`Limits`).
* The releases publish no checksums: `lockfile` records one at first use and verifies it after.
* Offline, a download fails at once (a name that does not resolve is not retried) with one line naming the
  file, the configured URL and the folder where a copy downloaded by hand goes. A job's log is a file, where
  a progress bar turns itself off: progress is a plain line every `PROGRESS_EVERY_S` seconds.

The release files and their sha256 lock are `lockfile`; unpacking them (safe extraction, split
archives) is `archives`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Callable

from aesthetic_mtl.config import schema_defaults
from aesthetic_mtl.errors import DownloadError, OutputError
from aesthetic_mtl.files import NO_SPACE

Log = Callable[[str], object]

CHUNK = 1 << 20
USER_AGENT = "aesthetic-mtl-downloader/0.1 (+urllib)"
DRIVE_HOSTS = {"drive.google.com", "docs.google.com"}
DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download"
MAX_HTML_BYTES = 2 << 20     # an interstitial page is a few kB; never buffer a mislabelled archive
MAX_FORM_HOPS = 3            # interstitial -> file; more means Drive keeps refusing
MAX_BACKOFF_S = 120.0
PROGRESS_EVERY_S = 10.0      # a progress line in the job's log this often (a multi-GB file takes an hour)


LFS_POINTER = b"version https://git-lfs.github.com/spec/"
MAX_POINTER_BYTES = 1024     # a Git LFS pointer is ~130 bytes


class _Transient(Exception):
    """An attempt failed in a way the next attempt may fix (truncated body, bad Range answer, too slow)."""


class _Deadline(Exception):
    """The download is not finished by its deadline: no further attempt."""


@dataclass(frozen=True)
class Limits:
    """How slow and how long one file's download may be (config section `download`).

    A server that trickles never trips the per-read timeout, so the rate is watched: under `min_rate`
    bytes/s (0: no check) over `window_s` seconds cuts the attempt, and the next one resumes. `deadline_s`
    bounds every attempt together.
    """

    min_rate: float
    window_s: float
    deadline_s: float

    @classmethod
    def from_config(cls, section: dict | None) -> "Limits":
        """From the config's `download` keys; absent keys take the schema's defaults."""

        cfg = {**schema_defaults("download"), **(section or {})}
        return cls(cfg["min_rate_kib_s"] * 1024, cfg["slow_for_s"], cfg["deadline_min"] * 60)


class _Pace:
    """Bytes received over time by one download: too slow for a window -> _Transient; past the deadline ->
    _Deadline. The window restarts with every attempt, the deadline does not."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.deadline_s
        self.restart()

    def restart(self) -> None:
        self.window_start, self.window_bytes = time.monotonic(), 0

    def check_deadline(self, after_s: float = 0.0) -> None:
        if time.monotonic() + after_s > self.deadline:
            raise _Deadline(f"not finished {_duration(self.limits.deadline_s)} after it started "
                            f"(download.deadline_min)")

    def received(self, n: int) -> None:
        self.check_deadline()
        self.window_bytes += n
        elapsed = time.monotonic() - self.window_start
        if elapsed < self.limits.window_s:
            return
        if self.window_bytes < self.limits.min_rate * elapsed:
            raise _Transient(f"slower than {self.limits.min_rate:g} bytes/s for {self.limits.window_s:g} s "
                             f"({self.window_bytes / elapsed:.0f} bytes/s; download.min_rate_kib_s)")
        self.restart()


def _duration(seconds: float) -> str:
    """1.5 s, 90 s, 30 min, 24 h."""
    if seconds < 120:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min" if seconds < 7200 else f"{seconds / 3600:g} h"


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


# ------------------------------------------------------------------------------------ what arrived

def what_arrived(path: str | os.PathLike) -> str | None:
    """A few words for a file that is no release file at all: a Git LFS pointer, an HTML page; else None.

    Servers answer both with a success status (raw.githubusercontent.com serves LFS-tracked files as
    their pointer; a sign-in page may come as application/octet-stream), and a clone without git-lfs
    holds pointers, so the content is looked at, not the headers. Reads at most 64 kB.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith(LFS_POINTER) and len(head) <= MAX_POINTER_BYTES:
        fields = dict(line.split(" ", 1) for line in head.decode("ascii", "replace").splitlines() if " " in line)
        oid = fields.get("oid", "?").removeprefix("sha256:")
        return f"a Git LFS pointer ({len(head)} bytes) for a file of {fields.get('size', '?')} bytes with sha256 {oid}"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith((b"<!doctype html", b"<html")):
        title = re.search(rb"<title[^>]*>(.*?)</title>", head, re.I | re.S)
        return "an HTML page" + (f" (title {title.group(1).decode('utf-8', 'replace').strip()!r})" if title else "")
    return None


def _remedy(arrived: str, dest: Path, url: str | None) -> str:
    """What to do about `what_arrived`'s answer."""
    if arrived.startswith("a Git LFS pointer"):
        media = _lfs_media_url(url) if url else None
        return ("the file is stored with Git LFS: get it with `git lfs pull` in a clone of the repository"
                + (f" or from {media}" if media else "") + f", and place it at {dest}")
    return f"a sign-in, quota or error page: download the file in a browser and place it at {dest}"


def _lfs_media_url(url: str) -> str | None:
    """GitHub's URL of an LFS file's content for its raw URL (raw.githubusercontent.com or github.com/.../raw/)."""
    parts = urllib.parse.urlsplit(url)
    segs = parts.path.strip("/").split("/")
    if parts.hostname == "raw.githubusercontent.com" and len(segs) >= 4:
        return f"https://media.githubusercontent.com/media/{'/'.join(segs)}"
    if parts.hostname == "github.com" and len(segs) >= 5 and segs[2] in ("raw", "blob"):
        return f"https://media.githubusercontent.com/media/{segs[0]}/{segs[1]}/{'/'.join(segs[3:])}"
    return None


def _refuse_what_arrived(part: Path, dest: Path, url: str) -> None:
    """A finished download that is not the file: deleted (a retry brings the same), one line saying what came."""
    arrived = what_arrived(part)
    if arrived:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest}: {arrived} arrived from {url} instead of the file; {_remedy(arrived, dest, url)}")


def check_placed(path: Path, url: str | None = None) -> None:
    """A file found in place (by hand, or an earlier download) must be the file before its digest is trusted;
    it is left for its owner."""
    arrived = what_arrived(path)
    if arrived:
        raise DownloadError(f"{path}: {arrived}, not the file itself (placed by hand or downloaded earlier; a "
                            f"clone without git-lfs holds such pointers); nothing was recorded and the file was "
                            f"left in place: {_remedy(arrived, path, url)}")


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

def download(url: str, dest: Path, *, sha256: str | None = None, sha256_from: str = "the expected sha256",
             retries: int = 5, timeout: float = 30, backoff: float = 1.0, limits: Limits | None = None,
             by_hand: Path | None = None, log: Log = print) -> Path:
    """Download `url` to `dest`, resuming, retrying, and verifying `sha256` (said to come from `sha256_from`).

    Bytes go to `dest.name + ".part"`, which survives failures so the next attempt (or the next
    run) resumes with `Range`; only a complete file that is what was asked for (no LFS pointer, no HTML
    page: `what_arrived`) and matches `sha256` is renamed onto `dest` (atomic `os.replace`).
    `retries` is the number of extra attempts after the first; attempt k waits `backoff * 2**k` s; a host
    name that does not resolve (no network) is not retried. `timeout` bounds connecting and every single
    read; `limits` (default: the config schema's) the rate and the whole download, so neither a stalled nor
    a trickling server can hang the job. A download that cannot be completed raises one line naming
    `by_hand` (where a copy downloaded by hand goes; default `dest`), `url` as given and that folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    direct = drive_download_url(url)
    if direct != url:
        log(f"Google Drive link {url} -> {direct}")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    pace = _Pace(limits or Limits.from_config(None))
    try:
        _fetch_with_retries(opener, direct, part, retries=retries, timeout=timeout, backoff=backoff, pace=pace,
                            log=log)
    except _NotFetched as err:
        raise DownloadError(_by_hand_message(url, Path(by_hand or dest), str(err))) from err.__cause__
    _refuse_what_arrived(part, dest, direct)
    if sha256:
        _verify_or_delete(part, dest, sha256, direct, sha256_from)
    os.replace(part, dest)
    log(f"downloaded {dest.name} ({dest.stat().st_size} bytes)")
    return dest


class _NotFetched(Exception):
    """Every attempt failed (or the deadline passed, or the name did not resolve); the message says why."""


def _by_hand_message(url: str, by_hand: Path, why: str) -> str:
    """One line: the file, the URL as configured, why it failed, and the exact folder for a copy fetched by hand."""
    return (f"{by_hand.name}: could not download {url}: {why}; download it by hand and place it in "
            f"{by_hand.parent.resolve()}/, then run again")


def _fetch_with_retries(opener: urllib.request.OpenerDirector, url: str, part: Path, *,
                        retries: int, timeout: float, backoff: float, pace: _Pace, log: Log) -> None:
    """Run attempts until one completes `part`; raise _NotFetched saying why (last failure, the .part kept)."""
    attempts = max(1, retries + 1)
    for attempt in range(attempts):
        try:
            pace.restart()
            _attempt(opener, url, part, timeout=timeout, pace=pace, log=log)
            return
        except DownloadError:
            raise
        except _Deadline as err:
            raise _NotFetched(f"{err}{_part_note(part)}") from None
        except _RETRYABLE as err:
            reason = _describe(err)
            if _unresolved(err) or _refused_for_good(err):
                raise _NotFetched(f"{reason} (not retried){_part_note(part)}") from err
            if attempt + 1 == attempts:
                raise _NotFetched(f"{reason} (gave up after {attempts} attempts){_part_note(part)}") from err
            wait = min(MAX_BACKOFF_S, backoff * 2 ** attempt)
            try:
                pace.check_deadline(after_s=wait)
            except _Deadline as late:
                raise _NotFetched(f"{late}{_part_note(part)}") from None
            log(f"download {url}: attempt {attempt + 1}/{attempts} failed ({reason}); "
                f"retrying in {wait:.2f} s")
            time.sleep(wait)


def _unresolved(err: BaseException) -> bool:
    """Whether the host name did not resolve: no network (or no DNS), which another attempt does not fix."""
    return isinstance(err, urllib.error.URLError) and isinstance(err.reason, socket.gaierror)


def _refused_for_good(err: BaseException) -> bool:
    """An HTTP client error the next attempt gets again (404 Not Found, 403 Forbidden, 410 Gone, ...); a request
    timeout (408), a too-early (425) and a rate limit (429) are worth waiting for."""
    return isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500 and err.code not in (408, 425, 429)


def _part_note(part: Path) -> str:
    """What happens to the bytes downloaded so far (said at the end of a failure)."""
    size = part.stat().st_size if part.is_file() else 0
    if not size:
        return ""
    return f"; the {size} bytes so far stay in {part}: the next run resumes from there (delete it to start over)"


def _describe(err: BaseException) -> str:
    """A one-line reason; HTTP errors show their status so the final message names it."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if _unresolved(err):
        return f"the host name did not resolve (no network, or a wrong URL?): {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"connection failed: {err.reason}"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "timed out waiting for the server"
    if isinstance(err, _Transient):
        return str(err)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _attempt(opener: urllib.request.OpenerDirector, url: str, part: Path, *, timeout: float, pace: _Pace,
             log: Log) -> None:
    """One attempt: request (following Drive forms), then append the body to `part`."""
    offset = part.stat().st_size if part.exists() else 0
    for _ in range(MAX_FORM_HOPS + 1):
        resp = _open(opener, url, offset, timeout, part, log)
        if resp is None:                       # 416 on a part that is already complete
            return
        with resp:
            if not _is_html(resp):
                _write_body(resp, part, offset, pace, log)
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


def _write_body(resp: http.client.HTTPResponse, part: Path, offset: int, pace: _Pace, log: Log) -> None:
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
    progress = _Progress(part.name[:-len(".part")], total, offset, log)
    written = _copy(resp, part, offset, pace, progress)
    if total is not None and written < total:
        raise _Transient(f"connection closed after {written} of {total} bytes; will resume")


def _copy(resp: http.client.HTTPResponse, part: Path, offset: int, pace: _Pace, progress: "_Progress") -> int:
    """Stream the body into `part` from `offset`, telling `progress`; return bytes now in `part`.

    `read1` returns what has arrived (a plain `read(CHUNK)` would wait for a whole MiB), so `pace` sees a
    trickle and cuts it.
    """
    written = offset
    try:
        with open(part, "ab" if offset else "wb") as out:
            while True:
                block = resp.read1(CHUNK)
                if not block:
                    break
                out.write(block)
                written += len(block)
                progress.update(written)
                pace.received(len(block))
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        raise _no_space(part, err) from None
    return written


class _Progress:
    """How far one download is, as a plain line in the log every `PROGRESS_EVERY_S` seconds.

    A job's log is a file, and a progress bar (tqdm) turns itself off when its output is not a terminal:
    a download of several GB would say nothing for an hour. A line every few seconds says how much has
    arrived, how fast and how long is left. `clock` is there for the tests.
    """

    def __init__(self, name: str, total: int | None, offset: int, log: Log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.total, self.log, self.clock = name, total, log, clock
        self.every_s = PROGRESS_EVERY_S
        self.start = self.last = clock()
        self.start_bytes = offset
        size = _size(total) if total is not None else "an unknown number of bytes"
        log(f"{name}: receiving {size}" + (f", resuming at byte {offset}" if offset else ""))

    def update(self, done: int) -> None:
        """`done` bytes are in the file: log a line if the last one is `every_s` old."""
        now = self.clock()
        if now - self.last < self.every_s:
            return
        self.last = now
        self.log(self.line(done, now))

    def line(self, done: int, now: float) -> str:
        """`<name>: 1.2 GiB of 9.8 GiB (12%), 20.5 MiB/s, about 7.2 min left`."""
        rate = (done - self.start_bytes) / max(now - self.start, 1e-9)
        text = f"{self.name}: {_size(done)}"
        if self.total:
            text += f" of {_size(self.total)} ({100 * done / self.total:.0f}%)"
        text += f", {_size(rate)}/s"
        if self.total and rate > 0:
            text += f", about {_duration(round((self.total - done) / rate))} left"
        return text


def _size(n: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 20.3 MiB, 9.8 GiB."""
    units, k = ("B", "KiB", "MiB", "GiB"), 0
    while n >= 1024 and k < len(units) - 1:
        n, k = n / 1024, k + 1
    return f"{n:.0f} B" if k == 0 else f"{n:.1f} {units[k]}"


def _no_space(part: Path, err: OSError) -> OutputError:
    """A full disk (quota, file-size limit) while downloading: one line naming the file and the `.part` kept.

    The `.part` holds a correct prefix of the file (writes are sequential), so freeing space and running
    again resumes it; a retry now would only fill the disk again, so none is made.
    """
    dest = part.with_name(part.name[:-len(".part")])
    size = part.stat().st_size if part.is_file() else 0
    return OutputError(f"{dest}: not downloaded: {os.strerror(err.errno).lower()} in {dest.parent} after {size} "
                       f"bytes; nothing was left under this name, and the bytes so far stay in {part}: free space "
                       f"there and run again to resume (or delete {part.name} to start over)")


def _verify_or_delete(part: Path, dest: Path, expected: str, url: str, expected_from: str) -> None:
    """Check the finished download; a mismatching file is deleted so nothing trusts it later."""
    actual = sha256_file(part)
    if actual != expected.strip().lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest}: sha256 mismatch after downloading {url}: expected "
                            f"{expected} ({expected_from}), got {actual}; the file was deleted")
