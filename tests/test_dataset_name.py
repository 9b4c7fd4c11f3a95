"""--dataset-name: the user's name for the data in every table, plot and leaderboard row, not the plugin's."""

import csv

import pytest

from conftest import tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.config import RunConfig
from fewshot_bench.engine.runner import default_run_id
from test_cli_run import cli_args


def test_tables_and_the_leaderboard_use_the_users_name_for_the_data(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, shots=[1], test_episodes=4, dataset_name="my-faces")
    assert main(["run", "--methods", "protonet"] + cli_args(flags)) == 0
    out = capsys.readouterr().out
    assert "my-faces, split 'paper'" in out and "synthetic-fer, split" not in out
    run = tmp_path / "runs" / "tiny"
    with (run / "summary.csv").open() as handle:
        assert [row["dataset"] for row in csv.DictReader(handle)] == ["my-faces"]
    board = tmp_path / "board.csv"
    assert main(["leaderboard", str(run), "--out", str(board)]) == 0
    with board.open() as handle:
        assert {row["dataset"] for row in csv.DictReader(handle)} == {"my-faces"}
    # one run, one name: resuming under another name is refused, in one line
    renamed = {**flags, "dataset_name": "other"}
    assert main(["run", "--methods", "protonet"] + cli_args(renamed)) == 3  # bad input
    assert "dataset_name" in capsys.readouterr().err


def test_the_default_run_id_names_the_data_as_the_user_does():
    assert "-ck-plus-protonet" in default_run_id(RunConfig(dataset="image-folder", dataset_name="ck plus",
                                                         methods=["protonet"]))
    assert "-image-folder-protonet" in default_run_id(RunConfig(dataset="image-folder", methods=["protonet"]))


@pytest.mark.parametrize("bad", ["a/b", " padded", "x" * 61])
def test_a_bad_name_is_one_line(bad, tmp_path, capsys):
    assert main(["run", "--methods", "protonet", "--dataset-name", bad, "--output-dir", str(tmp_path)]) == 3  # bad input
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset_name" in err
