import csv
import re
import json

import numpy as np
import pytest
import yaml

from conftest import tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run


def cli_args(flags: dict) -> list[str]:
    args = []
    for key, value in flags.items():
        if key == "dataset_options":
            for k, v in value.items():
                args += ["--dataset-option", f"{k}={v}"]
        else:
            args += [f"--{key.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return args


def test_full_tiny_run_through_the_cli_writes_the_run_folder(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path)
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    out = capsys.readouterr().out
    assert "protonet" in out and "1-shot" in out and "2-shot" in out and "±" in out
    assert "1.96" in out  # the CI formula is stated with the table
    folder = tmp_path / "runs" / "tiny"
    for name in ("config.yaml", "environment.json", "accuracies.csv", "summary.csv"):
        assert (folder / name).is_file(), name
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["test_episodes"] == 6 and config["methods"] == ["protonet"]
    env = json.loads((folder / "environment.json").read_text())
    assert {"torch", "python", "device", "git_commit"} <= set(env)
    rows = list(csv.DictReader((folder / "accuracies.csv").open()))
    assert len(rows) == 2 * 6
    summary = list(csv.DictReader((folder / "summary.csv").open()))
    assert {r["shot"] for r in summary} == {"1", "2"}
    assert sorted(p.name for p in (folder / "episodes").iterdir()) == ["3w1s3q_seed0.npz", "3w2s3q_seed0.npz"]


def test_every_method_sees_identical_test_episodes_from_test_classes_only(tmp_path):
    from tests_helpers import register_constant_method  # noqa: F401  (registers 'constant-test')

    config = merge(None, tiny_run_flags(tmp_path, methods=["protonet", "constant-test"], shots=[1]))
    result = run(config)
    cells = result.store.load_cells()
    assert len(cells) == 2
    assert cells[0]["test_episodes_sha"] == cells[1]["test_episodes_sha"]
    # The constant method always answers class 0: exactly 1/3 on every 3-way episode.
    constant = next(c for c in cells if c["method"] == "constant-test")
    assert np.allclose(constant["accuracies"], 1 / 3)
    with np.load(result.store.root / "episodes" / "3w1s3q_seed0.npz") as episodes:
        from fewshot_bench.episodic.protocol import load_dataset

        labels = load_dataset(config).labels.numpy()
        names = load_dataset(config).class_names
        seen = {names[c] for c in np.unique(labels[episodes["query"]])}
    assert seen == {"angry", "disgust", "fear"}


def test_rerunning_into_the_same_run_keeps_finished_cells(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, shots=[1])
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    cell = next((tmp_path / "runs" / "tiny" / "cells").glob("*.json"))
    before = cell.read_text()
    capsys.readouterr()
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    assert "kept (already done)" in capsys.readouterr().err
    assert cell.read_text() == before


@pytest.mark.parametrize("extra, message", [
    (["--methods", "nosuchmethod"], re.escape("unknown method 'nosuchmethod'; available:")),
    (["--methods", "protonet[foo=1]"], re.escape("unknown option 'foo' for method 'protonet'")),
    (["--methods", "protonett"], re.escape("unknown method 'protonett'; did you mean 'protonet'? available:")),
    (["--methods", "protonet[distanc=euclidean]"], re.escape("unknown option 'distanc' for method 'protonet'; did you "
                                                             "mean 'distance'?")),
    (["--dataset", "feer"], re.escape("unknown dataset 'feer'; did you mean 'fer2013'?")),
    (["--way", "5"], re.escape("5-way episodes need 5 classes but the split has only 3")),
    (["--shots", "50"], r"class '\w+' has \d+ items but 50-shot 3-query episodes need 53"),
    (["--dataset", "nosuchdataset"], re.escape("unknown dataset 'nosuchdataset'")),
    (["--split", "nosuchsplit"], re.escape("unknown split 'nosuchsplit' for dataset 'synthetic-fer'; presets: paper")),
    (["--device", "cuda:7"], re.escape("device 'cuda:7'")),
    (["--dataset-option", "total=big"], re.escape("option 'total' of dataset 'synthetic-fer' must be of type int")),
    (["--dataset-option", "size=24"], re.escape("'size' is a run setting, not a dataset option: use --image-size")),
    (["--image-size", "12"], re.escape("synthetic-fer draws faces of at least 16 pixels, got --image-size 12")),
])
def test_user_errors_are_one_line_and_exit_nonzero(tmp_path, capsys, extra, message):
    flags = tiny_run_flags(tmp_path)
    flags["dataset_options"] = {"total": 280}  # 40 images in each of the rare classes
    flags["image_size"] = 20
    code = main(["run"] + cli_args(flags) + extra)
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert re.search(message, err), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_split_from_config_file_and_bad_yaml(tmp_path, capsys):
    config = tmp_path / "split.yaml"
    config.write_text("split: {train: [happy, neutral, sad], test: [angry, disgust, surprise]}\n")
    flags = tiny_run_flags(tmp_path, shots=[1], test_episodes=2)
    assert main(["run", "--config", str(config)] + cli_args(flags)) == 0
    assert "surprise" not in capsys.readouterr().err
    config.write_text("split: {train: [happy, sad], test: [sad, fear, angry]}\n")
    assert main(["run", "--config", str(config)] + cli_args(flags)) == 3
    assert "puts class 'sad' in both 'train' and 'test'" in capsys.readouterr().err
    config.write_text("split: {train: [happy\n")
    assert main(["run", "--config", str(config)] + cli_args(flags)) == 3
    assert "is not valid YAML" in capsys.readouterr().err


def test_missing_data_root_is_named(tmp_path, capsys):
    from fewshot_bench.data import DatasetPlugin
    from fewshot_bench.registry import DATASETS

    if "needs-root-test" not in DATASETS:
        @DATASETS.register("needs-root-test")
        class NeedsRoot(DatasetPlugin):
            """A dataset that must be given a folder."""

    assert main(["run", "--dataset", "needs-root-test"]) == 3
    assert "needs --data-root" in capsys.readouterr().err
    assert main(["run", "--dataset", "needs-root-test", "--data-root", str(tmp_path / "nope")]) == 3
    assert f"data root '{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err


def test_help_and_list_work(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "protonet" in out and "synthetic-fer" in out and "conv4" in out


def test_continuing_a_run_with_different_protocol_settings_is_refused(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, shots=[1])
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    flags["query"] = 2
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 3
    assert "run 'tiny' already exists with query=3 (now 2)" in capsys.readouterr().err


def test_flag_type_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--way", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: argument --way: invalid int value: 'three' (see `bench run --help`)"


def test_variant_labels_with_brackets_survive_console_rendering(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, shots=[1], test_episodes=3, train_episodes=2)
    assert main(["run", "--methods", "crn,crn[dap=false]"] + cli_args(flags)) == 0
    out = capsys.readouterr().out
    assert "crn[dap=false]" in out


def test_model_selection_uses_validation_classes_only(tmp_path):
    split = {"train": ["happy", "neutral"], "val": ["sad", "surprise"], "test": ["angry", "disgust", "fear"]}
    flags = tiny_run_flags(tmp_path, shots=[1], split=split, train_episodes=6, val_episodes=4, val_interval=2)
    result = run(merge(None, flags))
    cell = result.store.load_cells()[0]
    assert cell["val_curve"]["episode"] == [2, 4, 6]
    assert cell["val_curve"]["selected_episode"] in (2, 4, 6)
    best = max(cell["val_curve"]["accuracy"])
    assert cell["val_curve"]["accuracy"][[2, 4, 6].index(cell["val_curve"]["selected_episode"])] == best


def test_compile_runs_the_backbone_through_torch_compile_with_the_same_results(tmp_path):
    import json

    flags = tiny_run_flags(tmp_path, shots=[1])
    assert main(["run", "--methods", "protonet,maml"] + cli_args(flags)) == 0
    compiled = tiny_run_flags(tmp_path, shots=[1], run_id="compiled")
    assert main(["run", "--methods", "protonet,maml", "--compile", "true", "--compile-backend", "aot_eager"]
                + cli_args(compiled)) == 0
    for method, backend in [("protonet", "aot_eager"), ("maml", None)]:
        plain = json.loads(next((tmp_path / "runs" / "tiny" / "cells").glob(f"{method}-*.json")).read_text())
        other = json.loads(next((tmp_path / "runs" / "compiled" / "cells").glob(f"{method}-*.json")).read_text())
        assert plain["compiled"] is None and other["compiled"] == backend
        np.testing.assert_allclose(other["accuracies"], plain["accuracies"], atol=1e-6)


def test_batched_episodes_are_a_run_setting_recorded_per_cell(tmp_path):
    flags = tiny_run_flags(tmp_path, shots=[1], meta_batch=2)
    assert main(["run", "--methods", "protonet,maml", "--batch-episodes", "true"] + cli_args(flags)) == 0
    records = {path.name.split("-")[0]: json.loads(path.read_text())
               for path in (tmp_path / "runs" / "tiny" / "cells").glob("*.json")}
    assert records["protonet"]["batched_episodes"] is True and records["maml"]["batched_episodes"] is False
    looped = tiny_run_flags(tmp_path, shots=[1], meta_batch=2, run_id="looped")
    assert main(["run", "--methods", "protonet"] + cli_args(looped)) == 0
    plain = json.loads(next((tmp_path / "runs" / "looped" / "cells").glob("protonet-*.json")).read_text())
    assert plain["batched_episodes"] is False
    # batch norm normalises over the meta-batch instead of each episode: a different training run
    assert plain["loss_curve"]["loss"] != records["protonet"]["loss_curve"]["loss"]


def test_cpu_runs_flush_denormal_floats(tmp_path):
    import torch

    from fewshot_bench.engine.runner import CellRunner, start_run

    try:
        torch.set_flush_denormal(False)
        denormal = torch.tensor([1e-39])
        assert (denormal * 1.0).item() != 0.0
        started = start_run(merge(None, tiny_run_flags(tmp_path, shots=[1])))
        config, store, protocol = started.config, started.store, started.protocol
        CellRunner(config, store, protocol)
        assert (denormal * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_runs_made_before_a_config_key_existed_can_be_continued(tmp_path):
    import yaml

    flags = tiny_run_flags(tmp_path, shots=[1])
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    saved = tmp_path / "runs" / "tiny" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["compile_backend"], old["augment"]
    saved.write_text(yaml.safe_dump(old))
    assert main(["run", "--methods", "protonet", "--shots", "2"] + cli_args({**flags, "shots": [2]})) == 0


def test_a_run_grown_by_several_invocations_saves_the_config_of_all_its_cells(tmp_path):
    import yaml

    flags = tiny_run_flags(tmp_path, shots=[2], seeds=[1])
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    assert main(["run", "--methods", "crn"] + cli_args({**flags, "shots": [1], "seeds": [0]})) == 0
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "config.yaml").read_text())
    assert saved["methods"] == ["protonet", "crn"] and saved["shots"] == [1, 2] and saved["seeds"] == [0, 1]
    plan = json.loads((tmp_path / "runs" / "tiny" / "plan.json").read_text())
    assert len(plan) == 2


def test_paths_that_are_files_and_other_bad_inputs_are_one_line_errors(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, shots=[1])
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        (["run", *cli_args({**flags, "output_dir": str(a_file)})], "cannot use '" + str(a_file)),
        (["run", *cli_args({k: v for k, v in flags.items() if k != "dataset_options"}), "--dataset", "image-folder",
          "--data-root", str(a_file)],
         "is a file, but this dataset reads a folder of class folders"),
        (["run", *cli_args(flags), "--split", "{train: [happy"], "config key 'split' must be a preset name or a mapping"),
    ]
    for args, message in cases:
        assert main(args) == 3, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    split = "{train: [happy, neutral, sad, surprise], test: [angry, disgust, fear]}"
    assert main(["run", *cli_args(flags), "--split", split]) == 0  # the mapping --help promises
    assert "split 'custom'" in capsys.readouterr().out
    assert main(["compare", "tiny", "--baseline", "protonet", "--output-dir", flags["output_dir"]]) == 3
    assert "nothing to compare with 'protonet'" in capsys.readouterr().err


