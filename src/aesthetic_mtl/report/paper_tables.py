"""The paper's tables, computed from the long metrics table (`results/metrics.tsv`).

Every table is written four ways under `results/tables/`: CSV (numbers: mean, std and number of seeds
in separate columns), Markdown and LaTeX (``mean ± std``, for papers and READMEs), and a small HTML
page for the Snakemake report. Values are SRCC on the test split unless a table says otherwise; the
mean and the sample standard deviation are over seeds, and the standard deviation is left blank when
there is only one seed (or one finite value: an undefined SRCC of a constant prediction is NaN and is
not averaged in). With one seed the display shows the bootstrap 95% CI of SRCC over test images
instead (``0.706 [0.650, 0.760]``); the CSV has the CI columns either way (averaged over seeds).

Every difference between two of our models (multi- vs single-task, stage 2 vs stage 1, a subset vs the
full multi-task model) comes with the paired bootstrap of `comparisons.py`: its 95% CI and p-value (CSV
columns ``difference_ci_low``, ``difference_ci_high``, ``p_value``, a subset's with its name in front).

Every table has a ``paper`` column that holds only numbers the paper reports, and is blank elsewhere:
the overall-score SRCC of the multi-task model on AADB (0.7067) and on EVA (0.695).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from aesthetic_mtl.config import display_name
from aesthetic_mtl.files import atomic_path, write_text
from aesthetic_mtl.report.comparisons import Paired, paired, read_comparisons
from aesthetic_mtl.report.paper import (
    PAPER_CITATION,
    PUBLISHED,
    Published,
    is_synthetic,
    paper_value,
)
from aesthetic_mtl.report.render import (
    CSS,
    NOT_DEFINED,
    html_grid,
    markdown_grid,
    numeric_column,
    tex,
)
from aesthetic_mtl.report.seed_stats import (
    Stat,
    backbones_of,
    one_backbone,
    read_metrics,
    stat,
)
from aesthetic_mtl.specs import STAGES

OUTPUT_KINDS = ("csv", "md", "tex", "html")



def _paper_text(value: float) -> str:
    return f"{value:g}" if np.isfinite(value) else ""


# --------------------------------------------------------------------------------------------------
# a table: numbers for CSV, text for Markdown / LaTeX / HTML
# --------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """A table with its numeric (CSV) and display (Markdown / LaTeX / HTML) forms."""

    name: str
    title: str
    data: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.display.astype(str) == NOT_DEFINED).any().any():
            self.notes.append(f"{NOT_DEFINED}: SRCC undefined (constant predictions or constant labels on the "
                              "test split, for every seed).")

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", markdown_grid(self.display)]
        lines += ["", *(f"- {n}" for n in self.notes)] if self.notes else []
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        cols = list(self.display.columns)
        align = "l" + "".join("r" if numeric_column(self.display[c]) else "l" for c in cols[1:])
        body = [" & ".join(tex(c) for c in cols) + r" \\", r"\midrule"]
        body += [" & ".join(tex(v) for v in row) + r" \\" for row in self.display.itertuples(index=False)]
        notes = "".join(f"\n\\par\\footnotesize {tex(n)}" for n in self.notes)
        return "\n".join([
            r"\begin{table}[htbp]", r"\centering", rf"\caption{{{tex(self.title)}}}",
            rf"\label{{tab:{self.name}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule", *body,
            r"\bottomrule", r"\end{tabular}" + notes, r"\end{table}",
        ]) + "\n"

    def html(self) -> str:
        table = html_grid(self.display)
        notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in self.notes)
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{CSS}</style></head><body><h3>{html.escape(self.title)}</h3>{table}{notes}"
                "</body></html>\n")

    def write(self, outputs: Mapping[str, str | Path]) -> None:
        """Write the forms named in `outputs` (keys among csv, md, tex, html), each atomically."""
        unknown = set(outputs) - set(OUTPUT_KINDS)
        if unknown:
            raise ValueError(f"unknown table output kinds {sorted(unknown)}; expected {OUTPUT_KINDS}")
        for kind, path in outputs.items():
            if kind == "csv":
                with atomic_path(path, suffix=".csv") as tmp:
                    self.data.to_csv(tmp, index=False, float_format="%.6g")
            else:
                write_text(path, {"md": self.markdown, "tex": self.latex, "html": self.html}[kind]())


def per_backbone(build: Callable[[pd.DataFrame], Table], metrics: pd.DataFrame) -> Table:
    """`build` on each backbone's rows, stacked under a leading `backbone` column when a run trained several
    (the paper's open question: does multi-task win with other backbones too?); one backbone: as built."""
    names = backbones_of(metrics)
    if len(names) == 1:
        return build(metrics)
    parts = [(name, build(one_backbone(metrics, name))) for name in names]
    first = parts[0][1]

    def stacked(form: str) -> pd.DataFrame:
        frames = [getattr(t, form).copy() for _, t in parts]
        for (name, _), frame in zip(parts, frames):
            frame.insert(0, "backbone", name)
        return pd.concat(frames, ignore_index=True)

    notes = [n for n in first.notes if not n.startswith(NOT_DEFINED)]
    notes.append(f"backbone: rows of the models built on each backbone trunk ({', '.join(names)}); "
                 "means and spreads are over the seeds of one backbone.")
    return Table(first.name, f"{first.title}, per backbone", stacked("data"), stacked("display"), notes)


# --------------------------------------------------------------------------------------------------
# the paper's tables
# --------------------------------------------------------------------------------------------------

def _stat_columns(prefix: str, s: Stat) -> dict:
    return {f"{prefix}_mean": s.mean, f"{prefix}_std": s.std, f"{prefix}_n": s.n,
            f"{prefix}_ci_low": s.ci_low, f"{prefix}_ci_high": s.ci_high}


def _diff(a: Stat, b: Stat) -> float:
    return a.mean - b.mean if np.isfinite(a.mean) and np.isfinite(b.mean) else math.nan


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}" if np.isfinite(x) else ""


