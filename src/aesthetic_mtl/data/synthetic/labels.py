"""Synthetic labels: AADB rater means from a Gaussian copula fitted to the real statistics, EVA votes.

AADB (`aadb_labels`): each image has a latent vector z ~ N(0, R) over the 12 targets (a Gaussian
copula). Each of the image's raters (5; 3, 4 or 6 for ~4 % of images, as in the release) sees
`a_k * z_k + sqrt(1 - a_k^2) * e_k` - the rater's own impression e ~ N(0, R) is correlated across
targets too, since one rater judges all of them - and votes -1 / 0 / +1 through two thresholds
(Repetition and Symmetry: 0 / +1 only - the release has no negative values for them); the label is the
mean vote. The score is the mean of the raters' 1..5 ratings mapped to 0..1 (grid of 0.05). The
loadings a_k (0.33-0.69) and thresholds are fitted to the real per-target value histograms, and R so
that the Spearman matrix of the simulated labels matches the real one to 0.001 (`calibrate_aadb`;
stored as `model` in `aadb_stats.json` next to the real statistics it was fitted to). Zero fractions,
means, spreads and correlations with the score therefore follow the real train split.

EVA (`eva_votes`): a latent per image over (score, visual, composition, quality, semantic), attributes
correlated 0.5 with each other and 0.7 with the score (ours); each image gets `min_votes..max_votes`
votes from a pool of simulated users with a personal bias, plus noise, rounded and clipped to the
integer scales (score 0..10, attributes 1..4); the mean score over many votes is about 6.1 +- 1.0 as in
the release. difficulty, vote_time and the four check boxes are filled plausibly.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import ndtr
from scipy.stats import rankdata

from aesthetic_mtl.data.formats.aadb import ATTRIBUTES
from aesthetic_mtl.data.formats.eva import COLUMNS
from aesthetic_mtl.files import atomic_path

STATS_FILE = "aadb_stats.json"
"""Package data of `aesthetic_mtl` (next to the package's modules, not inside `synthetic/`)."""

# ------------------------------------------------------------------------------------ AADB labels


@lru_cache(maxsize=None)
def aadb_stats() -> dict:
    """Real AADB label statistics and the fitted label model (package data `aadb_stats.json`)."""
    return json.loads(resources.files(__package__).joinpath(STATS_FILE).read_text())


def _category_probs(loading: float, thresholds, z: np.ndarray) -> np.ndarray:
    """P(vote category | z) for raters seeing loading * z + noise, cut at `thresholds`."""
    s = math.sqrt(1.0 - loading ** 2)
    cdf = ndtr((np.asarray(thresholds, float)[None, :] - loading * z[:, None]) / s)
    ones = np.ones((len(z), 1))
    return np.diff(np.concatenate([0 * ones, cdf, ones], axis=1), axis=1)


def _sum_distribution(p: np.ndarray, n: int) -> np.ndarray:
    """Distribution of the sum of `n` i.i.d. category indices, row-wise (rows: z nodes)."""
    k = p.shape[1] - 1
    out = np.ones((p.shape[0], 1))
    for _ in range(n):
        new = np.zeros((p.shape[0], out.shape[1] + k))
        for c in range(k + 1):
            new[:, c:c + out.shape[1]] += out * p[:, c:c + 1]
        out = new
    return out


def mean_vote_distribution(loading: float, thresholds, n_raters: int = 5,
                           nodes: int = 80) -> np.ndarray:
    """Exact distribution of the sum of `n_raters` votes (category indices), z integrated out."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    dist = _sum_distribution(_category_probs(loading, thresholds, x), n_raters)
    return (w[:, None] * dist).sum(axis=0)


def _vote_values(name: str, hist: dict) -> list[float]:
    if name == "score":
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    one_sided = all(f == 0 for v, f in zip(hist["values"], hist["fractions"]) if v < 0)
    return [0.0, 1.0] if one_sided else [-1.0, 0.0, 1.0]


PRIOR_LOADING, PRIOR_WEIGHT = 0.65, 0.02


def _loading(x: float) -> float:
    return 0.02 + 0.96 / (1 + math.exp(-min(max(x, -30.0), 30.0)))


def _logit(loading: float) -> float:
    q = (loading - 0.02) / 0.96
    return math.log(q / (1 - q))


def _fit_marginal(name: str, hist: dict) -> dict:
    """Loading and thresholds whose 5-rater mean distribution matches the real histogram."""

    values = _vote_values(name, hist)
    k = len(values) - 1
    step = (values[-1] - values[0]) / k / 5
    grid = np.round(np.asarray(hist["values"]) / step).astype(int)
    real = np.asarray(hist["fractions"], float)
    real = real / real.sum()
    lo_index = int(round(values[0] * 5 / ((values[-1] - values[0]) / k)))
    target = np.zeros(5 * k + 1)
    for g, f in zip(grid, real):
        if 0 <= g - lo_index < len(target):
            target[g - lo_index] += f

    def unpack(theta):
        th = [theta[0]]
        for d in theta[1:]:
            th.append(th[-1] + math.exp(min(max(d, -12.0), 6.0)))
        return th

    def misfit(loading, theta):
        model = mean_vote_distribution(loading, unpack(theta))
        return float(np.sum((model - target) ** 2 / (target + 0.005)))

    # Profile over the loading (the misfit has local minima and is flat for some targets), with a
    # weak pull towards 0.65 so the labels keep an image-level signal where the data cannot tell.
    start = [-1.0] + [math.log(2.0 / k)] * (k - 1) if k > 1 else [1.0]
    best = None
    for loading in np.arange(0.05, 0.91, 0.05):
        res = minimize(lambda th: misfit(loading, th), start, method="Nelder-Mead",
                       options={"maxiter": 3000, "xatol": 1e-6, "fatol": 1e-11})
        score = res.fun + PRIOR_WEIGHT * (loading - PRIOR_LOADING) ** 2
        if best is None or score < best[0]:
            best = (score, float(loading), res.x)
    th0 = best[2]
    joint = minimize(lambda x: misfit(_loading(x[0]), x[1:])
                     + PRIOR_WEIGHT * (_loading(x[0]) - PRIOR_LOADING) ** 2,
                     [_logit(best[1]), *th0], method="Nelder-Mead",
                     options={"maxiter": 6000, "xatol": 1e-7, "fatol": 1e-12})
    loading, th = _loading(joint.x[0]), unpack(joint.x[1:])
    loss = misfit(loading, joint.x[1:])
    model = mean_vote_distribution(loading, th)
    support = values[0] + np.arange(5 * k + 1) * step
    return {"loading": round(loading, 6), "thresholds": [round(float(t), 6) for t in th],
            "values": values,
            "fit": {"loss": round(loss, 8),
                    "mean": round(float(model @ support), 4),
                    "std": round(float(math.sqrt(model @ support ** 2 - (model @ support) ** 2)), 4),
                    "zero_fraction": round(float(model[np.argmin(np.abs(support))]), 4)}}


def _votes_to_means(z: np.ndarray, noise: np.ndarray, n_raters: np.ndarray,
                    model: dict, order: list[str]) -> np.ndarray:
    """Rater means for latents z (N, T) and rater noise (N, R, T); raters beyond n_raters ignored."""
    mask = np.arange(noise.shape[1])[None, :] < n_raters[:, None]
    out = np.empty(z.shape)
    for j, name in enumerate(order):
        spec = model["targets"][name]
        a = spec["loading"]
        y = a * z[:, j:j + 1] + math.sqrt(1 - a * a) * noise[:, :, j]
        cat = np.searchsorted(np.asarray(spec["thresholds"]), y)
        vote = np.asarray(spec["values"])[cat]
        out[:, j] = (vote * mask).sum(axis=1) / n_raters
    return out


def _spearman(x: np.ndarray) -> np.ndarray:

    return np.corrcoef(rankdata(x, axis=0), rowvar=False)


def _nearest_correlation(r: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """A positive-definite correlation matrix close to `r` (eigenvalue clipping, unit diagonal)."""
    r = (r + r.T) / 2
    for _ in range(20):
        vals, vecs = np.linalg.eigh(r)
        r = (vecs * np.maximum(vals, floor)) @ vecs.T
        d = np.sqrt(np.diag(r))
        r = r / d[:, None] / d[None, :]
        if np.linalg.eigvalsh(r).min() > floor / 2:
            break
    return r


def calibrate_aadb(stats: dict | None = None, n: int = 20000, iterations: int = 12,
                   seed: int = 0) -> dict:
    """Fit the AADB label model to the stored real statistics (offline; result is `model` in JSON).

    Marginals: per-target loading and thresholds from the 5-rater histograms (exact, quadrature).
    Dependence: the latent correlation is adjusted until the Spearman matrix of `n` simulated
    5-rater labels matches the real one (common random numbers, so the iteration is smooth).
    Run `python -c "from aesthetic_mtl.data.synthetic import write_calibration; write_calibration()"`.
    """
    stats = stats or aadb_stats()
    order = stats["spearman_matrix"]["order"]
    target_s = np.asarray(stats["spearman_matrix"]["values"], float)
    model = {"order": order,
             "targets": {t: _fit_marginal(t, stats["histograms_5_raters"][t]) for t in order}}
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, len(order)))
    noise = rng.standard_normal((n, 5, len(order)))
    fives = np.full(n, 5)
    r = 2 * np.sin(np.pi * target_s / 6)
    for _ in range(iterations):
        r = _nearest_correlation(np.clip(r, -0.97, 0.97) * (1 - np.eye(len(order))) + np.eye(len(order)))
        chol = np.linalg.cholesky(r)
        obs = _spearman(_votes_to_means(eps @ chol.T, noise @ chol.T, fives, model, order))
        r = r + (target_s - obs)
    r = _nearest_correlation(np.clip(r, -0.97, 0.97) * (1 - np.eye(len(order))) + np.eye(len(order)))
    chol = np.linalg.cholesky(r)
    obs = _spearman(_votes_to_means(eps @ chol.T, noise @ chol.T, fives, model, order))
    model["latent_corr"] = np.round(r, 5).tolist()
    model["spearman_max_abs_error"] = round(float(np.abs(obs - target_s).max()), 4)
    model["simulated_spearman_with_score"] = dict(zip(order, np.round(obs[-1], 3).tolist()))
    return model


def write_calibration(path: Path | None = None) -> dict:
    """Recompute `model` and store it in the package's `aadb_stats.json` (developer tool)."""
    path = Path(path or Path(__file__).parent / STATS_FILE)
    stats = json.loads(path.read_text())
    stats["model"] = calibrate_aadb(stats)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stats, indent=1) + "\n")
    aadb_stats.cache_clear()
    return stats["model"]


