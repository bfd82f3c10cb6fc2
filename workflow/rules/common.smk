# Helpers shared by all rules: config validation, the folders, wildcard constraints and the params each rule
# gets. Every config value that changes a job's result reaches the job as a param here, so Snakemake's rerun
# triggers (params, input, code) rerun exactly the jobs a config change affects. The rules spell their own
# paths (f-strings over the folders below).
import itertools

from aesthetic_mtl.config import backbone_names, settings, validate_config
from aesthetic_mtl.data.formats import get_format
from aesthetic_mtl.data.image_cache import memory_mb as image_cache_memory_mb
from aesthetic_mtl.nn.job import output_key
from aesthetic_mtl.specs import STAGES, ImageSpec, training_job

validate_config(config)  # the schema (it fills every default in) and the cross-key checks, before any job runs

R = config["paths"]["results"]  # results/ (the demo: results/demo, so demo and paper outputs never mix)
RES = config["paths"]["resources"]  # release files, extracted data, trunk weights
LOGS = config["paths"]["logs"]
DATASETS = list(config["datasets"])
BACKBONES = backbone_names(config)  # one run can train every model on several backbones
FIGURE_BACKBONE = BACKBONES[0]  # the figures show the first one
SIZE = config["images"]["size"]
SEEDS = config["training"]["seeds"]
FIRST_SEED = SEEDS[0]
TABLE_FORMATS = ("csv", "md", "tex", "html")
CONDA_ENV = "../../envs/aesthetic-mtl.yaml"  # for --software-deployment-method conda (clusters)


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
    return {**release_cfg(wildcards), "attributes": config["datasets"][wildcards.dataset]["attributes"]}


def model_info(dataset):
    """Attribute ranges, overall score and source of a dataset: what overall-score numbers need of it (tables
    and the summary compare with the paper's numbers only when the data are not synthetic)."""
    ds = config["datasets"][dataset]
    return {"attributes": dict(ds["attributes"]), "overall": ds["overall"], "source": ds["source"]}


MODEL_INFO = {ds: model_info(ds) for ds in DATASETS}
# what shows attributes (tables, figures) also gets their display names; nothing else depends on them
DATASET_INFO = {ds: {**MODEL_INFO[ds], "display_names": config["datasets"][ds]["display_names"]} for ds in DATASETS}


def image_spec_of(wildcards):
    """How photos become the input at the wildcard's size."""
    return ImageSpec.from_config({**config["images"], "size": int(wildcards.size)})


def image_spec(wildcards):
    """`image_spec_of` as plain data, the rule's param: Snakemake reruns a job when a param's repr changes
    and ignores objects it cannot represent."""
    return image_spec_of(wildcards).plain()


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
        return f"{RES}/weights/{backbone}.pth"
    return weights


def weights_file(wildcards):
    """Trunk weights of the job's backbone wildcard."""
    return trunk_weights(wildcards.backbone)


# --------------------------------------------------------------------------------------------------
# training jobs: one per (dataset, chunk of settings, backbone, seed)
# --------------------------------------------------------------------------------------------------


def setting_chunks(dataset):
    """The dataset's settings cut into jobs of `training.models_per_job` (null: all in one job per seed).

    Jobs are per seed, so adding a seed adds jobs and never retrains the existing models.
    """
    names = list(settings(config, dataset))
    size = config["training"]["models_per_job"] or len(names)
    return [names[i : i + size] for i in range(0, len(names), size)]


TRAINING_JOBS = [
    (f"train_{ds}" if len(chunks) == 1 else f"train_{ds}_{k + 1}", ds, chunk)
    for ds in DATASETS
    for chunks in [setting_chunks(ds)]
    for k, chunk in enumerate(chunks)
]


