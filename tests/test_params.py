"""params.yaml read into typed sections: every key has one class field, and bad values are named with what is accepted."""

from pathlib import Path

import pytest
import yaml

from mcap.errors import McapError
from mcap.joint_controller import JointSettings
from mcap.params import SECTIONS, Params, TopLevel, load_params

ROOT = Path(__file__).resolve().parents[1]
RAW = load_params(ROOT / "params.yaml")
ALL_SECTIONS = (*SECTIONS, JointSettings)  # params.py's, and the one a strategy keeps beside its code


def with_value(key: str, value) -> dict:
    """The committed params with the dotted ``key`` set to ``value`` (or removed, for ``...``)."""
    raw = yaml.safe_load(yaml.safe_dump(RAW))
    *sections, name = key.split(".")
    target = raw
    for section in sections:
        target = target[section]
    if value is ...:
        del target[name]
    else:
        target[name] = value
    return raw


def test_floats_as_dvc_writes_them_from_set_param_are_read_as_numbers(tmp_path):
    # `dvc exp run -S 'train.learning_rates=[5e-5, 2.0e-5]'` stores the first as 5e-05: YAML 1.2, a string in 1.1
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rates:\n  - 5e-05\n  - 2.0e-5\n  - 1.0e-4\n  name: 5e-05x\n  version: '5e-05'\n")
    train = load_params(path)["train"]
    assert train["learning_rates"] == [5e-5, 2e-5, 1e-4]
    assert train["name"] == "5e-05x" and train["version"] == "5e-05"  # other strings, and quoted ones, stay strings


def test_every_key_of_params_yaml_is_a_field_of_its_section_class_and_back():
    params = Params(RAW)
    for section in ALL_SECTIONS:
        read = section.read(RAW) if section not in SECTIONS else getattr(params, section.section or "top")
        assert isinstance(read, section)
        declared = set(RAW[section.section]) if section.section else {k for k, v in RAW.items() if not isinstance(v, dict)}
        assert declared == set(section.model_fields), section.__name__
    assert set(RAW) == set(TopLevel.model_fields) | {s.section for s in ALL_SECTIONS if s.section}


def test_every_param_a_stage_declares_in_dvc_yaml_is_a_field_of_a_section_class():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    by_section = {s.section: set(s.model_fields) for s in ALL_SECTIONS}
    for name, body in stages.items():
        for param in body.get("params", []):
            section, _, key = param.rpartition(".")  # a top-level key or a whole section: section ""
            assert key in by_section.get(section, ()) or (not section and key in by_section), (name, param)


