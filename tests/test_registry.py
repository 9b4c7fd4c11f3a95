import os
import sys
import textwrap
import types
from pathlib import Path

import pytest

from fewshot_bench import registry as registry_module
from fewshot_bench.cli.main import main
from fewshot_bench.errors import BenchError, UnknownNameError
from fewshot_bench.method import FewShotMethod
from fewshot_bench.registry import METHODS, Registry


def test_builtins_are_registered_with_descriptions_and_source():
    entry = METHODS.entry("protonet")
    assert issubclass(entry.obj, FewShotMethod)
    assert entry.source == "built-in"
    assert "Prototypical" in entry.description


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownNameError, match=r"unknown method 'nope'; available: .*protonet"):
        METHODS.get("nope")


def test_duplicate_names_are_rejected():
    reg = Registry("method", "fewshot_bench.methods", "no.such.group")

    @reg.register("twin")
    class A:
        """first"""

    with pytest.raises(BenchError, match="duplicate method name 'twin'"):
        @reg.register("twin")
        class B:
            """second"""


def _fake_entry_points(monkeypatch, eps):
    def entry_points(group=None):
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", entry_points)


def test_entry_point_plugins_register_and_broken_ones_only_warn(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    good = types.ModuleType("fsb_test_good_plugin")

    class CosineThing(FewShotMethod):
        """A method that comes from an installed package."""

    good.CosineThing = CosineThing
    monkeypatch.setitem(sys.modules, "fsb_test_good_plugin", good)
    eps = [
        EntryPoint("cosine-thing", "fsb_test_good_plugin:CosineThing", "grp.methods"),
        EntryPoint("broken", "fsb_test_missing_module:Nothing", "grp.methods"),
    ]
    _fake_entry_points(monkeypatch, eps)
    reg = Registry("method", "fewshot_bench.methods", "grp.methods")
    assert "cosine-thing" in reg.names()
    assert reg.get("cosine-thing") is CosineThing
    assert "broken" not in reg.names()
    err = capsys.readouterr().err
    assert "warning: method plugin 'broken'" in err and "failed to load" in err
    assert len(err.strip().splitlines()) == 1


def test_broken_file_in_builtin_package_warns_and_others_still_load(tmp_path, monkeypatch, capsys):
    package = tmp_path / "fsb_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(textwrap.dedent("""
        from fewshot_bench.registry import Registry
        import fsb_test_pkg
        fsb_test_pkg.REG.add("good", object(), description="fine")
    """))
    (package / "bad.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("method", "fsb_test_pkg", "no.such.group")
    import fsb_test_pkg

    fsb_test_pkg.REG = reg
    assert reg.names() == ["good"]
    err = capsys.readouterr().err
    assert "method plugin 'fsb_test_pkg.bad' failed to import" in err and "boom" in err


PLUGIN = '''
"""A plugin file registering a method."""
import torch
from fewshot_bench.method import FewShotMethod
from fewshot_bench.registry import register_method


@register_method("nearest-neighbour-test")
class NearestNeighbour(FewShotMethod):
    """1-NN on flattened backbone features (test plugin)."""

    def predict(self, support, support_labels, query, n_way):
        s = self.backbone(support).flatten(1)
        q = self.backbone(query).flatten(1)
        d = torch.cdist(q, s)
        scores = torch.full((len(q), n_way), -1e9)
        for c in range(n_way):
            scores[:, c] = -d[:, support_labels == c].min(1).values
        return scores
'''


def test_plugin_file_is_listed_with_its_path_and_runs(tmp_path, capsys):
    from conftest import tiny_run_flags

    plugin = tmp_path / "my_nn.py"
    plugin.write_text(PLUGIN)
    assert main(["list", "methods", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "nearest-neighbour-test" in out and "my_nn.py" in out
    flags = tiny_run_flags(tmp_path, shots=[1])
    args = ["run", "--plugin", str(plugin), "--methods", "nearest-neighbour-test,protonet"]
    for key in ("shots", "query", "train_episodes", "test_episodes", "output_dir", "run_id", "device", "image_size"):
        value = flags[key]
        args += [f"--{key.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    for key, value in flags["dataset_options"].items():
        args += ["--dataset-option", f"{key}={value}"]
    assert main(args) == 0
    assert "nearest-neighbour-test" in capsys.readouterr().out


def test_broken_plugin_file_is_a_one_line_error(tmp_path, capsys):
    plugin = tmp_path / "broken.py"
    plugin.write_text("import does_not_exist_anywhere\n")
    assert main(["list", "--plugin", str(plugin)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: plugin file") and "does_not_exist_anywhere" in err
    assert len(err.splitlines()) == 1


def test_missing_plugin_file(capsys):
    assert main(["list", "--plugin", "/no/such/plugin.py"]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_plugin_files_of_earlier_cells_survive_cells_added_with_another_plugin(tmp_path, capsys):
    from conftest import tiny_run_flags

    import yaml

    flags = tiny_run_flags(tmp_path, shots=[1])
    common = ["--shots", "1", "--query", "3", "--train-episodes", "2", "--test-episodes", "4", "--device", "cpu",
              "--output-dir", flags["output_dir"], "--run-id", "grown", "--image-size", "24",
              *[arg for k, v in flags["dataset_options"].items() for arg in ("--dataset-option", f"{k}={v}")]]
    files = []
    for name in ("first", "second"):
        plugin = tmp_path / f"{name}.py"
        plugin.write_text(PLUGIN.replace("nearest-neighbour-test", f"nn-{name}"))
        files.append(str(plugin.resolve()))
        assert main(["run", "--plugin", str(plugin), "--methods", f"nn-{name}", *common]) == 0
    saved = yaml.safe_load((tmp_path / "runs" / "grown" / "config.yaml").read_text())
    assert saved["plugins"] == files and saved["methods"] == ["nn-first", "nn-second"]
    capsys.readouterr()
    resume = ["run", "--resume", "grown", "--output-dir", flags["output_dir"]]
    # The run folder's config names code: it is shown, and runs only when trusted (or named again).
    assert main(resume) == 3
    err = capsys.readouterr().err
    assert f"would run code from: plugin file {files[0]}; plugin file {files[1]}" in err and "--trust" in err
    assert main([*resume, "--plugin", files[0]]) == 3
    assert main([*resume, "--trust"]) == 0
    assert "kept (already done)" in capsys.readouterr().err
    assert main([*resume, "--plugin", files[0], "--plugin", files[1]]) == 0


def test_new_plugins_refuse_taken_names_and_installed_package_names(tmp_path, capsys):
    import importlib.metadata

    assert main(["new", "method", "protonet", "--out", str(tmp_path)]) == 3
    assert "a method named 'protonet' is already registered (built-in)" in capsys.readouterr().err
    try:
        importlib.metadata.distribution("fewshot-bench-cosine")  # the example package of the dev set-up
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the example plugin package is not installed")
    # No dataset is called 'cosine', but the package the scaffold would write is the installed example's.
    assert main(["new", "dataset", "cosine", "--package", "--out", str(tmp_path)]) == 3
    assert "a package named 'fewshot-bench-cosine' is already installed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_method_scaffold_is_a_feature_head_that_conforms(tmp_path):
    from fewshot_bench.registry import load_plugin_file
    from fewshot_bench.cli.scaffold import scaffold
    from fewshot_bench.testing import check_method

    method_file, test_file = scaffold("method", "scaffolded-cosine", tmp_path)
    load_plugin_file(method_file)
    cls = METHODS.get("scaffolded-cosine")
    assert cls.has_feature_head() and cls.supports_batched_episodes()  # the recommended style
    check_method(cls)
    assert 'check_method(METHODS.get("scaffolded-cosine"))' in test_file.read_text()


def test_the_dataset_scaffolds_test_passes_as_written_and_fails_when_load_breaks(tmp_path):
    import subprocess
    import sys

    from fewshot_bench.cli.scaffold import scaffold

    plugin, presets, test = scaffold("dataset", "scaffolded-faces", tmp_path)

    def pytest_on_it() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(test)],
                              cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    done = pytest_on_it()
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    # It tests something: a preset whose test class is also a training class is refused.
    presets.write_text(presets.read_text().replace("TODO_test_class_a", "TODO_train_class_a"))
    done = pytest_on_it()
    assert done.returncode == 1 and "split preset 'default' is invalid" in done.stdout, done.stdout


def test_backbone_and_format_scaffolds_conform_and_run(tmp_path, capsys):
    from fewshot_bench.cli.scaffold import scaffold
    from fewshot_bench.registry import BACKBONES, FORMATS, load_plugin_file
    from fewshot_bench.testing import check_backbone, check_format

    backbone_file, backbone_test = scaffold("backbone", "scaffolded-net", tmp_path)
    format_file, format_test = scaffold("format", "scaffolded-tsv", tmp_path)
    load_plugin_file(backbone_file)
    load_plugin_file(format_file)
    check_backbone(BACKBONES.get("scaffolded-net"))
    check_format(FORMATS.get("scaffolded-tsv"))
    assert 'check_backbone(BACKBONES.get("scaffolded-net"))' in backbone_test.read_text()
    # The scaffolds in use: a run on the new backbone, its table in the new format.
    runs = tmp_path / "runs"
    assert main(["run", "--plugin", str(backbone_file), "--methods", "protonet", "--backbone", "scaffolded-net",
                 "--shots", "1", "--query", "2", "--train-episodes", "2", "--test-episodes", "3", "--image-size", "20",
                 "--dataset-option", "total=300", "--context", "none", "--device", "cpu", "--output-dir", str(runs),
                 "--run-id", "s"]) == 0
    capsys.readouterr()
    assert main(["table", str(runs / "s"), "--plugin", str(format_file), "--format", "scaffolded-tsv"]) == 0
    out = capsys.readouterr().out
    assert "method | 1-shot" in out and "protonet" in out and "# synthetic-fer, split paper." in out
    # Packages register through entry points: the object the registry holds, by module path.
    scaffold("backbone", "packaged-net", tmp_path, package=True)
    pyproject = (tmp_path / "fewshot-bench-packaged-net" / "pyproject.toml").read_text()
    assert 'packaged-net = "fewshot_bench_packaged_net.packaged_net:packaged_net"' in pyproject
    assert '[project.entry-points."fewshot_bench.backbones"]' in pyproject


def test_the_backbone_and_format_checks_refuse_what_breaks_the_harness():
    from torch import nn

    from fewshot_bench.report import ReportFormat
    from fewshot_bench.testing import ConformanceError, check_backbone, check_format

    def vectors(in_channels):  # flattened features: methods expect maps
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Flatten())

    def batch_dependent(in_channels):  # batch statistics in eval mode
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))

    with pytest.raises(ConformanceError, match="feature maps"):
        check_backbone(vectors)
    with pytest.raises(ConformanceError, match="eval mode"):
        check_backbone(batch_dependent)

    class NoCaption(ReportFormat):
        """Columns only."""

        def render(self, report):
            return " ".join(column.name for column in report.columns) + "\n"

    with pytest.raises(ConformanceError, match="caption"):
        check_format(NoCaption)


def test_a_resumed_run_that_unpickles_files_is_confirmed_first(tmp_path):
    from fewshot_bench.cli.main import _confirm_run_code
    from fewshot_bench.config import merge
    from fewshot_bench.errors import ConfigError

    pickled = merge(None, {"dataset": "mini-imagenet", "data_root": str(tmp_path)})
    with pytest.raises(ConfigError, match="dataset 'mini-imagenet', which unpickles files under"):
        _confirm_run_code(tmp_path, pickled, given=[], trusted=False)
    _confirm_run_code(tmp_path, pickled, given=[], trusted=True)
    _confirm_run_code(tmp_path, merge(None, {"dataset": "fer2013"}), given=[], trusted=False)  # no code to run
