"""`results/summary.md`: the key tables and a few sentences written from the numbers.

Nothing here is hand-written prose about results: every sentence is generated from metrics.tsv, the
split reports and the lists of skipped images, so it stays true when the numbers change.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from aesthetic_mtl.files import read_tsv, write_text
from aesthetic_mtl.report.comparisons import Paired, paired, read_comparisons
from aesthetic_mtl.report.paper import PAPER_CITATION, is_synthetic, paper_value
from aesthetic_mtl.report.paper_tables import Table, cross_dataset, multitask_vs_single, stage1_vs_stage2
from aesthetic_mtl.report.render import CSS, html_grid
from aesthetic_mtl.report.seed_stats import (
    Stat,
    backbones_of,
    one_backbone,
    read_metrics,
    stat,
)


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "n/a"


def _test_note(p: Paired) -> str:
    """', 95% CI [+0.003, +0.021], p = 0.012' of a paired comparison ('' when it was not made)."""
    if not np.isfinite(p.ci_low):
        return ""
    return f", 95% CI [{p.ci_low:+.3f}, {p.ci_high:+.3f}], p = {p.p_value:.3f}"


def _count_sentence(what: str, pairs: list[tuple[Stat, Stat, Paired]]) -> str:
    """'... higher on 7 of 12 targets, 3 of them with a 95% CI above zero (1 below zero)'."""
    higher = sum(a.mean > b.mean for a, b, _ in pairs)
    above = sum(p.verdict == "above zero" for *_, p in pairs)
    below = sum(p.verdict == "below zero" for *_, p in pairs)
    tested = any(p.verdict for *_, p in pairs)
    text = f"{what} higher on {higher} of {len(pairs)} targets"
    if tested and higher:
        text += f", {above} of them with a 95% CI above zero"
    if tested and below:
        text += f"; {below} with a 95% CI below zero"
    return text + f"; mean difference {np.mean([a.mean - b.mean for a, b, _ in pairs]):+.3f}"


def dataset_findings(metrics: pd.DataFrame, dataset: str, cfg: Mapping, backbone: str | None = None,
                     comparisons: pd.DataFrame | None = None) -> list[str]:
    """Sentences about one dataset (and one backbone's models, when named): overall SRCC vs the paper,
    multi- vs single-task, stage 2 vs 1, each difference judged by its paired comparison (comparisons.tsv)."""
    overall, targets = cfg["overall"], list(cfg["attributes"])
    named = backbones_of(metrics)[0]

    def s(setting, stage, target=overall):
        return stat(metrics, dataset=dataset, train_dataset=dataset, setting=setting, stage=stage, target=target)

    def test(kind, target=overall):
        return paired(comparisons, dataset=dataset, backbone=named, kind=kind, setting="multitask", target=target)

    m1, m2, single = s("multitask", "stage1"), s("multitask", "stage2"), s(f"single_{overall}", "stage2")
    out = []
    name = f"**{dataset}**, backbone `{backbone}`" if backbone else f"**{dataset}**"
    if m2.n == 0:
        return [f"{name}: no finite stage-2 SRCC of the multi-task model on the overall score "
                f"(`{overall}`): it was not trained, or its predictions were constant."]
    seeds = f"{m2.n} seed{'s' if m2.n > 1 else ''}"
    first = (f"{name}: the multi-task model predicts the overall score (`{overall}`) of the test split "
             f"with SRCC {m2.text()} after stage 2 ({seeds})")
    paper = paper_value(dataset, overall, cfg.get("source"))
    if np.isfinite(paper):
        diff = m2.mean - paper
        first += (f"; the paper reports {paper:g}, so ours is {abs(diff):.3f} "
                  f"{'higher' if diff > 0 else 'lower' if diff < 0 else 'different'}")
    out.append(first + ".")
    if single.n:
        diff, versus = m2.mean - single.mean, test("multitask_vs_single")
        verdict = "higher than" if diff >= 0.0005 else "tied with" if diff > -0.0005 else "lower than"
        judged = {"above zero": "; the paired 95% CI lies above zero: multi-task beat single-task here",
                  "below zero": "; the paired 95% CI lies below zero: single-task beat multi-task here",
                  "includes zero": "; the paired 95% CI includes zero: no difference shown at the 95% level"}
        out.append(f"On the overall score, multi-task was {verdict} single-task: {m2.text()} vs {single.text()} "
                   f"(multi − single = {diff:+.3f}{_test_note(versus)}){judged.get(versus.verdict, '')}.")
    else:
        out.append(f"No single-task model of `{overall}` was trained, so multi- vs single-task cannot be "
                   "compared on the overall score.")
    pairs = [(s("multitask", "stage2", t), s(f"single_{t}", "stage2", t), test("multitask_vs_single", t))
             for t in targets]
    pairs = [(a, b, p) for a, b, p in pairs if a.n and b.n]
    if len(pairs) > 1:
        out.append(f"Over the {len(pairs)} targets with a single-task baseline: "
                   + _count_sentence("multi-task", pairs) + ".")
    if m1.n:
        diff = m2.mean - m1.mean
        changes = [(s("multitask", "stage2", t), s("multitask", "stage1", t), test("stage2_vs_stage1", t))
                   for t in targets]
        changes = [(a, b, p) for a, b, p in changes if a.n and b.n]
        out.append(f"Fine-tuning (stage 2) changed the overall-score SRCC from {m1.text()} to {m2.text()} "
                   f"({diff:+.3f}{_test_note(test('stage2_vs_stage1'))}); over all targets, "
                   + _count_sentence("stage 2", changes) + ".")
    return out


def cross_findings(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], backbone: str | None = None) -> list[str]:
    """One sentence per train -> test direction on the overall score (of one backbone's models, when named)."""
    model = f"multi-task model ({backbone})" if backbone else "multi-task model"
    out = []
    for train in datasets:
        for test in datasets:
            if train == test:
                continue
            src, dst = datasets[train]["overall"], datasets[test]["overall"]
            c = stat(metrics, dataset=test, train_dataset=train, setting="multitask", stage="stage2",
                     target=f"{src}->{dst}")
            if c.n == 0:
                continue
            own = stat(metrics, dataset=test, train_dataset=test, setting="multitask", stage="stage2", target=dst)
            ref = f"; the model trained on {test} itself reaches {own.text()}" if own.n else ""
            out.append(f"Trained on {train} and tested on {test}, the {model} ranks the overall score "
                       f"(`{src}` -> `{dst}`) with SRCC {c.text()}{ref}.")
    return out


def data_findings(datasets: Sequence[str], split_reports: Mapping[str, str | Path],
                  skipped: Mapping[str, str | Path]) -> list[str]:
    """Unreadable images left out, and images shared between validation and test."""
    out = []
    for ds in datasets:
        path = skipped.get(ds)
        if path and Path(path).exists():
            table = read_tsv(path)
            if len(table):
                examples = ", ".join(f"`{i}`" for i in table["image"].astype(str).head(3))
                out.append(f"{ds}: {len(table)} image{'s' if len(table) != 1 else ''} were missing or could "
                           f"not be read and {'were' if len(table) != 1 else 'was'} left out of every split "
                           f"(listed in `{path}`), e.g. {examples}.")
            else:
                out.append(f"{ds}: every image could be read (no skipped images).")
        path = split_reports.get(ds)
        if path and Path(path).exists():
            report = json.loads(Path(path).read_text())
            counts = report.get("counts", {})
            overlap = report.get("overlaps", {}).get("validation&test", {"count": 0, "examples": []})
            sizes = ", ".join(f"{k} {v}" for k, v in counts.items())
            text = f"{ds} splits: {sizes}. "
            if overlap.get("count"):
                ex = ", ".join(f"`{i}`" for i in overlap.get("examples", [])[:3])
                text += (f"{overlap['count']} images are in both the validation and the test split (e.g. {ex}); "
                         "test scores include them, as in the official release.")
            else:
                text += "No image is in both the validation and the test split."
            out.append(text)
    return out


def synthetic_notice(datasets: Mapping[str, Mapping]) -> list[tuple[str, object]]:
    """A paragraph saying plainly which datasets are synthetic: their scores are no paper reproduction."""
    synthetic = [ds for ds, cfg in datasets.items() if is_synthetic(cfg.get("source"))]
    if not synthetic:
        return []
    names = ", ".join(f"**{ds}**" for ds in synthetic)
    return [("p", f"{names}: synthetic data from the built-in generator (the demo), not the real release. These "
                  "numbers show that the pipeline runs end to end; they are not comparable with the paper's, "
                  "and no sentence or table column here compares them.")]


def build_summary(metrics: pd.DataFrame, datasets: Mapping[str, Mapping], *,
                  split_reports: Mapping[str, str | Path] | None = None,
                  skipped: Mapping[str, str | Path] | None = None,
                  comparisons: pd.DataFrame | None = None) -> tuple[list[tuple[str, object]], list[Table]]:
    """Blocks (('h2', text), ('p', text), ('ul', [items]), ('table', Table)) of the summary."""
    seeds = sorted(metrics["seed"].unique())
    named = backbones_of(metrics)
    blocks: list[tuple[str, object]] = [
        ("h1", "Results summary"),
        ("p", f"Generated from the run's `metrics.tsv`: SRCC on each test split, mean ± std over "
              f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}). "
              f"Differences between two of our models are judged by a paired bootstrap over the test images "
              f"(95% CI and two-sided p-value; `comparisons.tsv`). Paper values: {PAPER_CITATION}."),
        *synthetic_notice(datasets),
        ("h2", "Findings"),
        ("ul", [line for ds, cfg in datasets.items() for b in named
                for line in dataset_findings(one_backbone(metrics, b), ds, cfg, b if len(named) > 1 else None,
                                             comparisons)]),
    ]
    cross = [line for b in named for line in cross_findings(one_backbone(metrics, b), datasets,
                                                             b if len(named) > 1 else None)]
    if cross:
        blocks += [("h2", "Cross-dataset"), ("ul", cross)]
    data = data_findings(list(datasets), split_reports or {}, skipped or {})
    if data:
        blocks += [("h2", "Data"), ("ul", data)]
    tables = []
    for ds, cfg in datasets.items():
        for build in (stage1_vs_stage2, multitask_vs_single):
            tables.append(build(metrics, datasets, dataset=ds, comparisons=comparisons))
    if (metrics["dataset"] != metrics["train_dataset"]).any():
        tables.append(cross_dataset(metrics, datasets))
    blocks.append(("h2", "Key tables"))
    blocks += [("table", t) for t in tables]
    return blocks, tables


