# The paper's tables and figures, Grad-CAM, results/summary.md and what `snakemake --report` shows.
# The targets (which tables and figures the config calls for) are listed in all_outputs() of common.smk;
# every path comes from path() there.
report: "../report/workflow.rst"


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


rule table_dataset:
    input:
        metrics=path("metrics"),
        comparisons=path("comparisons"),
    output:
        csv=path("table", name="{dataset}_{table}", ext="csv"),
        md=path("table", name="{dataset}_{table}", ext="md"),
        tex=path("table", name="{dataset}_{table}", ext="tex"),
        html=report(
            path("table", name="{dataset}_{table}", ext="html"),
            caption="../report/table_dataset.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
    log:
        path("log", rule="tables", name="{dataset}_{table}"),
    wildcard_constraints:
        table="stage1_vs_stage2|multitask_vs_single",
    localrule: True
    conda:
        CONDA_ENV
    params:
        kind=lambda wc: wc.table,
        datasets=lambda wc: {wc.dataset: DATASET_INFO[wc.dataset]},
        head=config["head"],
    script:
        "../scripts/tables.py"


use rule table_dataset as table_cross with:
    output:
        csv=path("table", name="cross_dataset", ext="csv"),
        md=path("table", name="cross_dataset", ext="md"),
        tex=path("table", name="cross_dataset", ext="tex"),
        html=report(
            path("table", name="cross_dataset", ext="html"),
            caption="../report/table_cross.rst",
            category="Tables",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "table": "cross_dataset"},
        ),
    log:
        path("log", rule="tables", name="cross_dataset"),
    params:
        kind="cross_dataset",
        datasets=DATASET_INFO,
        head=config["head"],


use rule table_dataset as table_published with:
    output:
        csv=path("table", name="published", ext="csv"),
        md=path("table", name="published", ext="md"),
        tex=path("table", name="published", ext="tex"),
        html=report(
            path("table", name="published", ext="html"),
            caption="../report/table_published.rst",
            category="Tables",
            subcategory="published methods",
            labels={"dataset": "all", "table": "published"},
        ),
    log:
        path("log", rule="tables", name="published"),
    params:
        kind="published",
        datasets=MODEL_INFO,  # overall scores only: no display names
        head=config["head"],


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


rule figure_training_curves:
    input:
        stage1=lambda wc: multitask_histories(wc.dataset, "stage1"),
        stage2=lambda wc: multitask_histories(wc.dataset, "stage2"),
    output:
        figure=report(
            path("figure", name="{dataset}_training_curves"),
            caption="../report/training_curves.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    log:
        path("log", rule="figures", name="{dataset}_training_curves"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        kind="training_curves",
        options=lambda wc: {"dataset": wc.dataset, "seeds": SEEDS},
    script:
        "../scripts/figures.py"


rule figure_scatter:
    input:
        predictions=lambda wc: first_model(wc.dataset, "predictions", test=wc.dataset),
    output:
        figure=report(
            path("figure", name="{dataset}_scatter"),
            caption="../report/scatter.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "predicted vs true"},
        ),
    log:
        path("log", rule="figures", name="{dataset}_scatter"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        kind="prediction_scatter",
        options=lambda wc: {
            "dataset": wc.dataset,
            "datasets": {wc.dataset: DATASET_INFO[wc.dataset]},
            "seed": FIRST_SEED,
        },
    script:
        "../scripts/figures.py"


rule figure_srcc_bars:
    input:
        metrics=path("metrics"),
    output:
        figure=report(
            path("figure", name="{dataset}_srcc_bars"),
            caption="../report/srcc_bars.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "multi- vs single-task SRCC"},
        ),
    log:
        path("log", rule="figures", name="{dataset}_srcc_bars"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        kind="srcc_bars",
        options=lambda wc: {
            "backbone": FIGURE_BACKBONE,
            "dataset": wc.dataset,
            "datasets": {wc.dataset: DATASET_INFO[wc.dataset]},
        },
    script:
        "../scripts/figures.py"


rule figure_cross:
    input:
        metrics=path("metrics"),
    output:
        figure=report(
            path("figure", name="cross_dataset_heatmap"),
            caption="../report/cross_heatmap.rst",
            category="Figures",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "figure": "cross-dataset SRCC"},
        ),
    log:
        path("log", rule="figures", name="cross_dataset_heatmap"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        kind="cross_heatmap",
        options={"datasets": DATASET_INFO, "backbone": FIGURE_BACKBONE},
    script:
        "../scripts/figures.py"


rule gradcam:
    input:
        model=lambda wc: first_model(wc.dataset, "checkpoint"),
        predictions=lambda wc: first_model(wc.dataset, "predictions", test=wc.dataset),
        images=path("images", size=SIZE, file="images.npy"),
        index=path("images", size=SIZE, file="index.tsv"),
        weights=trunk_weights(FIGURE_BACKBONE),
    output:
        figure=report(
            path("figure", name="{dataset}_gradcam"),
            caption="../report/gradcam.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "Grad-CAM"},
        ),
    log:
        path("log", rule="gradcam", name="{dataset}"),
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=3000,
    params:
        k=config["figures"]["gradcam_examples"],
        device="cpu",  # six images: not worth a GPU slot
    script:
        "../scripts/gradcam.py"


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------


rule summary:
    input:
        metrics=path("metrics"),
        comparisons=path("comparisons"),
        split_reports=[path("split_report", dataset=ds) for ds in DATASETS],
        skipped=[path("images", dataset=ds, size=SIZE, file="skipped.tsv") for ds in DATASETS],
    output:
        md=path("summary", ext="md"),
        html=report(
            path("summary", ext="html"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"document": "summary"},
        ),
    log:
        path("log", rule="summary", name="summary"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        datasets=MODEL_INFO,  # names attributes by their columns
        names=DATASETS,
    script:
        "../scripts/summary.py"
