# Helpers shared by all rules: config validation, wildcard constraints, every path of the DAG, and the
# params each rule gets. Every config value that changes a job's result reaches the job as a param here,
# so Snakemake's rerun triggers (params, input, code) rerun exactly the jobs a config change affects.
import itertools

from snakemake.utils import validate

from aesthetic_mtl.config import backbone_names, schema_file, settings, validate_config
from aesthetic_mtl.data.formats import get_format
from aesthetic_mtl.data.image_cache import memory_mb as image_cache_memory_mb
from aesthetic_mtl.pipeline import output_key

validate_config(config)  # schema + cross-key checks; one line naming the bad key, before any job runs
validate(config, str(schema_file()))  # Snakemake's own check of the same schema (shipped in the package)

DATASETS = list(config["datasets"])
BACKBONES = backbone_names(config)  # one run can train every model on several backbones
FIGURE_BACKBONE = BACKBONES[0]  # the figures show the first one
SIZE = config["images"]["size"]
SEEDS = config["training"]["seeds"]
FIRST_SEED = SEEDS[0]
STAGES = ["stage1", "stage2"]
CONDA_ENV = "../../envs/aesthetic-mtl.yaml"  # for --software-deployment-method conda (clusters)

# Every file the workflow writes, by kind, under the configured folders (`paths`; the demo writes apart).
# `path()` is the only place that fills them in, the folders like any other placeholder.
TEMPLATES = {
    "archives": "{resources}/{dataset}/archives.sha256.json",
    "raw": "{resources}/{dataset}/raw",
    "weights": "{resources}/weights/{backbone}.pth",
    "labels": "{results}/{dataset}/labels.tsv",
    "splits": "{results}/{dataset}/splits.tsv",
    "split_report": "{results}/{dataset}/split_report.json",
    "scaled_labels": "{results}/{dataset}/scaled_labels.tsv",
    "label_figure": "{results}/{dataset}/label_distributions.png",
    "images": "{results}/{dataset}/images_{size}/{file}",
    "features": "{results}/cache/{dataset}/{backbone}_{size}/{file}",
    "checkpoint": "{results}/models/{dataset}/{backbone}/{setting}/seed{seed}/{stage}.pt",
    "history": "{results}/models/{dataset}/{backbone}/{setting}/seed{seed}/history_{stage}.tsv",
    "predictions": "{results}/predictions/{dataset}/{backbone}/{setting}/seed{seed}/{stage}/{test}.tsv",
    "metrics": "{results}/metrics.tsv",
    "comparisons": "{results}/comparisons.tsv",
    "provenance": "{results}/metrics.provenance.json",
    "summary": "{results}/summary.{ext}",
    "table": "{results}/tables/{name}.{ext}",
    "figure": "{results}/figures/{name}.png",
    "log": "{logs}/{rule}/{name}.log",
}
FOLDERS = {"results": "results", "resources": "resources", "logs": "logs", **config.get("paths", {})}
TABLE_FORMATS = ("csv", "md", "tex", "html")


def path(kind, **values):
    """The path of one kind of file with the folders and the given wildcard values filled in; the others
    stay wildcards."""
    filled = TEMPLATES[kind]
    for key, value in {**FOLDERS, **values}.items():
        filled = filled.replace(f"{{{key}}}", str(value))
    return filled


wildcard_constraints:
    dataset="|".join(DATASETS),
    test="|".join(DATASETS),
    backbone="|".join(BACKBONES),
    seed=r"\d+",
    size=r"\d+",
    stage="stage1|stage2",
    setting=r"[A-Za-z0-9_]+",


# --------------------------------------------------------------------------------------------------
# params: the config values each job's result depends on
# --------------------------------------------------------------------------------------------------


def release_cfg(wildcards):
    """What decides a dataset's release files and how they unpack: not its split, overall score or display
    names, and its attributes only where they shape the files (a synthetic table's columns)."""
    ds = config["datasets"][wildcards.dataset]
    skip = ["split", "overall", "display_names"]
    if not get_format(ds["format"]).RELEASE_FROM_ATTRIBUTES:
        skip.append("attributes")
    return {k: v for k, v in ds.items() if k not in skip}


def labels_cfg(wildcards):
    """What decides the tidy label table: the release and the attributes (with their raw ranges)."""
    return {
        **release_cfg(wildcards),
        "attributes": config["datasets"][wildcards.dataset]["attributes"],
    }


def model_info(dataset):
    """Attribute ranges, overall score and source of a dataset: what models and overall-score numbers need of
    it (training stores it in each checkpoint; tables and the summary compare with the paper's numbers only
    when the data are not synthetic)."""
    ds = config["datasets"][dataset]
    return {"attributes": dict(ds["attributes"]), "overall": ds["overall"], "source": ds["source"]}


MODEL_INFO = {ds: model_info(ds) for ds in DATASETS}
# what shows attributes (tables, figures) also gets their display names; nothing else depends on them
DATASET_INFO = {
    ds: {**MODEL_INFO[ds], "display_names": dict(config["datasets"][ds].get("display_names", {}))} for ds in DATASETS
}


def training_spec():
    """The config sections that decide how a model trains (the seed list only says which models exist)."""
    skip = ("seeds", "models_per_job", "num_workers", "cache_placement")  # not what a model learns
    return {
        "head": config["head"],
        "training": {k: v for k, v in config["training"].items() if k not in skip},
        "images": config["images"],
    }


