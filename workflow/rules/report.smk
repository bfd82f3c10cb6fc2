# The paper's tables and figures, Grad-CAM, results/summary.md and what `snakemake --report` shows.
# The targets (which tables and figures the config calls for) are listed in all_outputs() of common.smk.
report: "../report/workflow.rst"


FIRST_SEED = SEEDS[0]
MULTITASK_MODEL = MODEL.replace("{backbone}", BACKBONE).replace("{setting}", "multitask")
FIRST_MODEL = f"{MULTITASK_MODEL.replace('{seed}', str(FIRST_SEED))}/stage2.pt"
OWN_PREDICTIONS = (
    f"{PREDICTIONS.replace('{backbone}', BACKBONE).replace('{setting}', 'multitask')}/{{dataset}}.tsv"
    .replace("{seed}", str(FIRST_SEED)).replace("{stage}", "stage2")
)
STAGE2_PREDICTED = f"results/predictions/{{dataset}}/{BACKBONE}/stage2.done"  # the predict job's sentinel
DATASET_TARGETS = {ds: {"targets": dict(cfg["targets"]), "overall": cfg["overall"]}
                   for ds, cfg in config["datasets"].items()}


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


rule table_dataset:
    input:
        metrics="results/metrics.tsv",
    output:
        csv="results/tables/{dataset}_{table}.csv",
        md="results/tables/{dataset}_{table}.md",
        tex="results/tables/{dataset}_{table}.tex",
        html=report(
            "results/tables/{dataset}_{table}.html",
            caption="../report/table_dataset.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
    wildcard_constraints:
        table="stage1_vs_stage2|multitask_vs_single",
    params:
        kind=lambda wc: wc.table,
        datasets=lambda wc: {wc.dataset: DATASET_TARGETS[wc.dataset]},
        backbone=BACKBONE,
        head=config["head"],
    log:
        "logs/tables/{dataset}_{table}.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/tables.py"


use rule table_dataset as table_cross with:
    output:
        csv="results/tables/cross_dataset.csv",
        md="results/tables/cross_dataset.md",
        tex="results/tables/cross_dataset.tex",
        html=report(
            "results/tables/cross_dataset.html",
            caption="../report/table_cross.rst",
            category="Tables",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "table": "cross_dataset"},
        ),
    params:
        kind="cross_dataset",
        datasets=DATASET_TARGETS,
        backbone=BACKBONE,
        head=config["head"],
    log:
        "logs/tables/cross_dataset.log",


use rule table_dataset as table_published with:
    output:
        csv="results/tables/published.csv",
        md="results/tables/published.md",
        tex="results/tables/published.tex",
        html=report(
            "results/tables/published.html",
            caption="../report/table_published.rst",
            category="Tables",
            subcategory="published methods",
            labels={"dataset": "all", "table": "published"},
        ),
    params:
        kind="published",
        datasets=DATASET_TARGETS,
        backbone=BACKBONE,
        head=config["head"],
    log:
        "logs/tables/published.log",


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


rule figure_training_curves:
    input:
        stage1=expand(f"{MULTITASK_MODEL}/history_stage1.tsv", seed=SEEDS, allow_missing=True),
        stage2=expand(f"{MULTITASK_MODEL}/history_stage2.tsv", seed=SEEDS, allow_missing=True),
    output:
        figure=report(
            "results/figures/{dataset}_training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    params:
        kind="training_curves",
        options=lambda wc: {"dataset": wc.dataset, "seeds": SEEDS},
    log:
        "logs/figures/{dataset}_training_curves.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


rule figure_scatter:
    input:
        predicted=STAGE2_PREDICTED,
    output:
        figure=report(
            "results/figures/{dataset}_scatter.png",
            caption="../report/scatter.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "predicted vs true"},
        ),
    params:
        kind="prediction_scatter",
        options=lambda wc: {"dataset": wc.dataset, "datasets": {wc.dataset: DATASET_TARGETS[wc.dataset]},
                            "seed": FIRST_SEED,
                            "predictions": OWN_PREDICTIONS.format(dataset=wc.dataset)},
    log:
        "logs/figures/{dataset}_scatter.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


rule figure_srcc_bars:
    input:
        metrics="results/metrics.tsv",
    output:
        figure=report(
            "results/figures/{dataset}_srcc_bars.png",
            caption="../report/srcc_bars.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "multi- vs single-task SRCC"},
        ),
    params:
        kind="srcc_bars",
        options=lambda wc: {"dataset": wc.dataset, "datasets": {wc.dataset: DATASET_TARGETS[wc.dataset]}},
    log:
        "logs/figures/{dataset}_srcc_bars.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


rule figure_cross:
    input:
        metrics="results/metrics.tsv",
    output:
        figure=report(
            "results/figures/cross_dataset_heatmap.png",
            caption="../report/cross_heatmap.rst",
            category="Figures",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "figure": "cross-dataset SRCC"},
        ),
    params:
        kind="cross_heatmap",
        options={"datasets": DATASET_TARGETS},
    log:
        "logs/figures/cross_dataset_heatmap.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


rule gradcam:
    input:
        model=FIRST_MODEL,
        predicted=STAGE2_PREDICTED,
        images=f"results/{{dataset}}/images_{SIZE}/images.npy",
        index=f"results/{{dataset}}/images_{SIZE}/index.tsv",
        weights=weights_file,
    output:
        figure=report(
            "results/figures/{dataset}_gradcam.png",
            caption="../report/gradcam.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "Grad-CAM"},
        ),
    params:
        predictions=lambda wc: OWN_PREDICTIONS.format(dataset=wc.dataset),
        k=3,
        device="cpu",  # six images: not worth a GPU slot
    threads: 2
    resources:
        mem_mb=3000,
    log:
        "logs/gradcam/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/gradcam.py"


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------


rule summary:
    input:
        metrics="results/metrics.tsv",
        split_reports=expand("results/{dataset}/split_report.json", dataset=DATASETS),
        skipped=expand(f"results/{{dataset}}/images_{SIZE}/skipped.tsv", dataset=DATASETS),
    output:
        md="results/summary.md",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"document": "summary"},
        ),
    params:
        datasets=DATASET_TARGETS,
        names=DATASETS,
    log:
        "logs/summary/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/summary.py"
