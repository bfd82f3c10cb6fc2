"""Paired comparisons (multi- vs single-task, stage 2 vs 1, subsets): the bootstrap against a plain loop over
scipy's Spearman, what pairing buys, and which models a run compares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aesthetic_mtl.errors import DataError
from aesthetic_mtl.report.comparisons import (
    COLUMNS,
    comparisons_table,
    paired_srcc_difference,
    planned,
)
from aesthetic_mtl.report.metrics import resample_indices


def _models(n: int = 300, seed: int = 0, shared: float = 0.4, own: float = 0.1, shift: float = 0.0):
    """Truth and two models whose errors are mostly shared (as two models on one trunk): a's own noise is
    `own`, b's `own + shift`."""
    rng = np.random.default_rng(seed)
    true = rng.random(n)
    common = rng.normal(0, shared, n)
    return true, true + common + rng.normal(0, own, n), true + common + rng.normal(0, own + shift, n)


def test_the_bootstrap_is_a_loop_over_scipy_spearman():
    true, a, b = _models(n=60, shift=0.1)
    a2, b2 = a + np.random.default_rng(9).normal(0, 0.05, 60), b[::-1].copy()
    got = paired_srcc_difference([a, a2], [b, b2], true, n=200, seed=4)
    idx = resample_indices(60, 200, 4)

    def rho(x, i):
        return stats.spearmanr(x[i], true[i])[0]

    boots = np.array([np.mean([rho(a, i) - rho(b, i), rho(a2, i) - rho(b2, i)]) for i in idx])
    full = np.arange(60)
    assert got.difference == pytest.approx(np.mean([rho(a, full) - rho(b, full), rho(a2, full) - rho(b2, full)]))
    ordered = np.sort(boots)  # the 95% interval: the 5th smallest and the 5th largest of 200 resampled differences
    assert (got.ci_low, got.ci_high) == pytest.approx((ordered[4], ordered[195]))
    tail = min((boots <= 0).sum(), (boots >= 0).sum())
    assert got.p_value == pytest.approx(2 * tail / 200)
    assert (got.seeds, got.images) == (2, 60)


def test_the_interval_excludes_zero_exactly_when_p_is_below_five_percent():
    verdicts = []
    for k in range(60):
        true, a, b = _models(n=40, seed=k, shift=0.05 * (k % 6))
        test = paired_srcc_difference([a], [b], true, n=200, seed=k)
        assert (test.verdict != "includes zero") == (test.p_value < 0.05), test
        verdicts.append(test.verdict)
    assert {"above zero", "includes zero"} <= set(verdicts)  # both kinds were met


def test_a_better_model_is_found_and_identical_ones_are_not():
    true, a, b = _models(shift=0.3)
    better = paired_srcc_difference([a], [b], true, n=1000, seed=0)
    assert better.difference > 0 and better.verdict == "above zero" and better.p_value < 0.01
    worse = paired_srcc_difference([b], [a], true, n=1000, seed=0)
    assert worse.verdict == "below zero" and worse.difference == pytest.approx(-better.difference)
    same = paired_srcc_difference([a], [a.copy()], true, n=1000, seed=0)
    assert (same.difference, same.ci_low, same.ci_high, same.p_value) == (0, 0, 0, 1)


def test_pairing_sees_a_difference_that_separate_intervals_miss():
    """Two models with shared errors: the paired interval of the difference is far narrower than what the
    two models' own bootstrap intervals suggest, so a small real difference shows."""
    from aesthetic_mtl.report.metrics import bootstrap_srcc_ci

    true, a, b = _models(n=400, shared=0.5, own=0.05, shift=0.2)
    test = paired_srcc_difference([a], [b], true, n=1000, seed=1)
    low_a, high_a = bootstrap_srcc_ci(a, true, 1000, 1)
    low_b, high_b = bootstrap_srcc_ci(b, true, 1000, 1)
    assert low_a < high_b  # the separate intervals overlap ...
    assert test.verdict == "above zero"  # ... the paired one excludes zero
    assert test.ci_high - test.ci_low < 0.5 * (high_a - low_a)


