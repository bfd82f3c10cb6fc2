"""Predictions on test splits and the long metrics table every table and figure reads.

A model predicts the test split of its own dataset and of every other dataset (cross-dataset
evaluation). Own-dataset rows compare each target with itself; cross-dataset rows compare the
attribute pairs configured in `experiment.cross_dataset` (e.g. AADB Light vs EVA visual).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from .caching import open_feature_cache
from .device import pick_device
from .io import read_tsv, write_tsv
from .model import load_model
from .train import predict, split_rows

METRICS_COLUMNS = ["dataset", "train_dataset", "setting", "stage", "seed", "target", "metric", "value"]


def predict_test_split(checkpoint: Path, cache_dir: Path, targets_path: Path, test_targets: list[str], *,
                       weights_file: Path | None = None, batch_size: int = 64, threads: int | None = None,
                       model_and_ckpt=None) -> pd.DataFrame:
    """Predictions (and the truth, both on [0, 1]) for the test split of one dataset."""
    device = pick_device(threads)
    model, ckpt = model_and_ckpt or load_model(checkpoint, weights_file)
    model.to(device).eval()
    prefix, pooled, index = open_feature_cache(Path(cache_dir))
    table = read_tsv(targets_path)
    test = split_rows(table, index, "test", test_targets)
    # a stage-1 model has the pretrained trunk, so pooled features give its exact output
    inputs, forward = (pooled, model.forward_from_pooled) if ckpt["stage"] == "stage1" \
        else (prefix, model.forward_from_prefix)
    pred = predict(forward, inputs, test.rows, batch_size=batch_size, device=device)
    out = pd.DataFrame({"image": table.loc[table["split"] == "test", "image"].to_numpy()})
    for j, t in enumerate(model.targets):
        out[f"pred_{t}"] = pred[:, j]
    for j, t in enumerate(test_targets):
        out[f"true_{t}"] = test.y[:, j]
    return out


def predict_all(checkpoint: Path, tests: Mapping[str, dict], outputs: Mapping[str, Path], *,
                weights_file: Path | None = None, threads: int | None = None, log: Callable = print) -> None:
    """Predict every test dataset; `tests[name]` has `cache`, `targets_path` and `targets`."""
    loaded = load_model(checkpoint, weights_file)
    for name, test in tests.items():
        table = predict_test_split(checkpoint, test["cache"], test["targets_path"], test["targets"],
                                   threads=threads, model_and_ckpt=loaded)
        log(f"{checkpoint} -> {name}: {len(table)} test images")
        write_tsv(outputs[name], table)


def predict_models(outputs: Mapping[str, str], tests: Mapping[str, dict], *, weights_file: Path | None = None,
                   threads: int | None = None, log: Callable = print) -> None:
    """Predict with many checkpoints: `outputs` maps checkpoint -> folder of its `<test>.tsv` tables."""
    for checkpoint, folder in outputs.items():
        predict_all(Path(checkpoint), tests, {t: Path(folder) / f"{t}.tsv" for t in tests},
                    weights_file=weights_file, threads=threads, log=log)


def target_pairs(model_targets: Iterable[str], train: str, test: str, cross: Mapping) -> list[tuple[str, str, str]]:
    """(pred target, true target, label) pairs to score for one model on one test dataset."""
    model_targets = list(model_targets)
    if train == test:
        return [(t, t, t) for t in model_targets]
    mapping = cross.get(f"{train}->{test}", {})
    return [(src, dst, f"{src}->{dst}") for src, dst in mapping.items() if src in model_targets]


def score_predictions(pred: pd.DataFrame, meta: Mapping, cross: Mapping, bootstrap: int = 1000,
                      seed: int = 0) -> list[dict]:
    """Long-format metric rows for one predictions table."""
    from .metrics import all_metrics  # scipy: imported only by the job that scores

    model_targets = [c[len("pred_"):] for c in pred.columns if c.startswith("pred_")]
    rows = []
    for src, dst, label in target_pairs(model_targets, meta["train_dataset"], meta["dataset"], cross):
        for metric, value in all_metrics(pred[f"pred_{src}"], pred[f"true_{dst}"], bootstrap, seed).items():
            rows.append({**{k: meta[k] for k in METRICS_COLUMNS[:5]}, "target": label, "metric": metric,
                         "value": value})
    return rows


def metrics_table(predictions: Iterable[tuple[Mapping, Path]], cross: Mapping, bootstrap: int = 1000,
                  seed: int = 0) -> pd.DataFrame:
    """Score every predictions file; `predictions` yields (meta, path) with meta keys of METRICS_COLUMNS[:5]."""
    rows = []
    for meta, path in predictions:
        rows += score_predictions(read_tsv(path), meta, cross, bootstrap, seed)
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def write_metrics(out: Path, predictions: Iterable[tuple[Mapping, Path]], cross: Mapping,
                  bootstrap: int = 1000, seed: int = 0) -> None:
    write_tsv(out, metrics_table(predictions, cross, bootstrap, seed))