def training_job_of(dataset, chunk, wildcards):
    """The typed description of one training job (nn/job.py runs it): the rule's param (`job_of`) and its
    input files (`job_inputs`) come from it, so the two cannot disagree."""
    return training_job(
        config,
        dataset,
        chunk,
        wildcards.backbone,
        int(wildcards.seed),
        results=R,
        weights_file=trunk_weights(wildcards.backbone) or None,
    )


def job_of(dataset, chunk):
    """The training job as the rule's param: plain data (Snakemake reruns a job when a param's repr changes,
    and ignores objects it cannot represent)."""
    return lambda wildcards: training_job_of(dataset, chunk, wildcards).plain()


def job_inputs(dataset, chunk):
    """The input files of a training job, by name (each test set's caches and tables, the trunk weights)."""
    return lambda wildcards: training_job_of(dataset, chunk, wildcards).inputs()


# --------------------------------------------------------------------------------------------------
# what the tables, figures and metrics read
# --------------------------------------------------------------------------------------------------


def prediction_tables():
    """Every predictions table, with the metadata the metrics table records for it."""
    tables = []
    for ds in DATASETS:
        models = [(s, seed) for s in settings(config, ds) for seed in SEEDS]
        for backbone, (setting, seed), stage, test in itertools.product(BACKBONES, models, STAGES, DATASETS):
            meta = {
                "dataset": test,
                "train_dataset": ds,
                "backbone": backbone,
                "setting": setting,
                "stage": stage,
                "seed": seed,
            }
            tables.append((meta, f"{R}/predictions/{ds}/{backbone}/{setting}/seed{seed}/{stage}/{test}.tsv"))
    return tables


def parameter_files():
    """The parameter counts the training jobs recorded, of the models the published table shows (first seed),
    named `<dataset>__<backbone>__<setting>`."""
    files = {}
    for ds, backbone in itertools.product(DATASETS, BACKBONES):
        overall = config["datasets"][ds]["overall"]
        for setting in ("multitask", f"single_{overall}"):
            if setting in settings(config, ds):
                files[f"{ds}__{backbone}__{setting}"] = (
                    f"{R}/models/{ds}/{backbone}/{setting}/seed{FIRST_SEED}/parameters.json"
                )
    return files


def first_model(dataset):
    """The folder of the first backbone's and first seed's multi-task model (the scatter plot and Grad-CAM
    show it after stage 2)."""
    return f"{R}/models/{dataset}/{FIGURE_BACKBONE}/multitask/seed{FIRST_SEED}"


def first_predictions(dataset):
    return f"{R}/predictions/{dataset}/{FIGURE_BACKBONE}/multitask/seed{FIRST_SEED}/stage2/{dataset}.tsv"


def multitask_histories(dataset, stage):
    return [f"{R}/models/{dataset}/{FIGURE_BACKBONE}/multitask/seed{s}/history_{stage}.tsv" for s in SEEDS]


def all_outputs():
    """The final targets (the all rule): the paper's tables (4 formats each), figures, Grad-CAM and the summary."""
    tables, figures = [], []
    for ds in DATASETS:
        tables.append(f"{ds}_multitask_vs_single")
        figures.append(f"{ds}_srcc_bars")
        if "multitask" in settings(config, ds):
            tables.append(f"{ds}_stage1_vs_stage2")
            figures += [f"{ds}_training_curves", f"{ds}_scatter", f"{ds}_gradcam"]
    if len(DATASETS) > 1 and config["experiment"]["cross_dataset"]:
        tables.append("cross_dataset")
        figures.append("cross_dataset_heatmap")
    tables.append("published")
    return (
        [f"{R}/{ds}/{name}" for ds in DATASETS for name in ("label_distributions.png", "split_report.json")]
        + [f"{R}/metrics.tsv", f"{R}/comparisons.tsv"]
        + [f"{R}/tables/{name}.{ext}" for name in tables for ext in TABLE_FORMATS]
        + [f"{R}/figures/{name}.png" for name in figures]
        + [f"{R}/summary.md", f"{R}/summary.html"]
    )
