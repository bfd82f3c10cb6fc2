"""README.md and docs/*.md: every command in them runs somewhere, and every link, file and module they name exists.

A command is a line of a ``` (or ```sh) block, continuation lines joined and comments dropped; ```text, ```yaml
and ```python blocks are not commands. Each command is covered in one of these ways:

- RUN_BY: a named test runs it for real (the test file must define the named function or fixture);
- `make <target>`: `make -n <target>` plans it here (fast), and MAKE_RUN_BY says where it runs for real; a target
  run nowhere (`make demo`: minutes on a CPU) has its recipe's snakemake commands planned here instead;
- every other `snakemake` command is planned here with `-n` (slow: ~10 s each), in a copy of the repository with
  an empty `data/photos/labels.csv` for the own-photos overlay. A command that is only planned says in its
  comment what it needs that the tests lack ("needs the network", "needs SLURM", ...);
- PLANNED_ONLY_WITHOUT: a command that cannot even be planned here, planned without the named arguments.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_repo, job_counts
from test_readme_scoring import scoring_blocks

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"", "sh", "bash", "shell", "console"}

# Blocks in a shell fence that are files, not commands: (document, first line of the block).
NOT_COMMANDS = {("docs/deploy.md", "# workflow/Snakefile")}
# Documents that say in their text, statement by statement, what is tested and what is not (no "needs" comments).
STATED_IN_TEXT = {"docs/deploy.md"}

# Commands a test runs for real (README's scoring commands: tests/test_readme_scoring.py, read from README itself).
RUN_BY = {
    "snakemake --cores 2 --configfile .test/config/config.yaml tests/configs/table.yaml":
        "tests/test_format_table_workflow.py::table_run",
    "snakemake --cores 2 --configfile .test/config/config.yaml --report report.zip":
        "tests/test_deploy.py::test_the_workflow_deployed_as_a_module_runs_the_tiny_config_to_its_report",
    "pip wheel --no-deps -w ~/wheels /path/to/aesthetic-mtl": "tests/test_deploy.py::wheel",
    "pip install 'aesthetic_mtl-0.1.0-py3-none-any.whl[workflow]'":
        "tests/test_deploy.py::test_the_env_files_package_line_installs_the_wheel_from_any_copy_and_it_validates_configs",
}
SCORING = "tests/test_readme_scoring.py::test_readme_scoring_commands_run_on_a_finished_run"
# Where each documented make target runs for real (`.ci/run`: CI on a fresh clone); None: planned only.
MAKE_RUN_BY = {
    "demo": None,
    "test": ".ci/run",
    "lint": ".ci/run",
    "test-catalog": ".ci/run",
    "config-doc": "tests/test_config_doc.py::test_readme_is_generated_from_the_schema",
}
# Commands that cannot even be planned here, planned without these arguments (no conda where the tests run).
PLANNED_ONLY_WITHOUT = {
    "PIP_FIND_LINKS=~/wheels snakemake --cores 4 --resources gpu=1 --sdm conda": ["--sdm", "conda"],
}
# `pip install` of a checkout: pip's dry run in a copy of the repository (the extra exists, the dependencies resolve).
PIP_DRY_RUN = {"pip install '/path/to/aesthetic-mtl[workflow]'"}
# Paths named in backticks that are not the repository's: the project folder of a module deployment.
NOT_REPO_PATHS = {"config/config.yaml"}


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(info string, line number of the opening fence, lines) of every fenced block."""
    found, info, start, body = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if info is None:
                info, start, body = line[3:].strip(), number, []
            else:
                found.append((info, start, body))
                info = None
        elif info is not None:
            body.append(line)
    assert info is None, f"{rel(path)}: the block opened at line {start} is not closed"
    return found


def commands(path: Path) -> list[tuple[str, str, int]]:
    """(command, its line with the comment, line number) of every shell block of a document."""
    found = []
    for info, start, body in blocks(path):
        if info not in SHELL or (rel(path), body[0] if body else "") in NOT_COMMANDS:
            continue
        pending, first = "", 0
        for offset, line in enumerate(body, 1):
            if not pending:
                first = start + offset
            pending += line
            if line.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            command = " ".join(re.sub(r"(^|\s)#.*$", "", pending).split())
            if command:
                found.append((command, pending, first))
            pending = ""
    return found


