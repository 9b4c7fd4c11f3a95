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

    from fewshot_bench.runner import plan_cells

    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert plan_cells(merge(path, {}))  # keys, types and method variants all resolve
