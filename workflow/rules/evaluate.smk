# The one long metrics table: every predictions table the training jobs wrote, scored; and the paired
# comparisons of models scored on the same test images (multi- vs single-task, stage 2 vs 1, subsets).


rule metrics:
    input:
        predictions=[file for _, file in prediction_tables()],
    output:
        metrics=f"{R}/metrics.tsv",
        comparisons=f"{R}/comparisons.tsv",
        provenance=f"{R}/metrics.provenance.json",  # code version, package versions, this job's params
    log:
        f"{LOGS}/metrics/metrics.log",
    conda:
        CONDA_ENV
    params:
        meta=[meta for meta, _ in prediction_tables()],
        cross=config["experiment"]["cross_dataset"],
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../scripts/metrics.py"
