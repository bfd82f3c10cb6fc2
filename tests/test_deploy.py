"""The workflow as others get it: a wheel install, the conda env file from wherever Snakemake copies it, the
complete tiny config, the license, and a module deployment in a folder of its own.

What these cannot run here: conda itself (no conda channels on the test machines), so the env file's pip
step is replayed as conda performs it (a requirements file beside the env file's copy, pip run there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, copy_repo, job_counts, run_snakemake

from aesthetic_mtl.config import deep_update, load_config

ENV_FILE = REPO / "envs" / "aesthetic-mtl.yaml"
PACKAGE = "aesthetic-mtl"


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pip_entries(env_file: Path) -> list[str]:
    """The `pip:` list of a conda env file."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)


def _clean_pip_env(**extra: str) -> dict:
    """The environment without this machine's pip settings (index, find-links, constraints): hermetic runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# ---------------------------------------------------------------------------------------- license

def test_the_license_is_the_mit_license_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The aesthetic-mtl authors\n")
    assert "Permission is hereby granted, free of charge" in text
    assert _pyproject()["license"] == "MIT" and _pyproject()["license-files"] == ["LICENSE"]


# ------------------------------------------------------------------------ a wheel, installed

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The package's wheel, built from a copy of the repository (as for a release; no index, the venv's setuptools)."""
    src = copy_repo(tmp_path_factory.mktemp("build") / "repo")
    out = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src],
         env=_clean_pip_env())
    return next(out.glob("aesthetic_mtl-*.whl"))


def _fresh_venv(where: Path) -> Path:
    """A new venv whose only aesthetic-mtl is what gets installed into it. The tested venv's third-party packages
    (torch, ...) are lent through a .pth to a folder of links to them, without its editable aesthetic-mtl, so
    pip and Python find the installed wheel or nothing (a full torch install would take minutes and GBs)."""
    _run([sys.executable, "-m", "venv", "--without-pip", where])
    python = where / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    lent = where / "lent-site-packages"
    lent.mkdir()
    tested = Path(sysconfig.get_paths()["purelib"])
    for entry in tested.iterdir():
        if not re.match(r"(aesthetic_mtl|__editable__)|.*\.pth$", entry.name):
            (lent / entry.name).symlink_to(entry)
    (site / "tested-third-party.pth").write_text(f"{lent}\n")
    return python


CHECK = """
import json, sys
from pathlib import Path
import aesthetic_mtl
from aesthetic_mtl.config import load_config, schema_defaults, schema_file
from aesthetic_mtl.errors import ConfigError
repo = Path(sys.argv[1])
load_config(repo / "config.yaml", repo / ".test/config/config.yaml")
try:
    load_config(repo / "config.yaml", sys.argv[2])
    refused = None
except ConfigError as err:
    refused = str(err)
print(json.dumps({"package": aesthetic_mtl.__file__, "schema": str(schema_file()), "refused": refused,
                  "download": schema_defaults("download")}))
"""


def test_the_env_files_package_line_installs_the_wheel_from_any_copy_and_it_validates_configs(wheel, tmp_path):
    """What conda does with the env file's pip section, from a copy where Snakemake puts it: the package comes
    from PIP_FIND_LINKS (a wheel folder: until aesthetic-mtl is on PyPI), is a real (non-editable) install, and
    that install validates configs: the schema ships inside it."""
    copy = tmp_path / "project" / ".snakemake" / "conda" / "3f1c0a9e.yaml"
    copy.parent.mkdir(parents=True)
    shutil.copy(ENV_FILE, copy)
    requirements = copy.parent / "condaenv.k2j4h1.requirements.txt"     # conda.env.installers.pip's temporary file
    requirements.write_text("\n".join(_pip_entries(copy)) + "\n")
    python = _fresh_venv(tmp_path / "venv")
    env = _clean_pip_env(PIP_FIND_LINKS=str(wheel.parent), PIP_NO_INDEX="1")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-U", "-r", requirements.name,
          "--exists-action=b"], cwd=copy.parent, env=env)
    (tmp_path / "bad.yaml").write_text("training: {batch_sise: 8}\n")
    out = _run([python, "-c", CHECK, REPO, tmp_path / "bad.yaml"], cwd=tmp_path, env=_clean_pip_env())
    facts = json.loads(out.stdout)
    site = tmp_path / "venv" / "lib"
    assert Path(facts["package"]).is_relative_to(site) and Path(facts["schema"]).is_relative_to(site), facts
    assert Path(facts["schema"]).name == "config.schema.yaml" and Path(facts["schema"]).is_file()
    assert facts["refused"].startswith("config key 'training': Additional properties are not allowed ('batch_sise'")
    assert facts["download"] == {"min_rate_kib_s": 4, "slow_for_s": 60, "deadline_min": 1440}
    assert list(site.glob("python3*/site-packages/aesthetic_mtl-*.dist-info/licenses/LICENSE"))


