"""Several backbones in one run (tests/configs/two_backbones.yaml): caches, models, predictions and metrics
keyed by backbone, and tables that answer multi- vs single-task per backbone."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TINY, copy_repo, run_snakemake

pytestmark = pytest.mark.slow
GRID = [*TINY, "tests/configs/two_backbones.yaml"]
BACKBONES = ["vgg16", "squeezenet1_1"]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    workdir = copy_repo(tmp_path_factory.mktemp("grid") / "repo")
    run_snakemake(workdir, "--cores", "2", *GRID)
    return workdir


def test_every_model_is_trained_on_each_backbone(grid_run):
    results = grid_run / "results"
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    assert list(metrics.columns[:3]) == ["dataset", "train_dataset", "backbone"]
    models = metrics[["backbone", "setting", "stage"]].drop_duplicates()
    expected = {(b, s, st) for b in BACKBONES for s in ("multitask", "single_score", "no_neutral")
                for st in ("stage1", "stage2")}
    assert set(models.itertuples(index=False, name=None)) == expected
    for backbone in BACKBONES:
        assert (results / "cache" / "AADB" / f"{backbone}_64" / "prefix.npy").is_file()
        assert (results / "models" / "AADB" / backbone / "multitask" / "seed1" / "stage2.pt").is_file()
    # the two trunks give different predictions: rows are not copies of one model
    srcc = metrics[(metrics["metric"] == "srcc") & (metrics["stage"] == "stage2")].pivot_table(
        index=["setting", "target"], columns="backbone", values="value")
    assert not srcc[BACKBONES[0]].equals(srcc[BACKBONES[1]])


def test_tables_and_summary_answer_per_backbone(grid_run):
    results = grid_run / "results"
    table = pd.read_csv(results / "tables" / "AADB_multitask_vs_single.csv")
    assert list(table.columns[:2]) == ["backbone", "target"]
    assert table.groupby("backbone").size().to_dict() == {b: 12 for b in BACKBONES}
    assert table.set_index(["backbone", "target"]).loc[(BACKBONES[1], "score"), "single_n"] == 1
    published = pd.read_csv(results / "tables" / "published.csv")
    ours = published[published["origin"] == "computed here"]
    assert {m.split("(")[1].split(",")[0].rstrip(")") for m in ours["method"]} == set(BACKBONES)
    assert ours.groupby("method")["total_params"].first().nunique() == 4  # each trunk's own counts
    summary = (results / "summary.md").read_text()
    for backbone in BACKBONES:
        assert f"**AADB**, backbone `{backbone}`: the multi-task model" in summary
    assert summary.count("On the overall score, multi-task was") == 2
    comparisons = pd.read_csv(results / "comparisons.tsv", sep="\t")  # each backbone's models paired on their own
    assert set(comparisons["backbone"]) == set(BACKBONES)
    assert summary.count("multi − single = ") == 2 and summary.count("95% CI [") >= 2
