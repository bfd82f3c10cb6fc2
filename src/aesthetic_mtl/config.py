"""Configuration: loading with overlays, schema validation and the checks a schema cannot express.

The JSON schema (workflow/schemas/config.schema.yaml) catches unknown keys and wrong types; `check_config`
catches what depends on several keys at once (a subset naming a missing target, an unknown backbone),
so a bad config stops before any job runs, with a message that names the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
SETTING_KINDS = ("multitask", "single")
STAGES = ("stage1", "stage2")


def deep_update(base: dict, overlay: dict) -> dict:
    """Merge `overlay` into a copy of `base` the way Snakemake merges --configfile overlays."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(*paths: str | Path) -> dict:
    """Load config files, later ones overlaid on earlier ones, then validate everything."""
    config: dict = {}
    for path in paths:
        with open(path) as fh:
            config = deep_update(config, yaml.safe_load(fh) or {})
    validate_config(config)
    return config


def validate_config(config: dict, schema_path: Path = SCHEMA_PATH) -> None:
    """Schema validation then semantic checks; raise ConfigError naming the offending key."""
    import jsonschema

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.path) or "(top level)"
        raise ConfigError(f"config key '{key}': {err.message}")
    check_config(config)


def check_config(config: dict) -> None:
    """Cross-key checks; raise ConfigError naming the key."""
    from .backbones import known_backbones

    datasets = config["datasets"]
    for name, ds in datasets.items():
        _check_dataset(name, ds)
    backbone = config["backbone"]["name"]
    if backbone not in known_backbones():
        raise ConfigError(f"config key 'backbone.name': unknown backbone '{backbone}'; "
                          f"known: {', '.join(known_backbones())}")
    all_targets = {t for ds in datasets.values() for t in ds["targets"]}
    for target in config["head"].get("loss_weights", {}):
        if target not in all_targets:
            raise ConfigError(f"config key 'head.loss_weights.{target}': no dataset has target '{target}'")
    for ds_name, subsets in config["experiment"].get("subsets", {}).items():
        if ds_name not in datasets:
            raise ConfigError(f"config key 'experiment.subsets.{ds_name}': unknown dataset '{ds_name}'")
        for subset, targets in subsets.items():
            if subset in SETTING_KINDS or subset.startswith("single_"):
                raise ConfigError(f"config key 'experiment.subsets.{ds_name}.{subset}': reserved name")
            _check_targets(f"experiment.subsets.{ds_name}.{subset}", targets, datasets[ds_name])
    for ds_name, singles in config["experiment"].get("single_targets", {}).items():
        if ds_name not in datasets:
            raise ConfigError(f"config key 'experiment.single_targets.{ds_name}': unknown dataset '{ds_name}'")
        _check_targets(f"experiment.single_targets.{ds_name}", singles, datasets[ds_name])
    for pair, mapping in config["experiment"].get("cross_dataset", {}).items():
        train, test = _parse_pair(pair, datasets)
        for src, dst in mapping.items():
            _check_targets(f"experiment.cross_dataset.{pair}.{src}", [src], datasets[train])
            _check_targets(f"experiment.cross_dataset.{pair}.{src}", [dst], datasets[test])


def _check_dataset(name: str, ds: dict) -> None:
    key = f"datasets.{name}"
    if ds["overall"] not in ds["targets"]:
        raise ConfigError(f"config key '{key}.overall': '{ds['overall']}' is not one of its targets")
    for target, (low, high) in ds["targets"].items():
        if not low < high:
            raise ConfigError(f"config key '{key}.targets.{target}': range [{low}, {high}] is empty")
    split = ds["split"]
    if split["method"] == "official" and ds["format"] != "aadb":
        raise ConfigError(f"config key '{key}.split.method': format '{ds['format']}' has no official split")
    if split["method"] == "random":
        fractions = split.get("fractions")
        if fractions is None or "seed" not in split:
            raise ConfigError(f"config key '{key}.split': a random split needs 'seed' and 'fractions'")
        if abs(sum(fractions.values()) - 1) > 1e-6:
            raise ConfigError(f"config key '{key}.split.fractions': fractions sum to "
                              f"{sum(fractions.values()):g}, not 1")
    if ds["source"] == "synthetic" and "synthetic" not in ds:
        raise ConfigError(f"config key '{key}.synthetic': source 'synthetic' needs generator parameters")
    if ds["source"] == "official":
        from .datasets import get_format

        missing = [f for f in get_format(ds["format"]).required_files(ds) if f not in ds.get("files", {})]
        if missing:
            raise ConfigError(f"config key '{key}.files': no URL for {', '.join(missing)}")


def _check_targets(key: str, targets: list[str], ds: dict) -> None:
    for target in targets:
        if target not in ds["targets"]:
            raise ConfigError(f"config key '{key}': unknown target '{target}' "
                              f"(known: {', '.join(ds['targets'])})")


def _parse_pair(pair: str, datasets: dict) -> tuple[str, str]:
    parts = pair.split("->")
    if len(parts) != 2 or not all(p in datasets for p in parts):
        raise ConfigError(f"config key 'experiment.cross_dataset.{pair}': expected 'TRAIN->TEST' "
                          f"with configured datasets ({', '.join(datasets)})")
    return parts[0], parts[1]


def settings(config: dict, dataset: str) -> dict[str, list[str]]:
    """Every trained setting of a dataset and its targets: multitask, single_<target>, named subsets."""
    targets = list(config["datasets"][dataset]["targets"])
    out: dict[str, list[str]] = {}
    kinds = config["experiment"]["settings"]
    if "multitask" in kinds:
        out["multitask"] = targets
    if "single" in kinds:
        singles = config["experiment"].get("single_targets", {}).get(dataset, targets)
        out.update({f"single_{t}": [t] for t in singles})
    out.update(config["experiment"].get("subsets", {}).get(dataset, {}))
    return out


def setting_targets(config: dict, dataset: str, setting: str) -> list[str]:
    """The targets one setting trains on."""
    try:
        return settings(config, dataset)[setting]
    except KeyError:
        raise ConfigError(f"unknown setting '{setting}' for dataset '{dataset}'") from None


def resolved(config: Any) -> dict:
    """A plain-dict copy of Snakemake's config object, for provenance records."""
    return yaml.safe_load(yaml.safe_dump(dict(config)))