def _paired_columns(prefix: str, p: Paired) -> dict:
    return {f"{prefix}difference_ci_low": p.ci_low, f"{prefix}difference_ci_high": p.ci_high,
            f"{prefix}p_value": p.p_value}


def _with_ci(diff: float, p: Paired) -> str:
    """'+0.012 [-0.010, +0.035]': a difference of means with the paired bootstrap 95% CI when there is one."""
    ci = f" [{_signed(p.ci_low)}, {_signed(p.ci_high)}]" if np.isfinite(p.ci_low) else ""
    return _signed(diff) + ci if np.isfinite(diff) else ""


def _p_text(p: Paired) -> str:
    return f"{p.p_value:.3f}" if np.isfinite(p.p_value) else ""


PAIRED_NOTE = ("[95% CI] and p: paired bootstrap over the test images (the same resamples for both models and every "
               "seed; the SRCC difference averaged over seeds); p is two-sided, for no difference.")


def _one_backbone_name(metrics: pd.DataFrame) -> str | None:
    """The backbone of a one-backbone metrics table (per_backbone hands each builder one backbone's rows)."""
    return backbones_of(metrics)[0]


def _seed_note(metrics: pd.DataFrame) -> str:
    seeds = sorted(metrics["seed"].unique())
    if len(seeds) > 1:
        return (f"Mean ± sample standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                "the CSV also has the bootstrap 95% CI of SRCC (averaged over seeds).")
    return (f"One seed ({', '.join(map(str, seeds))}): no standard deviation; in brackets the bootstrap 95% "
            "confidence interval of SRCC over test images.")


def _paper_note(synthetic: Sequence[str] = ()) -> str:
    note = (f"'paper': the value reported by {PAPER_CITATION} (overall score only); "
            "blank where the paper gives no number.")
    if synthetic:
        note += (f" {', '.join(synthetic)}: synthetic data in this run (the built-in generator), so the column "
                 "stays blank: these numbers test the pipeline and are not comparable with the paper's.")
    return note


def stage_table(metrics: pd.DataFrame, dataset: str, targets: Sequence[str], overall: str,
                setting: str = "multitask", source: str | None = None,
                names: Mapping[str, str] | None = None, comparisons: pd.DataFrame | None = None) -> Table:
    """SRCC per target of the multi-task model after stage 1 (frozen trunk) and stage 2 (fine-tuned), and the
    paired comparison of the two."""
    data, display = [], []
    backbone = _one_backbone_name(metrics)
    for t in targets:
        s1, s2 = (stat(metrics, dataset=dataset, train_dataset=dataset, setting=setting, stage=st, target=t)
                  for st in STAGES)
        test = paired(comparisons, dataset=dataset, backbone=backbone, kind="stage2_vs_stage1", setting=setting,
                      target=t)
        paper = paper_value(dataset, t, source)
        data.append({"target": t, **_stat_columns("stage1", s1), **_stat_columns("stage2", s2),
                     "difference": _diff(s2, s1), **_paired_columns("", test), "paper": paper})
        display.append({"target": display_name(t, names, overall), "stage 1 (frozen trunk)": s1.text(),
                        "stage 2 (fine-tuned)": s2.text(), "stage 2 − stage 1 [95% CI]": _with_ci(_diff(s2, s1), test),
                        "p": _p_text(test), "paper": _paper_text(paper)})
    return Table(f"{dataset}_stage1_vs_stage2",
                 f"{dataset}: test SRCC of the {setting.replace('multitask', 'multi-task')} model per target, "
                 "stage 1 vs stage 2",
                 pd.DataFrame(data), pd.DataFrame(display),
                 [_seed_note(metrics), "stage 2 − stage 1: stage 2 mean minus stage 1 mean. " + PAIRED_NOTE,
                  _paper_note([dataset] if is_synthetic(source) else [])])


def settings_table(metrics: pd.DataFrame, dataset: str, targets: Sequence[str], overall: str,
                   stage: str = "stage2", source: str | None = None,
                   names: Mapping[str, str] | None = None, comparisons: pd.DataFrame | None = None) -> Table:
    """SRCC per target: the multi-task model vs one single-task model per target (and named subsets vs the
    multi-task model), each difference with its paired comparison."""
    own = metrics[(metrics["dataset"] == dataset) & (metrics["train_dataset"] == dataset)]
    subsets = [s for s in dict.fromkeys(own["setting"]) if s != "multitask" and not s.startswith("single_")]
    backbone = _one_backbone_name(metrics)
    data, display = [], []
    for t in targets:
        def test(kind: str, setting: str) -> Paired:
            return paired(comparisons, dataset=dataset, backbone=backbone, kind=kind, setting=setting, target=t)

        multi = stat(metrics, dataset=dataset, train_dataset=dataset, setting="multitask", stage=stage, target=t)
        single = stat(metrics, dataset=dataset, train_dataset=dataset, setting=f"single_{t}", stage=stage,
                      target=t)
        subs = {s: stat(metrics, dataset=dataset, train_dataset=dataset, setting=s, stage=stage, target=t)
                for s in subsets}
        paper = paper_value(dataset, t, source)
        versus_single = test("multitask_vs_single", "multitask")
        row = {"target": t, **_stat_columns("multitask", multi), **_stat_columns("single", single),
               "difference": _diff(multi, single), **_paired_columns("", versus_single)}
        shown = {"target": display_name(t, names, overall), "multi-task": multi.text(), "single-task": single.text(),
                 "multi − single [95% CI]": _with_ci(_diff(multi, single), versus_single), "p": _p_text(versus_single)}
        for s, v in subs.items():
            versus_multi = test("subset_vs_multitask", s)
            row.update({**_stat_columns(s, v), f"{s}_difference": _diff(v, multi),
                        **_paired_columns(f"{s}_", versus_multi)})
            shown.update({f"subset {s}": v.text(), f"{s} − multi [95% CI]": _with_ci(_diff(v, multi), versus_multi),
                          f"p ({s})": _p_text(versus_multi)})
        data.append({**row, "paper": paper})
        display.append({**shown, "paper": _paper_text(paper)})
    notes = [_seed_note(metrics),
             "single-task: a separate model trained on that target alone (blank: no single-task model configured).",
             PAIRED_NOTE]
    if subsets:
        notes.append("subset columns: multi-task models trained on a named subset of the targets "
                     "(blank: target not in the subset), compared with the full multi-task model.")
    notes.append(_paper_note([dataset] if is_synthetic(source) else []))
    return Table(f"{dataset}_multitask_vs_single",
                 f"{dataset}: test SRCC per target, multi-task vs single-task ({stage.replace('stage', 'stage ')})",
                 pd.DataFrame(data), pd.DataFrame(display), notes)


def cross_table(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], stage: str = "stage2") -> Table:
    """Train on one dataset, test on another: the overall score and the mapped attribute pairs."""
    cross = metrics[(metrics["dataset"] != metrics["train_dataset"]) & (metrics["setting"] == "multitask")
                    & (metrics["metric"] == "srcc")]
    data, display = [], []
    order = list(datasets)
    pairs = cross[["train_dataset", "dataset", "target"]].drop_duplicates()
    pairs = pairs.assign(_a=pairs["train_dataset"].map(order.index), _b=pairs["dataset"].map(order.index))
    for train, test, label in pairs.sort_values(["_a", "_b"], kind="stable")[["train_dataset", "dataset",
                                                                              "target"]].itertuples(index=False):
        src, dst = label.split("->", 1)
        s = stat(metrics, dataset=test, train_dataset=train, setting="multitask", stage=stage, target=label)
        single = stat(metrics, dataset=test, train_dataset=train, setting=f"single_{src}", stage=stage,
                      target=label)
        within = stat(metrics, dataset=test, train_dataset=test, setting="multitask", stage=stage, target=dst)
        is_overall = src == datasets[train]["overall"] and dst == datasets[test]["overall"]
        data.append({"train_dataset": train, "test_dataset": test, "train_target": src, "test_target": dst,
                     "overall": is_overall, **_stat_columns("multitask", s), **_stat_columns("single", single),
                     **_stat_columns("within_test_dataset", within), "paper": math.nan})
        pair = (f"{display_name(src, datasets[train].get('display_names'))} -> "
                f"{display_name(dst, datasets[test].get('display_names'))}")
        display.append({"trained on": train, "tested on": test,
                        "pair": pair + (" (overall)" if is_overall else ""),
                        "multi-task": s.text(), "single-task": single.text(),
                        "trained on test dataset": within.text(), "paper": ""})
    notes = [_seed_note(metrics),
             f"Test split of the test dataset, {stage.replace('stage', 'stage ')} models. Pairs map a target of "
             "the training dataset onto a related target of the test dataset (experiment.cross_dataset).",
             "trained on test dataset: the multi-task model trained on the test dataset itself, same test "
             "target (the within-dataset reference).",
             "paper: blank, the paper reports no cross-dataset number we can key here."]
    return Table("cross_dataset", "Cross-dataset test SRCC: trained on one dataset, tested on the other",
                 pd.DataFrame(data), pd.DataFrame(display), notes)


