"""The workflow, end to end, through a real SLURM cluster with profiles/slurm.

Needs a running cluster (`sudo .ci/slurm-up.sh`, one node with a fake GPU); skipped when `sinfo`
does not answer, so a plain `make test` on a workstation skips it. What it checks:

* the run succeeds and leaves nothing to do (every output exists: `--summary` all "ok");
* every non-local job went through SLURM: each "submitted with SLURM jobid" line of Snakemake's log is
  a job that `scontrol show job` (or `sacct`) knows, COMPLETED, run in our working directory, for the
  rule the log names;
* the GPU rules asked SLURM for a GPU (TresPerJob gres/gpu), and no other rule did.

The workflow it runs is `pipeline_invocation()`: change that one function to test another workflow.
Settings (environment):
  AESTHETIC_MTL_SLURM_WORKFLOW   a folder with a Snakefile to run instead (checks the cluster itself)
  AESTHETIC_MTL_SLURM_TMP        base folder for the working copy; must be shared with the compute
                                 nodes on a multi-node cluster (default: pytest's tmp_path)
  AESTHETIC_MTL_SLURM_PARTITION  partition to use instead of the profile's default one
  AESTHETIC_MTL_SLURM_TIMEOUT    seconds for the whole run (default 1800)
  AESTHETIC_MTL_SLURM_REQUIRED=1 fail instead of skipping when there is no cluster (CI)
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
PROFILE = "profiles/slurm"
GPU_RULES = frozenset({"feature_cache", "train_AADB", "train_EVA"})  # training: one job per dataset and seed
# Not copied into the working copy: environments, VCS, earlier results, caches.
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", "resources", "logs", "benchmarks", ".snakemake", "__pycache__",
    ".pytest_cache", "*.egg-info", "build", "_work", "report.html")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", re.M)
RULE_BLOCK = re.compile(r"^(local)?rule (\w+):$", re.M)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What to run: a Snakefile, Snakemake arguments and targets, relative to a working copy."""

    source: Path                      # folder copied to the working directory
    snakefile: str                    # relative to the copy
    args: tuple[str, ...] = ()        # e.g. --configfile ...
    targets: tuple[str, ...] = ()
    gpu_rules: frozenset[str] = GPU_RULES
    all_gpu_rules_must_run: bool = True


def pipeline_invocation() -> Pipeline:
    """THE workflow this test submits to SLURM: the repository's Snakefile on the tiny test config."""
    override = os.environ.get("AESTHETIC_MTL_SLURM_WORKFLOW")
    if override:  # any workflow folder (with a Snakefile); its GPU rules use the same names
        return Pipeline(source=Path(override).resolve(), snakefile="Snakefile",
                        all_gpu_rules_must_run=False)
    return Pipeline(source=REPO, snakefile="Snakefile",
                    args=("--configfile", ".test/config/config.yaml"), targets=("all",))


# ---- the cluster ---------------------------------------------------------------------------------

def _run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def cluster_problem() -> str | None:
    """Why there is no usable SLURM cluster here (None: there is one)."""
    if shutil.which("sinfo") is None:
        return "no SLURM here: `sinfo` not found (start a test cluster with: sudo .ci/slurm-up.sh)"
    try:
        out = _run(["sinfo", "-h", "-o", "%t"], timeout=15)
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 15 s (is slurmctld running? sudo .ci/slurm-up.sh)"
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no message"])[-1]
        return f"no SLURM cluster running: `sinfo` failed ({why}); start one with sudo .ci/slurm-up.sh"
    if not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in out.stdout.split()):
        return f"no usable SLURM node (node states: {out.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> dict:
    problem = cluster_problem()
    if problem and os.environ.get("AESTHETIC_MTL_SLURM_REQUIRED") == "1":
        pytest.fail(problem)  # `make test-slurm`: a missing cluster is an error, not a skip
    if problem:
        pytest.skip(problem)
    config = _run(["scontrol", "show", "config"]).stdout
    accounting = re.search(r"^AccountingStorageType\s*=\s*(\S+)", config, re.M)
    partitions = _run(["sinfo", "-h", "-o", "%R"]).stdout.split()
    return {"accounting": accounting.group(1) if accounting else "unknown", "partitions": partitions}


