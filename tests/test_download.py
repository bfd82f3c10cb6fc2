"""Tests of aesthetic_mtl.data.download against a real HTTP server on 127.0.0.1 (no internet needed).

The server misbehaves on request (5xx, 404, stalls, cut connections, ignored Range, Drive-like
interstitials, unexpected HTML) so the retry / resume / HTML paths run over real sockets.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import stat
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SNAKEMAKE, can_mount_tmpfs, copy_repo

from aesthetic_mtl.data.archives import join_parts, safe_extract_zip
from aesthetic_mtl.data.download import (
    Limits,
    download,
    drive_confirm_url,
    drive_download_url,
    sha256_file,
)
from aesthetic_mtl.data.lockfile import obtain_files
from aesthetic_mtl.errors import DataError, DownloadError

FAST = {"backoff": 0.01, "timeout": 5}


# ------------------------------------------------------------------------------------------ server

@dataclass
class ServerState:
    """Switches of the test server and what it saw."""

    data: bytes
    honour_range: bool = True
    fail_first: int = 0                  # answer 500 to the first N requests
    status: int | None = None            # answer this status to every request (404)
    stall_s: float = 0.0                 # sleep this long instead of answering
    stall_in_body: bool = True           # stall after the headers and some bytes (else before)
    cut_after: int | None = None         # close the connection after K body bytes ...
    cut_times: int = 1                   # ... on this many responses
    drive_interstitial: bool = False     # answer non-/download paths with a Drive confirm form
    html_page: bool = False              # answer with an unexpected HTML page
    html_as_binary: bool = False         # ... sent as application/octet-stream (no text/html header)
    lfs_pointer: bool = False            # answer with the Git LFS pointer of `data` (raw.githubusercontent.com)
    trickle_s: float = 0.0               # send the body one byte every trickle_s seconds ...
    trickle_times: int = 10**6           # ... on this many responses (then at full speed)
    base: str = ""
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    """Serves `state.data` honouring (or not) `Range`, with the failure modes of ServerState."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        st: ServerState = self.server.state
        with st.lock:
            st.requests.append({"path": self.path, "range": self.headers.get("Range")})
            n = len(st.requests)
        parts = urlsplit(self.path)
        if st.status:
            self.send_error(st.status)
        elif n <= st.fail_first:
            self.send_error(500)
        elif st.stall_s and not st.stall_in_body:
            st.release.wait(st.stall_s)
        elif st.html_page:
            self._html("<html><head><title>Google Drive - Quota exceeded</title></head>"
                       "<body>Too many users have viewed or downloaded this file.</body></html>")
        elif st.html_as_binary:
            self._html("\n  <!DOCTYPE html><html><head><title>Sign in - Files</title></head><body></body></html>",
                       "application/octet-stream")
        elif st.lfs_pointer:
            self._html(lfs_pointer(st.data).decode(), "text/plain; charset=utf-8")
        elif st.drive_interstitial and parts.path != "/download":
            self._html(self._interstitial(parse_qs(parts.query).get("id", ["?"])[0]))
        elif st.drive_interstitial and not self._confirmed(parse_qs(parts.query)):
            self.send_error(400, "missing confirm/uuid")
        else:
            self._file(st)

    def _confirmed(self, query: dict) -> bool:
        return query.get("confirm") == ["t"] and query.get("uuid") == ["u-123"]

    def _interstitial(self, file_id: str) -> str:
        return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><form id="download-form" action="{self.server.state.base}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-123">
</form></div></body></html>"""

    def _html(self, page: str, content_type: str = "text/html; charset=utf-8") -> None:
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, st: ServerState) -> None:
        data, start = st.data, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and st.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send_body(st, body)

    def _send_body(self, st: ServerState, body: bytes) -> None:
        with st.lock:
            trickle = st.trickle_s and st.trickle_times > 0
            st.trickle_times -= bool(trickle)
        if trickle:                        # never stalls long enough for the read timeout
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if st.release.wait(st.trickle_s):
                    return
            return
        if st.stall_s:
            self.wfile.write(body[:1000])
            self.wfile.flush()
            st.release.wait(st.stall_s)
            return
        with st.lock:
            cut = st.cut_after is not None and st.cut_times > 0
            st.cut_times -= cut
        if cut:
            self.wfile.write(body[:st.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # client went away: expected here
        pass


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1:<free port> serving 300 kB of seeded random bytes."""
    state = ServerState(data=random.Random(0).randbytes(300_000))
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.state = state
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The Git LFS pointer a repository holds in place of `data` (what a clone without LFS gets)."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest(data)}\n"
            f"size {len(data)}\n").encode()


# ---------------------------------------------------------------------------------------- download