def published_table(metrics: pd.DataFrame, datasets: Mapping[str, Mapping],
                    parameters: Mapping[tuple[str, str, str], Mapping[str, int]],
                    published: Sequence[Published] = tuple(PUBLISHED), stage: str = "stage2") -> Table:
    """Overall-score SRCC of our models (one pair of rows per backbone in `metrics`) next to the paper's and
    other published numbers. `parameters`: (dataset, backbone, setting) -> the parameter counts the training
    job recorded for that model (parameters.json: total, and what each stage trains)."""
    data, display = [], []

    def add(ds, method, source, s: Stat, total, trainable, paper, reported: bool = False):
        origin = "quoted" if reported else "computed here"
        data.append({"dataset": ds, "method": method, "source": source, "origin": origin, "srcc_mean": s.mean,
                     "srcc_std": s.std, "srcc_n": s.n if not reported else None,
                     "srcc_ci_low": s.ci_low, "srcc_ci_high": s.ci_high, "total_params": total,
                     "trainable_params": trainable, "paper": paper})
        display.append({"dataset": ds, "method": method, "source": source, "origin": origin,
                        "overall SRCC": f"{s.mean:g}" if reported else s.text(),
                        "parameters": f"{total:,}" if total else "",
                        "trained in stage 2": f"{trainable:,}" if trainable else "",
                        "paper": _paper_text(paper)})

    named = backbones_of(metrics)
    for ds, cfg in datasets.items():
        overall, targets = cfg["overall"], list(cfg["attributes"])
        paper = paper_value(ds, overall, cfg.get("source"))
        for trunk in named:  # each backbone's models with its own parameter counts
            rows = one_backbone(metrics, trunk)
            multi = stat(rows, dataset=ds, train_dataset=ds, setting="multitask", stage=stage, target=overall)
            if multi.n:
                counts = parameters.get((ds, trunk, "multitask"), {})
                add(ds, f"ours: multi-task ({trunk}, {len(targets)} outputs)", "this workflow", multi,
                    counts.get("total"), counts.get(stage), paper)
            single = stat(rows, dataset=ds, train_dataset=ds, setting=f"single_{overall}", stage=stage,
                          target=overall)
            if single.n:
                counts = parameters.get((ds, trunk, f"single_{overall}"), {})
                add(ds, f"ours: single-task {overall} ({trunk})", "this workflow", single, counts.get("total"),
                    counts.get(stage), math.nan)
        quoted = paper_value(ds, overall)
        if np.isfinite(quoted):
            add(ds, "Soydaner & Wagemans: multi-task CNN (VGG16)", "arXiv 2305.09373 (2023)", Stat(quoted),
                None, None, paper, reported=True)
        for p in published:
            if p.dataset == ds:
                add(ds, p.method, p.source, Stat(p.srcc), p.total_params, p.trainable_params, math.nan,
                    reported=True)
    notes = [_seed_note(metrics),
             "origin: 'computed here' rows are this workflow's models on this run's data; 'quoted' rows are "
             "numbers copied from the source named in the row (on the real AADB / EVA test sets).",
             "Our parameter counts are those the training job recorded for the model (parameters.json): backbone "
             "trunk + head; trained in stage 2 = the stage-2 trunk layers and the head. Blank: not reported by "
             "the source.",
             _paper_note([ds for ds, cfg in datasets.items() if is_synthetic(cfg.get("source"))])]
    return Table("published", "Overall-score test SRCC against the paper and published methods",
                 pd.DataFrame(data), pd.DataFrame(display), notes)


