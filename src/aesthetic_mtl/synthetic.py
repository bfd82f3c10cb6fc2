"""Synthetic AADB and EVA releases: realistic labels and images that show them, in the official formats.

`generate(fmt, archives, params)` writes exactly the files `datasets.get_format(fmt).required_files`
lists for a `source: synthetic` config, so the demo runs the same extract -> parse path as the real
data. Output is deterministic for a seed: the same parameters give byte-identical archives (fixed zip
timestamps, per-image random streams, deterministic JPEG encoding).

Labels
------
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

Images
------
Each image is drawn from its latent values (u = Phi(z) in [0, 1], so labels are noisy rater readings of
what is drawn, as with real photos) by `render_image` with numpy + PIL, at image_size x image_size:

=====================  ====================================================================
AADB target            what changes in the picture as the latent grows
=====================  ====================================================================
Light                  exposure: gamma and gain from dark/under-exposed to bright
VividColor             saturation of the whole palette, from greyish to vivid
ColorHarmony           palette hues from random (clashing) offsets to an analogous or
                       complementary scheme around a base hue
DoF                    blur of the cluttered background behind a sharp subject (none -> strong)
MotionBlur             length of a directional (linear) blur of the whole frame (upper 30 %)
Object                 subject size and its contrast against the background
RuleOfThirds           subject centre moves from the frame centre (or an edge) to a thirds point
Symmetry               right half blended into the mirrored left half (upper 30 %)
Repetition             a row / grid of identical small elements (upper 35 %: 2..16 of them)
BalacingElements       a counterweight element: on the subject's side (unbalanced) -> mirrored
                       across the centre (balanced)
Content                richness of the subject: flat blob -> rings, dots, stripes, outline
score                  not drawn directly: it follows the attributes through the latent
                       correlations (content 0.70, light 0.57, harmony 0.57 ...) plus noise
=====================  ====================================================================

EVA: visual -> exposure, saturation and harmony; composition -> thirds placement, background blur
(depth) and balance; quality -> sharpness, sensor noise and JPEG quality; semantic -> subject
richness and size; score follows them through the latent. Symmetry, repetition are random and small.

AADB image archives: `image_source: original` (default) writes train + validation images to
`datasetImages_originalSize.zip` and the test images, with the release's score prefix
(`0.650_<name>`), to `AADB_newtest_originalSize.zip`; sizes vary in aspect ratio (longer side
`image_size`). `image_source: warp256` writes every image once, squashed to 256 x 256, to
`datasetImages_warp256.zip`. Pass `image_source` inside `params` (see `params_for`).

EVA: `votes_filtered.csv` plus `EVA_together.zip` cut into `parts` raw pieces (default 3), named
`EVA_together.zip.001` ...; the zip also holds ~5 % images nobody voted on, as the release does.

Table (`format: table`, your own rated photos): the configured table (`table:`, with `image_column`,
an optional `split_column` and one column per configured target) plus `images.zip`, the way
`datasets.table` extracts a downloaded release. Each target borrows one AADB latent (same name, case
aside, if AADB has it; the dataset's `overall` borrows `score`; others take unused attributes in turn),
so values and pictures agree as in synthetic AADB; values are rescaled to the configured range. Images
sit in sub-folders (`2021/`, `2022/summer/`), every fifth one is a PNG, and ~5 % of the images have no
row (ignored by `parse`, as unlabelled files are). Parameters: `n_images`, `image_size`, `seed`;
`params_for` adds the layout keys from the dataset config.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import tempfile
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from scipy.special import ndtr

from .errors import ConfigError
from .io import atomic_path

STATS_FILE = "aadb_stats.json"

AADB_DEFAULTS = {"n_train": 240, "n_validation": 40, "n_test": 80, "overlap": 8, "image_size": 256,
                 "seed": 0, "image_source": "original"}
EVA_DEFAULTS = {"n_images": 300, "min_votes": 6, "max_votes": 12, "image_size": 256, "seed": 0,
                "parts": 3}
TABLE_DEFAULTS = {"n_images": 120, "image_size": 256, "seed": 0}
TABLE_LAYOUT = ("table", "image_column", "split_column", "delimiter", "targets", "overall")

# --------------------------------------------------------------------------------- public entry


def params_for(ds_cfg: dict) -> dict:
    """Generator parameters of a dataset config: its `synthetic:` block plus `image_source`.

    A table dataset's file layout (table name, columns, delimiter, targets with ranges, overall) is
    part of its config, not of the release format, so it is passed on too.
    """
    params = dict(ds_cfg.get("synthetic") or {})
    if "image_source" in ds_cfg:
        params.setdefault("image_source", ds_cfg["image_source"])
    if ds_cfg.get("format") == "table":
        params.update({k: ds_cfg[k] for k in TABLE_LAYOUT if ds_cfg.get(k) is not None})
    return params


def generate(fmt: str, archives: Path, params: dict, targets: list[str] | None = None) -> None:
    """Write a synthetic release of format `fmt` into `archives` (file names as the real one).

    `targets` is accepted for the pipeline's convenience and not needed: like the release, the files
    always hold every target, and `parse` picks the configured ones.
    """
    archives = Path(archives)
    archives.mkdir(parents=True, exist_ok=True)
    if fmt == "aadb":
        _generate_aadb(archives, {**AADB_DEFAULTS, **(params or {})})
    elif fmt == "eva":
        _generate_eva(archives, {**EVA_DEFAULTS, **(params or {})})
    elif fmt == "table":
        _generate_table(archives, {**TABLE_DEFAULTS, **(params or {})})
    else:
        raise ConfigError(f"no synthetic generator for format {fmt!r}; known: aadb, eva, table")


# ------------------------------------------------------------------------------------ AADB labels


@lru_cache(maxsize=None)
def aadb_stats() -> dict:
    """Real AADB label statistics and the fitted label model (package data `aadb_stats.json`)."""
    return json.loads(resources.files("aesthetic_mtl").joinpath(STATS_FILE).read_text())


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
    from scipy.optimize import minimize

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
    from scipy.stats import rankdata

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
    Run `python -c "from aesthetic_mtl.synthetic import write_calibration; write_calibration()"`.
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
    path = Path(path or Path(__file__).with_name(STATS_FILE))
    stats = json.loads(path.read_text())
    stats["model"] = calibrate_aadb(stats)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stats, indent=1) + "\n")
    aadb_stats.cache_clear()
    return stats["model"]


def aadb_labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents z (n, 12; columns in `TARGETS` order) and AADB labels (rater means) for n images."""
    from .datasets.aadb import TARGETS

    stats = aadb_stats()
    model = stats["model"]
    order = model["order"]
    if order != TARGETS:
        raise RuntimeError(f"{STATS_FILE}: target order {order} differs from {TARGETS}")
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
    from .datasets.eva import COLUMNS

    return z, pd.DataFrame(out, columns=COLUMNS)


