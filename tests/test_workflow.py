"""A full tiny `snakemake` run: synthetic AADB/EVA -> caches -> both stages -> metrics.

The run happens once per test session in a copy of the repository (the paper's VGG16 with a random
trunk at 64 px, one epoch per stage); the tests below assert on what it produced.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TINY, run_snakemake

from aesthetic_mtl.config import settings

pytestmark = pytest.mark.slow


def test_metrics_cover_every_setting_stage_and_cross_pair(tiny_run, tiny_config):
    metrics = pd.read_csv(tiny_run / "results" / "metrics.tsv", sep="\t")
    assert list(metrics.columns) == ["dataset", "train_dataset", "backbone", "setting", "stage", "seed", "target",
                                     "metric", "value"]
    assert set(metrics["backbone"]) == {tiny_config["backbone"]["name"]}
    own = metrics[metrics["dataset"] == metrics["train_dataset"]]
    for ds in tiny_config["datasets"]:
        for setting, targets in settings(tiny_config, ds).items():
            for stage in ("stage1", "stage2"):
                rows = own[(own["train_dataset"] == ds) & (own["setting"] == setting) & (own["stage"] == stage)]
                assert set(rows["target"]) == set(targets), (ds, setting, stage)
                assert set(rows["metric"]) == {"srcc", "plcc", "krcc", "mse", "rmse", "srcc_ci_low", "srcc_ci_high"}
    cross = metrics[metrics["dataset"] != metrics["train_dataset"]]
    multi = cross[(cross["setting"] == "multitask") & (cross["metric"] == "srcc")]
    for pair, mapping in tiny_config["experiment"]["cross_dataset"].items():
        train, test = pair.split("->")
        got = set(multi[(multi["train_dataset"] == train) & (multi["dataset"] == test)]["target"])
        assert got == {f"{a}->{b}" for a, b in mapping.items()}, pair
    mse = metrics[metrics["metric"] == "mse"]["value"]
    assert mse.between(0, 1).all()


def test_comparisons_pair_the_models_of_every_dataset(tiny_run, tiny_config):
    """comparisons.tsv: multi- vs single-task for each configured single-task attribute, stage 2 vs 1 for each
    attribute, with a CI around the difference and a p-value in (0, 1]."""
    c = pd.read_csv(tiny_run / "results" / "comparisons.tsv", sep="\t")
    for ds, cfg in tiny_config["datasets"].items():
        own = c[c["dataset"] == ds]
        singles = set(tiny_config["experiment"]["single_attributes"][ds])
        assert set(own.loc[own["comparison"] == "multitask_vs_single", "target"]) == singles
        assert set(own.loc[own["comparison"] == "stage2_vs_stage1", "target"]) == set(cfg["attributes"])
    defined = c.dropna(subset=["difference_ci_low"])
    assert len(defined) > len(c) / 2
    assert (defined["difference_ci_low"] <= defined["difference_ci_high"]).all()
    assert defined["p_value"].between(0, 1, inclusive="right").all()
    table = pd.read_csv(tiny_run / "results" / "tables" / "AADB_multitask_vs_single.csv")
    assert {"difference_ci_low", "difference_ci_high", "p_value"} <= set(table.columns)
    assert "95% CI" in (tiny_run / "results" / "summary.md").read_text()


def test_data_outputs(tiny_run):
    report = (tiny_run / "results" / "AADB" / "split_report.json").read_text()
    assert '"validation&test": {\n      "count": 2' in report
    log = (tiny_run / "logs" / "split" / "AADB.log").read_text()
    assert "2 images are in both validation and test" in log
    targets = pd.read_csv(tiny_run / "results" / "EVA" / "scaled_labels.tsv", sep="\t")
    assert targets.drop(columns=["image", "split"]).stack().between(0, 1).all()
    assert (tiny_run / "results" / "AADB" / "label_distributions.png").stat().st_size > 10_000


def test_rerun_has_nothing_to_do(tiny_run):
    proc = run_snakemake(tiny_run, "-n", *TINY)
    assert "Nothing to be done" in proc.stdout + proc.stderr
