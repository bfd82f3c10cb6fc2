"""Figures. Every figure stands on its own: title, axis labels with scales, legible fonts."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path, read_tsv  # noqa: E402


def save(fig, path: str | Path) -> None:
    """Save a figure atomically as PNG."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def label_distributions(labels_path, ranges: dict, dataset: str, out) -> None:
    """Histogram of every target on its raw scale (one panel per target), over unique images."""
    labels = read_tsv(labels_path).drop_duplicates("image")
    targets = list(ranges)
    cols = 4
    rows = math.ceil(len(targets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, target in zip(axes.flat, targets):
        low, high = ranges[target]
        ax.hist(labels[target], bins=21, range=(low, high), color="#4477aa", edgecolor="white")
        ax.set_title(target, fontsize=11)
        ax.set_xlabel(f"value (raw scale {low:g} to {high:g})", fontsize=9)
        ax.set_ylabel("images", fontsize=9)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: label distributions ({len(labels)} images)", fontsize=13)
    fig.tight_layout()
    save(fig, out)