def cluster_flags(cluster: dict, profile: Path) -> list[str]:
    """Options for this test cluster on top of the profile (not site settings: those live there)."""
    flags = [
        # First status poll after 10 s, not 40 s; the plugin then adds 10 s per poll until a job ends.
        # A job needs ~5-7 s just to start Snakemake inside it, so 10 s catches short jobs at the
        # first poll (a tiny chain of 4 jobs: 52-73 s with 10, 88-97 s with 5 or 6).
        "--slurm-init-seconds-before-status-checks", "10",
        "--slurm-keep-successful-logs",                    # the test reads every job's SLURM log
        "--slurm-no-account",                              # test clusters have no accounts
        "--retries", "0",                                  # a failing job fails the test now
    ]
    if cluster["accounting"].endswith("/none"):
        # No slurmdbd: sacct cannot answer, poll squeue (MinJobAge must be >= 3 x 10 s).
        flags += ["--slurm-status-command", "squeue"]
    partition = os.environ.get("AESTHETIC_MTL_SLURM_PARTITION")
    defaults = yaml.safe_load(profile.read_text()).get("default-resources", {})
    if partition is None and defaults.get("slurm_partition", cluster["partitions"][0]) not in cluster["partitions"]:
        pytest.fail(f"the profile's partition {defaults.get('slurm_partition')!r} is not on this cluster "
                    f"(partitions: {cluster['partitions']}); set AESTHETIC_MTL_SLURM_PARTITION")
    if partition:  # --default-resources replaces the profile's block: repeat the rest of it
        defaults = {**defaults, "slurm_partition": partition}
        flags += ["--default-resources", *(f"{k}={v}" for k, v in defaults.items())]
    return flags


# ---- running it ----------------------------------------------------------------------------------

def working_copy(pipe: Pipeline, tmp_path: Path) -> Path:
    base = os.environ.get("AESTHETIC_MTL_SLURM_TMP")
    parent = Path(tempfile.mkdtemp(prefix="slurm-run-", dir=base)) if base else tmp_path
    work = parent / "work"
    shutil.copytree(pipe.source, work, ignore=COPY_IGNORE, symlinks=True)
    if not (work / PROFILE).is_dir():  # an outside workflow: bring the profile along
        shutil.copytree(REPO / PROFILE, work / PROFILE)
    return work


def snakemake(work: Path, pipe: Pipeline, *extra: str) -> list[str]:
    # targets first: options like --configfile take several values and would swallow them
    return [sys.executable, "-m", "snakemake", *pipe.targets, "--snakefile", str(work / pipe.snakefile),
            "--profile", str(work / PROFILE), *extra, *pipe.args]


def run_logged(cmd: list[str], cwd: Path, log: Path, timeout: float) -> int:
    """Run Snakemake with its output in `log`; on timeout stop it and cancel its SLURM jobs."""
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # the plugin can hang on TERM: make sure
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            ids = [m.group(2) for m in SUBMITTED.finditer(log.read_text())]
            if ids:
                _run(["scancel", *ids])
            pytest.fail(f"Snakemake did not finish within {timeout} s (jobs {ids} cancelled); "
                        f"log {log}:\n{tail(log)}")


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


def job_record(jobid: str, accounting: str) -> dict[str, str]:
    """SLURM's view of one job: scontrol while slurmctld remembers it (MinJobAge), else sacct."""
    out = _run(["scontrol", "show", "job", "-o", jobid])
    if out.returncode == 0 and f"JobId={jobid}" in out.stdout:
        rec = dict(re.findall(r"(\w+)=(\S*)", out.stdout))
        rec["gpu_request"] = " ".join(rec.get(k, "") for k in ("TresPerJob", "TresPerNode", "TresPerTask"))
        return rec
    if not accounting.endswith("/none"):
        out = _run(["sacct", "-X", "-n", "-P", "-j", jobid, "-o", "JobID,State,WorkDir,ReqTRES,Comment"])
        if out.returncode == 0 and out.stdout.strip():
            jid, state, workdir, req, comment = out.stdout.splitlines()[0].split("|", 4)
            return {"JobId": jid, "JobState": state, "WorkDir": workdir, "Comment": comment,
                    "gpu_request": req}
    return {}


def failed_job_logs(text: str, accounting: str) -> str:
    """The ends of the SLURM logs of the jobs that did not complete (the job's own error is there)."""
    parts = []
    for _, jobid, slurm_log in SUBMITTED.findall(text):
        state = job_record(jobid, accounting).get("JobState", "?")
        if state != "COMPLETED":
            parts.append(f"\n---- SLURM job {jobid} {state}: {slurm_log}\n{tail(Path(slurm_log), 30)}")
    return "".join(parts)