# --------------------------------------------------------------------------------------------------
# what the workflow calls
# --------------------------------------------------------------------------------------------------

def stage1_vs_stage2(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], *, dataset: str,
                     comparisons: pd.DataFrame | None = None, **_) -> Table:
    """Table of rule table_stages: `stage_table` of one dataset, per backbone."""
    return _per_backbone_of(stage_table, metrics, datasets[dataset], dataset, comparisons)


def multitask_vs_single(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], *, dataset: str,
                        comparisons: pd.DataFrame | None = None, **_) -> Table:
    """Table of rule table_settings: `settings_table` of one dataset, per backbone."""
    return _per_backbone_of(settings_table, metrics, datasets[dataset], dataset, comparisons)


def _per_backbone_of(table: Callable[..., Table], metrics: pd.DataFrame, cfg: Mapping, dataset: str,
                     comparisons: pd.DataFrame | None) -> Table:
    """`table` (stage_table or settings_table) of one dataset for each backbone of `metrics`; `cfg` without
    display names (the summary's) keeps the column names."""
    return per_backbone(lambda m: table(m, dataset, list(cfg["attributes"]), cfg["overall"], source=cfg["source"],
                                        names=cfg.get("display_names"), comparisons=comparisons), metrics)


def cross_dataset(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], **_) -> Table:
    """Table of rule table_cross: `cross_table`, per backbone."""
    return per_backbone(lambda m: cross_table(m, datasets), metrics)


def published(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], *,
              parameters: Mapping[tuple[str, str, str], Mapping[str, int]], **_) -> Table:
    """Table of rule table_published: `published_table`."""
    return published_table(metrics, datasets, parameters)


TableBuilder = Callable[..., Table]


def write_table(build: TableBuilder, metrics_path: str | Path, outputs: Mapping[str, str | Path],
                datasets: Mapping[str, Mapping], *, dataset: str | None = None,
                comparisons_path: str | Path | None = None,
                parameters: Mapping[tuple[str, str, str], str | Path] | None = None) -> Table:
    """Build one table with `build` (the function its rule names) from metrics.tsv, the paired comparisons and
    the recorded parameter counts, then write its CSV / Markdown / LaTeX / HTML forms."""
    comparisons = read_comparisons(comparisons_path) if comparisons_path else None
    counts = {key: json.loads(Path(path).read_text()) for key, path in (parameters or {}).items()}
    table = build(read_metrics(metrics_path), datasets, dataset=dataset, comparisons=comparisons, parameters=counts)
    table.write({k: v for k, v in outputs.items() if k in OUTPUT_KINDS})
    return table