def test_images_too_small_for_the_backbone_are_refused_before_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), labels=np.repeat(np.arange(4), 10),
             class_names=np.array(["happy", "sad", "angry", "fear"]))
    flags = tiny_run_flags(tmp_path, shots=[1], way=2)
    flags.pop("dataset_options")
    flags.pop("image_size")  # the array's own 8×8
    args = ["run", *cli_args(flags), "--dataset", "array", "--data-root", str(path), "--split",
            "{train: [happy, sad], test: [angry, fear]}"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "8×8 images are too small for backbone 'conv4' of protonet" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/cells/*.json"))


@pytest.mark.parametrize("line, message", [
    (["run", "--method", "protonet"], "unrecognized arguments: --method protonet; did you mean '--methods'? "
                                      "(see `bench run --help`)"),
    (["run", "--train-episode", "5"], "unrecognized arguments: --train-episode 5; did you mean '--train-episodes'?"),
    (["list", "methodz"], "invalid choice: 'methodz' (choose from 'methods', 'datasets', 'backbones', 'formats', "
                          "'settings'); did you mean 'methods'?"),
    (["table", "--formt", "json", "x"], "did you mean '--format'? (see `bench table --help`)"),
])
def test_flags_are_never_abbreviated_and_typos_get_the_closest(tmp_path, capsys, line, message):
    # Before: argparse expanded --method to --methods and started a run of the defaults.
    with pytest.raises(SystemExit) as stopped:
        main([*line, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_run_help_groups_the_flags_by_what_they_change_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for title in ("what is measured (these change the numbers):", "the grid (one cell per value):",
                  "numerics (device and kernels: the last bits of the numbers):",
                  "where and how it runs (never the numbers):"):
        assert title in text
    assert "--train-episodes N meta-training episodes per cell (0: none, e.g. to evaluate given weights; " \
           "default: 400)" in text
    assert "--shots A,B support images per class (K), one cell per value (default: 1,5)" in text
    assert "--amp true|false" in text
    # A help that ends in a parenthesis takes the default inside it; an empty list's default is none.
    assert "--dataset DATASET dataset name (see `bench list datasets`; default: synthetic-fer)" in text
    assert "default: none)" in text.split("--budget-curve A,B")[-1].split("--")[0]
    grid = text.split("the grid (one cell per value):")[1].split("numerics (")[0]
    assert "--seeds" in grid and "--train-episodes" not in grid


def test_a_run_continues_whether_its_data_root_is_written_relative_or_absolute(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "faces.npz"
    np.savez(path, images=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8), labels=np.repeat(np.arange(4), 10),
             class_names=np.array(["happy", "sad", "angry", "fear"]))
    flags = tiny_run_flags(tmp_path, shots=[1], way=2, train_episodes=2, test_episodes=2)
    flags.pop("dataset_options")
    flags.pop("image_size")
    split = ["--split", "{train: [happy, sad], test: [angry, fear]}"]
    assert main(["run", *cli_args(flags), "--dataset", "array", "--data-root", str(path), *split]) == 0
    monkeypatch.chdir(tmp_path / "data")  # the same file, written relative to another directory
    assert main(["run", *cli_args(flags), "--dataset", "array", "--data-root", "faces.npz", "--seeds", "1",
                 *split]) == 0
    assert "already exists" not in capsys.readouterr().err
    other = tmp_path / "data" / "other.npz"
    other.write_bytes(path.read_bytes())
    assert main(["run", *cli_args(flags), "--dataset", "array", "--data-root", "other.npz", *split]) == 3
    assert "already exists with data_root=" in capsys.readouterr().err
