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


def resample_indices(n_images: int, n: int, seed: int) -> np.ndarray:
    """`n` bootstrap resamples of `n_images` test images, (n, n_images) indices: the same draw for every model
    scored with the same seed, so two models' resampled scores stay paired."""
    return np.random.default_rng(seed).integers(0, n_images, size=(n, n_images))


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (ties averaged), minus their mean: what Spearman's correlation correlates."""
    ranks = stats.rankdata(values, axis=-1)
    return ranks - ranks.mean(axis=-1, keepdims=True)


def srcc_of_ranks(rp: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """SRCC of each row from centred ranks (`centred_ranks`); NaN where a row is constant."""
    denom = np.sqrt((rp ** 2).sum(axis=-1) * (rt ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rp * rt).sum(axis=-1) / denom


def bootstrap_srcc_ci(pred: np.ndarray, true: np.ndarray, n: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of SRCC over resampled test images."""
    pred, true = np.asarray(pred), np.asarray(true)
    if n <= 0 or len(pred) < 3:
        return math.nan, math.nan
    idx = resample_indices(len(pred), n, seed)
    values = srcc_of_ranks(centred_ranks(pred[idx]), centred_ranks(true[idx]))
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def all_metrics(pred: np.ndarray, true: np.ndarray, bootstrap: int, seed: int) -> dict[str, float]:
    """Every reported metric for one target, on the [0, 1] scale."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    mse = float(np.mean((pred - true) ** 2)) if len(pred) else math.nan
    low, high = bootstrap_srcc_ci(pred, true, bootstrap, seed)
    return {"srcc": srcc(pred, true), "plcc": plcc(pred, true), "krcc": krcc(pred, true),
            "mse": mse, "rmse": math.sqrt(mse) if mse == mse else math.nan,
            "srcc_ci_low": low, "srcc_ci_high": high}
