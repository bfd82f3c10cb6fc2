# The paper's two stages for every (dataset, setting, seed): multi-task, single-task baselines, subsets.


rule train_stage1:
    input:
        cache=f"{CACHE}/index.tsv".replace("{size}", str(SIZE)),
        targets="results/{dataset}/targets.tsv",
        weights=weights_file,
    output:
        model=f"{MODEL}/stage1.pt",
        history=f"{MODEL}/history_stage1.tsv",
    params:
        targets=setting_targets,
        ranges=lambda wc: config["datasets"][wc.dataset]["targets"],
    threads: 1
    resources:
        gpu=1,
        mem_mb=3000,
    log:
        "logs/train_stage1/{dataset}_{backbone}_{setting}_seed{seed}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"


use rule train_stage1 as train_stage2 with:
    input:
        cache=f"{CACHE}/index.tsv".replace("{size}", str(SIZE)),
        targets="results/{dataset}/targets.tsv",
        weights=weights_file,
        init=f"{MODEL}/stage1.pt",
    output:
        model=f"{MODEL}/stage2.pt",
        history=f"{MODEL}/history_stage2.tsv",
    log:
        "logs/train_stage2/{dataset}_{backbone}_{setting}_seed{seed}.log",
