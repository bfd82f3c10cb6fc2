# Data half: release files -> extracted files -> tidy labels -> splits -> [0,1] labels; the image cache.


rule obtain_archives:
    input:
        local_table_input,
    output:
        digests=f"{RES}/{{dataset}}/archives.sha256.json",
    log:
        f"{LOGS}/obtain_archives/{{dataset}}.log",
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
        digests=f"{RES}/{{dataset}}/archives.sha256.json",
    output:
        raw=directory(f"{RES}/{{dataset}}/raw"),
    log:
        f"{LOGS}/extract/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        ds=release_cfg,
    script:
        "../scripts/extract.py"


rule parse_labels:
    input:
        raw=f"{RES}/{{dataset}}/raw",
    output:
        labels=f"{R}/{{dataset}}/labels.tsv",
    log:
        f"{LOGS}/parse_labels/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        ds=labels_cfg,
        on_bad_image=config["on_bad_image"],  # skip: rows without a file go on, for image_cache to list
    script:
        "../scripts/parse_labels.py"


rule split:
    input:
        labels=f"{R}/{{dataset}}/labels.tsv",
    output:
        splits=f"{R}/{{dataset}}/splits.tsv",
        report=f"{R}/{{dataset}}/split_report.json",
    log:
        f"{LOGS}/split/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        split=lambda wc: config["datasets"][wc.dataset]["split"],
    script:
        "../scripts/split.py"


rule image_cache:
    input:
        labels=f"{R}/{{dataset}}/labels.tsv",
    output:
        images=f"{R}/{{dataset}}/images_{{size}}/images.npy",
        index=f"{R}/{{dataset}}/images_{{size}}/index.tsv",
        skipped=f"{R}/{{dataset}}/images_{{size}}/skipped.tsv",
    log:
        f"{LOGS}/image_cache/{{dataset}}_{{size}}.log",
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=lambda wc, threads: image_cache_memory_mb(image_spec_of(wc), threads),  # grows with images.max_pixels
    params:
        images=image_spec,
        on_bad_image=config["on_bad_image"],
    script:
        "../scripts/image_cache.py"


rule scale_labels:
    input:
        labels=f"{R}/{{dataset}}/labels.tsv",
        splits=f"{R}/{{dataset}}/splits.tsv",
    output:
        scaled_labels=f"{R}/{{dataset}}/scaled_labels.tsv",
    log:
        f"{LOGS}/scale_labels/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["attributes"],
    script:
        "../scripts/scale_labels.py"


rule label_figure:
    input:
        labels=f"{R}/{{dataset}}/labels.tsv",
    output:
        figure=report(
            f"{R}/{{dataset}}/label_distributions.png",
            caption="../report/label_distributions.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "label distributions"},
        ),
    log:
        f"{LOGS}/label_figure/{{dataset}}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        ranges=lambda wc: config["datasets"][wc.dataset]["attributes"],
        names=lambda wc: DATASET_INFO[wc.dataset]["display_names"],
    script:
        "../scripts/label_figure.py"
