"""The workflow tells Snakemake what every job depends on: a config change reruns exactly the jobs it affects.

After one complete tiny run, each row of RERUNS overlays one config key and compares the jobs Snakemake
plans (a dry run) with the jobs that key must rerun. A key that reached a job only through
`snakemake.config` would plan nothing and leave stale models behind; a param too many would rerun jobs
that did not change. A second test trains the same models in chunks of one and checks byte-identical
metrics.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import TINY, job_counts, run_snakemake

pytestmark = pytest.mark.slow

TRAIN = {"train_AADB": 1, "train_EVA": 1}  # tiny config: every setting of a dataset in one job per seed
TABLES = {"table_stages": 2, "table_settings": 2, "table_cross": 1, "table_published": 1}
FROM_METRICS = {"metrics": 1, **TABLES, "figure_srcc_bars": 2, "figure_cross": 1, "summary": 1}
FROM_MODELS = {**TRAIN, **FROM_METRICS, "figure_training_curves": 2, "figure_scatter": 2, "gradcam": 2}

# overlay on the tiny config (.test/config/config.yaml) -> {rule: planned jobs} ("all" left out: it is always planned)
RERUNS = {
    "stage-1 lr": ({"training": {"stage1": {"lr": 0.002}}}, FROM_MODELS),
    "stage-2 halving": ({"training": {"stage2": {"halve_every_steps": 3}}}, FROM_MODELS),
    "head dropout": ({"head": {"dropout": 0.3}}, FROM_MODELS),
    "training batch size": ({"training": {"batch_size": 4}}, FROM_MODELS),
    # the new seed's jobs only (one per dataset), and what reads every seed; the first seed's figures stay
    "added seed": ({"training": {"seeds": [1, 2]}},
                   {**TRAIN, **FROM_METRICS, "figure_training_curves": 2}),
    # the label tables do not depend on the input size: only the caches and what follows
    "image size": ({"images": {"size": 72}}, {"image_cache": 2, "feature_cache": 2, **FROM_MODELS}),
    "image interpolation": ({"images": {"interpolation": "bilinear"}},
                            {"image_cache": 2, "feature_cache": 2, **FROM_MODELS}),
    "Adam variant": ({"training": {"adam": "torch"}}, FROM_MODELS),
    # EVA's split changes EVA's targets; AADB's job reruns too, since it predicts EVA's test split
    "EVA split seed": ({"datasets": {"EVA": {"split": {"seed": 7}}}},
                      {"split": 1, "scale_labels": 1, **FROM_MODELS}),
    "feature-cache batch": ({"backbone": {"cache_batch_size": 4}}, {"feature_cache": 2, **FROM_MODELS}),
    "bootstrap": ({"evaluation": {"bootstrap": 10}}, FROM_METRICS),
    "figure option": ({"figures": {"gradcam_examples": 2}}, {"gradcam": 2}),
    # each half of the precision choice reruns its own half
    "cache bf16": ({"backbone": {"cache_bf16_autocast_cuda": True}}, {"feature_cache": 2, **FROM_MODELS}),
    "training bf16": ({"training": {"bf16_autocast_cuda": True}}, FROM_MODELS),
    # how, not what: where a job keeps its caches changes no result
    "cache placement": ({"training": {"cache_placement": "resident"}}, {}),
    # nor how slow and how long a download may be (resources of obtain_archives and fetch_weights)
    "download limits": ({"download": {"min_rate_kib_s": 1, "slow_for_s": 5, "deadline_min": 7}}, {}),
    # display names relabel what EVA's tables and figures show; no model retrains
    "EVA display names": ({"datasets": {"EVA": {"display_names": {"visual": "light & colour"}}}},
                          {"label_figure": 1, "table_stages": 1, "table_settings": 1, "table_cross": 1, "figure_scatter": 1,
                           "figure_srcc_bars": 1, "figure_cross": 1}),
}


def planned_jobs(workdir, overlay: dict, tmp_path) -> dict[str, int]:
    """{rule: count} of a dry run with `overlay` on top of the tiny config."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *TINY, str(path))
    jobs = job_counts(proc.stdout + proc.stderr)
    jobs.pop("all", None)
    return jobs


def test_snakemake_records_the_spec_params(tiny_run):
    """Snakemake keeps a param's repr in each output's record and compares it on the next run; an object it
    cannot represent (a dataclass) is silently left out and never triggers a rerun. The specs travel as plain
    data, so the records hold them."""
    records = [json.loads(p.read_text()) for p in (tiny_run / ".snakemake" / "metadata").iterdir()]
    by_rule = {}
    for record in records:
        by_rule.setdefault(record["rule"], []).append(" ".join(record["params"]))
    assert by_rule["train_AADB"] and all("'stage2'" in p and "'halve_every_steps'" in p for p in by_rule["train_AADB"])
    assert all("'interpolation'" in p for p in by_rule["image_cache"])


@pytest.mark.parametrize("key", list(RERUNS))
def test_a_config_change_reruns_exactly_what_it_affects(tiny_run, tmp_path, key):
    overlay, expected = RERUNS[key]
    assert planned_jobs(tiny_run, overlay, tmp_path) == expected


def test_results_do_not_depend_on_how_models_are_cut_into_jobs(tiny_run, tmp_path):
    """Every model in its own job gives the same metrics.tsv, byte for byte, as all models of a dataset in one."""
    workdir = tmp_path / "chunks_of_one"
    shutil.copytree(tiny_run, workdir, symlinks=True)  # data and caches (and their metadata) stay up to date
    overlay = tmp_path / "one_model_per_job.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"models_per_job": 1}}))
    jobs = planned_jobs(workdir, yaml.safe_load(overlay.read_text()), tmp_path)
    assert {rule for rule in jobs if rule.startswith("train_")} == {
        "train_AADB_1", "train_AADB_2", "train_AADB_3", "train_AADB_4", "train_EVA_1", "train_EVA_2", "train_EVA_3"}
    assert "feature_cache" not in jobs
    run_snakemake(workdir, "--cores", "2", "results/metrics.tsv", *TINY, str(overlay))
    assert (workdir / "results" / "metrics.tsv").read_bytes() == (tiny_run / "results" / "metrics.tsv").read_bytes()