def test_download_ok_with_sha256(server, tmp_path):
    dest = tmp_path / "sub" / "file.zip"
    logs: list[str] = []
    out = download(server.url("/file.zip"), dest, sha256=digest(server.data), log=logs.append,
                   **FAST)
    assert out == dest and dest.read_bytes() == server.data
    assert sha256_file(dest) == digest(server.data)
    assert not dest.with_name("file.zip.part").exists()
    assert len(server.requests) == 1 and server.requests[0]["range"] is None


def test_checksum_mismatch_deletes_and_names_everything(server, tmp_path):
    dest = tmp_path / "file.zip"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        download(server.url("/file.zip"), dest, sha256=wrong, log=lambda m: None, **FAST)
    msg = str(err.value)
    assert "file.zip" in msg and wrong in msg and digest(server.data) in msg
    assert not dest.exists() and not dest.with_name("file.zip.part").exists()


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    server.cut_after = 120_000
    dest = tmp_path / "file.zip"
    logs: list[str] = []
    download(server.url("/file.zip"), dest, sha256=digest(server.data), log=logs.append, **FAST)
    assert dest.read_bytes() == server.data
    assert [r["range"] for r in server.requests] == [None, "bytes=120000-"]
    assert any("retrying" in m for m in logs)


def test_retries_after_500_then_succeeds(server, tmp_path):
    server.fail_first = 2
    dest = tmp_path / "file.zip"
    logs: list[str] = []
    download(server.url("/file.zip"), dest, retries=3, log=logs.append, **FAST)
    assert dest.read_bytes() == server.data
    assert len(server.requests) == 3
    assert sum("HTTP 500" in m for m in logs) == 2


@pytest.mark.parametrize("status, attempts", [(404, 1), (403, 1), (410, 1), (429, 3), (408, 3)])
def test_client_errors_are_final_but_rate_limits_are_retried(server, tmp_path, status, attempts):
    """A 404 (403, 410) gets the same answer next time: one attempt, said so; a 429 or 408 is waited for."""
    server.status = status
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "missing.zip", retries=2, log=lambda m: None, **FAST)
    assert url in str(err.value) and f"HTTP {status}" in str(err.value)
    assert len(server.requests) == attempts
    assert ("(not retried)" in str(err.value)) == (attempts == 1)
    assert not (tmp_path / "missing.zip").exists()


def test_persistent_500_raises_after_retries_naming_url_and_status(server, tmp_path):
    server.fail_first = 10**6
    url = server.url("/file.zip")
    logs: list[str] = []
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "file.zip", retries=2, log=logs.append, **FAST)
    assert url in str(err.value) and "500" in str(err.value)
    assert len(server.requests) == 3 and sum("HTTP 500" in m for m in logs) >= 2
    assert not (tmp_path / "file.zip").exists()


@pytest.mark.parametrize("in_body", [True, False], ids=["stall-in-body", "stall-before-headers"])
def test_stalled_server_times_out(server, tmp_path, in_body):
    server.stall_s, server.stall_in_body = 10, in_body
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        download(server.url("/file.zip"), tmp_path / "file.zip", retries=1, timeout=0.5,
                 backoff=0.01, log=lambda m: None)
    assert time.monotonic() - start < 4
    assert len(server.requests) == 2


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "file.zip"
    dest.with_name("file.zip.part").write_bytes(b"x" * 5000)   # stale partial download
    logs: list[str] = []
    download(server.url("/file.zip"), dest, sha256=digest(server.data), log=logs.append, **FAST)
    assert dest.read_bytes() == server.data
    assert server.requests[0]["range"] == "bytes=5000-"
    assert any("ignored the Range" in m for m in logs)


def test_416_on_complete_part_finishes(server, tmp_path):
    dest = tmp_path / "file.zip"
    dest.with_name("file.zip.part").write_bytes(server.data)
    download(server.url("/file.zip"), dest, sha256=digest(server.data), log=lambda m: None,
             **FAST)
    assert dest.read_bytes() == server.data and len(server.requests) == 1


def test_416_on_oversized_part_restarts(server, tmp_path):
    dest = tmp_path / "file.zip"
    dest.with_name("file.zip.part").write_bytes(server.data + b"junk")
    download(server.url("/file.zip"), dest, sha256=digest(server.data), log=lambda m: None,
             **FAST)
    assert dest.read_bytes() == server.data
    assert [r["range"] for r in server.requests] == [f"bytes={len(server.data) + 4}-", None]


# ---------------------------------------------------------------------------------------- drive

DIRECT = "https://drive.usercontent.google.com/download?id=ABC_-1&export=download&confirm=t"


