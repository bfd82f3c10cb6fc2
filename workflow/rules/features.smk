# The frozen part of the network, computed once per (dataset, backbone, input size) and shared by
# every model and seed.


rule fetch_weights:
    output:
        weights=path("weights"),
    log:
        path("log", rule="fetch_weights", name="{backbone}"),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **download_limits(),
    script:
        "../scripts/fetch_weights.py"


rule feature_cache:
    input:
        images=path("images", file="images.npy"),
        index=path("images", file="index.tsv"),
        weights=weights_file,
    output:
        prefix=path("features", file="prefix.npy"),
        pooled=path("features", file="pooled.npy"),
        index=path("features", file="index.tsv"),
    log:
        path("log", rule="feature_cache", name="{dataset}_{backbone}_{size}"),
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        dtype=config["backbone"]["cache_dtype"],
        batch_size=config["backbone"]["cache_batch_size"],
        bf16=config["backbone"].get("cache_bf16_autocast_cuda", False),
    script:
        "../scripts/feature_cache.py"
