"""Figures. Every figure stands on its own: title, axis labels with scales, legible fonts."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Mapping

import matplotlib
import matplotlib.transforms
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aesthetic_mtl.config import display_name  # noqa: E402
from aesthetic_mtl.data.scaling import from_unit  # noqa: E402
from aesthetic_mtl.files import atomic_path, read_tsv  # noqa: E402
from aesthetic_mtl.report.metrics import srcc  # noqa: E402
from aesthetic_mtl.report.seed_stats import one_backbone, read_metrics, stat  # noqa: E402

TRAIN_COLOR, VAL_COLOR = "#4477aa", "#ee6677"
SETTING_COLORS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"]
FONTS = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10}


def styled(fn):
    """Run a figure function with the results figures' font sizes (global rcParams untouched)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(FONTS):
            return fn(*args, **kwargs)

    return wrapper


def save(fig, path: str | Path) -> None:
    """Save a figure atomically as PNG."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def label_distributions(labels_path, ranges: dict, dataset: str, out,
                        names: Mapping[str, str] | None = None) -> None:
    """Histogram of every attribute on its raw scale (one panel per attribute), over unique images."""
    labels = read_tsv(labels_path).drop_duplicates("image")
    targets = list(ranges)
    cols = 4
    rows = math.ceil(len(targets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, target in zip(axes.flat, targets):
        low, high = ranges[target]
        ax.hist(labels[target], bins=21, range=(low, high), color="#4477aa", edgecolor="white")
        ax.set_title(display_name(target, names), fontsize=11)
        ax.set_xlabel(f"value (raw scale {low:g} to {high:g})", fontsize=9)
        ax.set_ylabel("images", fontsize=9)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: label distributions ({len(labels)} images)", fontsize=13)
    fig.tight_layout()
    save(fig, out)


# --------------------------------------------------------------------------------------------------
# results figures (read the histories, predictions and the long metrics table)
# --------------------------------------------------------------------------------------------------


@styled
def training_curves(histories: dict, dataset: str, out, setting: str = "multitask") -> None:
    """Train and validation loss per epoch of both stages; stage 2 continues after stage 1.

    `histories` maps a seed to its (history_stage1.tsv, history_stage2.tsv) paths. With several seeds
    the line is the mean and the band spans the seeds' minimum to maximum.
    """
    frames = []
    for seed, (h1, h2) in sorted(histories.items()):
        a, b = read_tsv(h1), read_tsv(h2)
        b = b.assign(epoch=b["epoch"] + a["epoch"].max())
        frames.append(pd.concat([a, b]).assign(seed=seed))
    hist = pd.concat(frames, ignore_index=True)
    n_stage1 = int(hist.loc[hist["stage"] == "stage1", "epoch"].max())
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for col, color, name in (("train_loss", TRAIN_COLOR, "training"), ("val_loss", VAL_COLOR, "validation")):
        g = hist.groupby("epoch")[col]
        mean, low, high = g.mean(), g.min(), g.max()
        ax.plot(mean.index, mean.values, "o-" if col == "train_loss" else "s--", color=color, lw=2, ms=5,
                label=f"{name} loss" + (" (mean over seeds)" if len(histories) > 1 else ""))
        if len(histories) > 1:
            ax.fill_between(mean.index, low.values, high.values, color=color, alpha=0.18, lw=0)
    ax.axvline(n_stage1 + 0.5, color="#555555", ls=":", lw=1.5)
    top = float(np.nanmax(hist[["train_loss", "val_loss"]].to_numpy()))
    ax.set_ylim(0, top * 1.3 if np.isfinite(top) and top > 0 else 1)
    label_y = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    ax.text(n_stage1 + 0.4, 0.97, "stage 1 (frozen trunk)", ha="right", va="top", fontsize=10, color="#333",
            transform=label_y)
    ax.text(n_stage1 + 0.6, 0.97, "stage 2 (fine-tuning)", ha="left", va="top", fontsize=10, color="#333",
            transform=label_y)
    ax.set_xlabel("epoch (stage 2 continues after stage 1)")
    ax.set_ylabel("MSE loss (targets scaled to [0, 1])")
    ax.set_xticks(sorted(hist["epoch"].unique()))
    ax.set_xlim(0.5, hist["epoch"].max() + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    seeds = f"seed{'s' if len(histories) > 1 else ''} {', '.join(str(s) for s in sorted(histories))}"
    ax.set_title(f"{dataset}: {_setting_label(setting)} model, training curves ({seeds})")
    fig.tight_layout()
    save(fig, out)


@styled
def prediction_scatter(predictions, ranges: dict, dataset: str, out, overall: str | None = None,
                       title_suffix: str = "multi-task model, stage 2",
                       names: Mapping[str, str] | None = None) -> None:
    """Predicted vs true value of every target on the test split, on the dataset's raw scale."""
    pred = read_tsv(predictions)
    targets = [t for t in ranges if f"pred_{t}" in pred and f"true_{t}" in pred]
    if overall in targets:
        targets.remove(overall)
        targets.insert(0, overall)
    cols = min(4, len(targets))
    rows = math.ceil(len(targets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    for ax, t in zip(axes.flat, targets):
        low, high = ranges[t]
        p, y = from_unit(pred[f"pred_{t}"], low, high), from_unit(pred[f"true_{t}"], low, high)
        ax.scatter(y, p, s=12, alpha=0.6, color="#4477aa", edgecolor="none")
        ax.plot([low, high], [low, high], color="#999999", lw=1, ls="--")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        rho = srcc(pred[f"pred_{t}"].to_numpy(), pred[f"true_{t}"].to_numpy())
        name = display_name(t, names, overall)
        ax.set_title(f"{name}\nSRCC {rho:.3f}" if np.isfinite(rho) else f"{name}\nSRCC n/a (constant)",
                     fontsize=11)
        ax.set_xlabel(f"true (scale {low:g} to {high:g})", fontsize=10)
        ax.set_ylabel("predicted (same scale)", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: predicted vs true on the test split ({len(pred)} images, {title_suffix})",
                 fontsize=13)
    fig.tight_layout()
    save(fig, out)


def _setting_label(setting: str) -> str:
    if setting == "multitask":
        return "multi-task"
    if setting == "single":
        return "single-task"
    return f"subset {setting}"


@styled
def srcc_bars(metrics, dataset: str, targets: list, out, overall: str | None = None, stage: str = "stage2",
              names: Mapping[str, str] | None = None) -> None:
    """SRCC per target: multi-task vs single-task (and named subsets), mean with std error bars over seeds."""
    m = read_metrics(metrics) if not isinstance(metrics, pd.DataFrame) else metrics
    own = m[(m["dataset"] == dataset) & (m["train_dataset"] == dataset) & (m["metric"] == "srcc")
            & (m["stage"] == stage)]
    groups = ["multitask"] if "multitask" in set(own["setting"]) else []
    if own["setting"].str.startswith("single_").any():
        groups.append("single")
    groups += [s for s in dict.fromkeys(own["setting"]) if s != "multitask" and not s.startswith("single_")]
    n_seeds = own["seed"].nunique()
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(targets))
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.5, 0.32 * len(targets) * max(1, len(groups)) + 3)), 5.0))
    for i, g in enumerate(groups):
        stats = [stat(m, dataset=dataset, train_dataset=dataset, stage=stage, target=t,
                      setting=f"single_{t}" if g == "single" else g) for t in targets]
        means = np.array([s.mean for s in stats])
        errs = np.array([s.std if np.isfinite(s.std) else 0.0 for s in stats])
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(means), width, yerr=errs if n_seeds > 1 else None, capsize=3,
               color=SETTING_COLORS[i % len(SETTING_COLORS)], label=_setting_label(g), edgecolor="white")
        for px, st in zip(pos, stats):
            if st.rows and not st.n:  # a model exists but its SRCC is undefined (constant output or labels)
                ax.text(px, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="#555", rotation=90)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([display_name(t, names) + ("\n(overall)" if t == overall else "") for t in targets],
                       rotation=30, ha="right")
    ax.set_ylabel("SRCC on the test split")
    low = min(0.0, float(np.nanmin(own["value"])) - 0.05) if own["value"].notna().any() else 0.0
    ax.set_ylim(max(-1.0, low), 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    spread = f"error bars: std over {n_seeds} seeds" if n_seeds > 1 else "one seed, no error bars"
    ax.set_title(f"{dataset}: multi-task vs single-task SRCC ({stage.replace('stage', 'stage ')}; {spread})")
    fig.tight_layout()
    save(fig, out)


@styled
def cross_heatmap(metrics, datasets: dict, out, stage: str = "stage2", setting: str = "multitask") -> None:
    """Cross-dataset SRCC: overall score for every train x test dataset, and every mapped attribute pair."""
    m = read_metrics(metrics) if not isinstance(metrics, pd.DataFrame) else metrics
    names = list(datasets)
    overall = np.full((len(names), len(names)), np.nan)
    for i, train in enumerate(names):
        for j, test in enumerate(names):
            src, dst = datasets[train]["overall"], datasets[test]["overall"]
            label = src if train == test else f"{src}->{dst}"
            overall[i, j] = stat(m, dataset=test, train_dataset=train, setting=setting, stage=stage,
                                 target=label).mean
    cross = m[(m["dataset"] != m["train_dataset"]) & (m["setting"] == setting) & (m["metric"] == "srcc")
              & (m["stage"] == stage)]
    directions = [(a, b) for a in names for b in names if a != b
                  and len(cross[(cross["train_dataset"] == a) & (cross["dataset"] == b)])]
    panels = 1 + len(directions)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 + 5.0 * len(directions), 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [1.0] + [1.5] * len(directions)}, layout="constrained")
    image = _heat(axes[0, 0], overall, names, names, "test dataset", "training dataset",
                  "overall score")
    for ax, (train, test) in zip(axes[0, 1:], directions):
        pairs = cross[(cross["train_dataset"] == train) & (cross["dataset"] == test)]["target"].unique()
        src = list(dict.fromkeys(p.split("->", 1)[0] for p in pairs))
        dst = list(dict.fromkeys(p.split("->", 1)[1] for p in pairs))
        grid = np.full((len(src), len(dst)), np.nan)
        for p in pairs:
            a, b = p.split("->", 1)
            grid[src.index(a), dst.index(b)] = stat(m, dataset=test, train_dataset=train, setting=setting,
                                                    stage=stage, target=p).mean
        rows = [display_name(a, datasets[train].get("display_names")) for a in src]
        cols = [display_name(b, datasets[test].get("display_names")) for b in dst]
        _heat(ax, grid, rows, cols, f"{test} target (test)", f"{train} target (trained)",
              f"trained on {train}, tested on {test}")
    cbar = fig.colorbar(image, ax=list(axes.flat), shrink=0.85)
    cbar.set_label("SRCC on the test split")
    fig.suptitle(f"Cross-dataset SRCC ({_setting_label(setting)} models, {stage.replace('stage', 'stage ')}; "
                 "mean over seeds; grey: pair not evaluated)", fontsize=12)
    save(fig, out)