def test_values_arrive_typed_and_ints_where_floats_are_expected_become_floats():
    train = Params(with_value("train.weight_decay", 0)).train
    assert train.weight_decay == 0.0 and isinstance(train.weight_decay, float)
    assert isinstance(train.learning_rates[0], float) and isinstance(train.epochs, int)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("prune.gradient_probe_steps", ..., "missing key 'prune.gradient_probe_steps'"),
    ("prune.imp_rounds", "two", "'prune.imp_rounds' must be an integer, got 'two'"),
    ("prune.imp_rounds", True, "'prune.imp_rounds' must be an integer, got True"),  # YAML's true is no number
    ("prune.imp_rewind", 1, "'prune.imp_rewind' must be true or false, got 1"),
    ("prune.ratios", [1.0], r"'prune.ratios' must be a non-empty list of distinct numbers in \[0, 1\), got \[1.0\]"),
    ("prune.ratios", [], r"'prune.ratios' must be a non-empty list of distinct numbers in \[0, 1\)"),
    ("prune.ratios", ["half"], r"'prune.ratios' must be a list of numbers, got \['half'\]"),
    ("prune.ratio", 0.5, "unknown key\\(s\\) 'prune.ratio'; 'prune' accepts .*ratios"),  # `-S prune.ratio=0.5`
    ("prune.seeds", [], "'prune.seeds' must be a non-empty list of distinct integers"),
    ("seeds", [], r"'seeds' must be a non-empty list of distinct integers, got \[\]"),
    ("strategies", [], r"'strategies' must be a non-empty list of distinct strategy names, got \[\]"),
    ("prune.imp_round", 2, "unknown key\\(s\\) 'prune.imp_round'; 'prune' accepts .*imp_rounds"),
    ("train.learning_rates", [], "'train.learning_rates' must be a non-empty list of positive numbers"),
    ("train.learning_rates", [0.0], "'train.learning_rates' must be a non-empty list of positive numbers"),
    ("train.learning_rates", ["fast"], "'train.learning_rates' must be a list of numbers, got \\['fast'\\]"),
    ("train.learning_rates", 3e-5, "'train.learning_rates' must be a list of numbers"),
    ("train.select_metric", "loss", "'train.select_metric' must be one of mcc, accuracy, got 'loss'"),
    ("data.split", "stratified", "'data.split' must be one of grouped, random"),
    ("data.max_train_examples", 0, "'data.max_train_examples' must be a positive integer or null"),
    ("data.extra_tasks", {"subj": 3}, "'data.extra_tasks' must be a mapping of names to strings"),
    ("mcap.iterative_step", 1, r"'mcap.iterative_step' must be a number in \(0, 1\)"),
    ("mcap.seeds", [42, 42], "'mcap.seeds' must be a non-empty list of distinct integers"),
    ("ranking.ratios", [0.2, 1.2], r"'ranking.ratios' must be a non-empty list of numbers in \[0, 1\)"),
    ("seeds", [4.2], r"'seeds' must be a list of integers, got \[4.2\]"),
    ("post_prune.recoveries", ["kd"], r"'post_prune.recoveries' must be a list of distinct names among \['distill', "),
    ("post_prune.recovery_mac_ratios", [0.45],
     "'post_prune.recovery_mac_ratios' must be a list of distinct budgets among post_prune.mac_ratios"),
])
def test_a_bad_value_is_named_with_what_the_key_accepts(key, value, message):
    section = key.split(".")[0] if "." in key else "top"
    with pytest.raises(McapError, match=f"params.yaml: {message}"):
        getattr(Params(with_value(key, value)), section)  # reading the section checks it


def test_keys_with_a_default_may_be_left_out():
    raw = with_value("train.num_processes", ...)
    del raw["data"]["task_train_examples"]
    params = Params(raw)
    assert params.train.num_processes == 1 and params.data.task_train_examples == {}


def test_a_section_is_read_and_checked_only_when_a_stage_uses_it():
    params = Params(with_value("explain.top_k", "five"))
    assert params.prune.ratios == RAW["prune"]["ratios"]  # a stage that never reads `explain` runs
    with pytest.raises(McapError, match="'explain.top_k' must be an integer"):
        _ = params.explain


def test_deployed_strategies_must_be_among_the_pruned_ones():
    with pytest.raises(McapError, match="'deploy.strategies' must be among 'strategies'"):
        Params(with_value("deploy.strategies", ["head_magic"])).deploy_strategies()


def test_transfer_tasks_are_the_tasks_no_controller_trains_on():
    assert Params(with_value("tasks", ["sst2", "cola", "subj", "mr"])).transfer_tasks() == ["subj", "mr"]


def test_mcap_train_tasks_must_be_among_the_tasks():
    with pytest.raises(McapError, match="'mcap.train_tasks' must be a subset of 'tasks'"):
        Params(with_value("mcap.train_tasks", ["sst2", "mnli"])).mcap_train_tasks()



@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.args")), ids=lambda path: path.stem)
def test_every_profile_applies_to_the_params_and_names_only_its_own_tasks(profile, tmp_path):
    """What `dvc exp run $(grep -v '^#' profiles/<name>.args)` does to params.yaml, read as the stages read it."""
    from dvc.utils.hydra import apply_overrides

    words = [word for line in profile.read_text().splitlines() if not line.startswith("#") for word in line.split()]
    assert words[::2] == ["-S"] * (len(words) // 2), f"{profile.name}: every line is one -S key=value"
    params_file = tmp_path / "params.yaml"
    params_file.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(params_file, words[1::2])
    params = Params.load(params_file)
    for section in ALL_SECTIONS:
        section.read(params.raw)  # reading a section checks it
    assert set(params.data.task_train_examples) <= set(params.tasks)  # the split stage refuses any other
    assert params.deploy_strategies() is not None and set(params.mcap_train_tasks()) <= set(params.tasks)