@pytest.mark.parametrize("url, expected", [
    ("https://drive.google.com/uc?export=download&id=ABC_-1", DIRECT),
    ("https://drive.google.com/open?id=ABC_-1", DIRECT),
    ("https://drive.google.com/file/d/ABC_-1/view?usp=sharing", DIRECT),
    ("https://drive.google.com/file/d/ABC_-1", DIRECT),
    ("https://docs.google.com/uc?export=download&id=ABC_-1", DIRECT),
    ("https://drive.google.com/uc?export=download&id=ABC_-1&resourcekey=0-ld4H3VhRKKiSUOklGnF1Uw",
     DIRECT + "&resourcekey=0-ld4H3VhRKKiSUOklGnF1Uw"),
    ("https://drive.google.com/drive/folders/XYZ", "https://drive.google.com/drive/folders/XYZ"),
    ("https://example.org/uc?export=download&id=A", "https://example.org/uc?export=download&id=A"),
    (DIRECT, DIRECT),
])
def test_drive_url_rewriting(url, expected):
    assert drive_download_url(url) == expected


def test_drive_confirm_url_relative_form_and_legacy_link():
    page = ('<form id="download-form" action="/download" method="get">'
            '<input type="hidden" name="id" value="F"><input type="hidden" name="confirm" '
            'value="t"><input type="hidden" name="uuid" value="U&amp;V"></form>')
    assert (drive_confirm_url(page, "https://drive.usercontent.google.com/download?id=F")
            == "https://drive.usercontent.google.com/download?id=F&confirm=t&uuid=U%26V")
    legacy = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbC&amp;id=F">x</a>'
    assert (drive_confirm_url(legacy, "https://drive.google.com/uc?id=F")
            == "https://drive.google.com/uc?export=download&confirm=AbC&id=F")
    assert drive_confirm_url("<html><form action='/login'></form></html>", "https://x/") is None


def test_drive_interstitial_form_is_followed(server, tmp_path):
    server.drive_interstitial = True
    dest = tmp_path / "file.zip"
    download(server.url("/uc?export=download&id=FILEID"), dest, sha256=digest(server.data),
             log=lambda m: None, **FAST)
    assert dest.read_bytes() == server.data
    second = parse_qs(urlsplit(server.requests[1]["path"]).query)
    assert second == {"id": ["FILEID"], "export": ["download"], "confirm": ["t"],
                      "uuid": ["u-123"]}


def test_unexpected_html_page_is_an_error(server, tmp_path):
    server.html_page = True
    url = server.url("/file.zip")
    with pytest.raises(DownloadError, match="got an HTML page instead of the file") as err:
        download(url, tmp_path / "file.zip", log=lambda m: None, **FAST)
    assert url in str(err.value) and "Quota exceeded" in str(err.value)
    assert len(server.requests) == 1          # not retried: a quota page will not go away
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------- answers that are not the file

def test_git_lfs_pointer_is_refused_saying_what_arrived(server, tmp_path):
    """raw.githubusercontent.com answers an LFS-tracked file with its 130-byte pointer, as text/plain."""
    server.lfs_pointer = True
    url = server.url("/owner/repo/main/data/images.zip")
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "images.zip", log=lambda m: None, **FAST)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'images.zip'}: a Git LFS pointer "), message
    assert f"for a file of {len(server.data)} bytes with sha256 {digest(server.data)}" in message
    assert url in message and "git lfs pull" in message
    assert len(server.requests) == 1 and not list(tmp_path.iterdir())     # not retried, nothing kept


def test_html_page_without_an_html_content_type_is_refused(server, tmp_path):
    server.html_as_binary = True
    url = server.url("/file.zip")
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "file.zip", log=lambda m: None, **FAST)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'file.zip'}: an HTML page (title 'Sign in - Files') arrived"), message
    assert url in message and not list(tmp_path.iterdir())


def test_a_trickling_server_is_cut_and_resumed(server, tmp_path):
    """1 byte every 0.3 s never trips the per-read timeout; under the minimum rate for a while, it is retried."""
    server.trickle_s, server.trickle_times = 0.3, 1
    dest, logs = tmp_path / "file.zip", []
    limits = Limits(min_rate=1000, window_s=1.0, deadline_s=60)
    download(server.url("/file.zip"), dest, sha256=digest(server.data), limits=limits, log=logs.append, **FAST)
    assert dest.read_bytes() == server.data
    assert len(server.requests) == 2 and server.requests[1]["range"].startswith("bytes=")
    assert any("slower than 1000 bytes/s for 1 s" in m and "retrying" in m for m in logs), logs


def test_a_server_that_always_trickles_fails_after_the_retries(server, tmp_path):
    server.trickle_s = 0.3
    url = server.url("/file.zip")
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "file.zip", retries=1, limits=Limits(min_rate=1000, window_s=1.0, deadline_s=60),
                 log=lambda m: None, **FAST)
    message = str(err.value)
    assert message.startswith(f"file.zip: could not download {url}: slower than 1000 bytes/s for 1 s"), message
    assert "gave up after 2 attempts" in message and "file.zip.part" in message and "resumes" in message


