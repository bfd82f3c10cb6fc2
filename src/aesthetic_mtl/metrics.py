"""Agreement between predictions and ground truth: SRCC (the paper's metric), PLCC, KRCC, MSE, RMSE,
and a bootstrap 95% confidence interval of SRCC."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # undefined for constant input; reported as NaN, never as 0
    return float(fn(a, b)[0])


def srcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation."""
    return _corr(stats.spearmanr, np.asarray(pred), np.asarray(true))


def plcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson linear correlation."""
    return _corr(stats.pearsonr, np.asarray(pred), np.asarray(true))


def krcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall rank correlation (tau-b)."""
    return _corr(stats.kendalltau, np.asarray(pred), np.asarray(true))


def bootstrap_srcc_ci(pred: np.ndarray, true: np.ndarray, n: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of SRCC over resampled test images."""
    pred, true = np.asarray(pred), np.asarray(true)
    if n <= 0 or len(pred) < 3:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pred), size=(n, len(pred)))
    ranks_p = stats.rankdata(pred[idx], axis=1)
    ranks_t = stats.rankdata(true[idx], axis=1)
    rp = ranks_p - ranks_p.mean(axis=1, keepdims=True)
    rt = ranks_t - ranks_t.mean(axis=1, keepdims=True)
    denom = np.sqrt((rp ** 2).sum(axis=1) * (rt ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (rp * rt).sum(axis=1) / denom
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def all_metrics(pred: np.ndarray, true: np.ndarray, bootstrap: int = 1000, seed: int = 0) -> dict[str, float]:
    """Every reported metric for one target, on the [0, 1] scale."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    mse = float(np.mean((pred - true) ** 2)) if len(pred) else math.nan
    low, high = bootstrap_srcc_ci(pred, true, bootstrap, seed)
    return {"srcc": srcc(pred, true), "plcc": plcc(pred, true), "krcc": krcc(pred, true),
            "mse": mse, "rmse": math.sqrt(mse) if mse == mse else math.nan,
            "srcc_ci_low": low, "srcc_ci_high": high}
