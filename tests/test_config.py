"""A bad config stops before any job runs, with a message that names the key."""

from __future__ import annotations

import copy

import pytest
from conftest import REPO, TINY, TINY_CONFIG, copy_repo, run_snakemake

from aesthetic_mtl.config import deep_update, load_config, settings, validate_config
from aesthetic_mtl.errors import ConfigError


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_config(REPO / "config.yaml")


def _bad(config: dict, change) -> str:
    config = copy.deepcopy(config)
    change(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return str(err.value)


def test_shipped_configs_are_valid(paper):
    assert paper["backbone"]["name"] == "vgg16_keras"
    demo = load_config(REPO / "config.yaml", REPO / "config" / "demo.yaml")
    assert demo["datasets"]["AADB"]["source"] == "synthetic"
    assert demo["datasets"]["AADB"]["attributes"] == paper["datasets"]["AADB"]["attributes"]  # overlay merges
    load_config(REPO / "config.yaml", REPO / TINY_CONFIG)


@pytest.mark.parametrize("change, key", [
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["training"].update(batch_size="big"), "training.batch_size"),
    (lambda c: c["training"].update(seeds=[]), "training.seeds"),
    (lambda c: c["images"].update(size=-3), "images.size"),
    (lambda c: c["datasets"]["EVA"].update(format="ava"), "datasets.EVA.format"),
    (lambda c: c["training"]["stage1"].update(lr=0), "training.stage1.lr"),
    (lambda c: c["training"]["stage2"].update(typo=1), "training.stage2"),
    (lambda c: c["backbone"].update(stage2_layers=["block4_conv2"]), "backbone"),   # read by nothing: removed
    (lambda c: c["head"].update(init="xavier"), "head.init"),
    (lambda c: c["training"].update(adam_eps=0), "training.adam_eps"),
    (lambda c: c["training"]["stage2"].update(schedule="cosine"), "training.stage2.schedule"),
])
def test_schema_errors_name_the_key(paper, change, key):
    assert f"'{key}'" in _bad(paper, change)


@pytest.mark.parametrize("change, needle", [
    (lambda c: c["backbone"].update(name="vgg17"), "backbone.name"),
    (lambda c: c["experiment"]["subsets"]["AADB"].update(bad=["Lite"]), "unknown attribute 'Lite'"),
    (lambda c: c["experiment"]["cross_dataset"]["AADB->EVA"].update(Light="colour"), "unknown attribute 'colour'"),
    (lambda c: c["experiment"]["cross_dataset"].update({"AADB->AVA": {}}), "AADB->AVA"),
    (lambda c: c["datasets"]["AADB"].update(overall="Overall"), "datasets.AADB.overall"),
    (lambda c: c["datasets"]["EVA"]["split"].update(fractions={"train": 0.5, "validation": 0.1, "test": 0.1}),
     "datasets.EVA.split.fractions"),
    (lambda c: c["head"].update(loss_weights={"Sharpness": 2}), "head.loss_weights.Sharpness"),
    (lambda c: c["datasets"]["AADB"]["files"].pop("imgListFiles_label.zip"), "imgListFiles_label.zip"),
    (lambda c: c["experiment"].update(single_attributes={"EVA": ["beauty"]}), "experiment.single_attributes.EVA"),
    (lambda c: c["datasets"]["AADB"]["attributes"].update(Sharpness=[-1, 1]),
     "config key 'datasets.AADB.attributes.Sharpness': the aadb release has no labels named 'Sharpness'"),
    (lambda c: c["datasets"]["EVA"]["attributes"].update(beauty=[1, 4]),
     "config key 'datasets.EVA.attributes.beauty': the eva release has no labels named 'beauty'"),
])
def test_semantic_errors_name_the_key(paper, change, needle):
    assert needle in _bad(paper, change)


@pytest.mark.parametrize("change, old, new", [
    (lambda c: c["datasets"]["AADB"].__setitem__("targets", c["datasets"]["AADB"].pop("attributes")),
     "datasets.AADB.targets", "datasets.AADB.attributes"),
    (lambda c: c["experiment"].__setitem__("single_targets", {"EVA": ["score"]}),
     "experiment.single_targets", "experiment.single_attributes"),
])
def test_renamed_keys_say_what_they_are_called_now(paper, change, old, new):
    message = _bad(paper, change)
    assert f"config key '{old}': renamed '{new}'" in message, message


def test_settings_expand_to_multitask_singles_and_subsets(paper):
    aadb = settings(paper, "AADB")
    assert aadb["multitask"] == list(paper["datasets"]["AADB"]["attributes"])
    assert aadb["single_score"] == ["score"] and aadb["single_BalacingElements"] == ["BalacingElements"]
    assert "MotionBlur" not in aadb["no_neutral"]
    assert len(aadb) == 1 + 12 + 1
    assert len(settings(paper, "EVA")) == 1 + 5
    tiny = deep_update(paper, {"experiment": {"single_attributes": {"EVA": ["score"]}}})
    assert [s for s in settings(tiny, "EVA") if s.startswith("single_")] == ["single_score"]


def test_deep_update_merges_nested_keys():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert deep_update(base, {"a": {"b": 5}, "d": [2]}) == {"a": {"b": 5, "c": 2}, "d": [2]}
    assert base["a"]["b"] == 1


