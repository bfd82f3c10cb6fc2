# Data half: release files -> extracted files -> tidy labels -> splits -> [0,1] targets; image cache.


rule obtain_archives:
    output:
        ok="resources/{dataset}/archives.ok",
    params:
        ds=dataset_cfg,
        names=lambda wc: archive_names(wc.dataset),
    log:
        "logs/obtain_archives/{dataset}.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/obtain_archives.py"


rule extract:
    input:
        ok="resources/{dataset}/archives.ok",
    output:
        raw=directory("resources/{dataset}/raw"),
    params:
        ds=dataset_cfg,
    log:
        "logs/extract/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/extract.py"


rule parse_labels:
    input:
        raw="resources/{dataset}/raw",
    output:
        labels="results/{dataset}/labels.tsv",
    params:
        ds=dataset_cfg,
        on_bad_image=config.get("on_bad_image", "error"),  # skip: rows without a file go on, for image_cache to list
    log:
        "logs/parse_labels/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/parse_labels.py"


rule split:
    input:
        labels="results/{dataset}/labels.tsv",
    output:
        splits="results/{dataset}/splits.tsv",
        report="results/{dataset}/split_report.json",
    params:
        split=lambda wc: config["datasets"][wc.dataset]["split"],
    log:
        "logs/split/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/split.py"


rule image_cache:
    input:
        labels="results/{dataset}/labels.tsv",
    output:
        images="results/{dataset}/images_{size}/images.npy",
        index="results/{dataset}/images_{size}/index.tsv",
        skipped="results/{dataset}/images_{size}/skipped.tsv",
    params:
        images=config["images"],
        on_bad_image=config.get("on_bad_image", "error"),
    threads: 2
    resources:
        mem_mb=2000,
    log:
        "logs/image_cache/{dataset}_{size}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/image_cache.py"


rule normalize:
    input:
        labels="results/{dataset}/labels.tsv",
        splits="results/{dataset}/splits.tsv",
        skipped=f"results/{{dataset}}/images_{SIZE}/skipped.tsv",
    output:
        targets="results/{dataset}/targets.tsv",
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["targets"],
    log:
        "logs/normalize/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/normalize.py"


rule label_figure:
    input:
        labels="results/{dataset}/labels.tsv",
    output:
        figure=report(
            "results/{dataset}/label_distributions.png",
            caption="../report/label_distributions.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "label distributions"},
        ),
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["targets"],
    log:
        "logs/label_figure/{dataset}.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/label_figure.py"
