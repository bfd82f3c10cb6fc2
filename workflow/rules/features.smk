# The frozen part of the network, computed once per (dataset, backbone, input size) and shared by
# every model and seed.


rule fetch_weights:
    output:
        weights=f"{RES}/weights/{{backbone}}.pth",
    log:
        f"{LOGS}/fetch_weights/{{backbone}}.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **download_limits(),
    script:
        "../scripts/fetch_weights.py"


rule feature_cache:
    input:
        images=f"{R}/{{dataset}}/images_{{size}}/images.npy",
        index=f"{R}/{{dataset}}/images_{{size}}/index.tsv",
        weights=weights_file,
    output:
        prefix=f"{R}/cache/{{dataset}}/{{backbone}}_{{size}}/prefix.npy",
        pooled=f"{R}/cache/{{dataset}}/{{backbone}}_{{size}}/pooled.npy",
        index=f"{R}/cache/{{dataset}}/{{backbone}}_{{size}}/index.tsv",
    log:
        f"{LOGS}/feature_cache/{{dataset}}_{{backbone}}_{{size}}.log",
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        dtype=config["backbone"]["cache_dtype"],
        batch_size=config["backbone"]["cache_batch_size"],
        bf16=config["backbone"]["cache_bf16_autocast_cuda"],
    script:
        "../scripts/feature_cache.py"