def test_a_download_past_its_deadline_fails(server, tmp_path):
    server.trickle_s = 0.3
    url = server.url("/file.zip")
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "file.zip", limits=Limits(min_rate=0, window_s=1.0, deadline_s=1.5),
                 log=lambda m: None, **FAST)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith(f"file.zip: could not download {url}: not finished 1.5 s after it started (download."
                              f"deadline_min)"), message
    assert (tmp_path / "file.zip.part").exists() and not (tmp_path / "file.zip").exists()


# ------------------------------------------------------------------------------------------ offline

def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a server that is down)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unresolvable_host_fails_at_once_with_one_line_saying_what_to_do(tmp_path, monkeypatch):
    """Offline (no DNS), one attempt, and a line naming the file, the URL as configured and the folder."""
    import socket

    tried: list[str] = []

    def offline(host, *args, **kwargs):
        tried.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    url = "https://drive.google.com/uc?export=download&id=0BxeylfSgpk1MZ0hWWkoxb2hMU3c"
    logs: list[str] = []
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "archives" / "labels.zip", log=logs.append, retries=5, backoff=0.01, timeout=5)
    assert tried == ["drive.usercontent.google.com"]                        # not retried
    assert not any("retrying" in m for m in logs), logs
    assert str(err.value) == (
        f"labels.zip: could not download {url}: the host name did not resolve (no network, or a wrong URL?): "
        f"[Errno {socket.EAI_AGAIN}] Temporary failure in name resolution (not retried); download it by hand and "
        f"place it in {(tmp_path / 'archives').resolve()}/, then run again")


def test_a_server_that_is_down_is_retried_then_named_with_the_folder_for_a_copy(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/file.zip"
    logs: list[str] = []
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "file.tmp", by_hand=tmp_path / "weights" / "file.zip", retries=2, log=logs.append,
                 **FAST)
    message = str(err.value)
    assert message.startswith(f"file.zip: could not download {url}: connection failed: "), message
    assert message.endswith(f"(gave up after 3 attempts); download it by hand and place it in "
                            f"{(tmp_path / 'weights').resolve()}/, then run again"), message
    assert "\n" not in message and sum("retrying" in m for m in logs) == 2


def test_download_progress_is_written_to_the_job_log_file(server, tmp_path, monkeypatch):
    """A job's log is a file, where tqdm turns itself off: the progress comes as plain lines."""
    import aesthetic_mtl.data.download as mod
    from aesthetic_mtl.joblog import logging_to

    monkeypatch.setattr(mod, "PROGRESS_EVERY_S", 0.0)              # a line per block received
    log_path = tmp_path / "logs" / "obtain_archives" / "AADB.log"
    with logging_to(log_path) as log:
        download(server.url("/file.zip"), tmp_path / "file.zip", log=log, **FAST)
    lines = log_path.read_text().splitlines()
    assert "file.zip: receiving 293.0 KiB" in lines
    progress = [line for line in lines if re.fullmatch(r"file\.zip: [\d.]+ (B|KiB) of 293\.0 KiB \(\d+%\), .*/s.*", line)]
    assert progress and progress[-1].startswith("file.zip: 293.0 KiB of 293.0 KiB (100%)"), lines


def test_progress_lines_come_every_ten_seconds_with_size_rate_and_time_left():
    from aesthetic_mtl.data.download import _Progress

    now, lines = [0.0], []
    progress = _Progress("big.zip", 1000 * 2**20, 0, lines.append, clock=lambda: now[0])
    for second in range(1, 26):                                      # 10 MiB/s for 25 s
        now[0] = float(second)
        progress.update(second * 10 * 2**20)
    assert lines == ["big.zip: receiving 1000.0 MiB",
                     "big.zip: 100.0 MiB of 1000.0 MiB (10%), 10.0 MiB/s, about 90 s left",
                     "big.zip: 200.0 MiB of 1000.0 MiB (20%), 10.0 MiB/s, about 80 s left"]


OFFLINE_RESOLVER = """
import socket
def _offline(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
socket.getaddrinfo = _offline
"""


def _offline(tmp_path: Path) -> tuple[list[str], dict]:
    """How to run a command with no network: in a network namespace of its own (`unshare -Urn`: the real
    thing), or, where the kernel refuses one, with a resolver that answers no name (a `sitecustomize`)."""
    import os
    import shutil
    import subprocess

    if shutil.which("unshare") and subprocess.run(["unshare", "-Urn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-Urn"], dict(os.environ)
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "sitecustomize.py").write_text(OFFLINE_RESOLVER)
    return [], {**os.environ, "PYTHONPATH": str(tmp_path / "offline")}