def render_markdown(blocks) -> str:
    parts = []
    for kind, content in blocks:
        if kind == "h1":
            parts.append(f"# {content}")
        elif kind == "h2":
            parts.append(f"## {content}")
        elif kind == "p":
            parts.append(str(content))
        elif kind == "ul":
            parts.append("\n".join(f"- {item}" for item in content))
        elif kind == "table":
            parts.append(content.markdown().rstrip())
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown `code` and **bold** of our own sentences -> HTML (everything else escaped)."""
    out, code = [], False
    for piece in html.escape(text).split("`"):
        bold = piece.split("**")
        piece = "".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bold)) if not code else piece
        out.append(f"<code>{piece}</code>" if code else piece)
        code = not code
    return "".join(out)


def render_html(blocks) -> str:
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(str(content))}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(str(content))}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in content) + "</ul>")
        elif kind == "table":
            table = html_grid(content.display)
            notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in content.notes)
            body.append(f"<h3>{html.escape(content.title)}</h3>{table}{notes}")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Results summary</title>"
            f"<style>{CSS}li{{margin:4px 0}}</style></head><body>{''.join(body)}</body></html>\n")


def write_summary(metrics_path: str | Path, datasets: Mapping[str, Mapping], out_md: str | Path, *,
                  out_html: str | Path | None = None, split_reports: Mapping[str, str | Path] | None = None,
                  skipped: Mapping[str, str | Path] | None = None, comparisons_path: str | Path | None = None) -> str:
    """Write results/summary.md (and an HTML copy for the report); returns the Markdown."""
    comparisons = read_comparisons(comparisons_path) if comparisons_path else None
    blocks, _ = build_summary(read_metrics(metrics_path), datasets, split_reports=split_reports, skipped=skipped,
                              comparisons=comparisons)
    text = render_markdown(blocks)
    write_text(out_md, text)
    if out_html is not None:
        write_text(out_html, render_html(blocks))
    return text


__all__ = ["build_summary", "cross_findings", "data_findings", "dataset_findings", "write_summary"]
