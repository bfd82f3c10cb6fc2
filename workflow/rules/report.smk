# The paper's tables and figures, Grad-CAM, results/summary.md and what `snakemake --report` shows.
# Which tables and figures the config calls for: all_outputs() in common.smk. Each table and figure rule
# names the package function it runs (`build`, `draw`).
report: "../report/workflow.rst"


# --------------------------------------------------------------------------------------------------
# tables: CSV (numbers), Markdown, LaTeX and HTML (the report) of each
# --------------------------------------------------------------------------------------------------


rule table_stages:
    input:
        metrics=f"{R}/metrics.tsv",
        comparisons=f"{R}/comparisons.tsv",
    output:
        csv=f"{R}/tables/{{dataset}}_stage1_vs_stage2.csv",
        md=f"{R}/tables/{{dataset}}_stage1_vs_stage2.md",
        tex=f"{R}/tables/{{dataset}}_stage1_vs_stage2.tex",
        html=report(
            f"{R}/tables/{{dataset}}_stage1_vs_stage2.html",
            caption="../report/table_stages.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "stage1_vs_stage2"},
        ),
    log:
        f"{LOGS}/tables/{{dataset}}_stage1_vs_stage2.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        build="aesthetic_mtl.report.paper_tables.stage1_vs_stage2",
        datasets=lambda wc: {wc.dataset: DATASET_INFO[wc.dataset]},
    script:
        "../scripts/tables.py"


use rule table_stages as table_settings with:
    output:
        csv=f"{R}/tables/{{dataset}}_multitask_vs_single.csv",
        md=f"{R}/tables/{{dataset}}_multitask_vs_single.md",
        tex=f"{R}/tables/{{dataset}}_multitask_vs_single.tex",
        html=report(
            f"{R}/tables/{{dataset}}_multitask_vs_single.html",
            caption="../report/table_settings.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "multitask_vs_single"},
        ),
    log:
        f"{LOGS}/tables/{{dataset}}_multitask_vs_single.log",
    params:
        build="aesthetic_mtl.report.paper_tables.multitask_vs_single",
        datasets=lambda wc: {wc.dataset: DATASET_INFO[wc.dataset]},


use rule table_stages as table_cross with:
    output:
        csv=f"{R}/tables/cross_dataset.csv",
        md=f"{R}/tables/cross_dataset.md",
        tex=f"{R}/tables/cross_dataset.tex",
        html=report(
            f"{R}/tables/cross_dataset.html",
            caption="../report/table_cross.rst",
            category="Tables",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "table": "cross_dataset"},
        ),
    log:
        f"{LOGS}/tables/cross_dataset.log",
    params:
        build="aesthetic_mtl.report.paper_tables.cross_dataset",
        datasets=DATASET_INFO,


rule table_published:
    input:
        **parameter_files(),  # the parameter counts the training jobs recorded
        metrics=f"{R}/metrics.tsv",
    output:
        csv=f"{R}/tables/published.csv",
        md=f"{R}/tables/published.md",
        tex=f"{R}/tables/published.tex",
        html=report(
            f"{R}/tables/published.html",
            caption="../report/table_published.rst",
            category="Tables",
            subcategory="published methods",
            labels={"dataset": "all", "table": "published"},
        ),
    log:
        f"{LOGS}/tables/published.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        build="aesthetic_mtl.report.paper_tables.published",
        datasets=MODEL_INFO,  # overall scores only: no display names
    script:
        "../scripts/tables.py"


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


rule figure_training_curves:
    input:
        stage1=lambda wc: multitask_histories(wc.dataset, "stage1"),
        stage2=lambda wc: multitask_histories(wc.dataset, "stage2"),
    output:
        figure=report(
            f"{R}/figures/{{dataset}}_training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    log:
        f"{LOGS}/figures/{{dataset}}_training_curves.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        draw="aesthetic_mtl.report.figures.training_curves_figure",
        options=lambda wc: {"dataset": wc.dataset, "seeds": SEEDS},
    script:
        "../scripts/figures.py"


rule figure_scatter:
    input:
        predictions=lambda wc: first_predictions(wc.dataset),
    output:
        figure=report(
            f"{R}/figures/{{dataset}}_scatter.png",
            caption="../report/scatter.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "predicted vs true"},
        ),
    log:
        f"{LOGS}/figures/{{dataset}}_scatter.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        draw="aesthetic_mtl.report.figures.scatter_figure",
        options=lambda wc: {
            "dataset": wc.dataset,
            "datasets": {wc.dataset: DATASET_INFO[wc.dataset]},
            "seed": FIRST_SEED,
        },
    script:
        "../scripts/figures.py"


rule figure_srcc_bars:
    input:
        metrics=f"{R}/metrics.tsv",
    output:
        figure=report(
            f"{R}/figures/{{dataset}}_srcc_bars.png",
            caption="../report/srcc_bars.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "multi- vs single-task SRCC"},
        ),
    log:
        f"{LOGS}/figures/{{dataset}}_srcc_bars.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        draw="aesthetic_mtl.report.figures.srcc_bars_figure",
        options=lambda wc: {
            "backbone": FIGURE_BACKBONE,
            "dataset": wc.dataset,
            "datasets": {wc.dataset: DATASET_INFO[wc.dataset]},
        },
    script:
        "../scripts/figures.py"


rule figure_cross:
    input:
        metrics=f"{R}/metrics.tsv",
    output:
        figure=report(
            f"{R}/figures/cross_dataset_heatmap.png",
            caption="../report/cross_heatmap.rst",
            category="Figures",
            subcategory="cross-dataset",
            labels={"dataset": "cross-dataset", "figure": "cross-dataset SRCC"},
        ),
    log:
        f"{LOGS}/figures/cross_dataset_heatmap.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        draw="aesthetic_mtl.report.figures.cross_heatmap_figure",
        options={"datasets": DATASET_INFO, "backbone": FIGURE_BACKBONE},
    script:
        "../scripts/figures.py"


rule gradcam:
    input:
        model=lambda wc: f"{first_model(wc.dataset)}/stage2.pt",
        predictions=lambda wc: first_predictions(wc.dataset),
        images=f"{R}/{{dataset}}/images_{SIZE}/images.npy",
        index=f"{R}/{{dataset}}/images_{SIZE}/index.tsv",
        weights=trunk_weights(FIGURE_BACKBONE),
    output:
        figure=report(
            f"{R}/figures/{{dataset}}_gradcam.png",
            caption="../report/gradcam.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "Grad-CAM"},
        ),
    log:
        f"{LOGS}/gradcam/{{dataset}}.log",
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
        metrics=f"{R}/metrics.tsv",
        comparisons=f"{R}/comparisons.tsv",
        split_reports=expand(f"{R}/{{dataset}}/split_report.json", dataset=DATASETS),
        skipped=expand(f"{R}/{{dataset}}/images_{SIZE}/skipped.tsv", dataset=DATASETS),
    output:
        md=f"{R}/summary.md",
        html=report(
            f"{R}/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"document": "summary"},
        ),
    log:
        f"{LOGS}/summary/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        datasets=MODEL_INFO,  # names attributes by their columns
        names=DATASETS,
    script:
        "../scripts/summary.py"
