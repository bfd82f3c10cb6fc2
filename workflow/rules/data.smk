# Data half: release files -> extracted files -> tidy labels -> splits -> [0,1] targets; image cache.


rule obtain_archives:
    input:
        local_table_input,
    output:
        digests=path("archives"),
    log:
        path("log", rule="obtain_archives", name="{dataset}"),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **download_limits(),
    params:
        ds=release_cfg,
        names=lambda wc: archive_names(wc.dataset),
    script:
        "../scripts/obtain_archives.py"


rule extract:
    input:
        digests=path("archives"),
    output:
        raw=directory(path("raw")),
    log:
        path("log", rule="extract", name="{dataset}"),
    conda:
        CONDA_ENV
    params:
        ds=release_cfg,
    script:
        "../scripts/extract.py"


rule parse_labels:
    input:
        raw=path("raw"),
    output:
        labels=path("labels"),
    log:
        path("log", rule="parse_labels", name="{dataset}"),
    conda:
        CONDA_ENV
    params:
        ds=labels_cfg,
        on_bad_image=config.get("on_bad_image", "error"),  # skip: rows without a file go on, for image_cache to list
    script:
        "../scripts/parse_labels.py"


rule split:
    input:
        labels=path("labels"),
    output:
        splits=path("splits"),
        report=path("split_report"),
    log:
        path("log", rule="split", name="{dataset}"),
    conda:
        CONDA_ENV
    params:
        split=lambda wc: config["datasets"][wc.dataset]["split"],
    script:
        "../scripts/split.py"


rule image_cache:
    input:
        labels=path("labels"),
    output:
        images=path("images", file="images.npy"),
        index=path("images", file="index.tsv"),
        skipped=path("images", file="skipped.tsv"),
    log:
        path("log", rule="image_cache", name="{dataset}_{size}"),
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=lambda wc, threads: image_cache_memory_mb(config["images"], threads),  # grows with images.max_pixels
    params:
        images=lambda wc: {**config["images"], "size": int(wc.size)},
        on_bad_image=config.get("on_bad_image", "error"),
    script:
        "../scripts/image_cache.py"


rule scale_labels:
    input:
        labels=path("labels"),
        splits=path("splits"),
    output:
        scaled_labels=path("scaled_labels"),
    log:
        path("log", rule="scale_labels", name="{dataset}"),
    conda:
        CONDA_ENV
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["attributes"],
    script:
        "../scripts/scale_labels.py"


rule label_figure:
    input:
        labels=path("labels"),
    output:
        figure=report(
            path("label_figure"),
            caption="../report/label_distributions.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "label distributions"},
        ),
    log:
        path("log", rule="label_figure", name="{dataset}"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["attributes"],
        names=lambda wc: DATASET_INFO[wc.dataset]["display_names"],
    script:
        "../scripts/label_figure.py"
