"""The run store verifies what it reads (issue 27, item 5): hand-edited or damaged records, configs, plans,
claims, state markers, environments, episode files and leaderboards are named in one line and never read
as truth; summary writes are serialised between processes."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.config import CHECKSUM_LINE, load_yaml, merge
from fewshot_bench.errors import BenchError, ConfigError, RecordError
from fewshot_bench.results.leaderboard import read_leaderboard, write_leaderboard
from fewshot_bench.results.store import RunStore, read_cell, seal

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
METHODS = ["protonet", "matchingnet"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished tiny run (two variants, 1-shot, seed 0), made once; tests work on copies of it."""
    from fewshot_bench.engine.runner import run

    base = tmp_path_factory.mktemp("pristine")
    run(merge(None, tiny_run_flags(base, methods=METHODS, shots=[1])))
    return base / "runs" / "tiny"


@pytest.fixture
def tiny(pristine, tmp_path):
    """A copy of the pristine run at tmp_path/runs/tiny, and the flags that continue it."""
    shutil.copytree(pristine, tmp_path / "runs" / "tiny")
    return RunStore(tmp_path / "runs" / "tiny"), tiny_run_flags(tmp_path, methods=METHODS, shots=[1])


def _cell_file(store: RunStore, label: str = "protonet") -> Path:
    return next(p for p in sorted((store.root / "cells").glob("*.json")) if json.loads(p.read_text())["label"] == label)


def _edit(path: Path, change, keep_checksum: bool) -> None:
    record = json.loads(path.read_text())
    if not keep_checksum:
        record.pop("checksum")  # as if written before checksums existed
    change(record)
    path.write_text(json.dumps(record))


def _all_correct(record):
    record["accuracies"] = [1.0] * len(record["accuracies"])
    record["mean"] = 100.0


def _five_episodes(record):
    record["accuracies"] = record["accuracies"][:5]
    record["mean"] = float(np.mean(record["accuracies"]) * 100)


def _shot(record):
    record["shot"] = 5


def _label_null(record):
    record["label"] = None


def _way_three(record):
    record["way"] = "three"


def _accuracies_only(record):
    record["accuracies"] = [1.0] * len(record["accuracies"])  # the mean left as it was


def _settings(record):
    record["settings"]["test_episodes"] = 99  # the hash no longer matches


def _query(record):
    record["query"] = 15
    record["settings"]["query"] = 15
    record["settings_hash"] = hashlib.sha256(json.dumps(record["settings"], sort_keys=True).encode()).hexdigest()[:12]


# (edit, message with the checksum kept, message with it dropped: the schema's)
EDITS = {
    "all accuracies 1.0": (_all_correct, None),  # a consistent forgery without a checksum is the known limit
    "5 of 6 episodes": (_five_episodes, "holds 5 test episodes, the run 6"),
    "shot changed": (_shot, "says shot 1, the record 5"),
    "label null": (_label_null, "has no label"),
    "way three": (_way_three, "has way 'three', not a whole number >= 2"),
    "accuracies without the mean": (_accuracies_only, "but its accuracies average 100.0000"),
    "settings edited": (_settings, "but its settings hash to"),
    "query and settings hash edited": (_query, "says query 3, the record 15"),
}


@pytest.mark.parametrize("keep_checksum", [True, False], ids=["sealed", "legacy"])
@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_record_is_named_and_left_out(tiny, capsys, case, keep_checksum):
    store, _ = tiny
    change, schema_message = EDITS[case]
    path = _cell_file(store)
    _edit(path, change, keep_checksum)
    message = "does not match its checksum" if keep_checksum else schema_message
    cells = store.load_cells()
    err = " ".join(capsys.readouterr().err.split())
    if message is None:
        assert len(cells) == 2  # the limit of legacy records: a forgery that passes every check is read
        return
    assert [c["label"] for c in cells] == ["matchingnet"]
    assert path.name in err and message in err and "left out" in err
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.load_cell(path.stem)