def every_command() -> list[tuple[str, str, str, int]]:
    return [(command, raw, rel(path), line) for path in DOCS for command, raw, line in commands(path)]


def scoring_commands() -> set[str]:
    return {" ".join(command.split()) for command in scoring_blocks()[0]}


def make_target(command: str) -> str | None:
    words = command.split()
    return words[1] if words[0] == "make" and len(words) == 2 else None


def planned_here(command: str) -> bool:
    """Whether the slow test below plans this command (a snakemake command run by no test)."""
    words = shlex.split(command)
    program = next(w for w in words if "=" not in w)
    return program == "snakemake" and command not in RUN_BY


def exists_in(reference: str) -> bool:
    """Whether "file::name" names a file that defines that function or fixture (or, for .ci/run, a file)."""
    file, _, name = reference.partition("::")
    text = (REPO / file).read_text()
    return not name or re.search(rf"^def {re.escape(name)}\(", text, re.M) is not None


# ------------------------------------------------------------------------------------------ the commands

def test_documents_have_commands_and_only_known_blocks():
    assert [rel(p) for p in DOCS[:1]] == ["README.md"] and len(DOCS) > 5
    for path in DOCS:
        for info, start, body in blocks(path):
            assert info in SHELL | {"text", "yaml", "python"}, f"{rel(path)} line {start}: block ```{info}"
    for document, first in NOT_COMMANDS:
        assert any(body and body[0] == first for _, _, body in blocks(REPO / document)), (document, first)
    assert "snakemake --cores 4 --resources gpu=1" in [c for c, _, doc, _ in every_command() if doc == "README.md"]


def test_every_command_is_run_by_a_test_or_planned_here():
    scoring = scoring_commands()
    assert len(scoring) == 4
    uncovered = []
    for command, raw, document, line in every_command():
        target = make_target(command)
        if command in scoring and document == "README.md":
            assert exists_in(SCORING)
        elif command in RUN_BY:
            assert exists_in(RUN_BY[command]), RUN_BY[command]
        elif target is not None:
            assert target in MAKE_RUN_BY, f"{document} line {line}: `{command}`: say in MAKE_RUN_BY where it runs"
            where = MAKE_RUN_BY[target]
            if where == ".ci/run":
                assert re.search(rf"^make {re.escape(target)}$", (REPO / ".ci/run").read_text(), re.M), target
            elif where is not None:
                assert exists_in(where), where
        elif command in PIP_DRY_RUN or command in PLANNED_ONLY_WITHOUT:
            continue                                                    # dry runs below; the text says so
        elif planned_here(command):
            assert document in STATED_IN_TEXT or "needs" in raw.partition(" #")[2], \
                f"{document} line {line}: `{command}` is only planned by the tests: say what it needs in its comment"
        else:
            uncovered.append(f"{document} line {line}: {command}")
    assert not uncovered, "commands no test runs or plans (add them to RUN_BY or run them here):\n" + \
        "\n".join(uncovered)


