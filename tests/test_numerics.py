"""Device kind and effective precision are part of a result's identity: never pooled across."""

import csv

import numpy as np
import pytest

from fewshot_bench.reporting.tables import table_from_rows
from fewshot_bench.results.frames import cells_frame
from fewshot_bench.results.leaderboard import COLUMNS, leaderboard_rows, read_leaderboard, write_leaderboard
from fewshot_bench.results.numerics import effective_numerics, record_numerics
from fewshot_bench.results.store import RunStore, SummaryRow, summary_rows
from test_reporting import A, B, make_cell, write_run

SAME = {"settings_hash": "0123456789ab"}
GPU_BF16 = {"device": "cuda:0", "settings": {"amp": True}, "numerics": {"device_kind": "cuda", "precision": "bf16-autocast"}}
CPU_FP32 = {"device": "cpu", "settings": {"amp": True}, "numerics": {"device_kind": "cpu", "precision": "fp32"}}


@pytest.mark.parametrize("device, amp, expected", [
    ("cuda", True, ("cuda", "bf16-autocast")), ("cuda:1", True, ("cuda", "bf16-autocast")),
    ("cuda:0", False, ("cuda", "fp32")), ("cpu", True, ("cpu", "fp32")), ("cpu", False, ("cpu", "fp32")),
    ("mps", True, ("mps", "fp32")),
])
def test_bf16_only_with_amp_on_cuda(device, amp, expected):
    assert effective_numerics(device, amp) == dict(zip(("device_kind", "precision"), expected))


def test_a_records_own_block_wins_and_old_records_migrate_at_read_time():
    assert record_numerics(make_cell("protonet", 1, 0, A, **GPU_BF16)) == GPU_BF16["numerics"]
    old = make_cell("protonet", 1, 0, A)  # no numerics block, no settings: amp counts as its default, true
    assert record_numerics({**old, "device": "cuda:0"}) == {"device_kind": "cuda", "precision": "bf16-autocast"}
    assert record_numerics({**old, "device": "cuda", "settings": {"amp": True}})["precision"] == "bf16-autocast"
    assert record_numerics({**old, "device": "cuda", "settings": {"amp": False}}) == {"device_kind": "cuda",
                                                                                      "precision": "fp32"}
    assert record_numerics({**old, "device": "cpu"}) == {"device_kind": "cpu", "precision": "fp32"}
    assert record_numerics({**old, "device": "cpu", "settings": {"amp": False}})["precision"] == "fp32"
    assert "numerics" not in old  # read, never rewritten
    frame = cells_frame([{**old, "device": "cuda:0", "settings": {"amp": False}}, old])
    assert frame[["device_kind", "precision"]].values.tolist() == [["cuda", "fp32"], ["cpu", "fp32"]]


def test_the_leaderboard_never_pools_a_gpu_bf16_cell_with_a_cpu_fp32_cell(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "gpu", [make_cell("protonet", 1, 0, A, **SAME, **GPU_BF16)])
    write_run(runs, "cpu", [make_cell("protonet", 1, 0, B, **SAME, **CPU_FP32)])
    out = tmp_path / "leaderboard.csv"
    write_leaderboard([runs], out)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == COLUMNS and COLUMNS.index("device_kind") == COLUMNS.index("device") + 1
    assert len(rows) == 2 and {r["settings_hash"] for r in rows} == {SAME["settings_hash"]}
    by_kind = {r["device_kind"]: r for r in rows}
    assert by_kind["cuda"]["precision"] == "bf16-autocast" and by_kind["cuda"]["device"] == "cuda:0"
    assert by_kind["cpu"]["precision"] == "fp32" and by_kind["cpu"]["device"] == "cpu"
    assert all(r["seeds"] == "1" for r in rows)  # seed 0 of each counts once, in its own row
    assert float(by_kind["cuda"]["mean"]) == pytest.approx(A.mean() * 100, abs=1e-3)
    assert float(by_kind["cpu"]["mean"]) == pytest.approx(B.mean() * 100, abs=1e-3)
    # the table built from the leaderboard keeps them apart as well, each labelled with its numerics
    table = table_from_rows(read_leaderboard(out))
    assert sorted(table.labels) == ["protonet cpu/fp32", "protonet cuda/bf16-autocast"]


def test_old_records_without_a_numerics_block_are_split_by_their_derived_numerics():
    cells = [make_cell("protonet", 1, 0, A, **SAME, device="cuda", settings={"amp": True}),
             make_cell("protonet", 1, 1, A, **SAME, device="cuda", settings={"amp": False}),
             make_cell("protonet", 1, 2, B, **SAME, device="cpu", settings={"amp": True})]
    rows = leaderboard_rows(cells)
    assert sorted((r["device_kind"], r["precision"], r["seeds"]) for r in rows) == [
        ("cpu", "fp32", 1), ("cuda", "bf16-autocast", 1), ("cuda", "fp32", 1)]


def test_a_run_summary_of_two_seeds_on_one_device_is_one_row(tmp_path):
    cells = [make_cell("protonet", 1, seed, A + 0.02 * seed, **SAME, **GPU_BF16) for seed in (0, 1)]
    folder = write_run(tmp_path / "runs", "demo", cells)
    summary = RunStore(folder).write_tables(RunStore(folder).load_cells())
    assert len(summary) == 1 and summary[0]["seeds"] == 2
    assert (summary[0]["device_kind"], summary[0]["precision"]) == ("cuda", "bf16-autocast")
    written = list(csv.DictReader((folder / "summary.csv").open()))
    assert list(written[0]) == list(SummaryRow.__annotations__) and len(written) == 1
    assert (written[0]["device_kind"], written[0]["precision"], written[0]["seeds"]) == ("cuda", "bf16-autocast", "2")
    # the same seeds, one of them on the CPU: two rows, never pooled
    mixed = [cells[0], {**cells[1], **CPU_FP32}]
    assert sorted((r["device_kind"], r["seeds"]) for r in summary_rows(mixed)) == [("cpu", 1), ("cuda", 1)]


def test_old_runs_keep_their_settings_hash_and_rows():
    cells = [make_cell("protonet", 1, seed, B, settings_hash="abc") for seed in (0, 1)]
    rows = leaderboard_rows(cells)
    assert len(rows) == 1 and rows[0]["settings_hash"] == "abc" and rows[0]["seeds"] == 2
    assert (rows[0]["device_kind"], rows[0]["precision"]) == ("cpu", "fp32")
    assert np.isfinite(rows[0]["seed_ci95"])


def test_a_run_table_gives_each_numerics_its_own_line():
    from fewshot_bench.reporting.tables import table_from_cells

    cells = [make_cell("protonet", 1, 0, A, **GPU_BF16), make_cell("protonet", 1, 0, B, **CPU_FP32),
             make_cell("crn", 1, 0, A - 0.05, **CPU_FP32)]
    table = table_from_cells(cells, summary_rows(cells))
    assert table.labels == ["protonet cuda/bf16-autocast", "protonet cpu/fp32", "crn"]
    (column,) = table.columns
    assert column[:3] == ("toy", 3, 1)
    assert table.cells[("protonet cpu/fp32", column)]["mean"] == pytest.approx(B.mean() * 100)