def test_a_record_with_way_three_breaks_no_command_and_resume_recomputes_it(tiny, capsys):
    store, flags = tiny
    path = _cell_file(store)
    before = json.loads(path.read_text())["accuracies"]
    _edit(path, _way_three, keep_checksum=False)
    where = ["--output-dir", str(store.root.parent)]
    for command in (["table", "tiny"], ["compare", "tiny", "--baseline", "matchingnet"]):
        assert main([*command, *where]) in (0, 3), command
        err = capsys.readouterr().err
        assert "Traceback" not in err and path.name in " ".join(err.split())
    assert main(["status", "tiny", *where, "--format", "json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["cell"]["id"] == path.stem)
    assert row["state"] == "failed" and "has way 'three'" in row["where / error"]
    rows = write_leaderboard([store.root.parent], store.root.parent / "board.csv")
    assert [r["label"] for r in rows] == ["matchingnet"]
    assert main(["run", "--resume", "tiny", *where]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "computed again" in err and path.name in err
    assert json.loads(path.read_text())["accuracies"] == before  # recomputed: the same numbers
    assert (path.parent / (path.name + ".damaged")).is_file()


def test_a_record_copied_onto_another_cell_is_refused(tiny, capsys):
    store, _ = tiny
    source, target = _cell_file(store, "protonet"), _cell_file(store, "matchingnet")
    target.write_text(source.read_text())
    with pytest.raises(RecordError, match=f"is the record of cell {source.stem}, not of {target.stem}"):
        store.load_cell(target.stem)


def test_records_round_trip_and_the_checksum_covers_every_field(tiny):
    store, _ = tiny
    path = _cell_file(store)
    record = store.load_cell(path.stem)
    assert "checksum" not in record and json.loads(path.read_text())["checksum"].startswith("sha256:")
    store.save_cell(path.stem, record)
    assert store.load_cell(path.stem) == record
    assert seal(record) == seal({**record, "checksum": "sha256:stale"})  # a checksum is never sealed in
    for key in record:
        sealed = seal(record)
        sealed[key] = "changed"
        path.write_text(json.dumps(sealed))
        with pytest.raises(RecordError, match="does not match its checksum"):
            read_cell(path)


def test_cell_ids_are_parsed_as_the_runner_makes_them():
    from fewshot_bench.engine.runner import cell_id
    from fewshot_bench.results.store import _cell_id_problem

    for label in ("protonet", "crn[dap=false]", "maml[inner_lr=0.4,backbone=conv4]", "a b/c"):
        cid = cell_id(label, 5, 1, 15, 3)
        assert _cell_id_problem(cid, label, way=5, shot=1, query=15, seed=3) is None
        assert "says shot 1" in _cell_id_problem(cid, label, shot=2)
        assert "is not that of the label" in _cell_id_problem(cid, label + "x")


def test_every_published_record_verifies(capsys):
    published = sorted(p for p in (REPO / "results" / "records").iterdir() if (p / "cells").is_dir())
    assert published
    # Records published before records were sealed (#27) have no checksums (they were never rewritten); every
    # record published since carries them.
    unsealed = {"fer2013-grid-gpu", "fer2013-modern-gpu", "reproduce-omniglot-cpu", "reproduce-omniglot-20way-cpu",
                "reproduce-omniglot-modern-cpu"}
    for folder in published:
        files = list((folder / "cells").glob("*.json"))
        cells = RunStore(folder).load_cells()
        assert len(cells) == len(files), folder
        assert all(("checksum" in json.loads(f.read_text())) != (folder.name in unsealed) for f in files), folder
        context = list((folder / "context").glob("*.json"))
        assert len(RunStore(folder).load_context()) == len(context), folder
        load_yaml(folder / "config.yaml")  # the saved configs verify too
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------- config.yaml
def _cut(text: str) -> str:
    return text[: len(text) // 2]


def _cut_at_line(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[: len(lines) // 2])


def _legacy_cut(text: str) -> str:  # an old, unsealed config cut at a line, before test_episodes
    body = text.partition("\n")[2]
    return body[: body.index("test_episodes:")]


def _legacy_other_grid(text: str) -> str:  # an old config whose grid is not the plan's
    return text.partition("\n")[2].replace("shots:\n- 1\n", "shots:\n- 5\n")


@pytest.mark.parametrize("damage, message", [
    (_cut, "does not match its checksum"),
    (_cut_at_line, "does not match its checksum"),
    (lambda text: text.replace("test_episodes: 6", "test_episodes: 60"), "does not match its checksum"),
    (lambda text: "", "is damaged (empty, or not a mapping"),
    (_legacy_cut, "is damaged (it lacks seeds, test_episodes)"),
    (lambda text: text.partition("\n")[2][:-5], "is cut short"),
    (_legacy_other_grid, "does not match the run's plan.json"),
    (lambda text: text.partition("\n")[2].replace("way: 3", "way: three"), "'way' must be int"),
    (lambda text: text.partition("\n")[2] + "  - : [\n", "invalid YAML"),
], ids=["cut", "cut at a line", "edited", "empty", "legacy cut", "legacy cut mid-line", "other grid", "bad type",
        "bad YAML"])
def test_a_damaged_run_config_is_one_line_and_never_overwritten(tiny, capsys, damage, message):
    store, _ = tiny
    saved = store.root / "config.yaml"
    assert saved.read_text().startswith(CHECKSUM_LINE)
    saved.write_text(damage(saved.read_text()))
    before = saved.read_bytes()
    with pytest.raises(ConfigError, match="run config '.*config.yaml'"):
        merge(saved, {})
    assert main(["run", "--resume", "tiny", "--output-dir", str(store.root.parent)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.yaml" in err and message in err and "Traceback" not in err
    assert saved.read_bytes() == before
    # Tables still show the run (each record carries its own settings), with one warning naming the file.
    assert main(["table", "tiny", "--output-dir", str(store.root.parent)]) == 0
    out, err = capsys.readouterr()
    assert "protonet" in out and "config.yaml" in err


def test_a_legacy_config_that_agrees_with_the_plan_is_read(tiny):
    store, _ = tiny
    saved = store.root / "config.yaml"
    saved.write_text(saved.read_text().partition("\n")[2])  # as written before the checksum line existed
    assert merge(saved, {}).test_episodes == 6
    assert len(store.load_cells()) == 2


# ------------------------------------------------------------------------------------------- claims
def _ended_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("content, why", [
    ("", "is empty"),
    ("hello", "is empty or damaged"),
    ('{"owner": "someone"}', "is empty or damaged"),
    ('{"host": "HOST", "pid": "x"}', "is empty or damaged"),
    ('{"host": "HOST", "pid": ENDED}', "which has ended"),
    ('{"host": "HOST", "pid": 1, "start": 123456789}', "its pid is now another process's"),
], ids=["empty", "foreign text", "foreign JSON", "no pid", "dead pid", "reused pid"])
def test_a_stale_claim_is_taken_over_with_a_warning(tmp_path, capsys, content, why):
    store = RunStore(tmp_path / "run")
    claim = tmp_path / "run" / "claims" / "cell.claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(content.replace("HOST", socket.gethostname()).replace("ENDED", str(_ended_pid())))
    assert store.claim("cell")
    err = " ".join(capsys.readouterr().err.split())
    assert str(claim) in err and why in err and "takes the cell over" in err
    assert json.loads(claim.read_text())["pid"] == os.getpid()
    assert not list(claim.parent.glob(".*"))  # nothing left behind


def test_a_live_claim_is_respected(tmp_path):
    store = RunStore(tmp_path / "run")
    claim = tmp_path / "run" / "claims" / "cell.claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))  # pytest's parent: alive
    assert not store.claim("cell")
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1}))  # another host's processes cannot be checked
    assert not store.claim("cell")
    assert "pid 1 on elsewhere" in store.claim_holder("cell")


def test_a_resume_takes_over_an_empty_claim_and_computes_the_cell(tiny, capsys):
    from fewshot_bench.engine.runner import run

    store, flags = tiny
    path = _cell_file(store)
    path.unlink()
    (store.root / "claims").mkdir(exist_ok=True)
    (store.root / "claims" / f"{path.stem}.claim").write_text("")
    result = run(merge(None, flags))
    assert not result.failures and path.is_file() and len(result.summary) == 2
    assert "takes the cell over" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- summary lock
WRITER = """
import sys, time
from pathlib import Path
from fewshot_bench.results.store import RunStore

store, label, i, start = RunStore(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
record = {"label": label, "method": "protonet", "dataset": "toy", "split": "paper", "way": 3, "shot": 1,
          "query": 15, "seed": 0, "backbone": "conv4", "params": 1, "train_episodes": 1, "train_seconds": 1.0,
          "eval_seconds": 1.0, "device": "cpu", "finished": "2026-01-01T00:00:00", "accuracies": [0.5, 0.6]}
time.sleep(max(0.0, start + 0.4 * i - time.time()))
store.save_cell(label, record)
cells = store.load_cells()  # a snapshot before the lock, as the runner takes it
# The first to store its cell writes the tables last, from the oldest snapshot: without the lock and the
# reading inside it, its tables would hold its own variant only.
time.sleep(max(0.0, start + 2.0 - 0.4 * i - time.time()))
store.write_tables(cells)
"""


def test_three_processes_adding_methods_at_once_drop_no_variant(tmp_path):
    import time

    folder = tmp_path / "run"
    (folder / "cells").mkdir(parents=True)
    start = time.time() + 3.0
    labels = ["protonet", "protonet[lr=0.01]", "protonet[lr=0.1]"]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), label, str(i), str(start)], env=ENV)
               for i, label in enumerate(labels)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    summary = (folder / "summary.csv").read_text()
    assert all(f"\n{label}," in summary for label in labels)
    assert sorted(s["label"] for s in json.loads((folder / "summary.json").read_text())["settings"]) == sorted(labels)
    assert len((folder / "accuracies.csv").read_text().splitlines()) == 1 + 3 * 2


# ------------------------------------------------------------------------------------------- other files
def test_a_plan_entry_without_a_label_is_one_line(tiny, capsys):
    store, _ = tiny
    plan = json.loads((store.root / "plan.json").read_text())
    del plan[0]["label"]
    (store.root / "plan.json").write_text(json.dumps(plan))
    assert main(["status", "tiny", "--output-dir", str(store.root.parent)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plan.json' is damaged (entry 1: cell" in err and "has no label" in err
    assert main(["table", "tiny", "--output-dir", str(store.root.parent)]) == 0  # the cells are still shown
    out, err = capsys.readouterr()
    assert "protonet" in out and "matchingnet" in out and "plan.json" in err and "Traceback" not in err


@pytest.mark.parametrize("marker", ['{"state": "exploded"}', '["running"]', '{"state": 3}', "{"])
def test_an_unknown_state_marker_reads_as_interrupted(tiny, capsys, marker):
    store, _ = tiny
    cid = _cell_file(store).stem
    store.cell_path(cid).unlink()
    (store.root / "state").mkdir(exist_ok=True)
    (store.root / "state" / f"{cid}.json").write_text(marker)
    assert main(["status", "tiny", "--output-dir", str(store.root.parent), "--format", "json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["cell"]["id"] == cid)
    assert row["state"] == "interrupted" and "is damaged" in row["where / error"]


@pytest.mark.parametrize("content", ["{", "[1, 2]", "\xff\xfe"])
def test_a_damaged_environment_is_named_and_the_run_still_shown(tiny, capsys, content):
    store, _ = tiny
    (store.root / "environment.json").write_bytes(content.encode("latin-1"))
    assert main(["table", "tiny", "--output-dir", str(store.root.parent)]) == 0
    out, err = capsys.readouterr()
    assert "protonet" in out and "environment.json" in err and "Traceback" not in err
    rows = write_leaderboard([store.root.parent], store.root.parent / "board.csv")
    assert len(rows) == 2 and rows[0]["torch"] == ""


def test_a_damaged_episodes_file_is_named_not_an_allow_pickle_hint(tiny, tmp_path):
    store, _ = tiny
    path = next((store.root / "episodes").glob("*.npz"))
    setting = path.stem
    good = store.load_episodes(setting)
    assert len(good) == 6
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RecordError, match=f"test episodes file '{path}' is damaged") as caught:
        store.load_episodes(setting)
    assert "allow_pickle" not in str(caught.value)
    # an object array (a pickle) inside is refused, never unpickled
    ran = tmp_path / "ran"
    payload = np.array([_Payload(str(ran))], dtype=object)
    with path.open("wb") as handle:
        np.savez(handle, class_ids=payload, support=good.support, query=good.query)
    with pytest.raises(RecordError, match="is damaged"):
        store.load_episodes(setting)
    assert not ran.exists()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("text, message", [
    ("", "lacks the column(s)"),
    ("a,b\n1,2\n", "lacks the column(s) dataset"),
    ("HEADER\nfer,paper,three,1,15,protonet,protonet,conv4,h,50.0,1.0,1.0,600,1,0,0,10,10,0,1,1,cpu,cpu,fp32,"
     "2,3,0.1,v,c,3,15,0.001,s,r,t,,\n", "line 2: column way is 'three', not a whole number"),
    ("HEADER\nfer,paper,3,1,15,protonet\n", "line 2 has fewer fields than the header"),
    ("HEADER\nfer,paper,3,1,15,protonet,protonet,conv4,h,150.0,1.0,1.0,600,1,0,0,10,10,0,1,1,cpu,cpu,fp32,2,3,"
     "0.1,v,c,3,15,0.001,s,r,t,,\n", "mean 150.0 is not a percentage"),
    ("HEADER\nf\xe9r,paper,3,1,15,protonet,protonet,conv4,h,50.0,1.0,1.0,600,1,0,0,10,10,0,1,1,cpu,cpu,fp32,2,3,"
     "0.1,v,c,3,15,0.001,s,r,t,,\n", "is not UTF-8 text"),
], ids=["empty", "foreign", "way three", "short row", "mean 150", "latin-1"])
def test_a_malformed_leaderboard_is_one_line(tmp_path, capsys, text, message):
    from fewshot_bench.results.leaderboard import COLUMNS

    path = tmp_path / "board.csv"
    path.write_bytes(text.replace("HEADER", ",".join(COLUMNS)).encode("latin-1"))
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_leaderboard(path)
    assert main(["table", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err


def test_the_published_leaderboard_still_reads():
    rows = read_leaderboard(REPO / "results" / "leaderboard.csv")
    assert rows and all(isinstance(r["way"], int) and 0 <= r["mean"] <= 100 for r in rows)