def download_limits():
    """The config's `download` section (rate, deadline) as resources of the rules that download: how long a
    download may take never changes a file, so it is no param (that would rerun every data step after it)."""
    return {f"download_{key}": value for key, value in config["download"].items()}


def archive_names(dataset):
    """Release files one dataset needs (AADB: depends on image_source)."""
    ds = config["datasets"][dataset]
    return get_format(ds["format"]).required_files(ds)


def local_table_input(wildcards):
    """A `source: local` dataset's label table (format table): editing it re-runs the data steps."""
    ds = config["datasets"][wildcards.dataset]
    return [get_format(ds["format"]).local_table(ds)] if ds["source"] == "local" else []


def trunk_weights(backbone):
    """Trunk weights of a backbone: fetched ImageNet weights, a user-given file, or none (random trunk)."""
    weights = config["backbone"]["weights"]
    if weights == "none":
        return []
    if weights == "imagenet":
        return path("weights", backbone=backbone)
    return weights


def weights_file(wildcards):
    """Trunk weights of the job's backbone wildcard."""
    return trunk_weights(wildcards.backbone)


def feature_files(dataset, backbone="{backbone}"):
    """The feature cache of one dataset: what every training job of it (and cross-tests on it) reads."""
    return {
        kind: path(
            "features",
            dataset=dataset,
            backbone=backbone,
            size=SIZE,
            file=f"{kind}.{ext}",
        )
        for kind, ext in (("prefix", "npy"), ("pooled", "npy"), ("index", "tsv"))
    }


# --------------------------------------------------------------------------------------------------
# training jobs: one per (dataset, chunk of settings, seed)
# --------------------------------------------------------------------------------------------------


def setting_chunks(dataset):
    """The dataset's settings cut into jobs of `training.models_per_job` (default: all in one job per seed).

    Jobs are per seed, so adding a seed adds jobs and never retrains the existing models.
    """
    names = list(settings(config, dataset))
    size = config["training"].get("models_per_job") or len(names)
    return [names[i : i + size] for i in range(0, len(names), size)]


def train_rule_name(dataset, k, chunks):
    return f"train_{dataset}" if len(chunks) == 1 else f"train_{dataset}_{k + 1}"


def model_outputs(dataset, chunk):
    """Named outputs of a training job: checkpoints, histories and test predictions of every model in it."""
    out = {}
    for setting in chunk:
        where = {"dataset": dataset, "setting": setting}
        for stage in STAGES:
            out[output_key(setting, "checkpoint", stage)] = path("checkpoint", stage=stage, **where)
            out[output_key(setting, "history", stage)] = path("history", stage=stage, **where)
            for test in DATASETS:
                key = output_key(setting, "predictions", stage, test)
                out[key] = path("predictions", stage=stage, test=test, **where)
    return out


# --------------------------------------------------------------------------------------------------
# what the tables, figures and metrics read
# --------------------------------------------------------------------------------------------------


def model_keys(dataset):
    """(setting, seed) of every model trained on `dataset`."""
    return [(s, seed) for s in settings(config, dataset) for seed in SEEDS]


def prediction_tables():
    """Every predictions table, with the metadata the metrics table records for it."""
    tables = []
    for ds in DATASETS:
        for backbone, (setting, seed), stage, test in itertools.product(BACKBONES, model_keys(ds), STAGES, DATASETS):
            meta = {
                "dataset": test,
                "train_dataset": ds,
                "backbone": backbone,
                "setting": setting,
                "stage": stage,
                "seed": seed,
            }
            file = path(
                "predictions",
                dataset=ds,
                backbone=backbone,
                setting=setting,
                seed=seed,
                stage=stage,
                test=test,
            )
            tables.append((meta, file))
    return tables


def first_model(dataset, kind, **values):
    """A file of the first backbone's and first seed's multi-task model after stage 2 (the scatter plot and
    Grad-CAM show it)."""
    where = {
        "dataset": dataset,
        "backbone": FIGURE_BACKBONE,
        "setting": "multitask",
        "seed": FIRST_SEED,
        "stage": "stage2",
    }
    return path(kind, **{**where, **values})


def multitask_histories(dataset, stage):
    return [
        path(
            "history",
            dataset=dataset,
            backbone=FIGURE_BACKBONE,
            setting="multitask",
            seed=s,
            stage=stage,
        )
        for s in SEEDS
    ]


def table_files(name):
    return {ext: path("table", name=name, ext=ext) for ext in TABLE_FORMATS}


def all_outputs():
    """The final targets (the all rule): the paper's tables (4 formats each), figures, Grad-CAM and the summary."""
    names = []
    figures = []
    for ds in DATASETS:
        names.append(f"{ds}_multitask_vs_single")
        figures.append(f"{ds}_srcc_bars")
        if "multitask" in settings(config, ds):
            names.append(f"{ds}_stage1_vs_stage2")
            figures += [f"{ds}_training_curves", f"{ds}_scatter", f"{ds}_gradcam"]
    if len(DATASETS) > 1 and config["experiment"].get("cross_dataset"):
        names.append("cross_dataset")
        figures.append("cross_dataset_heatmap")
    names.append("published")
    return (
        [path(kind, dataset=ds) for ds in DATASETS for kind in ("label_figure", "split_report")]
        + [path("metrics"), path("comparisons")]
        + [f for name in names for f in table_files(name).values()]
        + [path("figure", name=name) for name in figures]
        + [path("summary", ext=ext) for ext in ("md", "html")]
    )