@pytest.mark.slow
def test_offline_the_download_rules_say_one_line_each_on_the_console(tmp_path):
    """The paper config with no network: each download rule prints the file, its configured URL and the folder
    where a copy downloaded by hand goes, in one line; the tracebacks are in the jobs' logs; nothing is retried."""
    import subprocess

    import yaml

    workdir = copy_repo(tmp_path / "repo").resolve()
    (workdir / "offline.yaml").write_text("datasets: {EVA: null}\nbackbone: {name: vgg16, weights: imagenet}\n")
    wrap, env = _offline(tmp_path)
    targets = ["resources/AADB/archives.sha256.json", "resources/weights/vgg16.pth"]
    proc = subprocess.run([*wrap, *SNAKEMAKE, *targets, "--keep-going", "--cores", "1", "--configfile",
                           "offline.yaml"], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    console = proc.stdout + proc.stderr
    label_url = yaml.safe_load((workdir / "config.yaml").read_text())["datasets"]["AADB"]["files"][
        "imgListFiles_label.zip"]["url"]
    expected = {"imgListFiles_label.zip": (label_url, workdir / "resources" / "AADB" / "archives"),
                "vgg16-397923af.pth": ("https://download.pytorch.org/models/vgg16-397923af.pth",
                                       workdir / "resources" / "weights")}
    assert proc.returncode != 0 and "Traceback" not in console and "drive.usercontent" not in console, console
    for name, (url, folder) in expected.items():
        lines = [line for line in console.splitlines() if line.startswith(f"{name}: ")]
        assert len(lines) == 1, console
        assert lines[0].startswith(f"{name}: could not download {url}: the host name did not resolve"), lines[0]
        assert lines[0].endswith(f"(not retried); download it by hand and place it in {folder}/, then run again")
    for log in ("obtain_archives/AADB.log", "fetch_weights/vgg16.log"):
        text = (workdir / "logs" / log).read_text()
        assert "Traceback" in text and "retrying" not in text, text


def test_limits_default_to_the_config_schema():
    assert Limits.from_config(None) == Limits.from_config({}) == Limits(min_rate=4 * 1024, window_s=60,
                                                                         deadline_s=24 * 3600)
    assert Limits.from_config({"min_rate_kib_s": 0, "deadline_min": 5}) == Limits(0, 60, 300)


# ------------------------------------------------------------------------------------ obtain_files

def test_obtain_files_records_then_verifies_lock(server, tmp_path):
    files = {"a.zip": {"url": server.url("/a.zip"), "sha256": None}}
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    logs: list[str] = []
    got = obtain_files(files, ["a.zip"], archives, lock, log=logs.append, **FAST)
    assert got == {"a.zip": digest(server.data)}
    assert {k: v["sha256"] for k, v in json.loads(lock.read_text()).items()} == got
    assert any("recorded" in m and "every later use" in m for m in logs)
    # second use: verified against the lock, nothing downloaded
    assert obtain_files(files, ["a.zip"], archives, lock, log=logs.append, **FAST) == got
    assert len(server.requests) == 1
    # tampered archive: error naming the file, file left for the user to inspect
    (archives / "a.zip").write_bytes(b"tampered")
    with pytest.raises(DownloadError) as err:
        obtain_files(files, ["a.zip"], archives, lock, log=logs.append, **FAST)
    assert "a.zip" in str(err.value) and got["a.zip"] in str(err.value)
    assert "left in place" in str(err.value) and (archives / "a.zip").exists()


def test_obtain_files_uses_hand_placed_file_without_download(server, tmp_path):
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    archives.mkdir()
    (archives / "votes.csv").write_bytes(b"image,score\n1,5\n")
    files = {"votes.csv": {"url": server.url("/votes.csv"), "sha256": None},
             "unused.zip": {"url": server.url("/unused.zip"), "sha256": None}}
    got = obtain_files(files, ["votes.csv"], archives, lock, log=lambda m: None, **FAST)
    assert got == {"votes.csv": digest(b"image,score\n1,5\n")}
    assert server.requests == []
    assert {k: v["sha256"] for k, v in json.loads(lock.read_text()).items()} == got


def test_obtain_files_config_digest_mismatch(server, tmp_path):
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    wrong = "f" * 64
    files = {"a.zip": {"url": server.url("/a.zip"), "sha256": wrong}}
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST)
    assert not (archives / "a.zip").exists() and not lock.exists()   # downloaded: deleted
    archives.mkdir(exist_ok=True)
    (archives / "a.zip").write_bytes(server.data)                     # hand-placed: kept
    with pytest.raises(DownloadError, match="left in place"):
        obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST)
    assert (archives / "a.zip").exists()
    # a correct config digest passes and is written to the lock
    files["a.zip"]["sha256"] = digest(server.data).upper()
    assert obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None) == {
        "a.zip": digest(server.data)}


