# Helpers shared by all rules: config validation, wildcard constraints and the file lists of the DAG.
import itertools

from snakemake.utils import validate

from aesthetic_mtl.config import settings, validate_config
from aesthetic_mtl.datasets import get_format


validate_config(config)  # schema + cross-key checks; one line naming the bad key, before any job runs
validate(config, "../schemas/config.schema.yaml")  # Snakemake's own check of the same schema

DATASETS = list(config["datasets"])
BACKBONE = config["backbone"]["name"]
SIZE = config["images"]["size"]
SEEDS = config["training"]["seeds"]
STAGES = ["stage1", "stage2"]
CACHE = "results/cache/{dataset}/{backbone}_{size}"
MODEL = "results/models/{dataset}/{backbone}/{setting}/seed{seed}"
PREDICTIONS = "results/predictions/{dataset}/{backbone}/{setting}/seed{seed}/{stage}"
CONDA_ENV = "../../envs/aesthetic-mtl.yaml"  # for --software-deployment-method conda (clusters)


wildcard_constraints:
    dataset="|".join(DATASETS),
    test="|".join(DATASETS),
    seed=r"\d+",
    size=r"\d+",
    stage="stage1|stage2",
    setting=r"[A-Za-z0-9_]+",


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def archive_names(dataset):
    """Release files one dataset needs (AADB: depends on image_source)."""
    return get_format(config["datasets"][dataset]["format"]).required_files(config["datasets"][dataset])


def weights_file(wildcards=None):
    """Trunk weights: fetched ImageNet weights, a user-given file, or none (random trunk)."""
    weights = config["backbone"]["weights"]
    if weights == "none":
        return []
    if weights == "imagenet":
        return f"resources/weights/{BACKBONE}.pth"
    return weights


def cache_dir(dataset):
    return CACHE.format(dataset=dataset, backbone=BACKBONE, size=SIZE)


def setting_targets(wildcards):
    return settings(config, wildcards.dataset)[wildcards.setting]


def model_keys(dataset):
    """(setting, seed) of every model trained on `dataset`."""
    return [(s, seed) for s in settings(config, dataset) for seed in SEEDS]


def model_dir(dataset, setting, seed):
    return MODEL.format(dataset=dataset, backbone=BACKBONE, setting=setting, seed=seed)


def prediction_files():
    """Every predictions table with the metadata the metrics table records."""
    files = []
    for ds in DATASETS:
        for (setting, seed), stage in itertools.product(model_keys(ds), STAGES):
            for test in DATASETS:
                path = PREDICTIONS.format(dataset=ds, backbone=BACKBONE, setting=setting, seed=seed, stage=stage)
                meta = {"dataset": test, "train_dataset": ds, "setting": setting, "stage": stage, "seed": seed}
                files.append([meta, f"{path}/{test}.tsv"])
    return files


def all_outputs():
    # workflow/rules/report.smk: the paper's tables (4 formats each), figures, Grad-CAM and the summary
    tables = lambda stem: [f"results/tables/{stem}.{ext}" for ext in ("csv", "md", "tex", "html")]
    products = []
    for ds in DATASETS:
        products += tables(f"{ds}_multitask_vs_single") + [f"results/figures/{ds}_srcc_bars.png"]
        if "multitask" in settings(config, ds):
            products += tables(f"{ds}_stage1_vs_stage2")
            products += [f"results/figures/{ds}_{name}.png" for name in ("training_curves", "scatter", "gradcam")]
    if len(DATASETS) > 1 and config["experiment"].get("cross_dataset"):
        products += tables("cross_dataset") + ["results/figures/cross_dataset_heatmap.png"]
    products += tables("published") + ["results/summary.md", "results/summary.html"]
    return (
        expand("results/{dataset}/label_distributions.png", dataset=DATASETS)
        + expand("results/{dataset}/split_report.json", dataset=DATASETS)
        + ["results/metrics.tsv"]
        + products
    )
