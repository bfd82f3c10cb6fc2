"""Metrics against scipy on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aesthetic_mtl.report.metrics import (
    all_metrics,
    bootstrap_srcc_ci,
    krcc,
    plcc,
    srcc,
)


def test_against_scipy():
    rng = np.random.default_rng(0)
    true = rng.random(200)
    pred = true + rng.normal(0, 0.3, 200)
    assert srcc(pred, true) == pytest.approx(stats.spearmanr(pred, true)[0])
    assert plcc(pred, true) == pytest.approx(stats.pearsonr(pred, true)[0])
    assert krcc(pred, true) == pytest.approx(stats.kendalltau(pred, true)[0])
    m = all_metrics(pred, true, bootstrap=0, seed=0)
    assert m["mse"] == pytest.approx(np.mean((pred - true) ** 2))
    assert m["rmse"] == pytest.approx(math.sqrt(m["mse"]))


def test_known_values():
    assert srcc([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert srcc([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(srcc([1, 1, 1], [1, 2, 3]))  # undefined, never reported as 0


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    true = rng.random(300)
    pred = true + rng.normal(0, 0.5, 300)
    low, high = bootstrap_srcc_ci(pred, true, n=500, seed=0)
    assert low < srcc(pred, true) < high
    assert 0.05 < high - low < 0.3
    assert bootstrap_srcc_ci(pred, true, n=500, seed=0) == (low, high)