def _heat(ax, values: np.ndarray, rows: list, cols: list, xlabel: str, ylabel: str, title: str):
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_facecolor("#d9d9d9")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=10,
                        color="white" if abs(values[i, j]) > 0.6 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    return image


# --------------------------------------------------------------------------------------------------
# what the figure rules name: each takes the rule's named inputs, its output and its options
# --------------------------------------------------------------------------------------------------

def _metrics_of(path, backbone: str | None) -> pd.DataFrame:
    """The metrics of one backbone's models: a figure never averages over several backbones."""
    return one_backbone(read_metrics(path), backbone)


def training_curves_figure(inputs: Mapping[str, list], out, *, dataset: str, seeds: list[int]) -> None:
    """Rule figure_training_curves: the multi-task model's loss curves, every seed, both stages."""
    training_curves(dict(zip(seeds, zip(inputs["stage1"], inputs["stage2"]))), dataset, out)


def scatter_figure(inputs: Mapping[str, str], out, *, dataset: str, datasets: Mapping, seed: int) -> None:
    """Rule figure_scatter: predicted against true on the test split, one model."""
    cfg = datasets[dataset]
    prediction_scatter(inputs["predictions"], cfg["attributes"], dataset, out, overall=cfg["overall"],
                       title_suffix=f"multi-task model, stage 2, seed {seed}", names=cfg.get("display_names"))


def srcc_bars_figure(inputs: Mapping[str, str], out, *, dataset: str, datasets: Mapping, backbone: str) -> None:
    """Rule figure_srcc_bars: test SRCC per target, multi- vs single-task (one backbone)."""
    cfg = datasets[dataset]
    srcc_bars(_metrics_of(inputs["metrics"], backbone), dataset, list(cfg["attributes"]), out,
              overall=cfg["overall"], names=cfg.get("display_names"))


def cross_heatmap_figure(inputs: Mapping[str, str], out, *, datasets: Mapping, backbone: str) -> None:
    """Rule figure_cross: cross-dataset SRCC of the attribute pairs (one backbone)."""
    cross_heatmap(_metrics_of(inputs["metrics"], backbone), datasets, out)
