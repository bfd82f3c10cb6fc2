"""Statistics over seeds, read from the long metrics table (`results/metrics.tsv`).

The mean and the sample standard deviation of a metric are over seeds and over finite values only (an
undefined SRCC of a constant prediction is NaN and is not averaged in); every statistic is taken within one
backbone, never across several. Tables, figures and the summary all read their numbers through here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from aesthetic_mtl.files import read_tsv
from aesthetic_mtl.report.render import NOT_DEFINED


def read_metrics(path: str | Path) -> pd.DataFrame:
    """The long metrics table with `seed` as int and `value` as float."""
    df = read_tsv(path)
    df["seed"] = df["seed"].astype(int)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    for col in ("dataset", "train_dataset", "backbone", "setting", "stage", "target", "metric"):
        if col in df.columns:
            df[col] = df[col].astype(str)
    return df


def backbones_of(metrics: pd.DataFrame) -> list[str | None]:
    """The backbones of a metrics table in order of appearance ([None] for a table without the column)."""
    if "backbone" not in metrics.columns or metrics.empty:
        return [None]
    return list(dict.fromkeys(metrics["backbone"]))


def one_backbone(metrics: pd.DataFrame, backbone: str | None) -> pd.DataFrame:
    """The rows of one backbone: every statistic is taken within one backbone, never across several."""
    if backbone is None or "backbone" not in metrics.columns:
        return metrics
    return metrics[metrics["backbone"] == backbone]


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one quantity over seeds (finite values only).

    `rows` counts the seeds that have a value at all, finite or not, so an SRCC that is undefined for
    every seed (constant predictions or labels) shows as "n/a" rather than as a missing model.
    """

    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    rows: int = 0
    ci_low: float = math.nan     # bootstrap 95% CI of SRCC over test images (mean over seeds)
    ci_high: float = math.nan

    @classmethod
    def of(cls, values: Iterable[float], ci_low: Iterable[float] = (), ci_high: Iterable[float] = ()) -> "Stat":
        values = [x for x in values if x is not None]
        v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
        if len(v) == 0:
            return cls(rows=len(values))
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, int(len(v)), len(values),
                   _finite_mean(ci_low), _finite_mean(ci_high))

    def text(self, digits: int = 3) -> str:
        """'0.706 ± 0.012' (seeds), '0.706 [0.650, 0.760]' (one seed, with its bootstrap 95% CI), '0.706'
        (one seed, no CI), 'n/a' (undefined for every seed) or '' (no value)."""
        if not np.isfinite(self.mean):
            return NOT_DEFINED if self.rows else ""
        if np.isfinite(self.std):
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        if self.n == 1 and np.isfinite(self.ci_low) and np.isfinite(self.ci_high):
            return f"{self.mean:.{digits}f} [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"
        return f"{self.mean:.{digits}f}"


def _finite_mean(values: Iterable[float]) -> float:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if len(v) else math.nan


def stat(metrics: pd.DataFrame, *, dataset: str, train_dataset: str, setting: str, stage: str, target: str,
         metric: str = "srcc") -> Stat:
    """One cell: a metric of one (model setting, stage, target) on one test dataset, over seeds."""
    m = metrics
    cell = m[(m["dataset"] == dataset) & (m["train_dataset"] == train_dataset) & (m["setting"] == setting)
             & (m["stage"] == stage) & (m["target"] == target)]
    values = cell[cell["metric"] == metric].groupby("seed")["value"].first()
    if metric != "srcc":
        return Stat.of(values)
    seeds = values.index
    ci = {b: cell[cell["metric"] == f"srcc_ci_{b}"].groupby("seed")["value"].first().reindex(seeds)
          for b in ("low", "high")}
    return Stat.of(values, ci["low"], ci["high"])
