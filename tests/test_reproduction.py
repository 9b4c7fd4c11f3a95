"""The reproduction card: rows paired with the papers, verdicts, regeneration commands, errors."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fewshot_bench.cli.main import main
from fewshot_bench.config import dump, merge
from fewshot_bench.reporting.reproduction import fill_section, load_card, regeneration_command
from conftest import REPO, tiny_run_flags
from test_reporting import make_cell


def write_config(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def write_card(path: Path, runs: list[dict], paper: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"title": "Test card", "sections": [
        {"name": "Toy", "protocol": "toy protocol", "runs": runs, "paper": paper,
         "discussion": "written discussion"}]}))
    return path


def fake_run(tmp_path: Path, config_file: Path, cells: list[dict], **saved_overrides) -> Path:
    """A run folder as `bench run --config config_file` (plus overrides) leaves it."""
    saved = merge(config_file, saved_overrides)
    folder = Path(saved.output_dir) / saved.run_id
    (folder / "cells").mkdir(parents=True)
    (folder / "config.yaml").write_text(dump(saved))
    (folder / "environment.json").write_text(json.dumps({"torch": "2.x", "python": "3.11", "fewshot_bench": "0.1.0",
                                                         "device_name": "cpu", "cpu_threads": 2}))
    for i, cell in enumerate(cells):
        (folder / "cells" / f"{i}.json").write_text(json.dumps(cell))
    return folder


def toy_cells() -> list[dict]:
    rng = np.random.default_rng(0)
    spread = np.array([-0.05, 0.05] * 50)
    return [
        make_cell("protonet", 1, 0, 0.90 + spread, threads=1),                 # 90.0 vs paper 90.0
        make_cell("matchingnet", 1, 0, 0.80 + spread, threads=1),              # 80.0 vs 85.0: a gap
        make_cell("maml[inner_lr=0.4]", 1, 0, np.full(100, 0.895), threads=1),  # 89.5 vs 90.0, CI 0: within 1 pt
        make_cell("crn", 1, 0, rng.uniform(0.6, 0.7, 100), threads=1),         # no published value
        make_cell("matchingnet[fce=false]", 1, 0, 0.85 + spread, threads=1),   # an ablation: not the paper's row
    ]


PAPER = [
    {"method": "protonet", "way": 3, "shot": 1, "mean": 90.0, "source": "Snell"},
    {"method": "matchingnet", "way": 3, "shot": 1, "mean": 85.0, "ci95": 0.5, "source": "Vinyals",
     "budget": "many episodes", "note": "Their queries differ."},
    {"method": "maml", "label": "maml[inner_lr=0.4]", "way": 3, "shot": 1, "mean": 90.0, "source": "Finn"},
    {"method": "relationnet", "way": 3, "shot": 1, "mean": 95.0, "ci95": 0.2, "source": "Sung"},
]


@pytest.fixture
def card_setup(tmp_path):
    config = write_config(tmp_path / "toy.yaml", methods=["protonet"], run_id="toy-run",
                          output_dir=str(tmp_path / "runs"), train_episodes=10)
    fake_run(tmp_path, config, toy_cells(), threads=1, test_episodes=100)
    return write_card(tmp_path / "card.yaml", [{"config": "toy.yaml", "budget": "reduced"}], PAPER)


class AllCurrent:
    """Every row computed by today's code (what decides it is tested in test_fingerprint.py)."""

    def row_state(self, records):
        from fewshot_bench.fingerprint.status import CURRENT, RecordState

        return RecordState(CURRENT)


def test_rows_are_paired_with_the_paper_by_method_way_and_shot(card_setup):
    result = fill_section(load_card(card_setup).sections[0], AllCurrent())
    verdicts = {row.label: row.verdict for row in result.rows}
    assert verdicts == {
        "protonet": "matches (within CI)",
        "matchingnet": "below by 5.0 (outside CI)",
        "maml[inner_lr=0.4]": "within 1 point (outside CI)",
        "crn": "no published value",
        "matchingnet[fce=false]": "no published value",
        "relationnet": "not run",
    }
    matching = next(row for row in result.rows if row.label == "matchingnet")
    assert matching.delta == pytest.approx(-5.0)
    assert matching.tolerance == pytest.approx(np.hypot(matching.ours["ci95"], 0.5))