def test_a_seed_with_constant_predictions_is_left_out():
    true, a, b = _models(n=50)
    result = paired_srcc_difference([a, np.ones(50)], [b, b], true, n=100, seed=0)
    alone = paired_srcc_difference([a], [b], true, n=100, seed=0)
    assert result == alone and result.seeds == 1
    assert np.isnan(paired_srcc_difference([np.ones(50)], [b], true, n=100, seed=0).difference)


def test_planned_comparisons():
    settings = ["multitask", "single_score", "no_neutral"]
    targets = {"multitask": ["Light", "score"], "single_score": ["score"], "no_neutral": ["score"]}
    assert planned(settings, targets) == [
        ("stage2_vs_stage1", ("multitask", "stage2"), ("multitask", "stage1"), "Light"),
        ("multitask_vs_single", ("multitask", "stage2"), ("single_score", "stage2"), "score"),
        ("stage2_vs_stage1", ("multitask", "stage2"), ("multitask", "stage1"), "score"),
        ("subset_vs_multitask", ("no_neutral", "stage2"), ("multitask", "stage2"), "score"),
    ]
    assert planned(["single_score"], {"single_score": ["score"]}) == []


def _table(images, targets, rng, true):
    return pd.DataFrame({"image": images, **{f"pred_{t}": rng.random(len(images)) for t in targets},
                         **{f"true_{t}": true[t] for t in targets}})


def test_comparisons_table_from_prediction_tables():
    rng = np.random.default_rng(2)
    images = [f"{k}.jpg" for k in range(20)]
    true = {t: rng.random(20) for t in ("Light", "score")}
    tables = []
    for setting, targets in (("multitask", ["Light", "score"]), ("single_score", ["score"])):
        for stage in ("stage1", "stage2"):
            for seed in (1, 2):
                meta = {"dataset": "AADB", "train_dataset": "AADB", "backbone": "vgg16", "setting": setting,
                        "stage": stage, "seed": seed}
                table = _table(images, targets, rng, true)
                if setting == "single_score":
                    table = table.iloc[::-1].reset_index(drop=True)  # another order: aligned by image
                tables.append((meta, table))
    cross = {"dataset": "EVA", "train_dataset": "AADB", "backbone": "vgg16", "setting": "multitask",
             "stage": "stage2", "seed": 1}
    tables.append((cross, _table(images[:5], ["Light"], rng, {"Light": rng.random(5)})))  # not compared
    out = comparisons_table(tables, bootstrap=50, seed=0)
    assert list(out.columns) == COLUMNS
    assert sorted(zip(out["comparison"], out["target"])) == [
        ("multitask_vs_single", "score"), ("stage2_vs_stage1", "Light"), ("stage2_vs_stage1", "score")]
    assert (out["seeds"] == 2).all() and (out["images"] == 20).all()
    single = out[out["comparison"] == "multitask_vs_single"].iloc[0]
    by = {(m["setting"], m["stage"], m["seed"]): t for m, t in tables[:8]}
    expected = paired_srcc_difference(
        [by[("multitask", "stage2", k)]["pred_score"] for k in (1, 2)],
        [by[("single_score", "stage2", k)].iloc[::-1]["pred_score"].to_numpy() for k in (1, 2)],
        true["score"], n=50, seed=0)
    assert single["difference"] == pytest.approx(expected.difference)
    assert single["p_value"] == pytest.approx(expected.p_value)

    tables[6] = (tables[6][0], tables[6][1].iloc[1:])  # single_score, stage 2, seed 1 lost a test image
    with pytest.raises(DataError, match="AADB vgg16 multitask vs single_score: the two models' prediction "
                                        "tables list different test images"):
        comparisons_table(tables, bootstrap=10, seed=0)
