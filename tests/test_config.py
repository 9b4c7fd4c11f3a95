import re

import pytest

from fewshot_bench.config import RunConfig, merge
from fewshot_bench.errors import ConfigError


def test_defaults_then_file_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("way: 5\nshots: [1, 3]\nlr: 0.01\nmethods: [protonet, 'crn[js_weight=0]']\n")
    config = merge(path, {"way": 4, "lr": None})
    assert config.way == 4  # flag beats file
    assert config.shots == [1, 3] and config.lr == 0.01  # file beats default
    assert config.query == RunConfig().query  # default kept
    assert config.methods == ["protonet", "crn[js_weight=0]"]


def test_comma_lists_from_flags_keep_bracketed_options_together():
    config = merge(None, {"methods": "crn,crn[js_weight=0,dap=false],protonet", "shots": "1,5", "seeds": "0,1"})
    assert config.methods == ["crn", "crn[js_weight=0,dap=false]", "protonet"]
    assert config.shots == [1, 5] and config.seeds == [0, 1]


def test_unknown_key_names_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("wayz: 5\n")
    with pytest.raises(ConfigError, match="unknown config key 'wayz' in config file"):
        merge(path, {})
    path.write_text("train-episodes: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'train_episodes'"):
        merge(path, {})


def test_wrong_types_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("way: three\n")
    with pytest.raises(ConfigError, match="config key 'way' must be int"):
        merge(path, {})
    path.write_text("shots: [1, two]\n")
    with pytest.raises(ConfigError, match="'shots' must be a non-empty list of integers"):
        merge(path, {})
    with pytest.raises(ConfigError, match="'query' must be at least 1"):
        merge(None, {"query": 0})


def test_bad_yaml_is_one_line_with_position(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("way: [1, 2\nshots: 3\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d+"):
        merge(path, {})
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        merge(path, {})
    with pytest.raises(ConfigError, match="does not exist"):
        merge(tmp_path / "missing.yaml", {})


def test_boolean_keys_from_yaml_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("amp: false\n")
    assert merge(path, {}).amp is False
    assert merge(None, {"amp": "off"}).amp is False and merge(None, {"amp": "true"}).amp is True
    with pytest.raises(ConfigError, match="'amp' must be true or false"):
        merge(None, {"amp": "maybe"})


def test_every_shipped_config_is_valid():
    from conftest import REPO

    from fewshot_bench.engine.runner import plan_cells

    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert plan_cells(merge(path, {}))  # keys, types and method variants all resolve


def test_the_key_reference_in_the_docs_is_generated_from_the_declarations():
    from conftest import REPO

    from fewshot_bench.config import reference_markdown

    assert (REPO / "docs" / "config.md").read_text() == reference_markdown(), \
        "docs/config.md is stale: python -m fewshot_bench.config > docs/config.md"


def test_every_declared_key_has_a_flag_help_and_role():
    from fewshot_bench.cli.main import build_parser
    from fewshot_bench.config import ROLES, SETTINGS

    run_help = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    for spec in SETTINGS.values():
        assert spec.role in ROLES and spec.help, spec.name
        if spec.flag:
            assert spec.flag_name in run_help, spec.name
    assert "--plugin" in run_help and "--dataset-option" in run_help and "--slurm-partition" in run_help


def test_bounds_and_choices_come_from_the_declaration():
    for key, value, message in (("way", 1, "'way' must be at least 2, got 1 (a 1-way episode"),
                                ("train_way", 1, "'train_way' must be at least 2"),
                                ("shots", "0,1", "'shots' must contain integers of at least 1"),
                                ("launcher", "cloud", "'launcher' must be local or slurm, got 'cloud'"),
                                ("run_id", "../x", "must be a folder name, not a path"),
                                ("plugins", [3], "'plugins' must be a list of text"),
                                ("slurm", {"gpus": -1}, "slurm setting 'gpus' must be a non-negative integer")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            merge(None, {key: value})
    assert merge(None, {"val_episodes": 0}).val_episodes == 0 and merge(None, {"threads": None}).threads is None


def test_roles_decide_what_is_hashed_and_what_a_run_may_change():
    from fewshot_bench.config import GRID, LOGISTICS, NUMERICS, RESULT, keys

    hashed = set(keys(RESULT, hashed=True))
    assert {"way", "amp", "train_episodes", "dataset_options"} <= hashed
    # keys that reach a cell through its variant (whose label says so) are not hashed twice
    assert not hashed & {"seeds", "shots", "methods", "device", "threads", "run_id", "jobs", "data_root", "split",
                         "backbone", "lr", "lr_step", "lr_gamma", "grad_clip"}
    assert set(keys(RESULT, hashed=False)) >= {"backbone", "lr", "lr_step", "lr_gamma", "grad_clip"}
    assert set(keys(GRID)) == {"methods", "plugins", "shots", "seeds"}
    assert "cuda_graphs" in keys(NUMERICS) and "output_dir" in keys(LOGISTICS)


def test_plugin_files_named_in_a_yaml_are_found_beside_it(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_method.py").write_text("")
    (folder / "run.yaml").write_text("plugins: [my_method.py]\n")
    monkeypatch.chdir(tmp_path)  # not the YAML's folder
    assert merge(folder / "run.yaml", {}).plugins == [str((folder / "my_method.py").resolve())]


def test_one_backbone_for_every_method_on_demand():
    from fewshot_bench.engine.runner import resolve_variants

    config = merge(None, {"methods": "protonet,maml,relationnet[backbone=rn-encoder]", "backbone": "conv4"})
    variants = {v.name: v for v in resolve_variants(config)}
    assert {name: v.option_dict["backbone"] for name, v in variants.items()} == {
        "protonet": "conv4", "maml": "conv4", "relationnet": "rn-encoder"}  # a named backbone is kept
    assert variants["maml"].label == "maml[backbone=conv4]" and variants["protonet"].label == "protonet"
    assert [v.option_dict["backbone"] for v in resolve_variants(merge(None, {"methods": "maml"}))] == ["conv4-32"]
    with pytest.raises(Exception, match="unknown backbone 'resnet99'"):
        resolve_variants(merge(None, {"methods": "protonet", "backbone": "resnet99"}))
