# Test-split predictions of every model on every dataset, and the one long metrics table.
# One predict job per (dataset, stage) serves all its settings and seeds: the caches are read once.


rule predict:
    input:
        models=lambda wc: [f"{model_dir(wc.dataset, s, seed)}/{wc.stage}.pt" for s, seed in model_keys(wc.dataset)],
        caches=[f"{cache_dir(ds)}/index.tsv" for ds in DATASETS],
        targets=expand("results/{test}/targets.tsv", test=DATASETS),
        weights=weights_file,
    output:
        done="results/predictions/{dataset}/{backbone}/{stage}.done",
    params:
        outputs=lambda wc: {
            f"{model_dir(wc.dataset, s, seed)}/{wc.stage}.pt": f"{PREDICTIONS.format(dataset=wc.dataset, backbone=BACKBONE, setting=s, seed=seed, stage=wc.stage)}"
            for s, seed in model_keys(wc.dataset)
        },
        tests={
            ds: {
                "cache": cache_dir(ds),
                "targets_path": f"results/{ds}/targets.tsv",
                "targets": list(config["datasets"][ds]["targets"]),
            }
            for ds in DATASETS
        },
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    log:
        "logs/predict/{dataset}_{backbone}_{stage}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/predict.py"


rule metrics:
    input:
        done=expand("results/predictions/{dataset}/{backbone}/{stage}.done", dataset=DATASETS,
                    backbone=BACKBONE, stage=STAGES),
    output:
        metrics="results/metrics.tsv",
        provenance="results/metrics.provenance.json",  # code version, package versions, resolved config
    params:
        predictions=prediction_files(),
        cross=config["experiment"].get("cross_dataset", {}),
        bootstrap=config["evaluation"].get("bootstrap", 1000),
        seed=config["evaluation"].get("bootstrap_seed", 0),
    log:
        "logs/metrics/metrics.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/metrics.py"