def _make_n(target: str) -> str:
    proc = subprocess.run(["make", "-n", target, "VENV=/nonexistent"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"make -n {target}:\n{proc.stderr}"
    return proc.stdout


def test_every_make_target_in_the_documents_plans():
    """Block commands and inline `make <target>` mentions alike."""
    targets = {make_target(c) for c, _, _, _ in every_command()} - {None}
    for path in DOCS:
        targets |= set(re.findall(r"`make ([\w-]+)`", path.read_text()))
    assert {"demo", "test", "lint", "config-doc", "test-catalog"} <= targets
    for target in sorted(targets):
        assert _make_n(target).strip(), target
    assert "-m pytest" in _make_n("test")


def _demo_snakemake_commands() -> list[list[str]]:
    """The snakemake commands of `make demo`'s recipe, less the report (it needs the finished run)."""
    found = []
    for line in _make_n("demo").splitlines():
        words = shlex.split(line)
        if words and words[0] == "/nonexistent/bin/snakemake" and "--report" not in words:
            found.append(["snakemake", *words[1:]])
    assert found, "make demo runs no snakemake command"
    return found


@pytest.fixture(scope="module")
def planning_copy(tmp_path_factory) -> Path:
    """A copy of the repository where the documented commands are planned; config/photos.yaml's folder exists."""
    workdir = copy_repo(tmp_path_factory.mktemp("docs") / "repo")
    (workdir / "data" / "photos").mkdir(parents=True)
    (workdir / "data" / "photos" / "labels.csv").write_text("image,split,rating,brightness,colourfulness\n")
    return workdir


def _plan(workdir: Path, words: list[str]) -> str:
    env, words = dict(os.environ), list(words)
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[0] == "snakemake", words
    # --configfile takes every path after it: -n goes first
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", *words[1:]], cwd=workdir, capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(words)} -n:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_the_documented_snakemake_commands_plan(planning_copy):
    planned = {}
    for command, _, _, _ in every_command():
        if command in planned or not (planned_here(command) or command in PLANNED_ONLY_WITHOUT):
            continue
        words = [w for w in shlex.split(command) if w not in PLANNED_ONLY_WITHOUT.get(command, [])]
        planned[command] = job_counts(_plan(planning_copy, words))
    assert "snakemake --cores 4 --resources gpu=1" in planned
    for command, jobs in planned.items():
        assert jobs, f"{command}: nothing planned"
    for words in _demo_snakemake_commands():
        jobs = job_counts(_plan(planning_copy, words))
        stated = re.search(r"`make demo` on a fresh clone runs (\d+) jobs", (REPO / "README.md").read_text())
        assert stated and sum(jobs.values()) == int(stated.group(1)), (jobs, "README's Demo results job count")


@pytest.mark.slow
def test_pip_install_of_a_checkout_resolves(tmp_path):
    src = copy_repo(tmp_path / "repo")
    for command in PIP_DRY_RUN:
        words = [w.replace("/path/to/aesthetic-mtl", str(src)) for w in shlex.split(command)]
        assert words[:2] == ["pip", "install"]
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                               "--no-build-isolation", *words[2:]], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Would install aesthetic-mtl" in proc.stdout or "Would install aesthetic_mtl" in proc.stdout, proc.stdout
        assert "does not provide the extra" not in proc.stdout + proc.stderr, proc.stderr
        assert "snakemake>=9.20" in proc.stdout, proc.stdout                   # the [workflow] extra's dependencies


# ---------------------------------------------------------------------------- links, paths and modules

def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            if count:
                seen[f"{base}-{count}"] = 1
    return set(seen)


def prose(path: Path) -> str:
    """The document without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def test_every_relative_link_resolves():
    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{rel(path)}: {target}: no such file")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                broken.append(f"{rel(path)}: {target}: no heading #{anchor} in {rel(dest)}")
    assert not broken, "\n".join(broken)


def test_slug_matches_githubs():
    assert slug("Configuration, lint and CI (Snakemake workflow catalog)") == \
        "configuration-lint-and-ci-snakemake-workflow-catalog"
    assert slug("Why it is fast: the frozen part is computed once") == "why-it-is-fast-the-frozen-part-is-computed-once"
    assert slug("3. Software per rule: `--software-deployment-method conda`") == \
        "3-software-per-rule---software-deployment-method-conda"


def test_named_repository_files_exist():
    prefixes = r"(?:\.ci|\.test|bench|config|docs|envs|profiles|src|tests|workflow)"
    missing = []
    for path in DOCS:
        for name in re.findall(rf"`({prefixes}/[\w./-]+)`", prose(path)):
            if name not in NOT_REPO_PATHS and not (REPO / name).exists():
                missing.append(f"{rel(path)}: {name}")
    assert not missing, "\n".join(missing)


def test_named_modules_and_objects_exist():
    """`aesthetic_mtl.<module>[.<object>]` in the text: the module imports and has the object."""
    missing = []
    for path in DOCS:
        for name in set(re.findall(r"`(aesthetic_mtl(?:\.\w+)+)`", prose(path))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ModuleNotFoundError:
                    continue
                for attr in parts[cut:]:
                    obj = getattr(obj, attr, None)
                break
            if obj is None:
                missing.append(f"{rel(path)}: {name}")
    assert not missing, "\n".join(missing)


def test_the_own_photos_example_is_config_photos_yaml():
    text = (REPO / "docs" / "own-photos.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    assert yaml.safe_load(example) == yaml.safe_load((REPO / "config" / "photos.yaml").read_text())


def test_readme_stays_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move manuals to docs/"
