"""The run store refuses what would break it and survives damage: run ids are names, impossible settings are
refused, damaged or impossible cell records are named and left out (or recomputed), files follow the umask."""

import json
import os
import stat

import pytest

from conftest import tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.errors import ConfigError
from fewshot_bench.fileio import atomic_write_text
from fewshot_bench.method import resolve_variant
from fewshot_bench.options import Spec
from fewshot_bench.results.leaderboard import write_leaderboard
from fewshot_bench.results.store import RunStore


@pytest.mark.parametrize("run_id", ["../x", "/tmp/x", ".", "..", "a/b", " x"])
def test_run_ids_are_names_not_paths(run_id):
    with pytest.raises(ConfigError, match="must be a folder name, not a path"):
        merge(None, {"run_id": run_id})


def test_impossible_settings_are_refused_before_anything_runs(capsys):
    with pytest.raises(ConfigError, match="'way' must be at least 2"):
        merge(None, {"way": 1})
    for spec, message in (("crn[js_weight=-1]", "js_weight' of method 'crn' must be at least 0"),
                          ("maml[inner_lr=-0.1]", "inner_lr' of method 'maml' must be at least 0"),
                          ("relationnet[hidden=0]", "hidden' of method 'relationnet' must be at least 1")):
        with pytest.raises(ConfigError, match=message):
            resolve_variant(Spec.parse(spec))
    assert main(["run", "--way", "1"]) == 3
    assert "'way' must be at least 2" in capsys.readouterr().err


def _damage(store: RunStore, how: str) -> str:
    path = sorted((store.root / "cells").glob("*.json"))[0]
    if how == "truncated":
        path.write_text(path.read_text()[:50])
    else:
        record = json.loads(path.read_text())
        record["accuracies"] = [7.5] * len(record["accuracies"])  # percent where fractions belong
        path.write_text(json.dumps(record))
    return path.name


@pytest.mark.parametrize("how", ["truncated", "out of range"])
def test_a_damaged_cell_is_named_and_left_out_of_tables_and_the_leaderboard(tmp_path, capsys, how):
    flags = tiny_run_flags(tmp_path, methods=["protonet"])
    store = run(merge(None, flags)).store
    run(merge(None, {**flags, "run_id": "other", "seeds": [1]}))
    name = _damage(store, how)  # tiny's 1-shot cell
    assert main(["table", "tiny", "--output-dir", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert name in err and "--resume" in err and "Traceback" not in err
    assert "protonet" in out  # the other cell of the run is still shown
    assert main(["status", "tiny", "--output-dir", str(tmp_path / "runs")]) == 0
    assert "1 done, 0 running, 1 failed" in " ".join(capsys.readouterr().out.split())
    rows = write_leaderboard([tmp_path / "runs"], tmp_path / "board.csv")
    assert sorted(r["run_ids"] for r in rows) == ["other", "other;tiny"]  # 1-shot: seed 1 only


def test_resume_moves_a_damaged_cell_aside_and_computes_it_again(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, methods=["protonet"])
    store = run(merge(None, flags)).store
    before = {c["shot"]: c["accuracies"] for c in store.load_cells()}
    name = _damage(store, "truncated")
    capsys.readouterr()
    after = run(merge(None, flags)).store.load_cells()
    assert {c["shot"]: c["accuracies"] for c in after} == before  # recomputed, same numbers
    assert (store.root / "cells" / f"{name}.damaged").is_file()
    assert "computed again" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_result_files_follow_the_umask(tmp_path, umask):
    import fewshot_bench.fileio as results

    old = os.umask(umask)
    saved = results._UMASK
    results._UMASK = umask
    try:
        atomic_write_text(tmp_path / "summary.csv", "x\n")
    finally:
        os.umask(old)
        results._UMASK = saved
    assert stat.S_IMODE((tmp_path / "summary.csv").stat().st_mode) == 0o666 & ~umask


def test_resume_with_workers_also_recomputes_a_damaged_cell(tmp_path, capsys):
    from inprocess import bench_here

    flags = tiny_run_flags(tmp_path, methods=["protonet"])
    store = run(merge(None, flags)).store
    before = {c["shot"]: c["accuracies"] for c in store.load_cells()}
    _damage(store, "truncated")
    capsys.readouterr()
    # The resuming run in this process (its workers are processes of their own either way).
    code = bench_here("run", "--resume", "tiny", "--output-dir", tmp_path / "runs", "--jobs", "2", "--threads", "1")
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "1 of 2 cells submitted" in out and "computed again" in err
    after = {c["shot"]: c["accuracies"] for c in store.load_cells()}
    assert after.keys() == before.keys()


def test_resume_writes_where_the_run_was_found_and_every_command_finds_it_one_way(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, methods=["protonet"], shots=[1])
    store = run(merge(None, flags)).store
    moved = tmp_path / "archive" / "tiny"
    moved.parent.mkdir()
    store.root.rename(moved)  # the run folder moved (copied off a cluster, say); its config names the old place
    (moved / "cells" / next(p.name for p in (moved / "cells").glob("*.json"))).unlink()
    assert main(["run", "--resume", str(moved)]) == 0
    assert len(list((moved / "cells").glob("*.json"))) == 1 and not (tmp_path / "runs" / "tiny").exists()
    capsys.readouterr()
    for command in (["status", str(moved)], ["table", str(moved)], ["status", "tiny", "--output-dir", str(moved.parent)]):
        assert main(command) == 0, command
    assert main(["status", "nowhere", "--output-dir", str(moved.parent)]) == 3
    assert "no run 'nowhere'" in capsys.readouterr().err


def test_config_and_plan_updates_wait_for_each_other(tmp_path):
    import subprocess
    import sys
    import time

    import yaml

    from conftest import REPO
    from fewshot_bench.fileio import locked

    flags = tiny_run_flags(tmp_path, methods=["protonet"], shots=[1], train_episodes=2, test_episodes=4)
    run(merge(None, flags))
    saved = tmp_path / "runs" / "tiny" / "config.yaml"
    grow = ("from fewshot_bench.config import merge; from fewshot_bench.engine.runner import start_run; "
            f"start_run(merge(None, {{**{flags!r}, 'methods': ['crn']}}))")
    with locked(saved):  # another process is between reading and writing the config
        process = subprocess.Popen([sys.executable, "-c", grow], env={**os.environ, "PYTHONPATH": str(REPO)})
        time.sleep(3.0)
        assert process.poll() is None and yaml.safe_load(saved.read_text())["methods"] == ["protonet"]
    assert process.wait(timeout=120) == 0
    assert yaml.safe_load(saved.read_text())["methods"] == ["protonet", "crn"]  # joined, nothing lost
    assert len(json.loads((tmp_path / "runs" / "tiny" / "plan.json").read_text())) == 2
