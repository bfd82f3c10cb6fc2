# The paper's two stages for every (dataset, setting, seed): multi-task, single-task baselines, subsets.
# One job trains a chunk of a dataset's settings for one backbone and seed through both stages (nn/job.py),
# so process start-up and cache loading are paid once per chunk; `training.models_per_job` sets the chunk
# size (default: every setting of the dataset) and results do not depend on it. Rules: train_<dataset>, or
# train_<dataset>_<k> when a dataset's settings are cut into several chunks. For every model of the chunk a
# job writes, under models/<dataset>/<backbone>/<setting>/seed<seed>/: stage1.pt and stage2.pt (checkpoints),
# history_stage1.tsv and history_stage2.tsv, parameters.json; and predictions/<dataset>/<backbone>/<setting>/
# seed<seed>/<stage>/<test>.tsv, the test predictions on every dataset.

for _name, _dataset, _chunk in TRAINING_JOBS:

    rule:
        name:
            _name
        input:
            unpack(job_inputs(_dataset, _chunk)),
        output:
            **{
                output_key(
                    setting, "checkpoint", stage
                ): f"{R}/models/{_dataset}/{{backbone}}/{setting}/seed{{seed}}/{stage}.pt"
                for setting in _chunk
                for stage in STAGES
            },
            **{
                output_key(
                    setting, "history", stage
                ): f"{R}/models/{_dataset}/{{backbone}}/{setting}/seed{{seed}}/history_{stage}.tsv"
                for setting in _chunk
                for stage in STAGES
            },
            **{
                output_key(
                    setting, "parameters"
                ): f"{R}/models/{_dataset}/{{backbone}}/{setting}/seed{{seed}}/parameters.json"
                for setting in _chunk
            },
            **{
                output_key(
                    setting, "predictions", stage, test
                ): f"{R}/predictions/{_dataset}/{{backbone}}/{setting}/seed{{seed}}/{stage}/{test}.tsv"
                for setting in _chunk
                for stage in STAGES
                for test in DATASETS
            },
        log:
            f"{LOGS}/train/{_name}_{{backbone}}_seed{{seed}}.log",
        conda:
            CONDA_ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=4000,
            runtime=30 + 30 * len(_chunk),  # minutes (SLURM): paper-scale stage 2 on one GPU, generous
            cache_placement=config["training"]["cache_placement"],  # how, not what: never reruns a job
        params:
            job=job_of(_dataset, _chunk),
        script:
            "../scripts/train.py"