def requested_gpu(rec: dict[str, str]) -> bool:
    return re.search(r"gres[:/]gpu", rec.get("gpu_request", "")) is not None


# ---- the test ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def undisturbed(slurm_cluster, tmp_path_factory) -> dict:
    """One complete run of the pipeline through SLURM: what the other tests compare against."""
    pipe = pipeline_invocation()
    if not (pipe.source / pipe.snakefile).is_file():
        pytest.fail(f"no workflow to run: {pipe.source / pipe.snakefile} does not exist")
    work = working_copy(pipe, tmp_path_factory.mktemp("slurm"))
    flags = cluster_flags(slurm_cluster, work / PROFILE / "config.yaml")
    log = work / "snakemake-slurm.log"
    timeout = float(os.environ.get("AESTHETIC_MTL_SLURM_TIMEOUT", 1800))

    t0 = time.monotonic()
    rc = run_logged(snakemake(work, pipe, *flags), work, log, timeout)
    elapsed = time.monotonic() - t0
    text = log.read_text(errors="replace")
    assert rc == 0, (f"Snakemake failed (exit {rc}) after {elapsed:.0f} s; log {log}:\n{tail(log)}"
                     + failed_job_logs(text, slurm_cluster["accounting"]))
    return {"pipe": pipe, "work": work, "flags": flags, "log": log, "text": text, "elapsed": elapsed}


def test_workflow_runs_through_slurm(slurm_cluster, undisturbed):
    pipe, work, log, text, elapsed = (undisturbed[k] for k in ("pipe", "work", "log", "text", "elapsed"))

    # 1. every output exists and is up to date
    summary = _run(snakemake(work, pipe, "--summary"), cwd=work, timeout=300)
    assert summary.returncode == 0, summary.stderr
    rows = [line.split("\t") for line in summary.stdout.splitlines() if "\t" in line]
    header, rows = rows[0], rows[1:]
    status = header.index("status")
    assert rows, f"--summary lists no outputs:\n{summary.stdout}"
    not_ok = [(r[0], r[status]) for r in rows if r[status] != "ok" or not (work / r[0]).exists()]
    assert not not_ok, f"outputs missing or outdated after the run: {not_ok}"

    # 2. every non-local job went through SLURM, as the rule the log names
    submitted = SUBMITTED.findall(text)
    remote_rules = [rule for local, rule in RULE_BLOCK.findall(text) if not local]
    assert submitted, f"no job was submitted to SLURM; log {log}:\n{tail(log)}"
    assert len(submitted) == len(remote_rules), (
        f"{len(remote_rules)} non-local jobs but {len(submitted)} SLURM submissions")
    jobs = []
    for _snakemake_id, jobid, slurm_log in submitted:
        rule = re.search(r"/rule_(\w+)/", slurm_log)
        assert rule, f"cannot tell the rule of SLURM job {jobid} from its log path {slurm_log}"
        rec = job_record(jobid, slurm_cluster["accounting"])
        assert rec, f"SLURM does not know job {jobid} (MinJobAge too short, no accounting?)"
        assert rec["JobState"] == "COMPLETED", (jobid, rec["JobState"], tail(Path(slurm_log)))
        assert Path(rec["WorkDir"]).resolve() == work.resolve(), (jobid, rec["WorkDir"])
        # the plugin sets the job comment to rule_<rule>[_wildcards_<values>]
        comment = rec.get("Comment", "")
        assert comment == f"rule_{rule.group(1)}" or comment.startswith(f"rule_{rule.group(1)}_wildcards_"), (
            f"SLURM job {jobid}: comment {comment!r}, but the log names rule {rule.group(1)}")
        assert Path(slurm_log).is_file(), f"SLURM log of job {jobid} missing: {slurm_log}"
        jobs.append((rule.group(1), jobid, rec))

    # 3. GPU rules asked for a GPU, the others did not
    wrong = [(r, j, rec["gpu_request"]) for r, j, rec in jobs if requested_gpu(rec) != (r in pipe.gpu_rules)]
    assert not wrong, f"jobs whose GPU request does not match their rule (rule, jobid, request): {wrong}"
    gpu_rules_run = {r for r, _, _ in jobs if r in pipe.gpu_rules}
    assert gpu_rules_run, "no GPU rule ran through SLURM"
    if pipe.all_gpu_rules_must_run:
        assert gpu_rules_run == pipe.gpu_rules, f"GPU rules never submitted: {pipe.gpu_rules - gpu_rules_run}"

    print(f"\n{len(jobs)} SLURM jobs ({len([1 for r, _, _ in jobs if r in pipe.gpu_rules])} with a GPU), "
          f"rules {sorted({r for r, _, _ in jobs})}, in {elapsed:.0f} s; workdir {work}")


