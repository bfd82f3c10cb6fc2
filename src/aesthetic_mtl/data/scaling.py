"""Scaling of targets between their raw range and [0, 1].

The paper trains sigmoid outputs with MSE on targets scaled to [0, 1]; reports and the predict command
map predictions back to the dataset's own scale with the inverse.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from aesthetic_mtl.data.splits import split_label_table
from aesthetic_mtl.files import read_tsv, write_tsv

Ranges = Mapping[str, Sequence[float]]


def to_unit(values: np.ndarray | pd.Series, low: float, high: float) -> np.ndarray:
    """Map raw values in [low, high] to [0, 1]."""
    return (np.asarray(values, dtype=np.float64) - low) / (high - low)


def from_unit(values: np.ndarray | pd.Series, low: float, high: float) -> np.ndarray:
    """Map [0, 1] values back to the raw range [low, high]."""
    return np.asarray(values, dtype=np.float64) * (high - low) + low


def scale_table(table: pd.DataFrame, ranges: Ranges) -> pd.DataFrame:
    """Copy of `table` with every target column in `ranges` mapped to [0, 1]."""
    out = table.copy()
    for target, (low, high) in ranges.items():
        out[target] = to_unit(out[target], low, high)
    return out


def unscale_table(table: pd.DataFrame, ranges: Ranges) -> pd.DataFrame:
    """Inverse of `scale_table`."""
    out = table.copy()
    for target, (low, high) in ranges.items():
        if target in out:
            out[target] = from_unit(out[target], low, high)
    return out


def write_scaled_labels(labels_path, splits_path, ranges: Ranges, out, *, log: Callable = print) -> None:
    """Rule scale_labels: the attributes of every split row scaled to [0, 1] (images an image cache skips leave
    at training time)."""
    table = split_label_table(read_tsv(labels_path), read_tsv(splits_path), list(ranges))
    scaled = scale_table(table, ranges)
    log(f"{len(scaled)} rows; per split: {scaled['split'].value_counts().to_dict()}")
    write_tsv(out, scaled)