def test_a_bad_first_download_is_not_recorded_in_the_lock(server, tmp_path):
    """sha256: null and a pointer instead of the archive: nothing recorded, so the right file is accepted later."""
    files = {"a.zip": {"url": server.url("/a.zip"), "sha256": None}}
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    server.lfs_pointer = True
    with pytest.raises(DownloadError, match="a Git LFS pointer"):
        obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST)
    assert not lock.exists() and not list(archives.iterdir())
    server.lfs_pointer = False                                   # the right URL, or the server fixed
    assert obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST) == {"a.zip": digest(server.data)}
    entry = json.loads(lock.read_text())["a.zip"]
    assert entry["sha256"] == digest(server.data) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["recorded"])


def test_a_hand_placed_lfs_pointer_is_refused_not_recorded(tmp_path):
    """A repository cloned without git-lfs holds pointers where the archives should be."""
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    archives.mkdir()
    (archives / "a.zip").write_bytes(lfs_pointer(b"the real archive"))
    with pytest.raises(DownloadError) as err:
        obtain_files({"a.zip": {"url": "http://127.0.0.1:9/a.zip", "sha256": None}}, ["a.zip"], archives, lock,
                     log=lambda m: None)
    assert str(err.value).startswith(f"{archives / 'a.zip'}: a Git LFS pointer (")
    assert "placed by hand" in str(err.value)
    assert not lock.exists() and (archives / "a.zip").exists()          # the user's file is not deleted


def test_a_lock_mismatch_says_where_the_digest_came_from_and_how_to_reset(server, tmp_path):
    """A lock poisoned by an earlier bad download: the message names the lock, when it was recorded, the fix."""
    files = {"a.zip": {"url": server.url("/a.zip"), "sha256": None}}
    archives, lock = tmp_path / "archives", tmp_path / "archives.lock"
    poisoned = digest(lfs_pointer(server.data))
    lock.write_text(json.dumps({"a.zip": poisoned}))                     # the old format: name -> sha256
    with pytest.raises(DownloadError) as err:
        obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{archives / 'a.zip'}: sha256 {digest(server.data)} does not match {poisoned}, "
                              f"recorded in the lock file {lock} at its first use (date not recorded)"), message
    assert f"remove the entry 'a.zip' from {lock}" in message and "delete the file to download it again" in message
    assert (archives / "a.zip").read_bytes() == server.data              # kept: no second download needed
    reset = json.loads(lock.read_text())
    del reset["a.zip"]
    lock.write_text(json.dumps(reset))
    assert obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST) == {"a.zip": digest(server.data)}
    assert len(server.requests) == 1
    # a recorded date is named
    lock.write_text(json.dumps({"a.zip": {"sha256": poisoned, "recorded": "2025-01-02T03:04:05Z"}}))
    with pytest.raises(DownloadError, match=r"recorded in the lock file .* on 2025-01-02T03:04:05Z at its first use"):
        obtain_files(files, ["a.zip"], archives, lock, log=lambda m: None, **FAST)


def test_obtain_files_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match="not listed"):
        obtain_files({"a.zip": {"url": "http://127.0.0.1:9/a", "sha256": None}}, ["b.zip"],
                     tmp_path, tmp_path / "lock", log=lambda m: None)


# ------------------------------------------------------------------------------------- extraction

def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


NESTED = {"labels/train.txt": b"a 1\nb 2\n", "images/a/1.jpg": b"\xff\xd8" + b"1" * 500,
          "images/b/2.jpg": b"\xff\xd8" + b"2" * 700, "images/empty/": b"", "README": b"hi"}


def test_safe_extract_nested_archive(tmp_path):
    archive = make_zip(tmp_path / "data.zip", NESTED)
    dest = tmp_path / "raw"
    for _ in range(2):                      # idempotent: a rerun replaces files in place
        got = safe_extract_zip(archive, dest)
        assert sorted(p.relative_to(dest).as_posix() for p in got) == sorted(
            n for n in NESTED if not n.endswith("/"))
        for name, data in NESTED.items():
            target = dest / name
            assert target.is_dir() if name.endswith("/") else target.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip", "raw"]   # no staging left


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs.txt", "C:\\win.txt", "a/../../evil.txt"])
def test_safe_extract_refuses_traversal(tmp_path, bad):
    archive = make_zip(tmp_path / "bad.zip", {"ok.txt": b"fine", bad: b"evil"})
    dest = tmp_path / "out" / "raw"
    with pytest.raises(DataError) as err:
        safe_extract_zip(archive, dest)
    assert "bad.zip" in str(err.value) and repr(bad) in str(err.value)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_symlink(tmp_path):
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract_zip(tmp_path / "link.zip", tmp_path / "raw")