def test_card_renders_every_number_from_the_run_folder(card_setup, tmp_path):
    out = tmp_path / "REPRODUCTION.md"
    assert main(["card", str(card_setup), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| protonet | 3 | 1 | 90.00 | Snell | 90.00 ± 0.98 | +0.00 | matches (within CI) | 100 × 1 | " \
           "10 episodes (reduced) | cpu (1 thread) |" in text
    assert "| relationnet | 3 | 1 | 95.00 ± 0.20 | Sung | not run |" in text
    assert "Rows with a published value: 3; within the CI: 1; within one point but outside the CI: 1; " \
           "more than one point away: 1." in text
    assert "ours 80.00 vs 85.00 (Vinyals)" in text and "the paper's: many episodes. Their queries differ." in text
    assert "written discussion" in text and "toy protocol" in text
    assert "fer2013" not in text and "```csv\ndataset,split,way,shot" in text
    first = text
    assert main(["card", str(card_setup), "--out", str(out)]) == 0
    assert out.read_text() == first


def test_command_names_the_config_and_every_flag_that_changed_results(tmp_path):
    config = write_config(tmp_path / "c.yaml", methods=["protonet"], run_id="r", output_dir=str(tmp_path),
                          shots=[1, 5])
    saved = merge(config, {"threads": 1, "test_episodes": 7, "shots": [1], "run_id": "other", "jobs": 2,
                           "dataset_options": {"total": 300}, "methods": ["crn[dap=false]", "protonet"]})
    command = regeneration_command(config, saved)
    assert command.startswith(f"bench run --config {config.as_posix()} ")
    for part in ("--threads 1", "--test-episodes 7", "--shots 1", "--dataset-option total=300",
                 "--methods 'crn[dap=false],protonet'"):
        assert part in command
    assert "--run-id" not in command and "--jobs" not in command
    assert regeneration_command(config, merge(config, {})) == f"bench run --config {config.as_posix()}"
    reordered = merge(config, {"shots": [5, 1], "methods": ["protonet"]})
    assert regeneration_command(config, reordered) == f"bench run --config {config.as_posix()}"


def test_card_from_a_real_run_matches_its_leaderboard(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, methods=["protonet", "crn"], shots=[1], run_id="card-run")
    config = write_config(tmp_path / "tiny.yaml", **flags)
    assert main(["run", "--config", str(config), "--threads", "1"]) == 0
    card = write_card(tmp_path / "card.yaml", [{"config": "tiny.yaml", "budget": "reduced"}],
                      [{"method": "protonet", "way": 3, "shot": 1, "mean": 99.0, "source": "paper"}])
    out = tmp_path / "card.md"
    assert main(["card", str(card), "--out", str(out)]) == 0
    cell = json.loads(next((tmp_path / "runs" / "card-run" / "cells").glob("protonet*.json")).read_text())
    text = out.read_text()
    assert f"| protonet | 3 | 1 | 99.00 | paper | {cell['mean']:.2f} ± " in text
    assert f"bench run --config {config.as_posix()} --threads 1" in text
    assert "| crn | 3 | 1 | — |  |" in text


@pytest.mark.parametrize("mutate, message", [
    (lambda card: card["sections"][0]["runs"][0].update(budget="huge"), "budget must be one of gpu, reduced"),
    (lambda card: card["sections"][0]["runs"][0].update(config="missing.yaml"), "missing.yaml' does not exist"),
    (lambda card: card["sections"][0]["paper"][0].pop("mean"), "lacks 'mean'"),
    (lambda card: card.pop("sections"), "lacks 'sections'"),
])
def test_bad_card_files_give_one_line_errors(tmp_path, capsys, mutate, message):
    write_config(tmp_path / "toy.yaml", run_id="x", output_dir=str(tmp_path / "runs"))
    data = {"sections": [{"name": "Toy", "runs": [{"config": "toy.yaml", "budget": "gpu"}], "paper": copy.deepcopy(PAPER)}]}
    mutate(data)
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(data))
    assert main(["card", str(tmp_path / "card.yaml"), "--out", str(tmp_path / "o.md")]) == 3
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o.md").exists()


def test_a_config_without_run_id_cannot_be_found(tmp_path, capsys):
    write_config(tmp_path / "toy.yaml", output_dir=str(tmp_path / "runs"))
    write_card(tmp_path / "card.yaml", [{"config": "toy.yaml", "budget": "gpu"}], PAPER)
    assert main(["card", str(tmp_path / "card.yaml"), "--out", str(tmp_path / "o.md")]) == 3
    assert "must set run_id" in capsys.readouterr().err


def test_the_repository_card_parses_and_names_existing_configs():
    card = load_card(REPO / "configs" / "reproduce" / "card.yaml")
    assert [s.name.split()[0] for s in card.sections] == ["Omniglot", "miniImageNet", "FER2013"]
    for section in card.sections:
        for run in section.runs:
            config = merge(run.config_path, {})
            if run.records is not None:  # committed records: the card reads them, whatever the config's run id
                assert (run.records / "config.yaml").is_file() and any((run.records / "cells").glob("*.json"))
            else:
                assert config.run_id and config.run_id.startswith("reproduce-")


def test_published_records_regenerate_the_card_and_the_leaderboard(tmp_path, capsys):
    flags = tiny_run_flags(tmp_path, methods=["protonet", "crn"], shots=[1], run_id="card-run")
    config = write_config(tmp_path / "tiny.yaml", **flags)
    runs = tmp_path / "runs"
    assert main(["run", "--config", str(config), "--threads", "1"]) == 0
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "from-run.csv")]) == 0
    records = tmp_path / "records" / "card-run"
    assert main(["publish", "card-run", "--output-dir", str(runs), "--out", str(records)]) == 0
    kept = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    assert {"config.yaml", "environment.json", "plan.json"} <= set(kept)
    assert {p.split("/")[0] for p in kept} == {"config.yaml", "environment.json", "plan.json", "cells", "episodes"}
    assert any(p.startswith("cells/protonet") for p in kept) and any(p.startswith("episodes/") for p in kept)
    assert (runs / "card-run" / "checkpoints").is_dir()  # what the record leaves out
    import shutil
    shutil.rmtree(runs)  # the card and the leaderboard need only the records
    card = write_card(tmp_path / "card.yaml", [{"config": "tiny.yaml", "budget": "reduced",
                                                "records": "records/card-run"}],
                      [{"method": "protonet", "way": 3, "shot": 1, "mean": 99.0, "source": "paper"}])
    out, board = tmp_path / "card.md", tmp_path / "board.csv"
    assert main(["card", str(card), "--out", str(out), "--leaderboard", str(board)]) == 0
    text = out.read_text()
    cell = json.loads(next((records / "cells").glob("protonet*.json")).read_text())
    assert f"| protonet | 3 | 1 | 99.00 | paper | {cell['mean']:.2f} ± " in text
    assert text.count("| current |") == 2 and "Stale rows" not in text
    assert f"| {cell['code_version']} / {cell['settings_hash']} |" in text  # every row names what computed it
    assert f"bench publish card-run --out {records.as_posix()}" in text
    assert board.read_bytes() == (tmp_path / "from-run.csv").read_bytes()
    # a record of other code whose fingerprint differs from today's is stale; one without a code version (or
    # without a committed fingerprint of its code) is unverified
    from fewshot_bench.fingerprint.book import FingerprintBook

    book = FingerprintBook(tmp_path / "fingerprints")
    book.write("protonet", "code:000000000000", {"A": {"losses": [9.0]}, "B": {"losses": [9.0]}}, "gpu", None)
    book.save()
    cell["code_version"] = "code:000000000000"
    cell.pop("checksum", None)  # unsealed, as older records are (a sealed one edited by hand would not verify)
    next((records / "cells").glob("protonet*.json")).write_text(json.dumps(cell))
    crn_path = next((records / "cells").glob("crn*.json"))
    crn = json.loads(crn_path.read_text())
    crn.pop("code_version")
    crn.pop("checksum", None)
    crn["method_version"] = "0.1.0"
    crn_path.write_text(json.dumps(crn))
    assert main(["card", str(card), "--out", str(out), "--fingerprints", str(tmp_path / "fingerprints")]) == 0
    text = out.read_text()
    assert "| **stale** |" in text and "**Stale rows: 1** — " in text
    assert "- protonet 3-way 1-shot: protonet behaves differently from bench fingerprint --write at code:000000000000: " \
           "A.accuracies: (missing) vs [" in text
    assert "| **unverified** |" in text and "- crn 3-way 1-shot: the record names no code version" in text


def test_publish_refuses_what_is_not_a_run_or_is_the_run_itself(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["publish", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 3
    assert "no run" in capsys.readouterr().err
    flags = tiny_run_flags(tmp_path, methods=["protonet"], shots=[1], run_id="one", train_episodes=2)
    assert main(["run", "--config", str(write_config(tmp_path / "t.yaml", **flags)), "--threads", "1"]) == 0
    capsys.readouterr()
    run = tmp_path / "runs" / "one"
    assert main(["publish", str(run), "--out", str(run)]) == 3
    assert "is the run folder itself" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["publish", str(run), "--out", str(tmp_path / "taken")]) == 3
    assert "is not a run record" in capsys.readouterr().err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
