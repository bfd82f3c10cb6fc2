"""Configuration: loading with overlays, schema validation and the checks a schema cannot express.

The JSON schema (`config.schema.yaml`, shipped inside the package so that any install validates configs, and
the file Snakemake's own `validate` reads: `schema_file`) catches unknown keys and wrong types; `check_config`
catches what depends on several keys at once (a subset naming a missing target, an unknown backbone),
so a bad config stops before any job runs, with a message that names the key.
"""

from __future__ import annotations

import copy
import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from aesthetic_mtl.errors import ConfigError

SCHEMA_NAME = "config.schema.yaml"
"""The config's JSON schema, a file of this package (package data): the one copy, for every reader."""
SETTING_KINDS = ("multitask", "single")
DATASET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""Dataset names become folder names (results/<name>/) and wildcard values: one safe word each."""
RESERVED_NAMES = ("cache", "models", "predictions", "tables", "figures", "weights")
"""Folders next to the datasets' own under results/ and resources/: not usable as dataset names."""


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


def drop_removed(config: dict) -> dict:
    """Apply `datasets: {NAME: null}` from an overlay: remove NAME, in place, and return `config`.

    Snakemake merges --configfile overlays key by key and stores the null as it is, so a dataset
    cannot be removed by the merge itself; this removes it afterwards, together with the
    `experiment` entries that name it (its subsets and single-task attributes, and the cross-dataset
    pairs it is part of), so `datasets: {EVA: null}` alone gives an AADB-only run.
    """
    datasets = config.get("datasets")
    if not isinstance(datasets, dict):
        return config
    removed = [name for name, ds in datasets.items() if ds is None]
    for name in removed:
        del datasets[name]
    experiment = config.get("experiment")
    if removed and isinstance(experiment, dict):
        for key in ("subsets", "single_attributes"):
            if isinstance(experiment.get(key), dict):
                for name in removed:
                    experiment[key].pop(name, None)
        pairs = experiment.get("cross_dataset")
        if isinstance(pairs, dict):
            for pair in [p for p in pairs if set(str(p).split("->")) & set(removed)]:
                del pairs[pair]
    return config


def validate_config(config: dict) -> None:
    """Apply removals (`drop_removed`, in place), then the schema, then the semantic checks.

    Raises ConfigError naming the offending key. The removal happens here because this is what
    the workflow calls on Snakemake's merged config before it reads the dataset list.
    """
    drop_removed(config)
    _refuse_old_names(config)
    _check_dataset_names(config.get("datasets"))
    errors = sorted(_Validator(_schema()).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.path) or "(top level)"
        raise ConfigError(f"config key '{key}': {err.message}")
    check_config(config)


def _fill_defaults(validator_class):
    """A validator that also writes each absent key's schema `default` into the config it checks (in place):
    the schema is the one home of every default, and code downstream reads every key without restating it."""
    properties = validator_class.VALIDATORS["properties"]

    def fill_then_check(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_then_check})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def schema_file() -> Path:
    """The schema as a file (for Snakemake's `validate`, which takes a path): inside the installed package, an
    editable checkout's `src/aesthetic_mtl/` or site-packages alike."""
    return Path(str(resources.files(__package__).joinpath(SCHEMA_NAME)))


@functools.lru_cache(maxsize=None)
def _schema() -> dict:
    """The schema, read once through importlib.resources (never through a path relative to a repository)."""
    return yaml.safe_load(resources.files(__package__).joinpath(SCHEMA_NAME).read_text(encoding="utf-8"))


def load_schema() -> dict:
    """A copy of the config's JSON schema, for callers that change it (the documentation generator's tests)."""
    return copy.deepcopy(_schema())


def schema_defaults(*section: str) -> dict:
    """The `default` of every key of a config section (`schema_defaults("training", "stage2")`), from the
    schema: the one place defaults live, also for the package's functions called without the workflow (tests,
    notebooks, bench)."""
    node = _schema()
    for key in section:
        node = node["properties"][key]
    return {key: copy.deepcopy(sub["default"]) for key, sub in node["properties"].items() if "default" in sub}


REMOVED_KEYS = {("training", "num_workers"): "it was never read (training reads memory-mapped caches in its own process)"}
"""Keys that are gone: a config still naming one is told why, not just that the key is unknown."""

RENAMED_KEYS = {
    ("datasets", "*", "targets"): "attributes",
    ("experiment", "single_targets"): "single_attributes",
}
"""Keys renamed when the project settled on one word per meaning ("attributes" for what a dataset
configures, "targets" for what one model outputs): an old config is told what changed, not just that a
key is unknown."""


