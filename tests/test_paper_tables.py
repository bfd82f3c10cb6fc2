"""Paper tables from a synthetic metrics table: mean ± std over seeds, the paper column, every format."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import head_spec

from aesthetic_mtl.files import write_tsv
from aesthetic_mtl.report.evaluate import METRICS_COLUMNS
from aesthetic_mtl.report.paper import PAPER_SRCC
from aesthetic_mtl.report.paper_tables import (
    cross_dataset,
    cross_table,
    multitask_vs_single,
    published_table,
    settings_table,
    stage1_vs_stage2,
    stage_table,
    write_table,
)
from aesthetic_mtl.report.seed_stats import Stat, read_metrics
from aesthetic_mtl.report.summary import (
    build_summary,
    render_html,
    render_markdown,
    write_summary,
)

DATASETS = {  # as the summary gets them (the table rules' also carry display_names)
    "AADB": {"attributes": {"Light": [-1, 1], "Content": [-1, 1], "score": [0, 1]}, "overall": "score",
             "source": "official"},
    "EVA": {"attributes": {"score": [0, 10], "visual": [1, 4]}, "overall": "score", "source": "official"},
}
CROSS = {"AADB->EVA": {"score": "score", "Light": "visual"}, "EVA->AADB": {"score": "score", "visual": "Light"}}
SEEDS = [1, 2, 3]


def srcc_value(dataset, train, setting, stage, seed, target) -> float:
    """A known value for every cell, so the tests can recompute means and stds by hand."""
    base = {"AADB": 0.60, "EVA": 0.50}[dataset] + (0.0 if dataset == train else -0.2)
    base += 0.05 if stage == "stage2" else 0.0
    base += 0.03 if setting == "multitask" else (0.01 if setting == "no_neutral" else 0.0)
    base += 0.002 * (sum(map(ord, target)) % 3)
    return round(base + 0.01 * seed, 6)


def synthetic_metrics(seeds=SEEDS) -> pd.DataFrame:
    """Own-dataset rows for multitask, single_score, single_Light / single_visual and a subset; cross rows."""
    rows = []
    settings = {"AADB": {"multitask": ["Light", "Content", "score"], "single_score": ["score"],
                         "single_Light": ["Light"], "no_neutral": ["Light", "score"]},
                "EVA": {"multitask": ["score", "visual"], "single_score": ["score"], "single_visual": ["visual"]}}
    for train, by_setting in settings.items():
        for setting, targets in by_setting.items():
            for stage in ("stage1", "stage2"):
                for seed in seeds:
                    for test in DATASETS:
                        if test == train:
                            labels = targets
                        else:
                            mapping = CROSS[f"{train}->{test}"]
                            labels = [f"{s}->{d}" for s, d in mapping.items() if s in targets]
                        for label in labels:
                            v = srcc_value(test, train, setting, stage, seed, label)
                            for metric, value in (("srcc", v), ("plcc", v + 0.01), ("mse", 0.02)):
                                rows.append({"dataset": test, "train_dataset": train, "backbone": "vgg16",
                                             "setting": setting,
                                             "stage": stage, "seed": seed, "target": label, "metric": metric,
                                             "value": value})
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "metrics.tsv"
    write_tsv(path, synthetic_metrics())
    return read_metrics(path)


def expected(dataset, train, setting, stage, target, seeds=SEEDS):
    values = [srcc_value(dataset, train, setting, stage, s, target) for s in seeds]
    return np.mean(values), np.std(values, ddof=1)


def test_stat_mean_std_and_single_seed():
    s = Stat.of([0.5, 0.6, 0.7])
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1) and s.n == 3
    assert s.text() == "0.600 ± 0.100"
    one = Stat.of([0.61234, math.nan])  # an undefined SRCC is not averaged in
    assert one.n == 1 and math.isnan(one.std) and one.text() == "0.612"
    assert Stat.of([]).text() == ""


def test_stage_table_values_and_paper_column(metrics):
    t = stage_table(metrics, "AADB", ["Light", "Content", "score"], "score")
    d = t.data.set_index("target")
    for target in ("Light", "Content", "score"):
        for stage in ("stage1", "stage2"):
            mean, std = expected("AADB", "AADB", "multitask", stage, target)
            assert d.loc[target, f"{stage}_mean"] == pytest.approx(mean)
            assert d.loc[target, f"{stage}_std"] == pytest.approx(std)
            assert d.loc[target, f"{stage}_n"] == 3
        assert d.loc[target, "difference"] == pytest.approx(0.05)
    # the paper column holds the paper's overall number and nothing else
    assert d.loc["score", "paper"] == 0.7067
    assert d.drop(index="score")["paper"].isna().all()
    shown = t.display.set_index("target")
    assert shown.loc["score (overall)", "paper"] == "0.7067"
    assert set(shown.drop(index="score (overall)")["paper"]) == {""}
    mean, std = expected("AADB", "AADB", "multitask", "stage2", "Light")
    assert shown.loc["Light", "stage 2 (fine-tuned)"] == f"{mean:.3f} ± {std:.3f}"


def test_settings_table_multi_vs_single_and_subsets(metrics):
    t = settings_table(metrics, "AADB", ["Light", "Content", "score"], "score")
    d = t.data.set_index("target")
    m, _ = expected("AADB", "AADB", "multitask", "stage2", "score")
    s, s_std = expected("AADB", "AADB", "single_score", "stage2", "score")
    assert d.loc["score", "multitask_mean"] == pytest.approx(m)
    assert d.loc["score", "single_mean"] == pytest.approx(s)
    assert d.loc["score", "single_std"] == pytest.approx(s_std)
    assert d.loc["score", "difference"] == pytest.approx(0.03)
    assert math.isnan(d.loc["Content", "single_mean"])          # no single-task model of Content
    assert d.loc["score", "no_neutral_n"] == 3 and d.loc["Content", "no_neutral_n"] == 0
    assert d.loc["score", "paper"] == 0.7067
    eva = settings_table(metrics, "EVA", ["score", "visual"], "score").data.set_index("target")
    assert eva.loc["score", "paper"] == 0.695 and math.isnan(eva.loc["visual", "paper"])
    assert list(t.display.columns) == ["target", "multi-task", "single-task", "multi − single [95% CI]", "p",
                                       "subset no_neutral", "no_neutral − multi [95% CI]", "p (no_neutral)", "paper"]


def test_cross_table(metrics):
    t = cross_table(metrics, DATASETS)
    d = t.data
    assert len(d) == 4
    row = d[(d["train_dataset"] == "AADB") & (d["test_target"] == "visual")].iloc[0]
    mean, std = expected("EVA", "AADB", "multitask", "stage2", "Light->visual")
    assert row["multitask_mean"] == pytest.approx(mean) and row["multitask_std"] == pytest.approx(std)
    assert row["within_test_dataset_mean"] == pytest.approx(expected("EVA", "EVA", "multitask", "stage2",
                                                                     "visual")[0])
    assert not row["overall"]
    score = d[(d["train_dataset"] == "EVA") & (d["train_target"] == "score")].iloc[0]
    assert score["overall"] and score["single_n"] == 3
    assert d["paper"].isna().all()
    assert list(d["train_dataset"]) == ["AADB", "AADB", "EVA", "EVA"]  # config order


def counted(metrics) -> dict:
    """The parameter counts a training job records (parameters.json) of every published-table model, counted
    here on built models (the report itself never builds a network)."""
    from aesthetic_mtl.nn.model import build_model, count_parameters

    out = {}
    for ds, cfg in DATASETS.items():
        for backbone in dict.fromkeys(metrics["backbone"]):
            for setting, targets in (("multitask", list(cfg["attributes"])), ("single_score", ["score"])):
                out[(ds, backbone, setting)] = count_parameters(build_model(backbone, targets, None, head_spec()))
    return out


def test_published_table_counts_parameters_and_cites(metrics):
    t = published_table(metrics, DATASETS, counted(metrics))
    d = t.data
    ours = d[(d["dataset"] == "AADB") & d["method"].str.startswith("ours: multi-task")].iloc[0]
    assert ours["srcc_mean"] == pytest.approx(expected("AADB", "AADB", "multitask", "stage2", "score")[0])
    # VGG16 trunk 14,714,688 + head 512*128+128 + 128*64+64 + 64*3+3; stage 2 trains features[19], [21] + head
    head = 512 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3
    assert ours["total_params"] == 14_714_688 + head
    assert ours["trainable_params"] == 2 * (3 * 3 * 512 * 512 + 512) + head
    assert ours["paper"] == 0.7067
    paper_rows = d[d["method"].str.startswith("Soydaner")]
    assert dict(zip(paper_rows["dataset"], paper_rows["srcc_mean"])) == {"AADB": 0.7067, "EVA": 0.695}
    # every row other than ours and the paper's is a cited number with a venue
    cited = d[~d["method"].str.startswith(("ours", "Soydaner"))]
    assert (cited["source"].str.len() > 0).all() and cited["paper"].isna().all()


def test_paper_values_are_only_the_two_reported_numbers():
    assert PAPER_SRCC == {("AADB", "score"): 0.7067, ("EVA", "score"): 0.695}


def test_one_seed_leaves_std_blank(tmp_path):
    path = tmp_path / "metrics.tsv"
    write_tsv(path, synthetic_metrics(seeds=[7]))
    t = stage_table(read_metrics(path), "AADB", ["Light", "Content", "score"], "score")
    assert t.data["stage2_std"].isna().all()
    assert "±" not in "".join(t.display["stage 2 (fine-tuned)"])
    assert "One seed" in t.notes[0]


def test_write_every_format(metrics, tmp_path):
    metrics_path = tmp_path / "m.tsv"
    write_tsv(metrics_path, synthetic_metrics())
    outs = {k: tmp_path / f"AADB_multitask_vs_single.{k}" for k in ("csv", "md", "tex", "html")}
    write_table(multitask_vs_single, metrics_path, outs, DATASETS, dataset="AADB")
    csv = pd.read_csv(outs["csv"])
    assert {"target", "multitask_mean", "multitask_std", "single_mean", "paper"} <= set(csv.columns)
    assert csv.set_index("target").loc["score", "paper"] == 0.7067
    md = outs["md"].read_text()
    assert "| target" in md and "0.7067" in md and "±" in md
    tex = outs["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "no\\_neutral" in tex and "±" not in tex
    assert "<table" in outs["html"].read_text()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_summary_sentences_follow_the_numbers(metrics, tmp_path):
    skipped = tmp_path / "skipped.tsv"
    write_tsv(skipped, pd.DataFrame({"image": ["a.jpg", "b.jpg"], "path": ["x", "y"], "reason": ["bad", "bad"]}))
    empty = tmp_path / "skipped_eva.tsv"
    write_tsv(empty, pd.DataFrame(columns=["image", "path", "reason"]))
    report = tmp_path / "split_report.json"
    report.write_text(json.dumps({"counts": {"train": 10, "validation": 4, "test": 5}, "unique_images": 17,
                                  "overlaps": {"validation&test": {"count": 2, "examples": ["p", "q"]}}}))
    blocks, tables = build_summary(metrics, DATASETS, split_reports={"AADB": report},
                                   skipped={"AADB": skipped, "EVA": empty})
    md = render_markdown(blocks)
    m, _ = expected("AADB", "AADB", "multitask", "stage2", "score")
    assert f"{m:.3f}" in md
    assert "On the overall score, multi-task was higher than single-task" in md
    assert f"the paper reports 0.7067, so ours is {abs(m - 0.7067):.3f} lower" in md
    assert "multi − single = +0.030" in md            # on the overall score
    assert "from 0.650 ± 0.010 to 0.700 ± 0.010 (+0.050" in md   # stage 2 vs stage 1
    assert "Trained on AADB and tested on EVA" in md
    assert "2 images were missing or could not be read" in md and "EVA: every image could be read" in md
    assert "2 images are in both the validation and the test split" in md
    assert "<li>" in render_html(blocks) and len(tables) == 5
    out = tmp_path / "summary.md"
    metrics_path = tmp_path / "again.tsv"
    write_tsv(metrics_path, metrics)
    write_summary(metrics_path, DATASETS, out, out_html=tmp_path / "summary.html")
    assert out.read_text().startswith("# Results summary")
    assert (tmp_path / "summary.html").read_text().startswith("<!DOCTYPE html>")


def _comparisons() -> pd.DataFrame:
    """comparisons.tsv rows: multi-task above single-task on score (CI above zero), not on Light (CI includes
    zero); stage 2 above stage 1 on every AADB target; the subset below the full model on score."""
    rows = []

    def add(kind, setting, target, diff, low, high, p, dataset="AADB"):
        rows.append({"dataset": dataset, "backbone": "vgg16", "comparison": kind, "setting": setting,
                     "stage": "stage2", "baseline_setting": "-", "baseline_stage": "-", "target": target, "seeds": 3,
                     "images": 100, "difference": diff, "difference_ci_low": low, "difference_ci_high": high,
                     "p_value": p})
    add("multitask_vs_single", "multitask", "score", 0.03, 0.01, 0.05, 0.004)
    add("multitask_vs_single", "multitask", "Light", 0.03, -0.02, 0.08, 0.31)
    for t in ("Light", "Content", "score"):
        add("stage2_vs_stage1", "multitask", t, 0.05, 0.02, 0.08, 0.002)
    add("subset_vs_multitask", "no_neutral", "score", -0.02, -0.03, -0.01, 0.01)
    return pd.DataFrame(rows)


def test_paired_comparisons_in_the_tables_and_the_summary(metrics, tmp_path):
    comparisons = _comparisons()
    table = multitask_vs_single(metrics, DATASETS, dataset="AADB", comparisons=comparisons)
    d, shown = table.data.set_index("target"), table.display.set_index("target")
    assert (d.loc["score", "difference_ci_low"], d.loc["score", "difference_ci_high"], d.loc["score", "p_value"]) \
        == (0.01, 0.05, 0.004)
    assert (d.loc["score", "no_neutral_difference_ci_high"], d.loc["score", "no_neutral_p_value"]) == (-0.01, 0.01)
    assert shown.loc["score (overall)", "multi − single [95% CI]"] == "+0.030 [+0.010, +0.050]"
    assert shown.loc["score (overall)", "p"] == "0.004"
    assert shown.loc["Content", "p"] == "" and np.isnan(d.loc["Content", "p_value"])  # no single-task model
    stage = stage1_vs_stage2(metrics, DATASETS, dataset="AADB", comparisons=comparisons)
    assert stage.display["stage 2 − stage 1 [95% CI]"].iloc[0] == "+0.050 [+0.020, +0.080]"
    assert "+0.050 [+0.020, +0.080]" in stage.latex()

    md = render_markdown(build_summary(metrics, DATASETS, comparisons=comparisons)[0])
    assert ("multi − single = +0.030, 95% CI [+0.010, +0.050], p = 0.004); the paired 95% CI lies above zero: "
            "multi-task beat single-task here.") in md
    assert "Over the 2 targets with a single-task baseline: multi-task higher on 2 of 2 targets, 1 of them with a " \
           "95% CI above zero; mean difference +0.030." in md
    assert "stage 2 higher on 3 of 3 targets, 3 of them with a 95% CI above zero" in md
    comparisons_path = tmp_path / "comparisons.tsv"
    write_tsv(comparisons_path, comparisons)
    metrics_path = tmp_path / "again.tsv"
    write_tsv(metrics_path, metrics)
    out = tmp_path / "summary.md"
    assert write_summary(metrics_path, DATASETS, out, comparisons_path=comparisons_path) == md


def test_undefined_srcc_shows_na_not_blank(tmp_path):
    m = synthetic_metrics(seeds=[1, 2])
    undefined = (m["target"] == "Content") & (m["metric"] == "srcc")
    m.loc[undefined, "value"] = np.nan          # constant predictions: SRCC undefined for every seed
    path = tmp_path / "metrics.tsv"
    write_tsv(path, m)
    t = stage_table(read_metrics(path), "AADB", ["Light", "Content", "score"], "score")
    shown = t.display.set_index("target")
    assert shown.loc["Content", "stage 2 (fine-tuned)"] == "n/a"
    assert any(n.startswith("n/a:") for n in t.notes)
    assert t.data.set_index("target").loc["Content", "stage2_n"] == 0
    s = settings_table(read_metrics(path), "AADB", ["Light", "Content", "score"], "score").display
    assert s.set_index("target").loc["Content", "single-task"] == ""   # no model at all: blank
    assert "class=\"num\"" in t.html() and "<td>Light</td>" in t.html()


def test_published_rows_are_the_sourced_ones(metrics):
    d = published_table(metrics, DATASETS, counted(metrics)).data
    quoted = d[(d["origin"] == "quoted") & ~d["method"].str.startswith("Soydaner")]
    assert dict(zip(quoted["method"], quoted["srcc_mean"])) == {
        "Kong et al. 2016": 0.6782, "Hou, Yu & Samaras 2017": 0.6889, "Malu et al. 2017": 0.689,
        "Pan et al. 2019: single-task network": 0.6833, "Pan et al. 2019: multi-task network": 0.6927,
        "Pan et al. 2019: full method": 0.7041, "Shu et al. 2021": 0.761}
    assert (quoted["dataset"] == "AADB").all()
    pan = quoted[~quoted["method"].str.startswith("Shu")]["source"]
    assert pan.str.contains("Pan, Wang & Jiang, AAAI 2019").all() and pan.str.contains("Table 1").all()
    assert quoted[quoted["method"] == "Shu et al. 2021"]["source"].str.contains("IEEE TMM.*abstract").all()
    assert quoted["total_params"].isna().all() and quoted["trainable_params"].isna().all()
    ours = d[d["origin"] == "computed here"]
    assert len(ours) == 4 and ours["total_params"].notna().all() and ours["trainable_params"].notna().all()
    assert set(d["origin"]) == {"computed here", "quoted"}


def _with_ci(seeds):
    m = synthetic_metrics(seeds=seeds)
    srcc_rows = m[m["metric"] == "srcc"]
    low = srcc_rows.assign(metric="srcc_ci_low", value=srcc_rows["value"] - 0.05)
    high = srcc_rows.assign(metric="srcc_ci_high", value=srcc_rows["value"] + 0.04)
    return pd.concat([m, low, high], ignore_index=True)


def test_one_seed_shows_the_bootstrap_ci_and_several_seeds_mean_std(tmp_path):
    path = tmp_path / "metrics.tsv"
    write_tsv(path, _with_ci([7]))
    one = stage_table(read_metrics(path), "AADB", ["Light", "Content", "score"], "score")
    v = srcc_value("AADB", "AADB", "multitask", "stage2", 7, "score")
    assert one.display["stage 2 (fine-tuned)"].iloc[2] == f"{v:.3f} [{v - 0.05:.3f}, {v + 0.04:.3f}]"
    assert one.data["stage2_ci_low"].iloc[2] == pytest.approx(v - 0.05)
    assert "bootstrap 95% confidence interval" in one.notes[0]
    write_tsv(path, _with_ci(SEEDS))
    many = stage_table(read_metrics(path), "AADB", ["Light", "Content", "score"], "score")
    mean, std = expected("AADB", "AADB", "multitask", "stage2", "score")
    assert many.display["stage 2 (fine-tuned)"].iloc[2] == f"{mean:.3f} ± {std:.3f}"
    assert many.data["stage2_ci_high"].iloc[2] == pytest.approx(mean + 0.04)   # the CSV keeps the CI
    assert "[" not in "".join(many.display["stage 2 (fine-tuned)"])


def test_synthetic_data_is_never_compared_with_the_paper(metrics):
    """The demo's synthetic scores get no paper column and no sentence next to the paper's numbers."""
    synthetic = {ds: {**cfg, "source": "synthetic"} for ds, cfg in DATASETS.items()}
    for build in (stage1_vs_stage2, multitask_vs_single):
        table = build(metrics, synthetic, dataset="AADB")
        assert table.data["paper"].isna().all() and set(table.display["paper"]) == {""}
        assert any("AADB: synthetic data in this run" in note for note in table.notes)
    published = published_table(metrics, synthetic, counted(metrics))
    ours = published.data[published.data["origin"] == "computed here"]
    assert ours["paper"].isna().all()
    blocks, _ = build_summary(metrics, synthetic)
    md = render_markdown(blocks)
    assert "**AADB**, **EVA**: synthetic data from the built-in generator" in md
    assert "the paper reports 0" not in md and "0.7067" not in md.split("## Key tables")[0]
    # real data keep the comparison
    real = render_markdown(build_summary(metrics, {ds: {**cfg, "source": "official"}
                                                   for ds, cfg in DATASETS.items()})[0])
    assert "the paper reports 0.7067" in real and "synthetic data" not in real


def test_two_backbones_get_rows_of_their_own(metrics):
    """A run with two backbones: every table and the summary answer multi- vs single-task per backbone, and
    no statistic mixes the two (a second backbone 0.1 lower everywhere)."""
    other = metrics.assign(backbone="efficientnet_lite0", value=metrics["value"] - 0.1)
    both = pd.concat([metrics, other], ignore_index=True)
    table = multitask_vs_single(both, DATASETS, dataset="AADB")
    d = table.data.set_index(["backbone", "target"])
    m, s = expected("AADB", "AADB", "multitask", "stage2", "score")
    assert d.loc[("vgg16", "score"), "multitask_mean"] == pytest.approx(m)
    assert d.loc[("efficientnet_lite0", "score"), "multitask_mean"] == pytest.approx(m - 0.1)
    assert d.loc[("efficientnet_lite0", "score"), "multitask_std"] == pytest.approx(s)  # seeds of one backbone
    assert list(table.display.columns)[0] == "backbone" and len(table.display) == 2 * 3
    assert any(n.startswith("backbone:") for n in table.notes)
    cross = cross_dataset(both, DATASETS)
    assert set(cross.data["backbone"]) == {"vgg16", "efficientnet_lite0"}
    # one backbone: no backbone column (the paper's layout)
    assert "backbone" not in multitask_vs_single(metrics, DATASETS, dataset="AADB").data
    published = published_table(both, DATASETS, counted(both)).data
    ours = published[published["method"].str.startswith("ours: multi-task") & (published["dataset"] == "AADB")]
    assert len(ours) == 2 and ours["total_params"].nunique() == 2  # each backbone's own parameter count
    md = render_markdown(build_summary(both, DATASETS)[0])
    for name in ("vgg16", "efficientnet_lite0"):
        assert f"**AADB**, backbone `{name}`: the multi-task model" in md
        assert f"the multi-task model ({name}) ranks" in md
    assert md.count("On the overall score, multi-task was higher than single-task") == 4  # 2 datasets x 2 backbones


def test_display_names_label_the_tables_and_files_keep_the_column_names(metrics):
    """EVA's `visual` is the paper's "light and color": shown so in every table, never in the data columns."""
    names = {"visual": "light and color"}
    datasets = {**DATASETS, "EVA": {**DATASETS["EVA"], "display_names": names}}
    for table in (multitask_vs_single(metrics, datasets, dataset="EVA"),
                  stage1_vs_stage2(metrics, datasets, dataset="EVA")):
        assert "light and color" in list(table.display["target"])
        assert "visual" in list(table.data["target"]) and "light and color" not in list(table.data["target"])
    cross = cross_table(metrics, datasets)
    assert "Light -> light and color" in list(cross.display["pair"])
    assert "visual" in list(cross.data["test_target"])
    plain = multitask_vs_single(metrics, DATASETS, dataset="EVA")
    assert "visual" in list(plain.display["target"])                 # no display name: the column name
