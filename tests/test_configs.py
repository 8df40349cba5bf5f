"""The config system: every shipped YAML parses, and every kind of mistake names the key and its source."""

import dataclasses
import subprocess
import sys

import pytest

from data_prep.config import ShardConfig
from evaluation.config import EvalConfig
from moda_train.core.config_loader import CONFIGS_ROOT, ConfigError, describe_schema, find_config_file, save_config
from moda_train.experiment import EXPERIMENTS as TASKS
from moda_train.experiment import load_experiment
from moda_train.models.config import ModelConfig

EXPERIMENTS = sorted((CONFIGS_ROOT / "experiments").glob("*.yaml"))
TINY = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_yaml_loads(path):
    typed, _ = load_experiment(path)
    assert isinstance(typed, TASKS[typed.task])


PRESET_GROUPS = sorted(
    (task, f.name)
    for task, schema in TASKS.items()
    for f in dataclasses.fields(schema)
    if dataclasses.is_dataclass(f.type) or (CONFIGS_ROOT / f.name).is_dir()
)


@pytest.mark.parametrize("task, group", PRESET_GROUPS)
def test_every_preset_loads_into_its_group(task, group, tmp_path):
    for preset in sorted((CONFIGS_ROOT / group).glob("*.yaml")):
        experiment = tmp_path / "exp.yaml"
        experiment.write_text(f"task: {task}\ndefaults:\n  {group}: {preset.stem}\n")
        load_experiment(experiment, ["data.train_shards=x", "data.stats_path=y"])


def test_presets_are_partial_overrides_and_experiment_wins():
    typed, _ = load_experiment(TINY, ["train.max_steps=7"])
    assert typed.model.hidden_size == 64  # from configs/model/tiny.yaml
    assert typed.model.mlp_ratio == ModelConfig().mlp_ratio  # untouched default
    assert typed.train.max_steps == 7  # command line beats the experiment file
    assert typed.train.precision == "32-true"  # from configs/train/cpu.yaml


def test_moda_b_preset_is_the_published_size():
    typed, _ = load_experiment(CONFIGS_ROOT / "experiments" / "mmdit_moda_b.yaml")
    m = typed.model
    assert (m.hidden_size, m.num_heads, m.head_dim) == (768, 12, 64)
    assert (m.depth_four_stream, m.depth_two_stream, m.depth_single_stream) == (3, 6, 12)
    assert m.audio_dim == 12 * 768


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match=r"model\.hiden.*not in 'ModelConfig'.*hidden_size"):
        load_experiment(TINY, ["model.hiden=3"])


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  data: demo\ntrain:\n  max_stesp: 10\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(bad)
    assert "max_stesp" in str(err.value) and str(bad) in str(err.value)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"train\.max_steps.*'abc'"):
        load_experiment(TINY, ["train.max_steps=abc"])


def test_missing_required_values_are_all_listed(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("defaults:\n  model: tiny\n")
    with pytest.raises(ConfigError, match=r"missing.*data\.stats_path, data\.train_shards"):
        load_experiment(exp)


def test_failed_check_names_the_fields():
    with pytest.raises(ConfigError, match="hidden_size=64 is not divisible by num_heads=3"):
        load_experiment(TINY, ["model.num_heads=3"])


def test_unknown_preset_lists_the_available_ones(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("defaults:\n  model: huge\n")
    with pytest.raises(ConfigError, match=r"defaults\.model='huge'.*presets: .*tiny"):
        load_experiment(exp)


def test_batch_size_derivation():
    typed, _ = load_experiment(TINY, ["train.global_batch_size=64", "train.micro_batch_size=8"])
    assert typed.train.accumulation(world_size=2) == 4
    with pytest.raises(ValueError, match="not divisible"):
        typed.train.accumulation(world_size=3)


def test_interpolation_resolves(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("defaults:\n  data: demo\ntrain:\n  run_name: tiny-${model.hidden_size}\n")
    typed, _ = load_experiment(exp)
    assert typed.train.run_name == "tiny-768"


def test_saved_config_reloads_identically(tmp_path):
    typed, tree = load_experiment(TINY, ["optim.lr=0.005"])
    save_config(tree, tmp_path / "config.yaml")
    reloaded, _ = load_experiment(tmp_path / "config.yaml")
    assert reloaded == typed


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "moda_train.train", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_help_lists_config_groups():
    result = _cli("--help")
    assert result.returncode == 0
    for group in ("[model]", "[flow]", "[optim]", "[train]", "[data]"):
        assert group in result.stdout
    assert "model.hidden_size" in result.stdout


def test_cli_bad_override_fails_before_work(tmp_path):
    result = _cli(str(TINY), "model.hiden=3", f"train.out_dir={tmp_path}")
    assert result.returncode == 2
    assert "hiden" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was written


def test_empty_override_means_empty_string():
    typed, _ = load_experiment(TINY, ["data.val_shards="])
    assert typed.data.val_shards == ""


def test_configs_are_found_by_name_and_by_readme_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: both forms must resolve to the shipped file
    by_name, _ = load_experiment("vae_tiny_cpu")
    by_path, _ = load_experiment("configs/experiments/vae_tiny_cpu.yaml")
    assert by_name == by_path and by_name.task == "vae"
    assert find_config_file("configs/deepspeed/zero2.json") == CONFIGS_ROOT / "deepspeed" / "zero2.json"
    # a file in the working folder wins over a shipped one of the same name
    (tmp_path / "configs" / "experiments").mkdir(parents=True)
    local = tmp_path / "configs" / "experiments" / "vae_tiny_cpu.yaml"
    local.write_text("task: vae\ndefaults:\n  data: demo\ntrain:\n  max_steps: 7\n")
    assert load_experiment("configs/experiments/vae_tiny_cpu.yaml")[0].train.max_steps == 7


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"config file not found: nope \(shipped experiments: .*mmdit_tiny_cpu"):
        load_experiment("nope")


def test_cli_lists_experiments():
    out = subprocess.run(
        [sys.executable, "-m", "moda_train.train", "--list-experiments"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mmdit_tiny_cpu" in out and "quickstart" in out


@pytest.mark.parametrize("schema", [ShardConfig, EvalConfig, *TASKS.values()], ids=lambda s: s.__name__)
def test_every_schema_is_described_for_help(schema):
    # `--help` of data_prep.shard, evaluation.run and moda_train.train prints these; a free-form mapping field
    # (e.g. evaluation's renderer_options) is one line, not a group.
    text = describe_schema(schema)
    assert all(f.name in text for f in dataclasses.fields(schema))
