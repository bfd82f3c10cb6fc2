"""Atomic outputs under kill -9, the crash test hook, and the provenance every output records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from aesthetic_mtl import files
from aesthetic_mtl import provenance as provenance_module
from aesthetic_mtl.faults import CRASH_ENV
from aesthetic_mtl.files import atomic_path, write_text
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.provenance import provenance, write_provenance

WRITER = """
import sys
from aesthetic_mtl.files import atomic_path
from aesthetic_mtl.faults import crash_point
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of a table")
    crash_point("write", 1)
print("survived")
"""


def _write_then_maybe_die(path, crash: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run([sys.executable, "-c", WRITER, str(path)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_kill_9_mid_write_leaves_no_file_and_the_rerun_cleans_up(tmp_path):
    out = tmp_path / "table.tsv"
    proc = _write_then_maybe_die(out, "write:1")
    assert proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout
    assert not out.exists()                                   # never half-written at its final name
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".table.tsv.")   # the killed writer's temp
    (tmp_path / ".other.tsv.abcd1234.tmp").write_text("someone else's")
    (tmp_path / ".table.tsv.keep").write_text("not a temp of atomic_path")
    write_text(out, "complete\n")                             # the rerun
    assert out.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tsv.abcd1234.tmp", ".table.tsv.keep",
                                                          "table.tsv"]


@pytest.mark.parametrize("spec", [None, "", "write:2", "other:1"])
def test_crash_hook_is_inert_unless_it_names_this_step_and_count(tmp_path, spec):
    proc = _write_then_maybe_die(tmp_path / "t.tsv", spec)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr
    assert (tmp_path / "t.tsv").read_text() == "half of a table"


def test_outputs_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    write_text(tmp_path / "shared.tsv", "x\n")
    assert (tmp_path / "shared.tsv").stat().st_mode & 0o777 == 0o666 & ~files._UMASK


def test_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.npy", suffix=".npy") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_rule_logs_open_with_code_and_package_versions(tmp_path):
    log_path = tmp_path / "logs" / "rule.log"
    with logging_to(log_path) as log:
        log("working")
    lines = log_path.read_text().splitlines()
    prov = provenance()
    assert lines[0].startswith(f"# aesthetic-mtl {prov['code_version']} | python {prov['python']}")
    assert lines[1].startswith("# packages: ") and f"torch {prov['packages']['torch']}" in lines[1]
    assert lines[2] == "working"


JOB = """
import sys
from aesthetic_mtl.errors import DownloadError
from aesthetic_mtl.joblog import logging_to
with logging_to(sys.argv[1]) as log:
    log("working")
    if sys.argv[2] == "error":
        raise DownloadError("x.zip: could not download https://example.org/x.zip: offline; download it by hand "
                            "and place it in /data/archives/, then run again")
    {}["missing key"]
"""


@pytest.mark.parametrize("kind", ["error", "bug"])
def test_a_failed_job_says_one_line_on_the_console_and_keeps_the_traceback_in_its_log(tmp_path, kind):
    """What a rule's script prints when it fails: its message, not chained tracebacks (those go to the log)."""
    log_path = tmp_path / "logs" / "rule.log"
    proc = subprocess.run([sys.executable, "-c", JOB, str(log_path), kind], capture_output=True, text=True,
                          timeout=120)
    expected = ("x.zip: could not download https://example.org/x.zip: offline; download it by hand and place it "
                "in /data/archives/, then run again" if kind == "error" else
                f"KeyError: 'missing key' (traceback in {log_path})")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [expected], proc.stderr
    log = log_path.read_text()
    assert "working" in log and "Traceback (most recent call last)" in log and log.splitlines()[-1].endswith(
        expected.split(" (traceback in")[0])


def test_provenance_record_holds_code_version_packages_and_config(tmp_path):
    config = {"training": {"seeds": [1, 2]}, "backbone": {"name": "vgg16"}}
    write_provenance(tmp_path / "metrics.provenance.json", config)
    record = json.loads((tmp_path / "metrics.provenance.json").read_text())
    assert record["config"] == config
    assert record["code_version"] == provenance_module.code_version() and record["code_version"]
    assert {"torch", "numpy", "pandas", "pillow"} <= set(record["packages"])
    write_provenance(tmp_path / "again.json", config)             # same inputs, same bytes
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "metrics.provenance.json").read_bytes()
