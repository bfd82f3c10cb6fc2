"""Paired comparisons of two models that scored the same test images: the paper's claim that multi-task beats
single-task, stage 2 against stage 1, and a task subset against the full multi-task model.

Comparing means over seeds ignores that both models rank the same images, and a test split of a few hundred
images moves SRCC by a few hundredths by itself. So each comparison is paired: for one target, the test images
are resampled (the same bootstrap indices for both models and for every seed), the SRCC difference is computed
on every resample for every seed and averaged over the seeds. The difference reported is the seeds' mean
difference on the whole test split; its 95% CI is the percentile interval of the resampled differences d*
(the k-th smallest and k-th largest of n, k = ceil(0.025 n)); the p-value is the two-sided bootstrap p-value of
"no difference", 2 * min(share of d* <= 0, share of d* >= 0), and at least 1 / n. Both read the same n values,
so the CI excludes zero exactly when p < 0.05 (for n > 20).

`results/comparisons.tsv` (rule metrics) holds one row per comparison and target; tables and the summary read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import read_tsv
from aesthetic_mtl.report.metrics import centred_ranks, resample_indices, srcc_of_ranks

COLUMNS = ["dataset", "backbone", "comparison", "setting", "stage", "baseline_setting", "baseline_stage", "target",
           "seeds", "images", "difference", "difference_ci_low", "difference_ci_high", "p_value"]
KINDS = ("multitask_vs_single", "stage2_vs_stage1", "subset_vs_multitask")
LEVEL = 0.95


@dataclass(frozen=True)
class Paired:
    """The SRCC difference of model A minus model B over seeds, with its bootstrap 95% CI and p-value."""

    difference: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    seeds: int = 0
    images: int = 0

    @property
    def verdict(self) -> str:
        """'above zero', 'below zero' or 'includes zero' for the 95% CI ('' when undefined)."""
        if not np.isfinite(self.ci_low):
            return ""
        return "above zero" if self.ci_low > 0 else "below zero" if self.ci_high < 0 else "includes zero"


def paired_srcc_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], true: np.ndarray, *, n: int,
                           seed: int) -> Paired:
    """SRCC(a_k, true) - SRCC(b_k, true) averaged over seeds k, with the paired bootstrap of the module docstring.

    `a` and `b` hold one prediction vector per seed, aligned with `true`; a seed whose SRCC is undefined for
    either model (constant predictions) is left out."""
    true = np.asarray(true, dtype=np.float64)
    full_rt = centred_ranks(true)
    pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(a, b)]
    pairs = [(x, y) for x, y in pairs
             if np.isfinite(srcc_of_ranks(centred_ranks(x), full_rt)) and np.isfinite(srcc_of_ranks(centred_ranks(y), full_rt))]
    if not pairs or len(true) < 3:
        return Paired(seeds=len(pairs), images=len(true))
    observed = float(np.mean([srcc_of_ranks(centred_ranks(x), full_rt) - srcc_of_ranks(centred_ranks(y), full_rt)
                              for x, y in pairs]))
    if n <= 0:
        return Paired(observed, seeds=len(pairs), images=len(true))
    idx = resample_indices(len(true), n, seed)
    rt = centred_ranks(true[idx])
    per_seed = [srcc_of_ranks(centred_ranks(x[idx]), rt) - srcc_of_ranks(centred_ranks(y[idx]), rt) for x, y in pairs]
    with np.errstate(invalid="ignore"):
        boots = np.nanmean(np.stack(per_seed), axis=0) if len(per_seed) > 1 else per_seed[0]
    boots = boots[np.isfinite(boots)]
    if len(boots) == 0:
        return Paired(observed, seeds=len(pairs), images=len(true))
    ordered = np.sort(boots)
    k = max(1, math.ceil(round((1 - LEVEL) / 2 * len(boots), 9)))
    low, high = ordered[k - 1], ordered[len(boots) - k]
    tail = min(np.sum(boots <= 0), np.sum(boots >= 0))
    p = min(1.0, max(2 * tail, 1) / len(boots))
    return Paired(observed, float(low), float(high), float(p), len(pairs), len(true))


# --------------------------------------------------------------------------------------------------
# which models are compared
# --------------------------------------------------------------------------------------------------

def planned(settings: Iterable[str], targets_of: Mapping[str, Sequence[str]]) -> list[tuple[str, tuple, tuple, str]]:
    """(kind, (setting, stage), (baseline setting, baseline stage), target) of one dataset and backbone.

    multitask_vs_single: the multi-task model against `single_<target>`; stage2_vs_stage1: the multi-task model
    after fine-tuning against itself before; subset_vs_multitask: a named subset against the full model."""
    settings = list(settings)
    if "multitask" not in settings:
        return []
    out = []
    subsets = [s for s in settings if s != "multitask" and not s.startswith("single_")]
    for t in targets_of["multitask"]:
        if f"single_{t}" in settings:
            out.append(("multitask_vs_single", ("multitask", "stage2"), (f"single_{t}", "stage2"), t))
        out.append(("stage2_vs_stage1", ("multitask", "stage2"), ("multitask", "stage1"), t))
        out += [("subset_vs_multitask", (s, "stage2"), ("multitask", "stage2"), t) for s in subsets
                if t in targets_of[s]]
    return out


def _aligned(table: pd.DataFrame, images: pd.Series, where: str) -> pd.DataFrame:
    """`table`'s rows in the order of `images`; the two models must have scored the same test images."""
    if sorted(table["image"].astype(str)) != sorted(images.astype(str)):
        raise DataError(f"{where}: the two models' prediction tables list different test images")
    return table.set_index(table["image"].astype(str)).loc[images.astype(str)].reset_index(drop=True)