def _refuse_old_names(config: dict) -> None:
    for (*parents, old), why in REMOVED_KEYS.items():
        for at, node in _matching_keys(config, tuple(parents)):
            if isinstance(node, dict) and old in node:
                raise ConfigError(f"config key '{'.'.join([*at, old])}': removed: {why}; delete it from your config")
    for (*parents, old), new in RENAMED_KEYS.items():
        for at, node in _matching_keys(config, tuple(parents)):
            if isinstance(node, dict) and old in node:
                raise ConfigError(f"config key '{'.'.join([*at, old])}': renamed '{'.'.join([*at, new])}' "
                                  f"(same content); rename the key in your config file")


def _matching_keys(node: object, pattern: tuple[str, ...], at: tuple[str, ...] = ()):
    """(key path, value) of every node under `pattern` ('*' matches any key)."""
    if not pattern:
        yield list(at), node
        return
    if not isinstance(node, dict):
        return
    keys = node if pattern[0] == "*" else [k for k in (pattern[0],) if k in node]
    for key in keys:
        yield from _matching_keys(node[key], pattern[1:], (*at, str(key)))


def backbone_names(config: dict) -> list[str]:
    """The run's backbones: `backbone.name` is one name or a list of them."""
    name = config["backbone"]["name"]
    return [name] if isinstance(name, str) else list(name)


def check_config(config: dict) -> None:
    """Cross-key checks; raise ConfigError naming the key."""
    from aesthetic_mtl.nn.backbones import known_backbones

    datasets = config["datasets"]
    for name, ds in datasets.items():
        _check_dataset(name, ds)
    names = backbone_names(config)
    for backbone in names:
        if backbone not in known_backbones():
            raise ConfigError(f"config key 'backbone.name': unknown backbone '{backbone}'; "
                              f"known: {', '.join(known_backbones())}")
    if len(names) > 1 and config["backbone"]["weights"] not in ("imagenet", "none"):
        raise ConfigError("config key 'backbone.weights': a weights file fits one backbone, but backbone.name "
                          f"lists {len(names)}; use imagenet or none, or run one backbone at a time")
    all_targets = {t for ds in datasets.values() for t in ds["attributes"]}
    for target in config["head"]["loss_weights"]:
        if target not in all_targets:
            raise ConfigError(f"config key 'head.loss_weights.{target}': no dataset has attribute '{target}'")
    for ds_name, subsets in config["experiment"]["subsets"].items():
        if ds_name not in datasets:
            raise ConfigError(f"config key 'experiment.subsets.{ds_name}': unknown dataset '{ds_name}'")
        for subset, targets in subsets.items():
            if subset in SETTING_KINDS or subset.startswith("single_"):
                raise ConfigError(f"config key 'experiment.subsets.{ds_name}.{subset}': reserved name")
            _check_targets(f"experiment.subsets.{ds_name}.{subset}", targets, datasets[ds_name])
    for ds_name, singles in config["experiment"]["single_attributes"].items():
        if ds_name not in datasets:
            raise ConfigError(f"config key 'experiment.single_attributes.{ds_name}': unknown dataset '{ds_name}'")
        _check_targets(f"experiment.single_attributes.{ds_name}", singles, datasets[ds_name])
    for pair, mapping in config["experiment"]["cross_dataset"].items():
        train, test = _parse_pair(pair, datasets)
        for src, dst in mapping.items():
            _check_targets(f"experiment.cross_dataset.{pair}.{src}", [src], datasets[train])
            _check_targets(f"experiment.cross_dataset.{pair}.{src}", [dst], datasets[test])


def _check_dataset_names(datasets: object) -> None:
    """Names are folder names and wildcards: a letter then letters, digits or _, not a reserved word."""
    if not isinstance(datasets, dict):
        return                                          # the schema reports it
    for name in datasets:
        if not isinstance(name, str) or not DATASET_NAME.match(name):
            raise ConfigError(f"config key 'datasets.{name}': dataset names must match "
                              f"{DATASET_NAME.pattern} (a letter, then letters, digits or _): "
                              f"the name becomes a folder under results/ and resources/")
        if name.lower() in RESERVED_NAMES:
            raise ConfigError(f"config key 'datasets.{name}': '{name}' is reserved (results/ and "
                              f"resources/ hold folders named {', '.join(RESERVED_NAMES)})")