def test_paper_values_are_the_defaults(paper):
    t = paper["training"]
    assert (t["stage1"]["epochs"], t["stage1"]["lr"]) == (5, 1e-3)
    assert (t["stage2"]["epochs"], t["stage2"]["lr"], t["stage2"]["halve_every_steps"]) == (3, 1e-4, 125)
    assert paper["head"] == {"hidden": [128, 64], "dropout": 0.35, "init": "keras", "loss_weights": {}}
    text = (REPO / "config.yaml").read_text()
    assert text.count("# ours") >= 5  # our own choices are marked as such


def test_keras_faithful_choices_are_the_paper_config_and_marked(paper):
    assert paper["backbone"]["name"] == "vgg16_keras"
    assert paper["head"]["init"] == "keras"
    assert paper["training"]["adam_eps"] == 1e-7
    assert paper["training"]["stage2"]["schedule"] == "continuous"
    assert paper["training"]["bf16_autocast_cuda"] is False
    assert paper["backbone"]["cache_bf16_autocast_cuda"] is False
    lines = (REPO / "config.yaml").read_text().splitlines()
    for key in ("name: vgg16_keras", "init: keras", "adam_eps:", "schedule: continuous", "bf16_autocast_cuda:",
                "cache_bf16_autocast_cuda:", "cache_dtype:"):
        line = next(line for line in lines if line.strip().startswith(key))
        assert "# ours" in line, line
    assert sum("ours: inferred from" in line for line in lines) >= 4
    # the overlays keep their own backbones
    for overlay, name in (("config/demo.yaml", "efficientnet_lite0"), (TINY_CONFIG, "vgg16")):
        assert load_config(REPO / "config.yaml", REPO / overlay)["backbone"]["name"] == name


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("badconfig") / "repo")


@pytest.mark.parametrize("name", ["A/B", "../up", "1st", "with-dash", "AADB ", "", "cache", "Models"])
def test_dataset_names_are_one_safe_word(paper, name):
    def rename(c):
        c["datasets"][name] = c["datasets"].pop("EVA")
        c["experiment"]["cross_dataset"] = {}
    message = _bad(paper, rename)
    assert f"config key 'datasets.{name}'" in message
    assert "must match ^[A-Za-z][A-Za-z0-9_]*$" in message or "is reserved" in message


def test_an_overlay_removes_a_dataset_with_null(paper, tmp_path):
    (tmp_path / "aadb_only.yaml").write_text("datasets:\n  EVA: null\n")
    config = load_config(REPO / "config.yaml", REPO / TINY_CONFIG, tmp_path / "aadb_only.yaml")
    assert list(config["datasets"]) == ["AADB"]
    assert "EVA" not in config["experiment"]["single_attributes"]            # the tiny config named it
    assert not any("EVA" in pair for pair in config["experiment"]["cross_dataset"])
    assert config["experiment"]["subsets"]["AADB"]                         # AADB's own entries stay
    # Snakemake's merge keeps the null; validate_config (what common.smk calls) applies it in place
    merged = deep_update(paper, {"datasets": {"EVA": None}})
    assert merged["datasets"]["EVA"] is None
    validate_config(merged)
    assert list(merged["datasets"]) == ["AADB"]
    with pytest.raises(ConfigError, match="'datasets'"):                 # removing every dataset
        validate_config(deep_update(paper, {"datasets": {"EVA": None, "AADB": None}}))


@pytest.mark.slow
@pytest.mark.parametrize("overlay, needle", [
    ("training: {batch_sise: 8}\n", "'batch_sise' was unexpected"),       # schema: unknown key
    ("backbone: {name: vgg17}\n", "backbone.name"),                      # check_config: unknown backbone
    ("datasets: {AADB: {attributes: {Sharpness: [-1, 1]}}}\n",            # an AADB attribute without a list
     "the aadb release has no labels named 'Sharpness'"),
    ("datasets: {'A/B': {format: aadb}}\n", "config key 'datasets.A/B': dataset names must match"),
    ("datasets: {EVA: {targets: {score: [0, 10]}}}\n",                      # a key from before the rename
     "config key 'datasets.EVA.targets': renamed 'datasets.EVA.attributes'"),
])
def test_snakemake_stops_on_a_bad_config_before_any_job(repo_copy, overlay, needle):
    (repo_copy / "bad.yaml").write_text(overlay)
    proc = run_snakemake(repo_copy, "-n", "--cores", "1", *TINY, "--configfile", "bad.yaml", check=False,
                         timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and needle in out, out[-3000:]
    assert "Job stats" not in out                                   # no DAG, nothing scheduled
    assert not any((repo_copy / d).exists() for d in ("results", "resources", "logs"))


@pytest.mark.slow
def test_snakemake_dry_run_without_a_dataset_removed_by_overlay(repo_copy):
    (repo_copy / "aadb_only.yaml").write_text("datasets:\n  EVA: null\n")
    proc = run_snakemake(repo_copy, "-n", "--cores", "1", *TINY, "--configfile", "aadb_only.yaml",
                         timeout=300)
    out = proc.stdout + proc.stderr
    assert "results/AADB/labels.tsv" in out and "EVA" not in out, out[-3000:]