def comparisons_table(tables: Iterable[tuple[Mapping, pd.DataFrame]], *, bootstrap: int, seed: int) -> pd.DataFrame:
    """Every paired comparison (module docstring) of the own-dataset prediction tables among `tables`
    ((meta with the keys of evaluate.MODEL_COLUMNS, predictions table))."""
    own: dict[tuple, dict[tuple, pd.DataFrame]] = {}
    for meta, table in tables:
        if meta["dataset"] == meta["train_dataset"]:
            group = own.setdefault((meta["dataset"], meta["backbone"]), {})
            group[(meta["setting"], meta["stage"], int(meta["seed"]))] = table
    rows = []
    for (dataset, backbone), models in own.items():
        settings = list(dict.fromkeys(setting for setting, _, _ in models))
        targets_of = {s: [c[len("pred_"):] for c in next(t for (m, _, _), t in models.items() if m == s).columns
                          if c.startswith("pred_")] for s in settings}
        for kind, a, b, target in planned(settings, targets_of):
            seeds = sorted({k for (s, st, k) in models if (s, st) == a} & {k for (s, st, k) in models if (s, st) == b})
            if not seeds:
                continue
            first = models[(*a, seeds[0])]
            where = f"{dataset} {backbone} {a[0]} vs {b[0]}"
            pa = [_aligned(models[(*a, k)], first["image"], where)[f"pred_{target}"].to_numpy() for k in seeds]
            pb = [_aligned(models[(*b, k)], first["image"], where)[f"pred_{target}"].to_numpy() for k in seeds]
            result = paired_srcc_difference(pa, pb, first[f"true_{target}"].to_numpy(), n=bootstrap, seed=seed)
            rows.append({"dataset": dataset, "backbone": backbone, "comparison": kind, "setting": a[0],
                         "stage": a[1], "baseline_setting": b[0], "baseline_stage": b[1], "target": target,
                         "seeds": result.seeds, "images": result.images, "difference": result.difference,
                         "difference_ci_low": result.ci_low, "difference_ci_high": result.ci_high,
                         "p_value": result.p_value})
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------------------------------------------
# reading them back (tables, summary)
# --------------------------------------------------------------------------------------------------

def read_comparisons(path) -> pd.DataFrame:
    """comparisons.tsv with its numbers as numbers (an empty file: no rows)."""

    table = read_tsv(path)
    for col in COLUMNS:
        numeric = col in ("seeds", "images") or col.startswith(("difference", "p_value"))
        table[col] = pd.to_numeric(table[col], errors="coerce") if numeric else table[col].astype(str)
    return table


def paired(comparisons: pd.DataFrame | None, *, dataset: str, backbone: str | None, kind: str, setting: str,
           target: str) -> Paired:
    """One comparison from comparisons.tsv (empty Paired when it was not made)."""
    if comparisons is None or comparisons.empty:
        return Paired()
    c = comparisons
    row = c[(c["dataset"] == dataset) & (c["comparison"] == kind) & (c["setting"] == setting)
            & (c["target"] == target) & ((c["backbone"] == backbone) if backbone is not None else True)]
    if row.empty:
        return Paired()
    r = row.iloc[0]
    return Paired(float(r["difference"]), float(r["difference_ci_low"]), float(r["difference_ci_high"]),
                  float(r["p_value"]), int(r["seeds"]), int(r["images"]))