def test_safe_extract_refuses_zip_bomb(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("zeros.bin", bytes(50 * 2**20))
    with pytest.raises(DataError, match="compression ratio") as err:
        safe_extract_zip(archive, tmp_path / "raw", max_ratio=50)
    assert "bomb.zip" in str(err.value) and "zeros.bin" in str(err.value)
    with pytest.raises(DataError, match="declares"):
        safe_extract_zip(make_zip(tmp_path / "big.zip", NESTED), tmp_path / "raw",
                         max_total_bytes=100)
    assert not (tmp_path / "raw").exists()


def test_a_split_archive_with_a_pointer_for_a_part_is_a_data_error(tmp_path):
    """The first part replaced by its LFS pointer: zipfile seeks before the file's start (EINVAL)."""
    parts = split_zip(tmp_path)
    parts[0].write_bytes(lfs_pointer(parts[0].read_bytes()))
    joined = join_parts(parts, tmp_path / "EVA_together.zip")
    with pytest.raises(DataError) as err:
        safe_extract_zip(joined, tmp_path / "raw")
    message = str(err.value)
    assert message.startswith(f"{joined}: corrupt or incomplete zip archive"), message
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("*"))
    assert not [p for p in tmp_path.iterdir() if ".extract." in p.name]


def test_safe_extract_member_larger_than_declared(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.bin", b"a" * 1000)
    raw = bytearray(buf.getvalue())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")   # declared size: 10 bytes
    (tmp_path / "liar.zip").write_bytes(raw)
    with pytest.raises(DataError, match="liar.zip"):
        safe_extract_zip(tmp_path / "liar.zip", tmp_path / "raw")
    assert not (tmp_path / "raw" / "big.bin").exists()


# ------------------------------------------------------------------------------------- join_parts

def split_zip(tmp_path: Path) -> list[Path]:
    data = make_zip(tmp_path / "whole.zip", NESTED).read_bytes()
    (tmp_path / "whole.zip").unlink()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for i in range(3):
        part = tmp_path / f"EVA_together.zip.{i + 1:03d}"
        part.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append(part)
    return parts


def test_join_parts_round_trip(tmp_path):
    parts = split_zip(tmp_path)
    joined = join_parts(parts, tmp_path / "EVA_together.zip")
    assert joined.read_bytes() == b"".join(p.read_bytes() for p in parts)
    safe_extract_zip(joined, tmp_path / "raw")
    assert (tmp_path / "raw" / "images" / "b" / "2.jpg").read_bytes() == NESTED["images/b/2.jpg"]


def test_join_parts_missing_or_out_of_order(tmp_path):
    parts = split_zip(tmp_path)
    parts[1].unlink()
    with pytest.raises(DataError, match="missing") as err:
        join_parts(parts, tmp_path / "EVA_together.zip")
    assert "EVA_together.zip.002" in str(err.value)
    with pytest.raises(DataError, match="consecutively"):
        join_parts([parts[0], parts[2]], tmp_path / "EVA_together.zip")
    assert not (tmp_path / "EVA_together.zip").exists()


# ------------------------------------------------------------------------------------- a full disk

def _enospc_after(limit: int):
    """An `open` whose files take `limit` bytes in all, then raise ENOSPC (what a full disk does)."""
    import builtins
    import errno
    import os

    real_open, room = builtins.open, {"left": limit}

    class Full(io.FileIO):
        def write(self, data):
            n = min(len(data), room["left"])
            room["left"] -= n
            if n < len(data):
                super().write(bytes(data)[:n])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def fake_open(file, mode="r", *args, **kwargs):
        if "b" in mode and ("w" in mode or "a" in mode):
            return Full(file, mode.replace("b", ""))
        return real_open(file, mode, *args, **kwargs)

    return fake_open


def test_download_on_a_full_disk_names_the_file_and_keeps_the_part(server, tmp_path, monkeypatch):
    import aesthetic_mtl.data.download as mod
    from aesthetic_mtl.errors import OutputError

    dest = tmp_path / "archives" / "file.zip"
    monkeypatch.setattr(mod, "open", _enospc_after(100_000), raising=False)
    with pytest.raises(OutputError) as err:
        download(server.url("/file.zip"), dest, log=lambda m: None, **FAST)
    part = dest.with_name("file.zip.part")
    assert str(err.value) == (
        f"{dest}: not downloaded: no space left on device in {dest.parent} after 100000 bytes; nothing was left "
        f"under this name, and the bytes so far stay in {part}: free space there and run again to resume (or "
        f"delete {part.name} to start over)")
    assert not dest.exists() and part.read_bytes() == server.data[:100_000]
    assert len(server.requests) == 1                       # a full disk is not retried
    monkeypatch.undo()                                     # space freed: the next run resumes
    download(server.url("/file.zip"), dest, sha256=digest(server.data), log=lambda m: None, **FAST)
    assert dest.read_bytes() == server.data and server.requests[1]["range"] == "bytes=100000-"


def test_extraction_on_a_full_disk_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    import aesthetic_mtl.data.archives as mod
    from aesthetic_mtl.errors import OutputError

    archive = make_zip(tmp_path / "data.zip", {**NESTED, "images/big.bin": random.Random(1).randbytes(50_000)})
    dest = tmp_path / "raw" / "images"
    monkeypatch.setattr(mod, "open", _enospc_after(20_000), raising=False)
    with pytest.raises(OutputError) as err:
        safe_extract_zip(archive, dest)
    assert str(err.value) == (
        f"{dest}: not extracted: no space left on device in {dest.parent} while writing 'images/big.bin' of "
        f"{archive}; nothing was left under this name (the partial extraction was removed): free space there "
        f"and run again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip", "raw"]      # no staging folder left
    assert not any(dest.rglob("*"))


FULL_TMPFS = r"""
import random, subprocess, sys, zipfile
from pathlib import Path
from aesthetic_mtl.data import image_cache as _image_cache, release, scaling as _scaling, splits as _splits
from aesthetic_mtl.data.download import download
from aesthetic_mtl.errors import OutputError

url, mount, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
dest = mount / "PHOTOS" / "archives" / "images.zip"
try:
    download(url, dest, retries=0, backoff=0.01, timeout=5, log=lambda m: None)
    print("UNEXPECTED: downloaded")
except OutputError as e:
    print("DOWNLOAD ERROR:", e)
print("LEFT:", sorted(p.name for p in dest.parent.iterdir()))
subprocess.run(["mount", "-o", "remount,size=600k", "tmpfs", str(mount)], check=True)    # space freed
download(url, dest, retries=0, backoff=0.01, timeout=5, log=lambda m: None)
print("RESUMED:", dest.stat().st_size)
dest.unlink()
# a table release whose photos do not fit: extracted into the small file system
(work / "labels.csv").write_text("image,rating\nphotos/1.jpg,3\n")
with zipfile.ZipFile(work / "images.zip", "w") as zf:
    zf.writestr("photos/1.jpg", random.Random(1).randbytes(900_000))
ds = {"format": "table", "source": "official", "table": "labels.csv",
      "files": {"labels.csv": {"url": url}, "images.zip": {"url": url}}}
try:
    release.extract(ds, work, mount / "PHOTOS" / "raw", log=lambda m: None)
    print("UNEXPECTED: extracted")
except OutputError as e:
    print("EXTRACT ERROR:", e)
print("PHOTOS LEFT:", sorted(p.name for p in (mount / "PHOTOS").iterdir()))
"""


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs unprivileged user + mount namespaces")
def test_download_and_extract_on_a_really_full_tmpfs(server, tmp_path):
    """A real full file system: the download keeps its .part and resumes; extraction leaves nothing."""
    import os
    import subprocess
    import sys

    (tmp_path / "script.py").write_text(FULL_TMPFS)
    (tmp_path / "work").mkdir()
    mount = tmp_path / "small"
    mount.mkdir()
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    cmd = (f"mount -t tmpfs -o size=64k tmpfs {mount} && {sys.executable} {tmp_path / 'script.py'} "
           f"{server.url('/file.zip')} {mount} {tmp_path / 'work'}")
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    dest = mount / "PHOTOS" / "archives" / "images.zip"
    error = next(line for line in lines if line.startswith("DOWNLOAD ERROR:"))
    assert error.startswith(f"DOWNLOAD ERROR: {dest}: not downloaded: no space left on device in {dest.parent} "
                            f"after "), proc.stdout
    assert "stay in" in error and "run again to resume" in error
    assert "LEFT: ['images.zip.part']" in lines, proc.stdout
    assert f"RESUMED: {len(server.data)}" in lines, proc.stdout
    assert server.requests[1]["range"].startswith("bytes=") and server.requests[1]["range"] != "bytes=0-"
    images = mount / "PHOTOS" / "raw.partial" / "images"
    assert (f"EXTRACT ERROR: {images}: not extracted: no space left on device in {images.parent} while writing "
            f"'photos/1.jpg' of {tmp_path / 'work' / 'images.zip'}; nothing was left under this name (the partial "
            f"extraction was removed): free space there and run again") in lines, proc.stdout
    assert "PHOTOS LEFT: ['archives']" in lines, proc.stdout              # no raw, no raw.partial