def aadb_labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents z (n, 12; columns in `ATTRIBUTES` order) and AADB labels (rater means) for n images."""

    stats = aadb_stats()
    model = stats["model"]
    order = model["order"]
    if order != ATTRIBUTES:
        raise RuntimeError(f"{STATS_FILE}: target order {order} differs from {ATTRIBUTES}")
    chol = np.linalg.cholesky(np.asarray(model["latent_corr"], float))
    z = rng.standard_normal((n, len(order))) @ chol.T
    counts = stats["rater_counts"]
    n_raters = rng.choice(counts["counts"], size=n, p=counts["probabilities"])
    noise = rng.standard_normal((n, max(counts["counts"]), len(order))) @ chol.T
    means = _votes_to_means(z, noise, n_raters, model, order)
    return z, pd.DataFrame(np.round(means, 6), columns=order)


# ------------------------------------------------------------------------------------- EVA votes

EVA_LATENT = ["score", "visual", "composition", "quality", "semantic"]


def eva_votes(n_images: int, min_votes: int, max_votes: int, rng: np.random.Generator,
              image_ids: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents (n, 5; `EVA_LATENT` order) and one row per vote in the release's columns."""
    corr = np.full((5, 5), 0.5)
    corr[0, 1:] = corr[1:, 0] = 0.7
    np.fill_diagonal(corr, 1.0)
    z = rng.standard_normal((n_images, 5)) @ np.linalg.cholesky(corr).T
    n_users = max(3 * max_votes, n_images // 3)
    users = [f"{'EC'[i % 2]}{100 + i}" for i in range(n_users)]
    score_bias = rng.normal(0, 0.7, n_users)
    attr_bias = rng.normal(0, 0.2, (n_users, 4))
    counts = rng.integers(min_votes, max_votes + 1, n_images)
    start = datetime(2019, 3, 1, 9, 0, 0)
    rows = []
    for i in range(n_images):
        who = rng.choice(n_users, size=counts[i], replace=False)
        for u in who:
            score = int(np.clip(np.rint(6.1 + 1.0 * z[i, 0] + score_bias[u] + rng.normal(0, 1.2)),
                                0, 10))
            attrs = np.clip(np.rint(2.65 + 0.55 * z[i, 1:] + attr_bias[u] + rng.normal(0, 0.6, 4)),
                            1, 4).astype(int)
            boxes = (rng.random(4) < 0.15).astype(int)
            boxes[int(np.argmax(np.abs(attrs - 2.5) + rng.random(4) * 0.1))] = 1
            rows.append([image_ids[i], users[u], score,
                         int(np.clip(np.rint(2.7 + rng.normal(0, 0.8)), 1, 4)), *attrs.tolist(),
                         None, *boxes.tolist()])
    order = rng.permutation(len(rows))
    stamp = start
    out = []
    for k in order:                      # votes in time order, shuffled across images
        stamp += timedelta(seconds=int(rng.integers(3, 90)))
        row = rows[k]
        row[8] = stamp.strftime("%Y-%m-%d %H:%M:%S")
        out.append(row)

    return z, pd.DataFrame(out, columns=COLUMNS)
