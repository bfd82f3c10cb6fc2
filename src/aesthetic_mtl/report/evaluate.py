"""The long metrics table every table and figure reads, from the test-split predictions.

Each training job writes a model's predictions for the test split of its own dataset and of every other
dataset (cross-dataset evaluation; `train.prediction_table`). Own-dataset rows compare each target with
itself; cross-dataset rows compare the attribute pairs configured in `experiment.cross_dataset` (e.g. AADB
Light vs EVA visual).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from aesthetic_mtl.files import read_tsv, write_tsv

METRICS_COLUMNS = ["dataset", "train_dataset", "backbone", "setting", "stage", "seed", "target", "metric", "value"]
MODEL_COLUMNS = METRICS_COLUMNS[:6]
"""What names one scored predictions table: test dataset, and the model's dataset, backbone, setting, stage
and seed."""


def target_pairs(model_targets: Iterable[str], train: str, test: str, cross: Mapping) -> list[tuple[str, str, str]]:
    """(pred target, true target, label) pairs to score for one model on one test dataset."""
    model_targets = list(model_targets)
    if train == test:
        return [(t, t, t) for t in model_targets]
    mapping = cross.get(f"{train}->{test}", {})
    return [(src, dst, f"{src}->{dst}") for src, dst in mapping.items() if src in model_targets]


def score_predictions(pred: pd.DataFrame, meta: Mapping, cross: Mapping, bootstrap: int,
                      seed: int) -> list[dict]:
    """Long-format metric rows for one predictions table."""
    from aesthetic_mtl.report.metrics import (
        all_metrics,  # scipy: imported only by the job that scores
    )

    model_targets = [c[len("pred_"):] for c in pred.columns if c.startswith("pred_")]
    rows = []
    for src, dst, label in target_pairs(model_targets, meta["train_dataset"], meta["dataset"], cross):
        for metric, value in all_metrics(pred[f"pred_{src}"], pred[f"true_{dst}"], bootstrap, seed).items():
            rows.append({**{k: meta[k] for k in MODEL_COLUMNS}, "target": label, "metric": metric,
                         "value": value})
    return rows


def metrics_table(predictions: Iterable[tuple[Mapping, pd.DataFrame]], cross: Mapping, bootstrap: int,
                  seed: int) -> pd.DataFrame:
    """Score every predictions table; `predictions` yields (meta with the keys of MODEL_COLUMNS, table)."""
    rows = []
    for meta, table in predictions:
        rows += score_predictions(table, meta, cross, bootstrap, seed)
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def write_metrics(out: Path, comparisons_out: Path, predictions: Iterable[tuple[Mapping, Path]], cross: Mapping,
                  bootstrap: int, seed: int) -> None:
    """metrics.tsv (every metric of every predictions file) and comparisons.tsv (the paired comparisons of
    models scored on the same test images), each predictions file read once."""
    from aesthetic_mtl.report.comparisons import comparisons_table

    tables = [(meta, read_tsv(path)) for meta, path in predictions]
    write_tsv(out, metrics_table(tables, cross, bootstrap, seed))
    write_tsv(comparisons_out, comparisons_table(tables, bootstrap=bootstrap, seed=seed))
