# The frozen part of the network, computed once per (dataset, backbone, input size) and shared by
# every model and seed.


rule fetch_weights:
    output:
        weights="resources/weights/{backbone}.pth",
    log:
        "logs/fetch_weights/{backbone}.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/fetch_weights.py"


rule feature_cache:
    input:
        images="results/{dataset}/images_{size}/images.npy",
        index="results/{dataset}/images_{size}/index.tsv",
        weights=weights_file,
    output:
        prefix=f"{CACHE}/prefix.npy",
        pooled=f"{CACHE}/pooled.npy",
        index=f"{CACHE}/index.tsv",
    params:
        dtype=config["backbone"].get("cache_dtype", "float16"),
        batch_size=config["training"]["batch_size"],
        bf16=config["training"].get("bf16_autocast_cuda", True),
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    log:
        "logs/feature_cache/{dataset}_{backbone}_{size}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/feature_cache.py"