def _check_dataset(name: str, ds: dict) -> None:
    from aesthetic_mtl.data.formats import get_format

    key = f"datasets.{name}"
    known = get_format(ds["format"]).LABEL_NAMES  # None: any column (format table checks its header)
    for target in ds["attributes"]:
        if known is not None and target not in known:
            raise ConfigError(f"config key '{key}.attributes.{target}': the {ds['format']} release has "
                              f"no labels named '{target}' (it has: {', '.join(known)})")
    if ds["overall"] not in ds["attributes"]:
        raise ConfigError(f"config key '{key}.overall': '{ds['overall']}' is not one of its attributes")
    for target, (low, high) in ds["attributes"].items():
        if not low < high:
            raise ConfigError(f"config key '{key}.attributes.{target}': range [{low}, {high}] is empty")
    _check_table_keys(key, ds)
    split = ds["split"]
    if split["method"] == "official" and ds["format"] == "table" and not ds.get("split_column"):
        raise ConfigError(f"config key '{key}.split.method': 'official' needs 'split_column' (the "
                          f"table's split column); without one use a random split")
    if split["method"] == "official" and ds["format"] not in ("aadb", "table"):
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
        try:
            needed = get_format(ds["format"]).required_files(ds)
        except ConfigError as err:
            raise ConfigError(f"config key '{key}': {err}") from None
        missing = [f for f in needed if f not in ds.get("files", {})]
        if missing:
            raise ConfigError(f"config key '{key}.files': no URL for {', '.join(missing)}")


TABLE_KEYS = ("table", "image_column", "split_column", "delimiter")


def _check_table_keys(key: str, ds: dict) -> None:
    """The generic table format's own keys: needed with it, meaningless without it."""
    if ds["format"] != "table":
        extra = [k for k in (*TABLE_KEYS, "path") if k in ds]
        if extra:
            raise ConfigError(f"config key '{key}.{extra[0]}': only for 'format: table' (this dataset's "
                              f"format is '{ds['format']}')")
        if ds["source"] == "local":
            raise ConfigError(f"config key '{key}.source': 'local' is for 'format: table' (place "
                              f"{ds['format']} release files in resources/<dataset>/archives/ instead)")
        return
    if not ds.get("table"):
        raise ConfigError(f"config key '{key}.table': 'format: table' needs the name of its CSV/TSV file")
    if ds["source"] == "local" and not ds.get("path"):
        raise ConfigError(f"config key '{key}.path': 'source: local' needs the folder of images and table")
    if ds["source"] != "local" and "path" in ds:
        raise ConfigError(f"config key '{key}.path': only for 'source: local'")
    from aesthetic_mtl.data.formats import table

    try:
        table.table_name(ds)
        table.delimiter(ds)
    except ConfigError as err:
        raise ConfigError(f"config key '{key}.table': {err}") from None
    columns = [ds.get("image_column") or table.DEFAULT_IMAGE_COLUMN, ds.get("split_column")]
    clash = [c for c in columns if c in ds["attributes"]]
    if clash:
        raise ConfigError(f"config key '{key}.attributes.{clash[0]}': is also the image or split column")


def _check_targets(key: str, targets: list[str], ds: dict) -> None:
    for target in targets:
        if target not in ds["attributes"]:
            raise ConfigError(f"config key '{key}': unknown attribute '{target}' "
                              f"(known: {', '.join(ds['attributes'])})")


def _parse_pair(pair: str, datasets: dict) -> tuple[str, str]:
    parts = pair.split("->")
    if len(parts) != 2 or not all(p in datasets for p in parts):
        raise ConfigError(f"config key 'experiment.cross_dataset.{pair}': expected 'TRAIN->TEST' "
                          f"with configured datasets ({', '.join(datasets)})")
    return parts[0], parts[1]


def settings(config: dict, dataset: str) -> dict[str, list[str]]:
    """Every trained setting of a dataset and its targets: multitask, single_<target>, named subsets."""
    targets = list(config["datasets"][dataset]["attributes"])
    out: dict[str, list[str]] = {}
    kinds = config["experiment"]["settings"]
    if "multitask" in kinds:
        out["multitask"] = targets
    if "single" in kinds:
        singles = config["experiment"]["single_attributes"].get(dataset, targets)
        out.update({f"single_{t}": [t] for t in singles})
    out.update(config["experiment"]["subsets"].get(dataset, {}))
    return out


def setting_targets(config: dict, dataset: str, setting: str) -> list[str]:
    """The targets one setting trains on."""
    try:
        return settings(config, dataset)[setting]
    except KeyError:
        raise ConfigError(f"unknown setting '{setting}' for dataset '{dataset}'") from None


def display_name(attribute: str, names: Mapping[str, str] | None = None, overall: str | None = None) -> str:
    """What tables and figures call an attribute: its configured display name (EVA's `visual` is the paper's
    "light and color"), else its column name; files and metrics.tsv always keep the column name."""
    shown = (names or {}).get(attribute, attribute)
    return f"{shown} (overall)" if attribute == overall else shown


def resolved(config: Any) -> dict:
    """A plain-dict copy of Snakemake's config object, for provenance records."""
    return yaml.safe_load(yaml.safe_dump(dict(config)))
