"""config/README.md and the catalog files: generated from and checked against the schema, so they cannot drift."""

from __future__ import annotations

import copy
import re
import subprocess

import pytest
import yaml
from conftest import REPO

from aesthetic_mtl import config_doc
from aesthetic_mtl.config import load_config

SHIPPED = [["config.yaml"], ["config.yaml", "config/demo.yaml"], [".test/config/config.yaml"],
           ["config.yaml", ".test/config/config.yaml", "tests/configs/table.yaml"],
           ["config.yaml", "config/photos.yaml"], ["config.yaml", ".test/config/config.yaml"]]


@pytest.fixture(scope="module")
def schema() -> dict:
    return config_doc.load_schema()


def test_readme_is_generated_from_the_schema(schema):
    assert (REPO / "config" / "README.md").read_text() == config_doc.render(schema), \
        "config/README.md is out of date with the schema: run `make config-doc`"


def test_every_schema_key_has_a_description(schema):
    assert config_doc.undocumented(schema) == []
    broken = copy.deepcopy(schema)
    del broken["properties"]["images"]["properties"]["size"]["description"]
    assert config_doc.undocumented(broken) == ["images.size"]


def test_a_schema_change_shows_in_the_document(schema):
    changed = copy.deepcopy(schema)
    changed["properties"]["images"]["properties"]["gamma"] = {"type": "number", "minimum": 0,
                                                              "description": "Display gamma."}
    text = config_doc.render(changed)
    assert "| `images.gamma` | number >= 0 | Display gamma. |" in text
    assert text != config_doc.render(schema)


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    out = tmp_path / "README.md"
    assert config_doc.main(["--out", str(out)]) == 0
    assert config_doc.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("Network input size", "Input size"))
    assert config_doc.main(["--check", "--out", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err


def _paths(node, prefix=()):
    """Every key path of a config as a tuple, e.g. ("datasets", "AADB", "split", "method")."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = (*prefix, str(key))
            yield path
            yield from _paths(value, path)


def _documents(key: str, path: tuple) -> bool:
    """Whether the documented key (`datasets.<dataset>.format`) covers the config path."""
    parts = key.split(".")
    return len(parts) == len(path) and all(p.startswith("<") or p == q for p, q in zip(parts, path))


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: "+".join(f))
def test_every_key_of_the_shipped_configs_is_documented(schema, files):
    keys = [key for key, _, _ in config_doc.iter_keys(schema, "")]
    config = load_config(*(REPO / f for f in files))
    missing = [".".join(path) for path in _paths(config)
               if not (len(path) > 3 and path[2] == "synthetic")     # generator parameters: one group
               and not any(_documents(key, path) for key in keys)]
    assert missing == []
    assert not any(_documents(key, ("images", "gamma")) for key in keys)


def test_catalog_file_claims_only_what_is_tested():
    """report: `make test-catalog` (CI) writes the tiny run's report; conda and containers: never run here."""
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert usage["report"] is True and "--report" in _make_commands("test-catalog")
    assert usage["software-stack-deployment"] == {"conda": False, "apptainer": False, "apptainer+conda": False}
    assert usage["mandatory-flags"]["flags"] and usage["mandatory-flags"]["desc"]


def test_the_catalog_finds_the_workflow_where_it_looks():
    """The catalog (its scripts/generate-catalog.py) takes workflow/Snakefile when a workflow/ folder exists and
    skips the repository without it; it checks the format of that file and of workflow/rules/*.smk, and shows
    config/README.md. snakedeploy's module points at workflow/Snakefile too."""
    assert (REPO / "workflow").is_dir() and (REPO / "workflow" / "Snakefile").is_file()
    assert "include: \"../Snakefile\"" in (REPO / "workflow" / "Snakefile").read_text()
    assert list((REPO / "workflow" / "rules").glob("*.smk")) and (REPO / "config" / "README.md").is_file()


def _make_commands(target: str) -> str:
    proc = subprocess.run(["make", "-n", target, "VENV=/nonexistent"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return proc.stdout


def test_make_lint_runs_the_linter_and_snakefmt():
    commands = _make_commands("lint")
    assert "snakemake --lint" in commands
    assert "snakefmt --check Snakefile workflow/Snakefile workflow/rules/" in commands


def test_github_workflow_runs_the_make_targets_of_ci_run():
    ci = (REPO / ".ci" / "run").read_text()
    targets = re.findall(r"^make ([\w-]+)", ci, flags=re.M)
    assert {"lint", "test", "test-catalog", "test-slurm"} <= set(targets)
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "main.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    for target in targets:
        assert f"make {target}" in runs, target
    assert "make -n" not in " ".join(runs)