# ---- a training job cancelled mid-run --------------------------------------------------------------

CRASH_ENV = "AESTHETIC_MTL_CRASH_AFTER"   # aesthetic_mtl.faults.crash_point: `hold=` parks a job at a step


def wait_for(condition, what: str, proc: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    """Poll `condition` every 0.2 s until it holds; fail naming `what` if Snakemake ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"Snakemake ended (exit {proc.returncode}) before {what}; log {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; log {log}:\n{tail(log)}")
        time.sleep(0.2)


def train_jobs(log: Path) -> dict[str, str]:
    """SLURM job id -> rule of every training job Snakemake submitted so far."""
    text = log.read_text(errors="replace")
    found = {jobid: re.search(r"/rule_(\w+)/", path) for _, jobid, path in SUBMITTED.findall(text)}
    return {j: m.group(1) for j, m in found.items() if m and m.group(1).startswith("train_")}


def running(jobid: str) -> bool:
    out = _run(["squeue", "-h", "-j", jobid, "-o", "%T"])
    return out.returncode == 0 and out.stdout.strip() in ("RUNNING", "COMPLETING")


def test_cancelled_training_job_is_redone_alone(slurm_cluster, undisturbed, tmp_path):
    """`scancel` of a training job mid-stage-2: Snakemake reports the failed job, `--rerun-incomplete`
    redoes that job (and what depends on it) only, and the metrics equal the undisturbed run's.

    Both training jobs stop at their first stage-2 step (test hook) until a release file appears: the
    first is released and completes, the second is cancelled while it waits (one GPU on the test node,
    so SLURM runs them one after the other).
    """
    pipe = undisturbed["pipe"]
    if pipe.source != REPO:
        pytest.skip("checks this repository's workflow (AESTHETIC_MTL_SLURM_WORKFLOW is set)")
    work = working_copy(pipe, tmp_path)
    release, held = work / "release", work / "release.held"
    log = work / "cancelled.log"
    env = {**{k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}, CRASH_ENV: f"stage2:1:hold={release}"}
    with log.open("w") as out:
        proc = subprocess.Popen(snakemake(work, pipe, *undisturbed["flags"]), cwd=work, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(held.exists, "the first training job reached stage 2", proc, log)
        first = next(j for j in train_jobs(log) if running(j))
        held.unlink()
        release.touch()
        wait_for(lambda: not running(first), f"training job {first} finished", proc, log)
        release.unlink()  # before the next training job can reach its stage 2 (its start-up takes seconds)
        held.unlink(missing_ok=True)  # the first job's later settings passed the hold point too
        wait_for(held.exists, "the second training job reached stage 2", proc, log)
        second = next(j for j in train_jobs(log) if running(j))
        assert second != first
        assert _run(["scancel", second]).returncode == 0
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        release.touch()  # never leave a job waiting
    jobs = train_jobs(log)
    text = log.read_text(errors="replace")
    assert rc != 0, f"Snakemake did not report the cancelled job {second}; log {log}:\n{tail(log)}"
    assert f"Error in rule {jobs[second]}" in text, tail(log)
    print(f"\ncancelled SLURM job {second} ({jobs[second]}) after {jobs[first]} ({first}) completed; "
          f"Snakemake exit {rc}")

    # the rerun redoes the cancelled job only (and what reads its outputs), then matches the undisturbed run
    rerun_log = work / "rerun.log"
    rc = run_logged(snakemake(work, pipe, *undisturbed["flags"], "--rerun-incomplete"), work, rerun_log, 1800)
    assert rc == 0, f"rerun failed (exit {rc}); log {rerun_log}:\n{tail(rerun_log)}"
    redone = sorted(train_jobs(rerun_log).values())
    assert redone == [jobs[second]], f"the rerun trained {redone}, expected only {jobs[second]}"
    metrics = (work / "results" / "metrics.tsv").read_text()
    assert metrics == (undisturbed["work"] / "results" / "metrics.tsv").read_text(), \
        "metrics after cancel + rerun differ from the undisturbed run"
    print(f"rerun trained {redone}; metrics.tsv identical to the undisturbed run's")
