# Test-split predictions of every model on every dataset, and the one long metrics table.


rule predict:
    input:
        model=f"{MODEL}/{{stage}}.pt",
        caches=[f"{cache_dir(ds)}/index.tsv" for ds in DATASETS],
        targets=expand("results/{test}/targets.tsv", test=DATASETS),
        weights=weights_file,
    output:
        predictions=expand(f"{PREDICTIONS}/{{test}}.tsv", test=DATASETS, allow_missing=True),
    params:
        tests={
            ds: {
                "cache": cache_dir(ds),
                "targets_path": f"results/{ds}/targets.tsv",
                "targets": list(config["datasets"][ds]["targets"]),
            }
            for ds in DATASETS
        },
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
    log:
        "logs/predict/{dataset}_{backbone}_{setting}_seed{seed}_{stage}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/predict.py"


rule metrics:
    input:
        predictions=[path for _, path in prediction_files()],
    output:
        metrics="results/metrics.tsv",
    params:
        meta=[meta for meta, _ in prediction_files()],
        cross=config["experiment"].get("cross_dataset", {}),
        bootstrap=config["evaluation"].get("bootstrap", 1000),
        seed=config["evaluation"].get("bootstrap_seed", 0),
    log:
        "logs/metrics/metrics.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/metrics.py"
