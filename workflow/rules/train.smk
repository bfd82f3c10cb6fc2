# The paper's two stages for every (dataset, setting, seed): multi-task, single-task baselines, subsets.
# One job trains a chunk of a dataset's settings for one seed through both stages and writes each model's
# checkpoints, histories and test predictions on every dataset (own and cross-dataset), so process
# start-up and cache loading are paid once per chunk. `training.models_per_job` sets the chunk size
# (default: every setting of the dataset); results do not depend on it. Rules: train_<dataset>, or
# train_<dataset>_<k> when a dataset's settings are cut into several chunks.

for _dataset in DATASETS:
    _chunks = setting_chunks(_dataset)
    for _k, _chunk in enumerate(_chunks):

        rule:
            name:
                train_rule_name(_dataset, _k, _chunks)
            input:
                **{f"{test}_{kind}": file for test in DATASETS for kind, file in feature_files(test).items()},
                scaled_labels=[path("scaled_labels", dataset=test) for test in DATASETS],
                skipped=[path("images", dataset=test, size=SIZE, file="skipped.tsv") for test in DATASETS],
                weights=weights_file,
            output:
                **model_outputs(_dataset, _chunk),
            log:
                path(
                    "log",
                    rule="train",
                    name=f"{train_rule_name(_dataset, _k, _chunks)}_{{backbone}}_seed{{seed}}",
                ),
            conda:
                CONDA_ENV
            threads: 2
            resources:
                gpu=1,
                mem_mb=4000,
                runtime=30 + 30 * len(_chunk),  # minutes (SLURM): paper-scale stage 2 on one GPU, generous
                cache_placement=config["training"].get("cache_placement", "auto"),  # how, not what: never reruns a job
            params:
                dataset=_dataset,
                models={setting: settings(config, _dataset)[setting] for setting in _chunk},
                spec=training_spec(),
                info=MODEL_INFO[_dataset],
                test_sets={test: list(config["datasets"][test]["attributes"]) for test in DATASETS},
                weights=config["backbone"]["weights"],
            script:
                "../scripts/train.py"