# ---------------------------------------------------------------------------------------- images

KNOBS = ("light", "vivid", "harmony", "dof", "motion", "object", "thirds", "symmetry",
         "repetition", "balance", "content", "sharpness")


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _color(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.rint(np.asarray(c) * 255), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _polygon(cx: float, cy: float, r: float, sides: int, rot: float, star: bool) -> list:
    pts = []
    n = sides * 2 if star else sides
    for i in range(n):
        rad = r * (0.5 if star and i % 2 else 1.0)
        ang = rot + 2 * math.pi * i / n
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _directional_blur(arr: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Average of `length` copies shifted along `angle` (a linear motion-blur kernel)."""
    pad = length
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = arr.shape[:2]
    acc = np.zeros_like(arr, dtype=np.float32)
    for i in range(length):
        t = i - (length - 1) / 2
        dx, dy = int(round(t * math.cos(angle))), int(round(t * math.sin(angle)))
        acc += padded[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return acc / length


def render_image(knobs: dict, rng: np.random.Generator, size: int) -> Image.Image:
    """Draw one size x size RGB picture whose look follows `knobs` (values in [0, 1], see `KNOBS`)."""
    k = {name: float(np.clip(knobs.get(name, 0.5 if name != "sharpness" else 1.0), 0, 1))
         for name in KNOBS}
    s = size
    # palette: harmony moves hue offsets from random (clashing) to an analogous/complementary scheme
    h0 = rng.random()
    scheme = [0.0, 0.5, 0.04, 0.54] if rng.random() < 0.5 else [0.0, 0.07, -0.07, 0.13]
    clash = rng.uniform(-0.5, 0.5, 4)
    clash[0] = 0.0
    hues = h0 + np.asarray(scheme) + (1.0 - k["harmony"]) * clash
    sat = np.clip(0.03 + 0.92 * k["vivid"] + rng.normal(0, 0.03, 4), 0, 1)
    bg_v = rng.uniform(0.4, 0.62)
    c0 = _rgb(hues[0], sat[0], bg_v)
    c1 = _rgb(hues[1], sat[1], np.clip(bg_v + rng.uniform(-0.2, 0.2), 0.15, 0.9))
    accent = _rgb(hues[3], sat[3], 0.85 if bg_v < 0.5 else 0.3)
    subj_raw = _rgb(hues[2], sat[2], 0.92 if bg_v < 0.52 else 0.18)

    # background: gradient + clutter; depth of field blurs it
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    ang = rng.uniform(0, 2 * math.pi)
    t = np.clip((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5, 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    img = Image.fromarray(np.clip(bg * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(10, 18))):
        cx, cy = rng.uniform(0, s, 2)
        r = rng.uniform(0.02, 0.09) * s
        col = (c0 if rng.random() < 0.5 else c1) * rng.uniform(0.6, 1.4)
        if rng.random() < 0.5:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_color(col))
        else:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=_color(col))
    blur = 0.2 + 9.0 * k["dof"] ** 1.3 * s / 256
    img = img.filter(ImageFilter.GaussianBlur(blur))
    draw = ImageDraw.Draw(img)

    # repetition: identical small elements in a row / grid band
    n_rep = int(round(16 * np.clip((k["repetition"] - 0.65) / 0.35, 0, 1)))
    if n_rep >= 2:
        rows = 1 if n_rep <= 8 else 2
        per_row = math.ceil(n_rep / rows)
        band = 0.14 if rng.random() < 0.5 else 0.86 - 0.1 * (rows - 1)
        e = 0.035 * s
        kind = int(rng.integers(0, 3))
        for j in range(n_rep):
            cx = (j % per_row + 0.5) / per_row * s
            cy = (band + 0.1 * (j // per_row)) * s
            if kind == 0:
                draw.ellipse([cx - e, cy - e, cx + e, cy + e], fill=_color(accent))
            elif kind == 1:
                draw.rectangle([cx - e, cy - e, cx + e, cy + e], fill=_color(accent))
            else:
                draw.polygon(_polygon(cx, cy, e * 1.2, 3, -math.pi / 2, False), fill=_color(accent))

    # subject: position (rule of thirds), size and contrast (object), detail (content)
    thirds = np.array([rng.choice([1 / 3, 2 / 3]), rng.choice([1 / 3, 2 / 3])])
    if rng.random() < 0.5:
        alt = np.array([0.5, 0.5]) + rng.normal(0, 0.03, 2)
    else:
        alt = np.array([rng.choice([0.12, 0.88]), rng.uniform(0.15, 0.85)])
        if rng.random() < 0.5:
            alt = alt[::-1].copy()
    pos = (alt + k["thirds"] * (thirds - alt) + rng.normal(0, 0.015, 2)) * s
    radius = (0.06 + 0.2 * k["object"]) * s
    bg_mean = (c0 + c1) / 2
    contrast = 0.2 + 0.8 * k["object"]
    subj = bg_mean + contrast * (subj_raw - bg_mean)

    # balancing element: same side as the subject (unbalanced) -> mirrored across the centre
    centre = np.array([s / 2, s / 2])
    offset = pos - centre
    norm = np.linalg.norm(offset)
    direction = offset / norm if norm > 1e-3 else np.array([1.0, 0.0])
    same_side = pos + direction * 0.22 * s + rng.normal(0, 0.03 * s, 2)
    mirrored = centre - offset if norm > 0.05 * s else centre + direction * 0.3 * s
    p2 = np.clip((1 - k["balance"]) * same_side + k["balance"] * mirrored, 0.06 * s, 0.94 * s)
    r2 = radius * (0.55 + 0.15 * (1 - k["balance"]))
    draw.ellipse([p2[0] - r2, p2[1] - r2, p2[0] + r2, p2[1] + r2], fill=_color(subj * 0.9))

    cx, cy = pos
    shape = int(rng.integers(0, 3))
    sides = int(rng.integers(5, 9))
    rot = rng.uniform(0, 2 * math.pi)

    def outline(r: float) -> list:
        if shape == 0:
            return [(cx + r * math.cos(2 * math.pi * i / 48), cy + r * math.sin(2 * math.pi * i / 48))
                    for i in range(48)]
        return _polygon(cx, cy, r, sides, rot, star=shape == 2)

    draw.polygon(outline(radius), fill=_color(subj))
    n_rings = int(round(6 * k["content"]))
    for i in range(n_rings):
        rr = radius * (1 - (i + 1) / (n_rings + 1.5))
        col = accent if i % 2 == 0 else subj
        draw.polygon(outline(rr), fill=_color(col))
    n_dots = int(round(24 * max(0.0, k["content"] - 0.3) / 0.7))
    for _ in range(n_dots):
        a, d = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random()) * 0.85
        x, y = cx + d * math.cos(a), cy + d * math.sin(a)
        e = max(1.0, 0.012 * s)
        draw.ellipse([x - e, y - e, x + e, y + e], fill=_color(1 - subj))
    if k["content"] > 0.6:
        for i in range(int(round(10 * (k["content"] - 0.6) / 0.4))):
            y = cy - radius * 0.8 + i * radius * 1.6 / 10
            draw.line([cx - radius * 0.5, y, cx + radius * 0.5, y], fill=_color(accent * 0.6), width=1)
        draw.line(outline(radius) + [outline(radius)[0]], fill=_color(1 - bg_mean), width=2)

    arr = np.asarray(img, dtype=np.float32) / 255.0

    # symmetry: mirror the left half onto the right
    m = float(np.clip((k["symmetry"] - 0.7) / 0.25, 0, 1))
    if m > 0:
        half = s // 2
        right = arr[:, s - half:]
        arr = arr.copy()
        arr[:, s - half:] = (1 - m) * right + m * arr[:, :half][:, ::-1]

    # motion blur: directional blur of the whole frame
    length = int(round(0.1 * s * np.clip((k["motion"] - 0.7) / 0.3, 0, 1)))
    if length >= 2:
        arr = _directional_blur(arr, length, rng.uniform(0, math.pi))

    # technical quality (EVA): defocus blur and sensor noise
    if k["sharpness"] < 0.98:
        pil = Image.fromarray(np.clip(arr * 255, 0, 255).astype(np.uint8))
        pil = pil.filter(ImageFilter.GaussianBlur(2.5 * (1 - k["sharpness"]) * s / 256))
        arr = np.asarray(pil, dtype=np.float32) / 255.0

    # exposure (light): a tone curve on the HSV value, pixel colours scaled along (saturation kept)
    gamma = 2.0 ** (2.4 * (0.5 - k["light"]))
    gain = 0.8 + 0.4 * k["light"]
    value = np.maximum(arr.max(axis=2, keepdims=True), 1e-4)
    arr = np.clip(arr * (np.minimum(gain * np.power(value, gamma), 1.0) / value), 0, 1)
    sigma = 0.012 + 0.07 * (1 - k["sharpness"])
    arr = arr + rng.normal(0, sigma, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def aadb_knobs(z_row: np.ndarray) -> dict:
    """Renderer knobs of one AADB image from its latent (TARGETS order)."""
    from .datasets.aadb import TARGETS

    u = dict(zip(TARGETS, ndtr(np.asarray(z_row, float))))
    return {"light": u["Light"], "vivid": u["VividColor"], "harmony": u["ColorHarmony"],
            "dof": u["DoF"], "motion": u["MotionBlur"], "object": u["Object"],
            "thirds": u["RuleOfThirds"], "symmetry": u["Symmetry"],
            "repetition": u["Repetition"], "balance": u["BalacingElements"],
            "content": u["Content"], "sharpness": 1.0}


def eva_knobs(z_row: np.ndarray, rng: np.random.Generator) -> dict:
    """Renderer knobs of one EVA image from its latent (`EVA_LATENT` order)."""
    u = dict(zip(EVA_LATENT, ndtr(np.asarray(z_row, float))))
    return {"light": u["visual"], "vivid": 0.15 + 0.85 * u["visual"] * rng.uniform(0.8, 1.0),
            "harmony": u["visual"], "dof": u["composition"], "thirds": u["composition"],
            "balance": u["composition"], "sharpness": 0.25 + 0.75 * u["quality"],
            "content": u["semantic"], "object": 0.3 + 0.7 * u["semantic"],
            "motion": 0.0, "symmetry": rng.uniform(0, 0.85), "repetition": rng.uniform(0, 0.9)}


# ------------------------------------------------------------------------------------ generators


def _int_param(params: dict, key: str, minimum: int) -> int:
    value = params.get(key)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"synthetic.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _aadb_names(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = (f"farm1_{rng.integers(100, 1000)}_{rng.integers(10**10, 10**11)}_"
                f"{rng.integers(0, 16**10):010x}_b.jpg")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3))


def _generate_aadb(archives: Path, p: dict) -> None:
    from .datasets import aadb as fmt
    from .datasets import deterministic_zip

    n_train, n_val, n_test = (_int_param(p, "n_train", 1), _int_param(p, "n_validation", 1),
                              _int_param(p, "n_test", 1))
    overlap = _int_param(p, "overlap", 0)
    size = _int_param(p, "image_size", 32)
    seed = _int_param(p, "seed", 0)
    if overlap > min(n_val, n_test):
        raise ConfigError(f"synthetic.overlap ({overlap}) cannot exceed n_validation ({n_val}) or "
                          f"n_test ({n_test})")
    source = p.get("image_source", "original")
    if source not in fmt.IMAGE_ZIPS:
        raise ConfigError(f"image_source must be one of {sorted(fmt.IMAGE_ZIPS)}, got {source!r}")

    n = n_train + n_val + n_test - overlap
    rng = np.random.default_rng([seed, 0])
    z, labels = aadb_labels(n, rng)
    names = _aadb_names(n, rng)
    labels.insert(0, "image", names)
    idx = {"train": np.arange(n_train), "validation": np.arange(n_train, n_train + n_val),
           "test": np.arange(n_train + n_val - overlap, n)}
    table = pd.concat([labels.iloc[ix].assign(split=split) for split, ix in idx.items()],
                      ignore_index=True)
    fmt.write_label_archive(table[["image", "split", *fmt.TARGETS]], archives / fmt.LABEL_ZIP)

    def picture(i: int) -> Image.Image:
        img_rng = np.random.default_rng([seed, 1, i])
        return render_image(aadb_knobs(z[i]), img_rng, size)

    if source == "warp256":
        with deterministic_zip(archives / fmt.WARP_ZIP) as add:
            for i in range(n):
                img = picture(i).resize((256, 256), Image.BICUBIC)
                add(f"{fmt.WARP_ZIP[:-4]}/{names[i]}", _jpeg(img), False)
        return

    aspects = np.random.default_rng([seed, 2]).integers(0, len(ASPECTS), n)
    encoded: dict[int, bytes] = {}

    def jpeg(i: int) -> bytes:
        if i not in encoded:
            img = picture(i)
            aw, ah = ASPECTS[aspects[i]]
            w, h = (size, round(size * ah / aw)) if aw >= ah else (round(size * aw / ah), size)
            encoded[i] = _jpeg(img if (w, h) == (size, size) else img.resize((w, h), Image.BICUBIC))
        return encoded[i]

    test_set = set(idx["test"].tolist())
    with deterministic_zip(archives / fmt.ORIGINAL_ZIP) as add:
        for i in range(n_train + n_val):
            data = jpeg(i)
            add(f"{fmt.ORIGINAL_ZIP[:-4]}/{names[i]}", data, False)
            if i not in test_set:
                encoded.pop(i)
    with deterministic_zip(archives / fmt.NEWTEST_ZIP) as add:
        for i in idx["test"]:
            prefix = f"{labels['score'].iloc[i]:.3f}"
            add(f"{fmt.NEWTEST_ZIP[:-4]}/{prefix}_{names[i]}", jpeg(int(i)), False)


def _generate_eva(archives: Path, p: dict) -> None:
    from .datasets import deterministic_zip
    from .datasets import eva as fmt

    n_images = _int_param(p, "n_images", 1)
    min_votes, max_votes = _int_param(p, "min_votes", 1), _int_param(p, "max_votes", 1)
    size, seed, parts = (_int_param(p, "image_size", 32), _int_param(p, "seed", 0),
                         _int_param(p, "parts", 1))
    if max_votes < min_votes:
        raise ConfigError(f"synthetic.max_votes ({max_votes}) < min_votes ({min_votes})")

    rng = np.random.default_rng([seed, 0])
    n_extra = max(1, n_images // 20)                  # images in the zip that nobody voted on
    ids = [str(i) for i in rng.choice(np.arange(1000, 960000), n_images + n_extra, replace=False)]
    z, votes = eva_votes(n_images, min_votes, max_votes, rng, ids[:n_images])
    z_extra = rng.standard_normal((n_extra, 5))
    fmt.write_votes(votes, archives / fmt.VOTES)

    with tempfile.TemporaryDirectory(prefix=".eva-zip.", dir=archives) as tmpdir:
        whole = Path(tmpdir) / f"{fmt.ZIP_STEM}.zip"
        with deterministic_zip(whole) as add:
            for i, image_id in enumerate(ids):
                img_rng = np.random.default_rng([seed, 1, i])
                latent = z[i] if i < n_images else z_extra[i - n_images]
                knobs = eva_knobs(latent, img_rng)
                img = render_image(knobs, img_rng, size)
                quality = int(round(45 + 50 * knobs["sharpness"]))
                add(f"{fmt.ZIP_STEM}/{image_id}.jpg", _jpeg(img, quality), False)
        data = whole.read_bytes()
    chunk = math.ceil(len(data) / parts)
    for j, name in enumerate(fmt.part_names({"source": "synthetic", "synthetic": {"parts": parts}})):
        with atomic_path(archives / name) as tmp:
            tmp.write_bytes(data[j * chunk:(j + 1) * chunk])


# Order in which table targets without an AADB namesake borrow an AADB latent (most visible first).
BORROW_ORDER = ("score", "Light", "VividColor", "ColorHarmony", "DoF", "Content", "Object",
                "RuleOfThirds", "BalacingElements", "MotionBlur", "Symmetry", "Repetition")
TABLE_FOLDERS = ("2021", "2022/summer", "2022/winter")


def borrowed_latents(targets: list[str], overall: str | None) -> dict[str, str]:
    """{table target: AADB target whose latent and labels it borrows} (see the module docstring)."""
    from .datasets.aadb import TARGETS as AADB_TARGETS

    by_lower = {t.lower(): t for t in AADB_TARGETS}
    out = {t: by_lower[t.lower()] for t in targets if t.lower() in by_lower}
    if overall in targets and overall not in out and "score" not in out.values():
        out[overall] = "score"
    free = [t for t in BORROW_ORDER if t not in out.values()] or list(BORROW_ORDER)
    for i, target in enumerate(t for t in targets if t not in out):
        out[target] = free[i % len(free)]
    return {t: out[t] for t in targets}


def _table_split(n: int, rng: np.random.Generator) -> np.ndarray:
    """70 / 10 / 20 % train / validation / test in random order (every split non-empty for n >= 3)."""
    n_test, n_val = max(1, round(0.2 * n)), max(1, round(0.1 * n))
    names = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    names[order[:n_test]] = "test"
    names[order[n_test:n_test + n_val]] = "validation"
    return names


def _generate_table(archives: Path, p: dict) -> None:
    from .datasets import deterministic_zip
    from .datasets import table as fmt
    from .datasets.aadb import RANGES as AADB_RANGES

    n = _int_param(p, "n_images", 3)
    size, seed = _int_param(p, "image_size", 32), _int_param(p, "seed", 0)
    targets = p.get("targets") or {}
    if not targets:
        raise ConfigError("synthetic table: the dataset config names no targets")
    layout = {"source": "synthetic", "table": p.get("table"), "delimiter": p.get("delimiter")}
    table_file, delim = fmt.table_name(layout), fmt.delimiter(layout)
    image_col = p.get("image_column") or fmt.DEFAULT_IMAGE_COLUMN

    rng = np.random.default_rng([seed, 0])
    n_extra = max(1, n // 20)                          # image files no row names
    z, labels = aadb_labels(n + n_extra, rng)
    borrowed = borrowed_latents(list(targets), p.get("overall"))
    names = []
    for i in range(n + n_extra):
        folder = TABLE_FOLDERS[int(rng.integers(0, len(TABLE_FOLDERS)))]
        names.append(f"{folder}/IMG_{seed:02d}{i:05d}.{'png' if i % 5 == 4 else 'jpg'}")
    table = pd.DataFrame({image_col: names[:n]})
    if p.get("split_column"):
        table[p["split_column"]] = _table_split(n, rng)
    for target, (low, high) in targets.items():
        src = borrowed[target]
        a_low, a_high = AADB_RANGES[src]
        unit = (labels[src].to_numpy()[:n] - a_low) / (a_high - a_low)
        table[target] = np.round(low + np.clip(unit, 0, 1) * (high - low), 4)
    fmt.write_table(table, archives / table_file, delim)

    with deterministic_zip(archives / fmt.SYNTHETIC_ZIP) as add:
        for i, name in enumerate(names):
            img = render_image(aadb_knobs(z[i]), np.random.default_rng([seed, 1, i]), size)
            if name.endswith(".png"):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                add(name, buf.getvalue(), False)
            else:
                add(name, _jpeg(img), False)