# ----------------------------------------------------------------------------------- the tiny config

def _key_paths(node: dict, prefix: tuple = ()) -> set[tuple]:
    paths = set()
    for key, value in node.items():
        paths.add((*prefix, key))
        if isinstance(value, dict):
            paths |= _key_paths(value, (*prefix, key))
    return paths


def test_the_tiny_test_config_is_complete_and_runs_the_same_over_config_yaml():
    """`.test/config/config.yaml` is a whole config (a module deployment reads it alone), and reading it over the
    top-level config.yaml, as `snakemake --configfile .test/config/config.yaml` does in the repository, changes
    nothing but download URLs that its synthetic sources never read."""
    alone = load_config(REPO / TINY_CONFIG)
    over = load_config(REPO / "config.yaml", REPO / TINY_CONFIG)
    added = {path[:3] for path in _key_paths(over) - _key_paths(alone)}
    assert added <= {("datasets", name, "files") for name, ds in alone["datasets"].items()
                     if ds["source"] == "synthetic"}, added
    assert over == deep_update(alone, {"datasets": {name: {"files": over["datasets"][name]["files"]}
                                                    for _, name, _ in added}})


# ------------------------------------------------------------------------------------- the env file

def test_the_env_file_names_the_package_by_version_and_pins_the_tested_versions():
    """No pip entry depends on where the env file lies (Snakemake copies it to .snakemake/conda/<hash>.yaml, and
    conda runs pip beside the copy: `-e ..` pointed into .snakemake/); each pin is what the tests run with."""
    entries = _pip_entries(ENV_FILE)
    located = [e for e in entries if re.match(r"(-e|--editable|-r|--requirement|-c|\.|/|~|file:)", e) or ".." in e]
    assert located == [], f"{ENV_FILE}: pip entries that depend on the file's location: {located}"
    pins = dict(e.split("==", 1) for e in entries)
    assert pins.pop(PACKAGE) == _pyproject()["version"]
    tested = {name: metadata.version(name) for name in pins}
    assert pins == tested, f"{ENV_FILE}: pins differ from the tested environment {tested}"
    needed = {re.split(r"[<>=!~ \[;]", dep)[0].lower() for dep in _pyproject()["dependencies"]}
    assert needed <= {name.lower() for name in pins}, f"{ENV_FILE}: not pinned: {needed - set(pins)}"


# ------------------------------------------------------------------------------ module deployment

DEPLOYED = """\
# What `snakedeploy deploy-workflow` writes (docs/deploy.md), a local path in place of github(..., path=...).
from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


module aesthetic_mtl:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from aesthetic_mtl
"""


@pytest.mark.slow
def test_the_workflow_deployed_as_a_module_runs_the_tiny_config_to_its_report(tmp_path):
    """A project folder of its own: its workflow/Snakefile uses the repository's workflow/Snakefile (the file
    snakedeploy and the catalog pick) as a module, and its config is the complete tiny one, alone. It plans the
    jobs the repository's own Snakefile plans, runs them all (the package, the scripts, the logs and the
    schema, from another folder) and writes the report."""
    project = tmp_path / "project"
    (project / "workflow").mkdir(parents=True)
    (project / "config").mkdir()
    (project / "workflow" / "Snakefile").write_text(DEPLOYED.format(snakefile=REPO / "workflow" / "Snakefile"))
    shutil.copy(REPO / TINY_CONFIG, project / "config" / "config.yaml")
    deployed = run_snakemake(project, "--cores", "2", timeout=1200)
    itself = run_snakemake(copy_repo(tmp_path / "repo"), "-n", "--cores", "2", "--configfile", TINY_CONFIG,
                           timeout=600)
    planned, own = job_counts(deployed.stdout + deployed.stderr), job_counts(itself.stdout + itself.stderr)
    assert planned.pop("default") == own.pop("all") == 1 and planned == own, (planned, own)
    rows = (project / "results" / "metrics.tsv").read_text().splitlines()[1:]
    assert {row.split("\t")[0] for row in rows} == {"AADB", "EVA"}
    assert (project / "logs" / "feature_cache" / "AADB_vgg16_64.log").read_text().startswith("# aesthetic-mtl ")
    run_snakemake(project, "--cores", "1", "--report", "report.zip", timeout=600)
    with zipfile.ZipFile(project / "report.zip") as report:
        assert any(name.endswith("report.html") for name in report.namelist())
